"""The ``swarm`` runtime end to end, on the two-node swarm: a real ``dockyard server`` with
DOCKYARD_RUNTIME=swarm and the test swarm's registry, a buildpack app pushed with git,
reached through the router, scaled to 4 over both nodes, a node drained, a new release
deployed and a release that never boots pushed while a steady load of requests sees none
fail, one-off commands, a rollback; and a Dockerfile app with build arguments."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import (
    APPS,
    DOCKYARD,
    Server,
    git,
    make_repo,
    start_server,
    stop_server,
    wait_until,
)
from docker_support import remove_containers_under, remove_services_under, require_docker
from e2e.deploy import Deployer, deployer_for, dynos, scale, settle
from swarm.cluster import Swarm, wait_for
from swarm.test_runtime import swarm_drain

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(swarm: Swarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_docker()
    root = tmp_path_factory.mktemp("swarm-deploy")
    env = {
        "DOCKYARD_RUNTIME": "swarm",
        "DOCKYARD_REGISTRY": swarm.registry,
        # A release whose web dynos never listen fails within the test (R10).
        "DOCKYARD_BOOT_TIMEOUT": "20",
    }
    running = start_server(root / "data", env)
    try:
        yield running
    finally:
        stop_server(running)
        remove_services_under(root)
        remove_containers_under(root)


@pytest.fixture(scope="module")
def deployer(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "swarm@example.com") as deployer:
        yield deployer


def via_router(server: Server, app: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{server.http_port}/", headers={"Host": f"{app}.localhost"}, timeout=30
    )


def cli(server: Server, deployer: Deployer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": deployer.token}
    return subprocess.run(
        [*DOCKYARD, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def running_on(swarm: Swarm, app: str) -> dict[str, int]:
    """How many of the app's dynos run on each node (by node ID)."""
    services = swarm.manager.get("/services", filters=f'{{"label": ["dockyard.app={app}"]}}')
    ids = {service["ID"] for service in services}
    counts: dict[str, int] = {}
    for task in swarm.manager.get("/tasks", filters='{"desired-state": ["running"]}'):
        if task["ServiceID"] in ids and task["Status"]["State"] == "running":
            counts[task["NodeID"]] = counts.get(task["NodeID"], 0) + 1
    return counts


@dataclass
class Load:
    """Requests through the router, one after another, until stopped; every failure kept."""

    server: Server
    app: str
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.server.http_port}/"
        with httpx.Client(headers={"Host": f"{self.app}.localhost"}, timeout=30) as client:
            while not self._stop.is_set():
                self.sent += 1
                try:
                    reply = client.get(url)
                except httpx.TransportError as exc:
                    self.failures.append(repr(exc))
                    continue
                if reply.status_code != 200 or "Hello from Flask" not in reply.text:
                    self.failures.append(f"{reply.status_code} {reply.text[:200]}")


def test_an_app_spreads_moves_off_a_draining_node_and_deploys_without_failed_requests(
    swarm: Swarm, server: Server, deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("flask-swarm")
    repo = make_repo(APPS / "flask-pip", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    first = deployer.current(app)["version"]
    settle(deployer, app, {"web.1": first}, timeout=180)
    wait_until(lambda: via_router(server, app).status_code == 200, 30)
    assert "Hello from Flask on web.1" in via_router(server, app).text

    # Scaled to 4: two on each node.
    scale(deployer, app, "web", 4)
    settle(deployer, app, {f"web.{n}": first for n in range(1, 5)}, timeout=180)
    assert running_on(swarm, app) == {swarm.manager_id: 2, swarm.worker_id: 2}

    # The worker drains under load: its dynos start on the manager; no request fails.
    with Load(server, app) as load:
        wait_for(lambda: load.sent >= 20, 30, "requests flowing")
        swarm_drain(swarm, "drain")
        try:
            wait_for(
                lambda: running_on(swarm, app) == {swarm.manager_id: 4}, 120, "4 on the manager"
            )
            settle(deployer, app, {f"web.{n}": first for n in range(1, 5)}, timeout=120)
            sent = load.sent
            wait_for(lambda: load.sent >= sent + 20, 30, "requests after the move")
        finally:
            swarm_drain(swarm, "active")
    assert load.failures == [], load.failures[:5]

    # A new release under load: no request fails either.
    with Load(server, app) as load:
        wait_for(lambda: load.sent >= 20, 30, "requests flowing")
        changed = cli(server, deployer, "config:set", "GREETING=hi", "-a", app)
        assert changed.returncode == 0, changed.stderr
        second = deployer.current(app)["version"]
        assert second > first
        settle(deployer, app, {f"web.{n}": second for n in range(1, 5)}, timeout=180)
        sent = load.sent
        wait_for(lambda: load.sent >= sent + 20, 30, "requests after the deploy")
    assert load.failures == [], load.failures[:5]
    assert load.sent > 100

    # One-off dynos: attached (on this machine) and detached (a service, anywhere).
    ran = cli(server, deployer, "run", "-a", app, "--", "echo one-off $GREETING $DYNO")
    assert ran.returncode == 0, ran.stderr
    assert "one-off hi run." in ran.stdout
    failed = cli(server, deployer, "run", "-x", "-a", app, "--", "exit 7")
    assert failed.returncode == 7
    detached = cli(server, deployer, "run:detached", "-a", app, "--", "echo detached-$((6*7))")
    assert detached.returncode == 0, detached.stderr

    def logged() -> bool:
        return "detached-42" in cli(server, deployer, "logs", "-a", app, "-n", "500").stdout

    wait_until(logged, 60)

    # A release whose web dynos never listen, pushed under load: they time out (R10), and the
    # old release's dynos keep serving every request.
    (repo / "Procfile").write_text("web: exec sleep 600\n")
    git("commit", "-q", "-am", "a web process that never listens", cwd=repo)
    with Load(server, app) as load:
        wait_for(lambda: load.sent >= 20, 30, "requests flowing")
        pushed = deployer.push(repo, app)
        assert pushed.status == 0, pushed.output
        assert deployer.current(app)["version"] > second

        def timed_out() -> bool:
            shown = cli(server, deployer, "logs", "-a", app, "-n", "500").stdout
            return "Error R10 (Boot timeout)" in shown

        wait_until(timed_out, 120)
        sent = load.sent
        wait_for(lambda: load.sent >= sent + 20, 30, "requests after the boot timeout")
    assert load.failures == [], load.failures[:5]
    up = {d["name"]: d["release"]["version"] for d in dynos(deployer, app) if d["state"] == "up"}
    assert up == {f"web.{n}": second for n in range(1, 5)}, "the old release serves"

    # A rollback to the first release: the old code and config serve again.
    rolled = cli(server, deployer, "releases:rollback", f"v{first}", "-a", app)
    assert rolled.returncode == 0, rolled.stderr
    third = deployer.current(app)["version"]
    settle(deployer, app, {f"web.{n}": third for n in range(1, 5)}, timeout=180)
    assert via_router(server, app).status_code == 200
    started = time.monotonic()
    scale(deployer, app, "web", 0)
    settle(deployer, app, {}, timeout=60)
    assert running_on(swarm, app) == {}
    assert time.monotonic() - started < 60


def test_a_dockerfile_app_runs_its_image_on_the_swarm(
    swarm: Swarm, server: Server, deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("dockerfile-swarm")
    repo = make_repo(APPS / "dockerfile-app", tmp_path / "repo")
    # Build arguments come from app.json only.
    (repo / "app.json").write_text('{"build": {"args": {"APP_VERSION": "1.4"}}}')
    git("add", "app.json", cwd=repo)
    git("commit", "-q", "-m", "build args", cwd=repo)
    reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"GREETING": "hello"})
    assert reply.status_code == 200, reply.text
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    assert "-----> Building the Dockerfile with Docker" in pushed.lines
    version = deployer.current(app)["version"]
    scale(deployer, app, "web", 2)
    settle(deployer, app, {"web.1": version, "web.2": version}, timeout=180)
    assert running_on(swarm, app) == {swarm.manager_id: 1, swarm.worker_id: 1}
    wait_until(lambda: via_router(server, app).status_code == 200, 30)
    seen = {via_router(server, app).json()["dyno"] for _ in range(20)}
    assert seen == {"web.1", "web.2"}  # both nodes' dynos serve
    served = via_router(server, app).json()
    assert (served["greeting"], served["cwd"], served["version"]) == ("hello", "/srv", "1.4")
    assert served["uid"] != 0
    done = cli(server, deployer, "run", "-x", "-a", app, "--", "sh", "-c", "pwd; exit 5")
    assert done.returncode == 5, done.stderr
    assert done.stdout.strip().endswith("/srv")
    scale(deployer, app, "web", 0)
    settle(deployer, app, {}, timeout=60)
