"""``dockyard server``: the control plane as one asyncio process.

It runs the API (with the smart HTTP git receiver), the git-over-SSH receiver and the
reconciler (which runs the dynos); later parts (router manager) join them as tasks of the
same loop. Migrations run before the API accepts requests, and SSH listens before the API,
so ``/healthz`` answering means the server is ready. The reconciler starts as a task and
does not hold up ``/healthz``; stopping the server leaves the dynos running, and the next
server adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from dockyard.api import create_api
from dockyard.receive.ssh import SSHReceiver
from dockyard.reconciler import Reconciler
from dockyard.runtime import DynoError
from dockyard.runtime.process import ProcessRuntime
from dockyard.settings import Settings
from dockyard.store import Database, migrate

log = logging.getLogger("dockyard.server")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def prepare(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(settings.database_url)
    migrate(database)
    return database


async def serve(settings: Settings) -> None:
    database = prepare(settings)
    api = create_api(settings, database)
    config = uvicorn.Config(
        api,
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # Listening before the API starts, so that /healthz answering means git over SSH works too.
    ssh = SSHReceiver(settings, api.state.database, api.state.repos)
    with _stop_on_signals(server):
        try:
            await ssh.start()
            reconciler: Reconciler | None = None
            try:
                reconciler = await _start_reconciler(settings, database, api)
                await server.serve()
            finally:
                if reconciler is not None:
                    await reconciler.close()
                await ssh.stop()
        finally:
            database.dispose()


async def _start_reconciler(
    settings: Settings, database: Database, api: FastAPI
) -> Reconciler | None:
    """The reconciler on the process runtime, started; None (and a warning) without one."""
    try:
        runtime = await ProcessRuntime.open(settings.data_dir)
    except DynoError as exc:
        log.warning("dynos will not run: %s", exc.message)
        return None
    reconciler = Reconciler(database, api.state.builds.blobs, runtime)
    api.state.reconciler = reconciler
    await reconciler.start()
    return reconciler


@contextlib.contextmanager
def _stop_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop the server, and then the other tasks, before the process exits.

    uvicorn re-raises the signal it caught once it has stopped, to the handler that was in
    place before it started: this one, so the receivers still shut down in order.
    """

    def stop(_signal: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(settings))
