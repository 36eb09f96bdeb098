"""The PostgreSQL and MariaDB the platform runs itself when no operator's server is set:
made on first use under the data dir (whose parents only root may pass), private to each
add-on, started again with their data when they die, re-adopted by a new control plane,
and held to the add-on's plan.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pytest

from conftest import POSTGRES_ADMIN, wait_until
from dockyard.addons import Plan, Provider, Provisioning
from dockyard.addons._processes import alive
from dockyard.addons.mysql import MySQL
from dockyard.addons.postgres import Postgres
from dockyard.errors import InvalidParams


def request(provider: Provider, plan: str | None = None) -> Provisioning:
    chosen = next((p for p in provider.plans if p.name == plan), provider.plans[0])
    return Provisioning(str(uuid.uuid4()), f"test-{uuid.uuid4().hex[:8]}", chosen)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("platform-servers") / "addons"
    yield where
    for provider in (Postgres("", where / "postgres"), MySQL("", where / "mysql")):
        assert provider.server is not None
        provider.server.stop()


MYSQL_ADMIN = os.environ.get("DOCKYARD_TEST_MYSQL", "mysql://root@127.0.0.1:3306")


def pg(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, connect_timeout=5, autocommit=True)


def test_platform_postgres(root: Path) -> None:
    provider = Postgres("", root / "postgres")
    assert provider.server is not None
    a = provider.provision(request(provider, "standard"))
    b = provider.provision(request(provider))
    assert a["platform"] is True
    url_a, url_b = provider.config_vars(a)["URL"], provider.config_vars(b)["URL"]
    assert url_a.startswith(f"postgres://{a['user']}:")
    assert f"@127.0.0.1:{provider.server.port}/" in url_a
    # Only its own files, and only for the server's own user.
    if os.geteuid() == 0:
        data = root / "postgres" / "server" / "data"
        assert data.stat().st_uid != 0
        assert (root / "postgres" / "state.json").stat().st_mode & 0o077 == 0
    with pg(url_a) as conn:
        conn.execute("CREATE TABLE posts (id serial PRIMARY KEY, title text)")
        conn.execute("INSERT INTO posts (title) VALUES ('hello')")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        pg(url_a.rsplit("/", 1)[0] + f"/{b['database']}")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        pg(url_b.rsplit("/", 1)[0] + f"/{a['database']}")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg(url_a.replace(str(a["password"]), "wrong"))

    # Killed, it is started again with its data by the supervisor's call.
    pidfile = root / "postgres" / "server" / "data" / "postmaster.pid"
    pid = int(pidfile.read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout=10)
    provider.ensure_running(a)
    assert int(pidfile.read_text().splitlines()[0]) != pid
    with pg(url_a) as conn:
        assert conn.execute("SELECT title FROM posts").fetchall() == [("hello",)]

    # A new control plane (a new provider on the same directory) adopts the running server.
    pid = int(pidfile.read_text().splitlines()[0])
    again = Postgres("", root / "postgres")
    again.ensure_running(a)
    assert int(pidfile.read_text().splitlines()[0]) == pid

    # Plans: a larger one raises the connection limit; one smaller than the data is refused.
    upgraded = provider.change_plan(a, provider.plans[2])
    with pg(provider.server.admin_url()) as admin:
        limit = admin.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (a["user"],))
        assert limit.fetchone() == (400,)
    with pytest.raises(InvalidParams, match="more than the tiny plan"):
        provider.change_plan(upgraded, Plan("tiny", "", {"connections": 5, "storage_mb": 1}))

    # Over its size limit, the database takes no more rows until it is back under.
    over = provider.enforce({**upgraded, "storage_mb": 1})
    assert over["over_limit"] is True
    with pg(url_a) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO posts (title) VALUES ('too much')")
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (1,)
        conn.execute("UPDATE posts SET title = 'still editable'")
    under = provider.enforce({**over, "storage_mb": 1024})
    assert under["over_limit"] is False
    with pg(url_a) as conn:
        conn.execute("INSERT INTO posts (title) VALUES ('room again')")

    provider.deprovision(under)
    provider.deprovision(b)
    with pg(provider.server.admin_url()) as admin:
        for database in (a["database"], b["database"]):
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            assert found.fetchone() is None


def test_platform_postgres_add_ons_stay_when_an_operator_server_is_set(root: Path) -> None:
    before = Postgres("", root / "postgres")
    old = before.provision(request(before))
    with pg(before.config_vars(old)["URL"]) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('on the platform')")
    # The operator sets DOCKYARD_ADDONS_POSTGRES_URL: new add-ons go to that server ...
    after = Postgres(POSTGRES_ADMIN, root / "postgres")
    new = after.provision(request(after))
    assert (old["platform"], new["platform"]) == (True, False)
    assert after.config_vars(new)["URL"].startswith(f"postgres://{new['user']}:")
    assert new["port"] == (urlsplit(POSTGRES_ADMIN).port or 5432)
    # ... and the platform still runs, checks and manages the one the old add-on is on.
    assert after.server is not None
    after.server.stop()
    after.ensure_running(old)
    rotated = after.rotate(old)
    with pg(after.config_vars(rotated)["URL"]) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("on the platform",)]
    assert after.info(rotated)
    after.deprovision(rotated)
    after.deprovision(new)
    with pg(POSTGRES_ADMIN) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (new["database"],))
        assert found.fetchone() is None


def my(url: str, database: str | None = None) -> pymysql.Connection[Any]:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database if database is not None else parts.path.lstrip("/"),
        connect_timeout=5,
        autocommit=True,
    )


def test_platform_mariadb(root: Path) -> None:
    provider = MySQL("", root / "mysql")
    assert provider.server is not None
    a = provider.provision(request(provider))
    b = provider.provision(request(provider))
    url_a = provider.config_vars(a)["URL"]
    assert f"@127.0.0.1:{provider.server.port}/" in url_a
    with my(url_a) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE posts (id INT AUTO_INCREMENT PRIMARY KEY, title TEXT)")
        cursor.execute("INSERT INTO posts (title) VALUES ('hello')")
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        my(url_a, database=str(b["database"]))
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        my(url_a.replace(str(a["password"]), "wrong"))
    # root may not log in over TCP: only the platform's own admin user may.
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(host="127.0.0.1", port=provider.server.port, user="root", password="")

    pidfile = root / "mysql" / "server" / "mysqld.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout=10)
    provider.ensure_running(a)
    assert int(pidfile.read_text()) != pid
    with my(url_a) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT title FROM posts")
        assert cursor.fetchall() == (("hello",),)

    changed = provider.change_plan(a, provider.plans[1])
    assert changed["connections"] == 60
    with my(provider.server.admin_url(), database="mysql") as admin, admin.cursor() as cursor:
        cursor.execute("SELECT max_user_connections FROM mysql.user WHERE user = %s", (a["user"],))
        assert cursor.fetchone() == (60,)

    provider.deprovision(changed)
    provider.deprovision(b)
    with my(provider.server.admin_url(), database="") as admin, admin.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", (a["database"],))
        assert cursor.fetchall() == ()


def test_platform_mariadb_add_ons_stay_when_an_operator_server_is_set(root: Path) -> None:
    before = MySQL("", root / "mysql")
    old = before.provision(request(before))
    with my(before.config_vars(old)["URL"]) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE kept (note text)")
        cursor.execute("INSERT INTO kept VALUES ('on the platform')")
    # The operator sets DOCKYARD_ADDONS_MYSQL_URL: new add-ons go to that server ...
    after = MySQL(MYSQL_ADMIN, root / "mysql")
    new = after.provision(request(after))
    assert (old["platform"], new["platform"]) == (True, False)
    assert new["port"] == (urlsplit(MYSQL_ADMIN).port or 3306)
    # ... and the platform still runs, checks and manages the one the old add-on is on.
    assert after.server is not None
    after.server.stop()
    after.ensure_running(old)
    rotated = after.rotate(old)
    with my(after.config_vars(rotated)["URL"]) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT note FROM kept")
        assert cursor.fetchall() == (("on the platform",),)
    assert after.info(rotated)
    after.deprovision(rotated)
    after.deprovision(new)
    with my(MYSQL_ADMIN, "") as conn, conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", (new["database"],))
        assert cursor.fetchall() == ()

