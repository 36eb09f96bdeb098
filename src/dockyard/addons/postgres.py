"""The ``postgres`` add-on: a database and a role of its own on a PostgreSQL server: the
operator's (``DOCKYARD_ADDONS_POSTGRES_URL``), else one the platform runs under its data
dir (:mod:`dockyard.addons._pgserver`).

The role owns its database and nothing else; ``CONNECT`` on the database is revoked from
``PUBLIC``, so no other add-on's role can even connect to it. Rotating makes a new role,
hands it everything the old one owned and takes the old one's login away (its open
sessions end when the app restarts); the retired role is dropped at the next rotation or
with the add-on.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dockyard.addons._pgserver import PostgresServer
from dockyard.addons._placement import Placement
from dockyard.addons._provider import Data, Plan, Provisioning
from dockyard.errors import AddonFailed, InvalidParams

PLANS = (
    Plan(
        "essential", "Up to 20 connections, 1 GB of data", {"connections": 20, "storage_mb": 1024}
    ),
    Plan(
        "standard",
        "Up to 120 connections, 64 GB of data",
        {"connections": 120, "storage_mb": 65536},
    ),
    Plan(
        "premium",
        "Up to 400 connections, 256 GB of data",
        {"connections": 400, "storage_mb": 262144},
    ),
)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


class Postgres(Placement):
    service: str = "postgres"
    human_name: str = "PostgreSQL"
    description: str = "A PostgreSQL database with a role of its own"
    aliases: tuple[str, ...] = ("postgresql", "heroku-postgresql", "pg")
    name_prefix: str = "postgresql"
    default_attachment: str = "DATABASE"
    option_names: tuple[str, ...] = ()  # takes no options: any is refused, naming it
    config_var_suffixes: tuple[str, ...] = ("URL",)
    plans: Sequence[Plan] = PLANS
    default_port = 5432

    def __init__(self, admin_url: str, root: Path | None = None) -> None:
        """New add-ons on the server at ``admin_url``; unset, on one the platform runs under
        ``root``. Add-ons made on the platform's server stay there (their data says
        ``platform``) even once ``admin_url`` is set: the platform keeps running it."""
        self.operator_url = admin_url
        self.server: PostgresServer | None = PostgresServer(root) if root is not None else None

    def __repr__(self) -> str:
        return f"Postgres({self._where(self._platform(None))})"

    @contextmanager
    def _admin(
        self, database: str | None = None, *, data: Mapping[str, Any] | None = None
    ) -> Iterator[psycopg.Connection[Any]]:
        """An admin connection to the server of ``data``'s add-on (None: a new one's)."""
        platform = self._platform(data)
        if not platform and not self.operator_url:
            raise AddonFailed(
                "no PostgreSQL server is set up for add-ons: the operator sets "
                "DOCKYARD_ADDONS_POSTGRES_URL to a superuser URL"
            )
        where = self._where(platform)
        try:
            conninfo = make_conninfo(
                self._admin_url(platform), **({"dbname": database} if database else {})
            )
            connection = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise AddonFailed(f"the PostgreSQL server at {where} is unreachable: {exc}") from exc
        try:
            with connection:
                yield connection
        except psycopg.Error as exc:
            raise AddonFailed(f"the PostgreSQL server at {where} refused: {exc}") from exc

    def provision(self, request: Provisioning) -> Data:
        database = f"d{secrets.token_hex(7)}"
        role = f"u{secrets.token_hex(7)}"
        password = secrets.token_urlsafe(32)
        limit = int(request.plan.limits.get("connections", 20))
        try:
            with self._admin() as admin:
                self._create_role(admin, role, password, limit)
                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(role)
                    )
                )
                admin.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
                        sql.Identifier(database)
                    )
                )
        except AddonFailed:
            self._drop_quietly(database, [role])
            raise
        platform = self._platform(None)
        parts = urlsplit(self._admin_url(platform))
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "database": database,
            "user": role,
            "password": password,
            "connections": limit,
            "storage_mb": int(request.plan.limits.get("storage_mb", 1024)),
            "retired": [],
            "platform": platform,
        }

    @staticmethod
    def _create_role(admin: psycopg.Connection[Any], role: str, password: str, limit: int) -> None:
        admin.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {} "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            ).format(sql.Identifier(role), sql.Literal(password), sql.Literal(limit))
        )

    def _drop_quietly(self, database: str, roles: list[str]) -> None:
        with contextlib.suppress(
            AddonFailed
        ):  # the server is what failed; nothing more can be removed now
            self.deprovision(
                {
                    "database": database,
                    "user": roles[0],
                    "retired": roles[1:],
                    "platform": self._platform(None),
                }
            )

    def deprovision(self, data: Mapping[str, Any]) -> None:
        with self._admin(data=data) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(str(data["database"]))
                )
            )
            for role in [data["user"], *data.get("retired", [])]:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(str(role))))

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]:
        return {"URL": self.url(data)}

    @staticmethod
    def url(data: Mapping[str, Any]) -> str:
        user, password = quote(str(data["user"]), safe=""), quote(str(data["password"]), safe="")
        return f"postgres://{user}:{password}@{data['host']}:{data['port']}/{data['database']}"

    def rotate(self, data: Mapping[str, Any]) -> Data:
        """A new role, a member of the old one (so it reaches everything the old one owns)
        while dynos still connected as the old one finish; :meth:`revoke` retires it."""
        old = str(data["user"])
        role, password = f"u{secrets.token_hex(7)}", secrets.token_urlsafe(32)
        with self._admin(data=data) as admin:
            self._create_role(admin, role, password, int(data.get("connections", 20)))
            try:
                admin.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(old), sql.Identifier(role))
                )
            except psycopg.Error:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                raise
        return {
            **data,
            "user": role,
            "password": password,
            "retired": [*data.get("retired", []), old],
        }

    def revoke(self, data: Mapping[str, Any]) -> Data:
        """The retired roles: no more logins, their sessions ended, everything they owned
        (the database included) handed to the current role, then dropped."""
        role, retired = str(data["user"]), [str(r) for r in data.get("retired", [])]
        if not retired:
            return dict(data)
        with self._admin(data=data) as admin:
            for old in retired:
                if self._role_exists(admin, old):
                    admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(old)))
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (old,),
                )
        with self._admin(str(data["database"]), data=data) as admin:
            for old in retired:
                if not self._role_exists(admin, old):
                    continue
                admin.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        sql.Identifier(old), sql.Identifier(role)
                    )
                )
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(old)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(old)))
        return {**data, "retired": []}

    @staticmethod
    def _role_exists(admin: psycopg.Connection[Any], role: str) -> bool:
        found = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        return found is not None

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data:
        """The new plan's connection limit on the role and its size limit; a plan too small
        for the data already there is refused."""
        limit = int(plan.limits.get("connections", 20))
        storage_mb = int(plan.limits.get("storage_mb", 1024))
        size = self._size(data)
        if size > storage_mb << 20:
            raise InvalidParams(
                f"The database holds {human_size(size)}, more than the {plan.name} plan's "
                f"{human_size(storage_mb << 20)}; delete data first or choose a larger plan"
            )
        with self._admin(data=data) as admin:
            for role in [data["user"], *data.get("retired", [])]:
                if self._role_exists(admin, str(role)):
                    admin.execute(
                        sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                            sql.Identifier(str(role)), sql.Literal(limit)
                        )
                    )
        return self.enforce({**data, "connections": limit, "storage_mb": storage_mb})

    def _size(self, data: Mapping[str, Any]) -> int:
        with self._admin(str(data["database"]), data=data) as admin:
            row = admin.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def enforce(self, data: Mapping[str, Any]) -> Data:
        """Heroku's way with a database over its plan's size: its role may no longer INSERT
        (it may still read, update and delete) until it is back under, or on a larger plan."""
        over = self._size(data) > int(data.get("storage_mb", 1024)) << 20
        if not over and not data.get("over_limit"):
            return dict(data)
        action = (
            "REVOKE INSERT ON ALL TABLES IN SCHEMA {} FROM {}"
            if over
            else ("GRANT INSERT ON ALL TABLES IN SCHEMA {} TO {}")
        )
        with self._admin(str(data["database"]), data=data) as admin:
            schemas = admin.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
                "AND nspname <> 'information_schema'"
            ).fetchall()
            for (schema,) in schemas:
                admin.execute(
                    sql.SQL(action).format(
                        sql.Identifier(schema), sql.Identifier(str(data["user"]))
                    )
                )
        return {**data, "over_limit": over}

    def info(self, data: Mapping[str, Any]) -> dict[str, str]:
        database = str(data["database"])
        with self._admin(database, data=data) as admin:
            row = admin.execute(
                "SELECT pg_database_size(current_database()), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()), "
                "(SELECT count(*) FROM information_schema.tables "
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')), "
                "current_setting('server_version')"
            ).fetchone()
        assert row is not None
        size, connections, tables, version = row
        return {
            "Status": "Available",
            "Data Size": f"{human_size(int(size))} / {human_size(int(data['storage_mb']) << 20)}",
            "Tables": str(tables),
            "Connections": f"{connections}/{data['connections']}",
            "PG Version": str(version),
            "Host": f"{data['host']}:{data['port']}",
            "Database": database,
        }

    def ensure_running(self, data: Mapping[str, Any]) -> None:
        """Start the platform's PostgreSQL if the add-on is on it and it is down."""
        if self.server is not None and data.get("platform"):
            self.server.ensure_running()
