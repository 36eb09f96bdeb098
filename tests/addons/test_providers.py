"""The built-in providers against the real servers of the test machine: PostgreSQL on 5432,
MariaDB on 3306, Redis on 6379, and redis-servers the platform runs itself.

Each test checks isolation (add-on A's credentials cannot reach B's data), that rotating
revokes the old credentials and keeps the data, that a refused provisioning leaves nothing
behind, and that deprovisioning removes everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
import pymysql
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import POSTGRES_ADMIN
from dockyard.addons import Data, Plan, Provider, Provisioning
from dockyard.addons import redis as redis_addon
from dockyard.addons.mysql import MySQL
from dockyard.addons.postgres import Postgres
from dockyard.errors import AddonFailed

MYSQL_ADMIN = os.environ.get("DOCKYARD_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
REDIS_ADMIN = os.environ.get("DOCKYARD_TEST_REDIS", "redis://127.0.0.1:6379")


def request(provider: Provider, plan: str | None = None) -> Provisioning:
    chosen = next((p for p in provider.plans if p.name == plan), provider.plans[0])
    return Provisioning(str(uuid.uuid4()), f"test-{uuid.uuid4().hex[:8]}", chosen)


@pytest.fixture
def made() -> Iterator[Callable[[Provider, Data], Data]]:
    """Remember what a test provisions; deprovision whatever is left at the end."""
    left: list[tuple[Provider, Data]] = []

    def remember(provider: Provider, data: Data) -> Data:
        left.append((provider, data))
        return data

    yield remember
    for provider, data in left:
        with contextlib.suppress(AddonFailed):  # already gone, or its server is
            provider.deprovision(data)


# --- PostgreSQL ----------------------------------------------------------------------------


def pg_connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, connect_timeout=5, autocommit=True, **kwargs)


def pg_exists(kind: str, name: str) -> bool:
    query = {
        "role": "SELECT 1 FROM pg_roles WHERE rolname = %s",
        "database": "SELECT 1 FROM pg_database WHERE datname = %s",
    }[kind]
    with pg_connect(POSTGRES_ADMIN) as admin:
        return admin.execute(query, (name,)).fetchone() is not None


def test_postgres_databases_are_isolated_limited_rotated_and_removed(made: Any) -> None:
    provider = Postgres(POSTGRES_ADMIN)
    a = made(provider, provider.provision(request(provider, "standard")))
    b = made(provider, provider.provision(request(provider)))
    url_a, url_b = provider.config_vars(a)["URL"], provider.config_vars(b)["URL"]
    assert url_a.startswith("postgres://u")
    with pg_connect(url_a) as conn:
        conn.execute("CREATE TABLE posts (id serial PRIMARY KEY, title text)")
        conn.execute("INSERT INTO posts (title) VALUES ('hello')")
    with pg_connect(POSTGRES_ADMIN) as admin:
        limit = admin.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (a["user"],))
        assert limit.fetchone() == (120,)
    # A's role cannot even connect to B's database, nor B's to A's.
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        pg_connect(url_a.rsplit("/", 1)[0] + f"/{b['database']}")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        pg_connect(url_b.rsplit("/", 1)[0] + f"/{a['database']}")

    # Rotating: a new role reaches the data while the old one still works (dynos restart
    # with the new one); revoking then ends the old one's sessions and drops it.
    still_open = pg_connect(url_a)
    rotated = made(provider, provider.rotate(a))
    new_url = provider.config_vars(rotated)["URL"]
    assert rotated["user"] != a["user"]
    assert new_url != url_a
    with pg_connect(new_url) as conn:
        assert conn.execute("SELECT title FROM posts").fetchall() == [("hello",)]
        conn.execute("INSERT INTO posts (title) VALUES ('again')")
    assert still_open.execute("SELECT count(*) FROM posts").fetchone() == (2,)
    revoked = made(provider, provider.revoke(rotated))
    assert revoked["retired"] == []
    assert not pg_exists("role", a["user"])
    with pytest.raises(psycopg.OperationalError, match=r"role .* does not exist|password auth"):
        pg_connect(url_a)
    with pytest.raises(psycopg.OperationalError):
        still_open.execute("SELECT 1")
    still_open.close()
    with pg_connect(new_url) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner == (rotated["user"],)
        assert conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'posts'"
        ).fetchone() == (rotated["user"],)
    info = provider.info(revoked)
    assert info["Connections"].endswith("/120")
    assert info["Tables"] == "1"
    # A second rotation works the same way from there.
    again = made(provider, provider.revoke(provider.rotate(revoked)))
    assert not pg_exists("role", rotated["user"])
    with pg_connect(provider.config_vars(again)["URL"]) as conn:
        assert len(conn.execute("SELECT * FROM posts").fetchall()) == 2

    provider.deprovision(again)
    assert not pg_exists("database", a["database"])
    assert not pg_exists("role", rotated["user"])
    assert not pg_exists("role", again["user"])


@pytest.fixture
def weak_postgres_admin() -> Iterator[str]:
    """An admin that may create roles but not databases: provisioning fails half-way."""
    name = f"weak_{uuid.uuid4().hex[:8]}"
    with pg_connect(POSTGRES_ADMIN) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN CREATEROLE NOCREATEDB')
    yield POSTGRES_ADMIN.replace("postgres@", f"{name}@", 1)
    with pg_connect(POSTGRES_ADMIN) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def count_addon_roles() -> int:
    with pg_connect(POSTGRES_ADMIN) as admin:
        row = admin.execute("SELECT count(*) FROM pg_roles WHERE rolname ~ '^u[0-9a-f]{14}$'")
        found = row.fetchone()
        assert found is not None
        return int(found[0])


def test_postgres_refusing_leaves_nothing_behind(weak_postgres_admin: str) -> None:
    before = count_addon_roles()
    provider = Postgres(weak_postgres_admin)
    with pytest.raises(AddonFailed, match=r"refused.*permission denied to create database"):
        provider.provision(request(provider))
    assert count_addon_roles() == before


def test_postgres_unreachable_or_unset_fails_clearly() -> None:
    with pytest.raises(AddonFailed, match=r"127\.0\.0\.1:1 is unreachable"):
        Postgres("postgresql://postgres@127.0.0.1:1/postgres").provision(request(Postgres("")))
    with pytest.raises(AddonFailed, match="DOCKYARD_ADDONS_POSTGRES_URL"):
        Postgres("").provision(request(Postgres("")))


# --- MySQL / MariaDB ---------------------------------------------------------------------


def my_connect(url: str, database: str | None = None) -> pymysql.Connection[Any]:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database if database is not None else (parts.path.lstrip("/") or None),
        connect_timeout=5,
        autocommit=True,
    )


def my_users(name: str) -> int:
    with my_connect(MYSQL_ADMIN) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE user = %s", (name,))
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def test_mysql_databases_are_isolated_rotated_and_removed(made: Any) -> None:
    provider = MySQL(MYSQL_ADMIN)
    a = made(provider, provider.provision(request(provider)))
    b = made(provider, provider.provision(request(provider)))
    url_a = provider.config_vars(a)["URL"]
    assert url_a.startswith("mysql://u")
    with my_connect(url_a) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE posts (id INT AUTO_INCREMENT PRIMARY KEY, title TEXT)")
        cursor.execute("INSERT INTO posts (title) VALUES ('hello')")
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        my_connect(url_a, database=str(b["database"]))
    with (
        my_connect(url_a) as conn,
        conn.cursor() as cursor,
        pytest.raises(pymysql.err.OperationalError, match="denied"),
    ):
        cursor.execute(f"SELECT * FROM `{b['database']}`.posts")  # noqa: S608 - a name we made

    still_open = my_connect(url_a)
    rotated = made(provider, provider.rotate(a))
    new_url = provider.config_vars(rotated)["URL"]
    with my_connect(new_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT title FROM posts")
        assert cursor.fetchall() == (("hello",),)
    my_connect(url_a).close()  # the old user works until revoked
    rotated = made(provider, provider.revoke(rotated))
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        my_connect(url_a)
    with pytest.raises(pymysql.err.OperationalError), still_open.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert my_users(str(a["user"])) == 0
    assert provider.info(rotated)["Tables"] == "1"

    provider.deprovision(rotated)
    assert my_users(str(rotated["user"])) == 0
    assert my_users(str(a["user"])) == 0
    with my_connect(MYSQL_ADMIN) as admin, admin.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", (a["database"],))
        assert cursor.fetchall() == ()


def test_mysql_unreachable_fails_clearly() -> None:
    provider = MySQL("mysql://root@127.0.0.1:1")
    with pytest.raises(AddonFailed, match=r"127\.0\.0\.1:1 is unreachable"):
        provider.provision(request(provider))


# --- Redis, on the operator's server --------------------------------------------------------


def test_redis_acl_users_are_isolated_rotated_and_removed(made: Any, tmp_path: Path) -> None:
    provider = redis_addon.Redis(REDIS_ADMIN, tmp_path)
    a = made(provider, provider.provision(request(provider)))
    b = made(provider, provider.provision(request(provider)))
    vars_a, vars_b = provider.config_vars(a), provider.config_vars(b)
    client_a = redis.Redis.from_url(vars_a["URL"])
    client_b = redis.Redis.from_url(vars_b["URL"])
    prefix_a, prefix_b = vars_a["KEY_PREFIX"], vars_b["KEY_PREFIX"]
    client_a.set(f"{prefix_a}greeting", "hello")
    client_b.set(f"{prefix_b}secret", "b's")
    assert client_a.get(f"{prefix_a}greeting") == b"hello"
    for forbidden in (
        lambda: client_a.get(f"{prefix_b}secret"),
        lambda: client_a.get("unprefixed"),
        lambda: client_a.keys("*"),
        lambda: client_a.scan(0),
        client_a.flushall,
        lambda: client_a.config_get("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()

    rotated = made(provider, provider.rotate(a))
    new = redis.Redis.from_url(provider.config_vars(rotated)["URL"])
    assert new.get(f"{prefix_a}greeting") == b"hello"
    with pytest.raises(redis.exceptions.NoPermissionError):
        new.get(f"{prefix_b}secret")
    assert client_a.get(f"{prefix_a}greeting") == b"hello"  # until revoked
    rotated = made(provider, provider.revoke(rotated))
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(vars_a["URL"]).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        client_a.get(f"{prefix_a}greeting")  # its connection was closed
    assert provider.info(rotated)["Key Prefix"] == prefix_a

    provider.deprovision(rotated)
    admin = redis.Redis.from_url(REDIS_ADMIN)
    assert admin.exists(f"{prefix_a}greeting") == 0
    assert admin.get(f"{prefix_b}secret") == b"b's"
    assert str(a["user"]) not in [str(u) for u in admin.acl_users()]
    for client in (client_a, client_b, new, admin):
        client.close()


def test_redis_unreachable_fails_clearly(tmp_path: Path) -> None:
    provider = redis_addon.Redis("redis://127.0.0.1:1", tmp_path)
    with pytest.raises(AddonFailed, match=r"127\.0\.0\.1:1 is unreachable"):
        provider.provision(request(provider))


# --- Redis, a server of its own per add-on --------------------------------------------------


def test_platform_run_redis_servers_are_private_limited_persistent_and_supervised(
    made: Any, tmp_path: Path
) -> None:
    provider = redis_addon.Redis("", tmp_path / "redis")
    try:
        a = made(provider, provider.provision(request(provider, "standard")))
        b = made(provider, provider.provision(request(provider)))
        assert a["port"] != b["port"]
        url_a, url_b = provider.config_vars(a)["URL"], provider.config_vars(b)["URL"]
        assert url_a.startswith("redis://:")
        client = redis.Redis.from_url(url_a)
        client.set("greeting", "hello")
        # Without the password, or with B's, A's server answers nothing.
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=int(a["port"])).get("greeting")
        b_password = urlsplit(url_b).password
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=int(a["port"]), password=b_password).ping()
        # The app may not lift its limits.
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_set("maxmemory", "0")
        admin = redis.Redis(
            port=int(a["port"]), username="dockyard", password=str(a["admin_password"])
        )
        assert admin.config_get("maxmemory") == {"maxmemory": str(256 << 20)}
        assert admin.config_get("appendonly") == {"appendonly": "yes"}

        # Killed, it is started again by the supervisor's call, with its data.
        pid = int((Path(a["dir"]) / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        provider.ensure_running(a)
        assert redis.Redis.from_url(url_a).get("greeting") == b"hello"
        assert int((Path(a["dir"]) / "redis.pid").read_text()) != pid

        rotated = made(provider, provider.rotate(a))
        assert (
            redis.Redis.from_url(provider.config_vars(rotated)["URL"]).get("greeting") == b"hello"
        )
        assert client.get("greeting") == b"hello"  # until revoked
        rotated = made(provider, provider.revoke(rotated))
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(url_a).ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            client.get("greeting")  # its connection was closed
        # The app may still not lift its limits under its new user.
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(provider.config_vars(rotated)["URL"]).config_set("maxmemory", "0")
        # The new password survives a restart of the server (it was written to its config).
        os.kill(int((Path(a["dir"]) / "redis.pid").read_text()), signal.SIGKILL)
        provider.ensure_running(rotated)
        assert redis.Redis.from_url(provider.config_vars(rotated)["URL"]).ping()
        assert provider.info(rotated)["Memory"].endswith("/ 256 MB")

        provider.deprovision(rotated)
        assert not Path(a["dir"]).exists()
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(port=int(a["port"]), retry=Retry(NoBackoff(), 0)).ping()
    finally:
        redis_addon.stop_all(tmp_path / "redis")


def test_the_plans_are_well_formed() -> None:
    for provider in (Postgres(""), MySQL(""), redis_addon.Redis("", Path("/nonexistent"))):
        assert isinstance(provider, Provider)
        assert provider.plans
        assert all(isinstance(p, Plan) for p in provider.plans)


# --- S3, on the SeaweedFS the platform runs -------------------------------------------------


def test_s3_buckets_are_isolated_rotated_and_removed(tmp_path: Path) -> None:
    from dockyard.addons import s3 as s3_addon
    from dockyard.addons._s3client import S3Client, S3Error

    provider = s3_addon.S3("", tmp_path / "s3")
    try:
        a = provider.provision(request(provider))
        b = provider.provision(request(provider))
        vars_a, vars_b = provider.config_vars(a), provider.config_vars(b)
        assert set(vars_a) == set(provider.config_var_suffixes)
        assert vars_a["ENDPOINT"] == vars_b["ENDPOINT"]
        client_a = S3Client(
            vars_a["ENDPOINT"], vars_a["ACCESS_KEY_ID"], vars_a["SECRET_ACCESS_KEY"]
        )
        client_b = S3Client(
            vars_b["ENDPOINT"], vars_b["ACCESS_KEY_ID"], vars_b["SECRET_ACCESS_KEY"]
        )
        client_a.put(vars_a["BUCKET"], "uploads/cat picture.png", b"meow")
        client_b.put(vars_b["BUCKET"], "secret.txt", b"b's")
        assert client_a.get(vars_a["BUCKET"], "uploads/cat picture.png") == b"meow"
        assert client_a.keys(vars_a["BUCKET"]) == ["uploads/cat picture.png"]
        for forbidden in (
            lambda: client_a.get(vars_b["BUCKET"], "secret.txt"),
            lambda: client_a.keys(vars_b["BUCKET"]),
            lambda: client_a.put(vars_b["BUCKET"], "planted", b"x"),
            lambda: client_a.create_bucket(f"another-{uuid.uuid4().hex[:8]}"),
        ):
            with pytest.raises(S3Error, match="403"):
                forbidden()
        # Without a key, nothing.
        anonymous = httpx.get(f"{vars_a['ENDPOINT']}/{vars_a['BUCKET']}/uploads/cat%20picture.png")
        assert anonymous.status_code == 403

        rotated = provider.rotate(a)
        new = provider.config_vars(rotated)
        assert new["ACCESS_KEY_ID"] != vars_a["ACCESS_KEY_ID"]
        client_new = S3Client(new["ENDPOINT"], new["ACCESS_KEY_ID"], new["SECRET_ACCESS_KEY"])
        assert client_new.get(new["BUCKET"], "uploads/cat picture.png") == b"meow"
        assert client_a.get(vars_a["BUCKET"], "uploads/cat picture.png") == b"meow"
        rotated = provider.revoke(rotated)
        with pytest.raises(S3Error, match="403"):
            client_a.get(vars_a["BUCKET"], "uploads/cat picture.png")
        assert provider.info(rotated)["Objects"] == "1"

        provider.deprovision(rotated)
        assert vars_a["BUCKET"] not in provider.gateway.admin().list_buckets()
        assert vars_b["BUCKET"] in provider.gateway.admin().list_buckets()
        with pytest.raises(S3Error, match="403"):
            client_new.keys(new["BUCKET"])
        provider.deprovision(b)
    finally:
        # The data goes with tmp_path; the server must not outlive the test.
        s3_addon.stop_all(tmp_path / "s3")


def test_s3_add_ons_stay_on_the_platforms_gateway_when_an_operator_gateway_is_set(
    tmp_path: Path,
) -> None:
    from dockyard.addons import s3 as s3_addon
    from dockyard.addons._s3client import S3Client

    before = s3_addon.S3("", tmp_path / "platform")
    # The operator's gateway: another SeaweedFS, reached by its URL as an operator gives it.
    theirs = s3_addon.Gateway("", tmp_path / "operators")
    try:
        old = before.provision(request(before))
        theirs.ensure_running()
        state = json.loads((tmp_path / "operators" / "state.json").read_text())
        ports, grpc = state["ports"], state["grpc"]
        url = (
            f"http://{state['access_key']}:{state['secret_key']}@127.0.0.1:{ports['s3']}"
            f"?master=127.0.0.1:{ports['master']}.{grpc['master']}"
            f"&filer=127.0.0.1:{ports['filer']}.{grpc['filer']}"
        )
        after = s3_addon.S3(url, tmp_path / "platform")
        new = after.provision(request(after))
        assert (old["platform"], new["platform"]) == (True, False)
        assert new["endpoint"] == f"http://127.0.0.1:{ports['s3']}" != old["endpoint"]
        # Made before the add-ons said where they are: still found on the platform's.
        legacy = {k: v for k, v in old.items() if k != "platform"}
        rotated = after.revoke(after.rotate(legacy))
        fresh = after.config_vars(rotated)
        client = S3Client(fresh["ENDPOINT"], fresh["ACCESS_KEY_ID"], fresh["SECRET_ACCESS_KEY"])
        client.put(fresh["BUCKET"], "kept.txt", b"on the platform")
        assert after.info(rotated)["Objects"] == "1"
        after.deprovision(rotated)
        after.deprovision(new)
        assert old["bucket"] not in before.gateway.admin().list_buckets()
        assert new["bucket"] not in theirs.admin().list_buckets()
    finally:
        s3_addon.stop_all(tmp_path / "platform")
        s3_addon.stop_all(tmp_path / "operators")

