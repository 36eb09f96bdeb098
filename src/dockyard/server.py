"""``dockyard server``: the control plane as one asyncio process.

For now it runs the API; later parts (receivers, builder, reconciler, router manager)
join it as tasks of the same loop. Migrations run before the API accepts requests, so
``/healthz`` answering means the server is ready.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from dockyard.api import create_api
from dockyard.settings import Settings
from dockyard.store import Database, migrate

log = logging.getLogger("dockyard.server")


def prepare(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(settings.database_url)
    migrate(database)
    return database


async def serve(settings: Settings) -> None:
    database = prepare(settings)
    config = uvicorn.Config(
        create_api(settings, database),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        database.dispose()


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(settings))
