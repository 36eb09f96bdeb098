"""Add-ons end to end: ``addons:create`` on a real server, a sample app pushed with git that
keeps a row, a key and an object in them through its config vars, and the data surviving a
restart, a new deploy and a rotation of the credentials.

The first server provisions PostgreSQL, MySQL and Redis on the test machine's own servers
(5432, 3306, 6379) and S3 on the SeaweedFS it runs itself. Another has no add-on server set
up: it runs a PostgreSQL, a MariaDB, a redis-server per add-on and a SeaweedFS itself, and
provisions them from the app's ``app.json`` on its first deploy; it supervises them and
re-adopts them after a restart of the control plane.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
import pymysql
import pytest
import redis as redis_client

from conftest import (
    APPS,
    DOCKYARD,
    POSTGRES_ADMIN,
    Server,
    api_client,
    free_port,
    git,
    make_repo,
    start_server,
    stop_server,
    wait_until,
)
from dockyard.addons import redis as redis_addon
from dockyard.addons import s3 as s3_addon
from dockyard.addons._pgserver import PostgresServer
from dockyard.addons.mysql import MySQL
from dockyard.addons.postgres import Postgres
from e2e.deploy import Deployer, deployer_for, dynos, settle

pytestmark = pytest.mark.e2e
Json = dict[str, Any]
MYSQL_ADMIN = os.environ.get("DOCKYARD_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
REDIS_ADMIN = os.environ.get("DOCKYARD_TEST_REDIS", "redis://127.0.0.1:6379")


def stop_addon_servers(data_dir: Path) -> None:
    """What the platform ran for add-ons outlives the server by design; the test stops it."""
    redis_addon.stop_all(data_dir / "addons" / "redis")
    s3_addon.stop_all(data_dir / "addons" / "s3")
    for server in (
        Postgres("", data_dir / "addons" / "postgres").server,
        MySQL("", data_dir / "addons" / "mysql").server,
    ):
        assert server is not None
        server.stop()


@pytest.fixture(scope="module")
def addon_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("addons") / "data"
    running = start_server(
        data_dir,
        {
            "DOCKYARD_ADDONS_POSTGRES_URL": POSTGRES_ADMIN,
            "DOCKYARD_ADDONS_MYSQL_URL": MYSQL_ADMIN,
            "DOCKYARD_ADDONS_REDIS_URL": REDIS_ADMIN,
        },
    )
    try:
        yield running
    finally:
        stop_server(running)
        stop_addon_servers(data_dir)


@pytest.fixture(scope="module")
def deployer(addon_server: Server) -> Iterator[Deployer]:
    with deployer_for(addon_server, "addons@example.com") as deployer:
        yield deployer


def cli(
    server: Server, token: str, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": token, "NO_COLOR": "1"}
    done = subprocess.run(
        [*DOCKYARD, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert (done.returncode == 0) == ok, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def web(deployer: Deployer, app: str) -> Json:
    """The app's one web dyno, up on the current release."""
    version = deployer.current(app)["version"]
    (dyno,) = settle(deployer, app, {"web.1": version}, timeout=90)
    return dyno


def call(dyno: Json, path: str, **query: str) -> Json:
    reply = httpx.get(f"http://127.0.0.1:{dyno['port']}{path}", params=query, timeout=30)
    body: Json = reply.json()
    assert reply.status_code == 200, body
    return body


def value(dyno: Json, kind: str, key: str) -> str | None:
    found: str | None = call(dyno, "/get", kind=kind, key=key)["value"]
    return found


KINDS = ("postgres", "redis", "mysql", "s3")


def test_an_app_keeps_its_data_in_add_ons_through_restarts_deploys_and_rotation(
    deployer: Deployer, addon_server: Server, tmp_path: Path
) -> None:
    app = deployer.create("addons-app")
    token = deployer.token
    created = cli(addon_server, token, "addons:create", "postgres:standard", "-a", app)
    assert "Created postgresql-" in created.stderr
    assert "as DATABASE_URL" in created.stderr
    cli(addon_server, token, "addons:create", "redis", "-a", app)
    cli(addon_server, token, "addons:create", "mysql", "-a", app, "--name", f"{app}-mysql")
    cli(addon_server, token, "addons:create", "s3", "-a", app)
    config = deployer.client.get(f"/apps/{app}/config-vars").json()
    assert config["DATABASE_URL"].startswith("postgres://")
    assert config["REDIS_URL"].startswith("redis://")
    assert config["MYSQL_URL"].startswith("mysql://")
    assert config["S3_BUCKET"]
    descriptions = [r["description"] for r in deployer.releases(app)]
    assert any(d.startswith("Attach DATABASE (postgresql-") for d in descriptions), descriptions
    listed = cli(addon_server, token, "addons", "-a", app).stdout
    assert f"{app}-mysql" in listed
    assert f"{app}::DATABASE" in listed

    repo = make_repo(APPS / "addons-app", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    dyno = web(deployer, app)
    assert sorted(call(dyno, "/")["kinds"]) == sorted(KINDS)
    for kind in KINDS:
        assert call(dyno, "/put", kind=kind, key="greeting", value=f"hello from {kind}")[
            "value"
        ] == (f"hello from {kind}")

    # A restart: new dynos, the same data.
    cli(addon_server, token, "restart", "-a", app)
    wait_until(lambda: web(deployer, app)["id"] != dyno["id"], timeout=60, interval=0.2)
    dyno = web(deployer, app)
    for kind in KINDS:
        assert value(dyno, kind, "greeting") == f"hello from {kind}"

    # A new deploy: the same data.
    (repo / "VERSION").write_text("2\n")
    git("add", "VERSION", cwd=repo)
    git("commit", "--quiet", "--message", "Second deploy", cwd=repo)
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    dyno = web(deployer, app)
    for kind in KINDS:
        assert value(dyno, kind, "greeting") == f"hello from {kind}"

    # Rotating: once the app has restarted with the new credentials (it still reads its
    # data), the old ones are gone, and so is a session opened with them.
    old_url = config["DATABASE_URL"]
    held = psycopg.connect(old_url, connect_timeout=5, autocommit=True)
    before = web(deployer, app)
    cli(addon_server, token, "addons:rotate", "DATABASE", "-a", app)
    rotated = deployer.current(app)
    assert rotated["description"] == "Update DATABASE by postgres"
    # The command returned once the dynos had restarted on the new release.
    running = dynos(deployer, app)
    assert [d["release"]["version"] for d in running] == [rotated["version"]], running
    assert running[0]["id"] != before["id"]
    new_url = deployer.client.get(f"/apps/{app}/config-vars").json()["DATABASE_URL"]
    assert new_url != old_url
    dyno = web(deployer, app)
    assert value(dyno, "postgres", "greeting") == "hello from postgres"
    with pytest.raises(psycopg.OperationalError, match=r"does not exist|password auth"):
        psycopg.connect(old_url, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()

    # The CLI's own clients, on the add-ons' credentials.
    psql = cli(addon_server, token, "pg:psql", "-a", app, "-c", "SELECT value FROM items")
    assert "hello from postgres" in psql.stdout
    info = cli(addon_server, token, "pg:info", "-a", app).stdout
    assert "=== DATABASE_URL" in info
    assert "postgres:standard" in info
    prefix = deployer.client.get(f"/apps/{app}/config-vars").json()["REDIS_KEY_PREFIX"]
    got = cli(addon_server, token, "redis:cli", "-a", app, "-c", f"GET {prefix}greeting")
    assert "hello from redis" in got.stdout

    # Destroying the app destroys its add-ons: the database is gone from the server.
    database = new_url.rsplit("/", 1)[1]
    cli(addon_server, token, "apps:destroy", "-a", app, "--confirm", app)
    with psycopg.connect(POSTGRES_ADMIN) as admin:
        assert (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            is None
        )


def test_app_json_add_ons_on_servers_the_platform_runs(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """No add-on server is set up: app.json's add-ons are provisioned on the first deploy,
    on a PostgreSQL, a MariaDB, a redis-server and a SeaweedFS the platform runs; the app
    keeps its data in them through a restart and a new deploy. The servers are supervised
    (a killed one comes back with its data) and outlive the control plane, whose next run
    adopts them."""
    data_dir = tmp_path_factory.mktemp("platform-addons") / "data"
    first = start_server(data_dir)
    second: Server | None = None
    try:
        token = first.create_user("platform@example.com")
        with api_client(first, token) as client:
            deployer = Deployer(first, token, client)
            app = deployer.create("addons-platform")
            repo = make_repo(APPS / "addons-app", tmp_path / "repo")
            (repo / "app.json").write_text(
                json.dumps({"addons": ["postgres", {"plan": "mysql"}, "redis:standard", "s3"]})
            )
            git("add", "app.json", cwd=repo)
            git("commit", "--quiet", "--message", "Add-ons", cwd=repo)
            pushed = deployer.push(repo, app)
            assert pushed.status == 0, pushed.output
            assert "Provisioning the add-ons app.json declares" in pushed.output
            assert "(postgres:essential) as DATABASE_URL" in pushed.output
            assert "(redis:standard) as REDIS_URL, REDIS_KEY_PREFIX" in pushed.output
            config = client.get(f"/apps/{app}/config-vars").json()
            for name, default_port in (("DATABASE_URL", 5432), ("MYSQL_URL", 3306)):
                assert "@127.0.0.1:" in config[name]
                assert f":{default_port}/" not in config[name], "the platform's own server"
            assert config["REDIS_URL"].startswith("redis://:")
            assert config["S3_ENDPOINT"].startswith("http://127.0.0.1:")
            # The attachments came before the deploy: its release has them all.
            assert deployer.current(app)["description"].startswith("Deploy")
            dyno = web(deployer, app)
            assert sorted(call(dyno, "/")["kinds"]) == sorted(KINDS)
            for kind in KINDS:
                call(dyno, "/put", kind=kind, key="greeting", value=f"hi from {kind}")

            # Killed, the add-on's redis-server is started again with its data.
            (pidfile,) = (data_dir / "addons" / "redis").glob("*/redis.pid")
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: pidfile.exists() and int(pidfile.read_text() or 0) != pid, 30)
            wait_until(lambda: value(dyno, "redis", "greeting") == "hi from redis", 30, 0.2)

        # The control plane dies; the add-ons' servers keep serving, and the next one adopts
        # them rather than starting them again.
        pid = int(pidfile.read_text())
        pg_pidfile = data_dir / "addons" / "postgres" / "server" / "data" / "postmaster.pid"
        pg_pid = int(pg_pidfile.read_text().splitlines()[0])
        first.process.kill()
        first.process.wait()
        for kind in KINDS:
            assert value(dyno, kind, "greeting") == f"hi from {kind}"
        second = start_server(data_dir)
        assert int(pidfile.read_text()) == pid, "adopted, not started again"
        assert int(pg_pidfile.read_text().splitlines()[0]) == pg_pid

        with api_client(second, token) as client:
            deployer = Deployer(second, token, client)
            states = [a["state"] for a in client.get(f"/apps/{app}/addons").json()]
            assert states == ["provisioned"] * len(KINDS)
            cli(second, token, "restart", "-a", app)
            wait_until(lambda: web(deployer, app)["id"] != dyno["id"], timeout=60, interval=0.2)
            dyno = web(deployer, app)
            for kind in KINDS:
                assert value(dyno, kind, "greeting") == f"hi from {kind}"

            # A later deploy provisions nothing more.
            (repo / "VERSION").write_text("2\n")
            git("add", "VERSION", cwd=repo)
            git("commit", "--quiet", "--message", "Second deploy", cwd=repo)
            pushed = deployer.push(repo, app)
            assert pushed.status == 0, pushed.output
            assert "Provisioning" not in pushed.output
            assert len(client.get(f"/apps/{app}/addons").json()) == len(KINDS)
            dyno = web(deployer, app)
            for kind in KINDS:
                assert value(dyno, kind, "greeting") == f"hi from {kind}"

            # Rotating on the platform's MariaDB and Redis: the old users are gone once the
            # app has restarted with the new ones.
            old = client.get(f"/apps/{app}/config-vars").json()
            cli(second, token, "addons:rotate", "MYSQL", "-a", app)
            cli(second, token, "addons:rotate", "REDIS", "-a", app)
            dyno = web(deployer, app)
            assert value(dyno, "mysql", "greeting") == "hi from mysql"
            assert value(dyno, "redis", "greeting") == "hi from redis"
            parts = urlsplit(old["MYSQL_URL"])
            with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
                pymysql.connect(
                    host=parts.hostname,
                    port=parts.port or 3306,
                    user=unquote(parts.username or ""),
                    password=unquote(parts.password or ""),
                    connect_timeout=5,
                )
            with pytest.raises(redis_client.AuthenticationError):
                redis_client.Redis.from_url(old["REDIS_URL"]).ping()

            cli(second, token, "apps:destroy", "-a", app, "--confirm", app)
            assert not pidfile.parent.exists()
            with psycopg.connect(
                PostgresServer(data_dir / "addons" / "postgres").admin_url(), connect_timeout=5
            ) as admin:
                database = config["DATABASE_URL"].rsplit("/", 1)[1]
                found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                assert found.fetchone() is None
    finally:
        stop_server(second or first)
        stop_addon_servers(data_dir)


class RedisServer:
    """A redis-server of the test's own, standing in for an operator's, to stop and start."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True)
        (root / "users.acl").write_text("user default on nopass ~* &* +@all\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.root), "--aclfile", str(self.root / "users.acl")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: answers(self.port), timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_an_add_on_whose_server_is_down_fails_and_a_retry_works(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    operators = RedisServer(tmp_path_factory.mktemp("operators-redis") / "redis")
    operators.start()
    data_dir = tmp_path_factory.mktemp("retry") / "data"
    server = start_server(
        data_dir, {"DOCKYARD_ADDONS_REDIS_URL": f"redis://127.0.0.1:{operators.port}"}
    )
    try:
        token = server.create_user("retry@example.com")
        with api_client(server, token) as client:
            app = "addons-retry"
            assert client.post("/apps", json={"name": app}).status_code == 201
            client.patch(f"/apps/{app}/config-vars", json={"KEEP": "me"}).raise_for_status()
            before = client.get(f"/apps/{app}/releases").json()

            operators.stop()
            failed = cli(
                server, token, "addons:create", "redis", "--name", "my-cache", "-a", app, ok=False
            )
            assert "is unreachable" in failed.stderr
            (addon,) = client.get(f"/apps/{app}/addons").json()
            assert addon["name"] == "my-cache"
            assert addon["state"] == "failed"
            assert "unreachable" in addon["provision_message"]
            assert client.get(f"/apps/{app}/config-vars").json() == {"KEEP": "me"}
            assert client.get(f"/apps/{app}/releases").json() == before
            listed = cli(server, token, "addons", "-a", app)
            assert "failed" in listed.stdout

            operators.start()
            cli(server, token, "addons:create", "redis", "--name", "my-cache", "-a", app)
            (addon,) = client.get(f"/apps/{app}/addons").json()
            assert addon["state"] == "provisioned"
            config = client.get(f"/apps/{app}/config-vars").json()
            assert config["REDIS_URL"].endswith(f"@127.0.0.1:{operators.port}")
            assert config["REDIS_KEY_PREFIX"] == "my-cache:"
            cli(server, token, "addons:destroy", "my-cache", "-a", app, "--confirm", app)
            assert "REDIS_URL" not in client.get(f"/apps/{app}/config-vars").json()
    finally:
        stop_server(server)
        operators.stop()


def test_the_blog_scenario_two_dynos_share_posts_and_uploads(
    deployer: Deployer, addon_server: Server, tmp_path: Path
) -> None:
    """The blog keeps posts in PostgreSQL and images in S3: scaled to two web dynos, each
    serves what the other stored."""
    app = deployer.create("addons-blog")
    token = deployer.token
    cli(addon_server, token, "addons:create", "postgres", "-a", app)
    cli(addon_server, token, "addons:create", "s3", "-a", app)
    repo = make_repo(APPS / "blog", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    cli(addon_server, token, "ps:scale", "web=2", "-a", app)
    version = deployer.current(app)["version"]
    one, two = sorted(
        settle(deployer, app, {"web.1": version, "web.2": version}, timeout=90),
        key=lambda d: str(d["name"]),
    )

    image = bytes(range(256)) * 64
    reply = httpx.post(f"http://127.0.0.1:{one['port']}/uploads/cat.png", content=image, timeout=30)
    assert reply.status_code == 201, reply.text
    reply = httpx.post(
        f"http://127.0.0.1:{two['port']}/posts",
        json={"title": "Hello", "body": "First post, with a cat: /uploads/cat.png"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text

    for dyno in (one, two):
        posts = httpx.get(f"http://127.0.0.1:{dyno['port']}/posts", timeout=30).json()
        assert posts["dyno"] == dyno["name"]
        assert [p["title"] for p in posts["posts"]] == ["Hello"]
        served = httpx.get(f"http://127.0.0.1:{dyno['port']}/uploads/cat.png", timeout=30)
        assert served.status_code == 200
        assert served.content == image
    cli(addon_server, token, "apps:destroy", "-a", app, "--confirm", app)
