"""The ``mysql`` add-on: a database and a user of its own on a MySQL or MariaDB server: the
operator's (``DOCKYARD_ADDONS_MYSQL_URL``), else a MariaDB the platform runs under its data
dir (:mod:`dockyard.addons._mariadb`).

The user has every privilege on its database and none elsewhere. Rotating makes a new user
and drops the old one (MySQL keeps the sessions it already has until the app restarts).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pymysql
import pymysql.cursors

from dockyard.addons._mariadb import MariaDBServer
from dockyard.addons._placement import Placement
from dockyard.addons._provider import Data, Plan, Provisioning
from dockyard.errors import AddonFailed

PLANS = (
    Plan("mini", "Up to 10 connections", {"connections": 10}),
    Plan("standard", "Up to 60 connections", {"connections": 60}),
    Plan("premium", "Up to 300 connections", {"connections": 300}),
)


def _quoted(name: str) -> str:
    """A name we made (hex after a letter), as a MySQL identifier."""
    if not name.isalnum():
        raise ValueError(f"unexpected MySQL name {name!r}")
    return f"`{name}`"


class MySQL(Placement):
    service: str = "mysql"
    human_name: str = "MySQL"
    description: str = "A MySQL (MariaDB) database with a user of its own"
    aliases: tuple[str, ...] = ("mariadb", "jawsdb", "jawsdb-maria")
    name_prefix: str = "mysql"
    default_attachment: str = "MYSQL"
    option_names: tuple[str, ...] = ()  # takes no options: any is refused, naming it
    config_var_suffixes: tuple[str, ...] = ("URL",)
    plans: Sequence[Plan] = PLANS
    default_port = 3306

    def __init__(self, admin_url: str, root: Path | None = None) -> None:
        """New add-ons on the server at ``admin_url``; unset, on one the platform runs under
        ``root`` (see dockyard.addons._placement: add-ons made there stay there)."""
        self.operator_url = admin_url
        self.server: MariaDBServer | None = MariaDBServer(root) if root is not None else None

    def __repr__(self) -> str:
        return f"MySQL({self._where(self._platform(None))})"

    @contextmanager
    def _admin(self, data: Mapping[str, Any] | None = None) -> Iterator[pymysql.cursors.Cursor]:
        """An admin cursor on the server of ``data``'s add-on (None: a new one's)."""
        platform = self._platform(data)
        if not platform and not self.operator_url:
            raise AddonFailed(
                "no MySQL server is set up for add-ons: the operator sets "
                "DOCKYARD_ADDONS_MYSQL_URL to an admin URL"
            )
        where = self._where(platform)
        parts = urlsplit(self._admin_url(platform))
        try:
            connection = pymysql.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                autocommit=True,
                connect_timeout=10,
            )
        except pymysql.MySQLError as exc:
            raise AddonFailed(f"the MySQL server at {where} is unreachable: {exc}") from exc
        try:
            with connection, connection.cursor() as cursor:
                yield cursor
        except pymysql.MySQLError as exc:
            raise AddonFailed(f"the MySQL server at {where} refused: {exc}") from exc

    def provision(self, request: Provisioning) -> Data:
        database, user = f"d{secrets.token_hex(7)}", f"u{secrets.token_hex(7)}"
        password = secrets.token_urlsafe(24)
        limit = int(request.plan.limits.get("connections", 10))
        try:
            with self._admin() as admin:
                admin.execute(f"CREATE DATABASE {_quoted(database)} CHARACTER SET utf8mb4")
                self._create_user(admin, database, user, password, limit)
        except AddonFailed:
            with contextlib.suppress(
                AddonFailed
            ):  # the server is what failed; nothing more can be removed now
                self.deprovision(
                    {"database": database, "user": user, "platform": self._platform(None)}
                )
            raise
        platform = self._platform(None)
        parts = urlsplit(self._admin_url(platform))
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "database": database,
            "user": user,
            "password": password,
            "connections": limit,
            "platform": platform,
        }

    @staticmethod
    def _create_user(
        admin: pymysql.cursors.Cursor, database: str, user: str, password: str, limit: int
    ) -> None:
        admin.execute(
            f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s WITH MAX_USER_CONNECTIONS {int(limit)}",
            (password,),
        )
        admin.execute(f"GRANT ALL PRIVILEGES ON {_quoted(database)}.* TO '{user}'@'%'")

    def deprovision(self, data: Mapping[str, Any]) -> None:
        user = str(data["user"])
        _quoted(user)
        with self._admin(data) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {_quoted(str(data['database']))}")
            for each in [user, *data.get("retired", [])]:
                self._drop_user(admin, str(each))

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]:
        user, password = quote(str(data["user"]), safe=""), quote(str(data["password"]), safe="")
        return {
            "URL": f"mysql://{user}:{password}@{data['host']}:{data['port']}/{data['database']}"
        }

    def rotate(self, data: Mapping[str, Any]) -> Data:
        """A new user with the same grants; the old one works until :meth:`revoke`."""
        old = str(data["user"])
        user, password = f"u{secrets.token_hex(7)}", secrets.token_urlsafe(24)
        with self._admin(data) as admin:
            self._create_user(
                admin, str(data["database"]), user, password, int(data.get("connections", 10))
            )
        return {
            **data,
            "user": user,
            "password": password,
            "retired": [*data.get("retired", []), old],
        }

    def revoke(self, data: Mapping[str, Any]) -> Data:
        """The retired users dropped and their sessions killed."""
        retired = [str(u) for u in data.get("retired", [])]
        if retired:
            with self._admin(data) as admin:
                for user in retired:
                    self._drop_user(admin, user)
        return {**data, "retired": []}

    @staticmethod
    def _drop_user(admin: pymysql.cursors.Cursor, user: str) -> None:
        _quoted(user)
        admin.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
        for (session,) in admin.fetchall():
            with contextlib.suppress(pymysql.MySQLError):  # it ended on its own meanwhile
                admin.execute(f"KILL {int(session)}")

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data:
        limit = int(plan.limits.get("connections", 10))
        with self._admin(data) as admin:
            for user in [data["user"], *data.get("retired", [])]:
                _quoted(str(user))
                admin.execute(
                    f"ALTER USER IF EXISTS '{user}'@'%' WITH MAX_USER_CONNECTIONS {limit}"
                )
        return {**data, "connections": limit}

    def enforce(self, data: Mapping[str, Any]) -> Data:
        """Plans limit connections only, which the server enforces itself."""
        return dict(data)

    def info(self, data: Mapping[str, Any]) -> dict[str, str]:
        with self._admin(data) as admin:
            admin.execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0), COUNT(*) "
                "FROM information_schema.tables WHERE table_schema = %s",
                (data["database"],),
            )
            row = admin.fetchone()
            admin.execute(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s",
                (data["user"],),
            )
            connections = admin.fetchone()
            admin.execute("SELECT VERSION()")
            version = admin.fetchone()
        size, tables = row if row else (0, 0)
        return {
            "Status": "Available",
            "Data Size": f"{int(size)} bytes",
            "Tables": str(tables),
            "Connections": f"{connections[0] if connections else 0}/{data['connections']}",
            "Version": str(version[0] if version else ""),
            "Host": f"{data['host']}:{data['port']}",
            "Database": str(data["database"]),
        }

    def ensure_running(self, data: Mapping[str, Any]) -> None:
        """Start the platform's MariaDB if the add-on is on it and it is down."""
        if self.server is not None and data.get("platform"):
            self.server.ensure_running()
