"""Shared fixtures: scratch databases, the in-process API, and a real server process."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from dockyard import accounts
from dockyard.api import create_api
from dockyard.settings import Settings
from dockyard.store import Database, migrate

POSTGRES_ADMIN = os.environ.get(
    "DOCKYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DOCKYARD = [sys.executable, "-m", "dockyard"]
ACCEPT = "application/vnd.heroku+json; version=3"


# Under xdist (scripts/test runs pytest -n N), tests go to workers a module at a time, so a
# module's fixtures (a server, a deployed app) are made once; the tests that share the host's
# Docker engine (the stack image, the swarm it joins) all go to one worker, one after another.
# Slow modules are handed out first, so that none of them starts last.
DOCKER_MODULES = ("tests/swarm/", "tests/e2e/test_docker.py", "tests/runtime/test_docker.py")
SLOW = ("tests/e2e/", "tests/addons/", "tests/acm/", "tests/heroku/", "tests/cli/")


def work_group(nodeid: str) -> str:
    """The unit of work a test belongs to: ``docker``, or its module's path."""
    path = nodeid.split("::", 1)[0]
    params = nodeid.partition("[")[2]
    drivers = set(params.rstrip("]").split("-"))
    if path.startswith(DOCKER_MODULES) or {"docker", "swarm"} & drivers:
        return "docker"
    return path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            def weight(scope: str) -> tuple[int, int]:
                slow = 2 if scope == "docker" else int(scope.startswith(SLOW))
                return slow, len(self.workqueue[scope])

            self.workqueue.move_to_end(max(self.workqueue, key=weight), last=False)
            super()._assign_work_unit(node)

    return Groups(config, log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail the test when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {condition!r}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this test run, dropped at the end."""
    name = f"dockyard_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(scope="session")
def swarm() -> Iterator[Any]:
    """The two-node swarm (tests/swarm/cluster.py), made once, for the tests that run on it
    (tests/swarm, and the runtime contract with the swarm driver); skipped with the reason
    where it cannot be made."""
    from swarm.cluster import Unavailable, two_node_swarm

    try:
        with two_node_swarm() as running:
            print(f"\nswarm set up: {running.timings}", file=sys.stderr)
            yield running
    except Unavailable as exc:
        pytest.skip(f"no two-node swarm here: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty state store: SQLite in a temp dir, then the scratch PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _reset_postgres(url)
    db = Database(url)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'dockyard.db'}")
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", domain="dockyard.test", http_port=8080)


@dataclass
class ApiUser:
    email: str
    token: str
    client: TestClient


class Api:
    """The API in-process, with a helper to make users and a client per user."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.app = create_api(settings, database)
        self.anonymous = TestClient(self.app, headers={"Accept": ACCEPT})

    def user(self, email: str, *, admin: bool = False) -> ApiUser:
        with self.database.transaction() as session:
            _user, token = accounts.create_user(session, email, admin=admin)
        client = TestClient(
            self.app, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
        )
        return ApiUser(email, token, client)


@pytest.fixture
def api(settings: Settings, sqlite_database: Database) -> Api:
    return Api(settings, sqlite_database)


@pytest.fixture
def api_on(settings: Settings, database: Database) -> Api:
    """The in-process API on each store in turn (SQLite, PostgreSQL)."""
    return Api(settings, database)


@dataclass
class Server:
    """A real ``dockyard server`` process on a free port."""

    url: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def http_port(self) -> int:
        """The router's port (HAProxy's)."""
        return int(self.env["DOCKYARD_HTTP_PORT"])

    @property
    def https_port(self) -> int:
        """The router's HTTPS port."""
        return int(self.env["DOCKYARD_HTTPS_PORT"])

    def create_user(self, email: str, *, admin: bool = False) -> str:
        command = [*DOCKYARD, "admin:create-user", email, *(["--admin"] if admin else [])]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip()


def start_server(
    data_dir: Path, extra_env: dict[str, str] | None = None, *, port: int | None = None
) -> Server:
    """A server on ``data_dir``; its API on ``port`` (a free one when not given)."""
    port = port or free_port()
    env = {
        **os.environ,
        "DOCKYARD_DATA_DIR": str(data_dir),
        "DOCKYARD_API_LISTEN": f"127.0.0.1:{port}",
        # Each server also listens for git over SSH; a port of its own, not the shared 2222.
        "DOCKYARD_SSH_PORT": str(free_port()),
        # ... and its router (HAProxy) for HTTP and HTTPS: not the shared 80 and 443.
        "DOCKYARD_HTTP_PORT": str(free_port()),
        "DOCKYARD_HTTPS_PORT": str(free_port()),
        # No test server orders certificates from Let's Encrypt: a closed loopback port, unless
        # the test runs its own ACME CA (tests/acm).
        "DOCKYARD_ACME_DIRECTORY": "https://127.0.0.1:9/directory",
        # The tests' drain receivers listen on loopback, which drains refuse by default.
        "DOCKYARD_DRAIN_PRIVATE_ADDRESSES": "true",
        **(extra_env or {}),
    }
    with (data_dir.parent / f"server-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [*DOCKYARD, "server"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"dockyard server exited with {process.returncode}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=60)
    except BaseException:
        # What it started before it failed (HAProxy, dynos) outlives it: stop that too.
        process.kill()
        process.wait()
        asyncio.run(stop_dynos(data_dir))
        stop_router(data_dir)
        raise
    return Server(url, env, data_dir, process)


def stop_server(server: Server) -> None:
    """Stop the server, then the dynos and the HAProxy it started (they outlive it by design)."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    try:
        asyncio.run(stop_dynos(server.data_dir))
    finally:
        stop_router(server.data_dir)


def stop_router(data_dir: Path) -> None:
    from dockyard.router import haproxy

    haproxy.stop(haproxy.Paths(data_dir / "router"))


async def stop_dynos(data_dir: Path) -> None:
    from dockyard.runtime.process import ProcessRuntime

    if (data_dir / "docker").exists():  # DOCKYARD_RUNTIME=docker: its containers
        from docker_support import remove_containers_under

        await asyncio.to_thread(remove_containers_under, data_dir)
    if (data_dir / "swarm").exists():  # DOCKYARD_RUNTIME=swarm: its services
        from docker_support import remove_services_under

        await asyncio.to_thread(remove_services_under, data_dir)
    if not (data_dir / "dynos").exists():
        return
    runtime = await ProcessRuntime.open(data_dir)
    try:
        for dyno in await runtime.list():
            await runtime.stop(dyno.id, grace=2)
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server") / "data")
    yield running
    stop_server(running)


APPS = Path(__file__).parent / "apps"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dockyard Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Dockyard Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real ``git`` client; output is text, stderr merged into stdout."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=check,
        timeout=900,
    )


def make_repo(source: Path, target: Path) -> Path:
    """A new git repository at ``target`` holding a copy of ``source``, committed on main."""
    import shutil

    shutil.copytree(source, target, symlinks=True)
    git("init", "--quiet", "--initial-branch=main", cwd=target)
    git("add", "--all", cwd=target)
    git("commit", "--quiet", "--message", "Initial commit", cwd=target)
    return target


def api_client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"},
        timeout=60,
    )


def git_url(server: Server, token: str, app: str) -> str:
    """The app's git URL over HTTP with the token as the basic-auth password."""
    return server.url.replace("http://", f"http://user:{token}@") + f"/{app}.git"
