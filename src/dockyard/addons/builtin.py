"""Dockyard's built-in add-on providers, offered through the same hook as third-party ones."""

from __future__ import annotations

from dockyard.addons._provider import Provider
from dockyard.plugins import hookimpl
from dockyard.settings import Settings


@hookimpl
def dockyard_addon_providers(settings: Settings) -> list[Provider]:
    from dockyard.addons.mysql import MySQL
    from dockyard.addons.postgres import Postgres
    from dockyard.addons.redis import Redis
    from dockyard.addons.s3 import S3

    root = settings.data_dir / "addons"
    return [
        Postgres(settings.addons_postgres_url, root / "postgres"),
        Redis(settings.addons_redis_url, root / "redis"),
        MySQL(settings.addons_mysql_url, root / "mysql"),
        S3(settings.addons_s3_url, root / "s3"),
    ]
