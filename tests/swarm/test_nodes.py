"""``/nodes`` and ``dockyard nodes``, ``nodes:drain``, ``nodes:activate``.

Without a swarm (in-process API): the server is the one node. With the two-node swarm: a
real ``dockyard server`` with ``DOCKYARD_RUNTIME=swarm`` and the real CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli.runner import Cli, Users
from conftest import Api, Server, start_server, stop_server
from dockyard import formation
from dockyard.runtime import Dyno
from dockyard.settings import Settings
from dockyard.store import Database
from swarm.cluster import WORKER_HOSTNAME, Swarm, wait_for


@pytest.fixture
def local_api(tmp_path: Path, sqlite_database: Database) -> Api:
    settings = Settings(data_dir=tmp_path / "data", domain="dockyard.test", node_memory_mb=3072)
    return Api(settings, sqlite_database)


def test_without_a_swarm_the_server_is_the_one_node(local_api: Api) -> None:
    admin = local_api.user("admin@example.com", admin=True).client
    reply = admin.get("/nodes")
    assert reply.status_code == 200, reply.text
    (node,) = reply.json()
    assert node["id"] == "local"
    assert node["role"] == "local"
    assert node["state"] == "ready"
    assert node["availability"] == "active"
    assert node["capacity"] == {"cpus": float(os.cpu_count() or 1), "memory_mb": 3072}
    assert node["dynos"] == []  # no reconciler in-process: nothing runs


class _Runtime:
    """What the API asks of the runtime for the local node: the dynos that run."""

    def __init__(self, dynos: list[Dyno]) -> None:
        self.dynos = dynos

    async def list(self) -> list[Dyno]:
        return self.dynos


def _dyno(app: str, name: str) -> Dyno:
    kind = name.partition(".")[0]
    return Dyno(
        id=f"{app}-{name}",
        name=name,
        app_id="0",
        app_name=app,
        release_version=1,
        process_type=kind,
        size="standard-1x",
        command="./start",
        port=None,
        pid=1,
        started_at=0.0,
        log_path=Path("/dev/null"),
    )


def test_the_one_node_shows_every_apps_dynos(local_api: Api) -> None:
    dynos = [_dyno("zeta", "web.1"), _dyno("alpha", "worker.1"), _dyno("alpha", "web.1")]
    local_api.app.state.reconciler = SimpleNamespace(runtime=_Runtime(dynos))
    admin = local_api.user("admin@example.com", admin=True).client
    (node,) = admin.get("/nodes").json()
    assert node["dynos"] == [
        {"app": "alpha", "name": "web.1", "state": "running"},
        {"app": "alpha", "name": "worker.1", "state": "running"},
        {"app": "zeta", "name": "web.1", "state": "running"},
    ]


def test_the_one_node_cannot_be_drained(local_api: Api) -> None:
    admin = local_api.user("admin@example.com", admin=True).client
    reply = admin.post("/nodes/local/actions/drain")
    assert reply.status_code == 409
    assert reply.json()["id"] == "conflict"
    assert "DOCKYARD_RUNTIME=swarm" in reply.json()["message"]


def test_nodes_are_for_admins(local_api: Api) -> None:
    user = local_api.user("user@example.com").client
    for method, path in (
        ("GET", "/nodes"),
        ("POST", "/nodes/local/actions/drain"),
        ("POST", "/nodes/local/actions/activate"),
    ):
        reply = user.request(method, path)
        assert reply.status_code == 403, (path, reply.text)
        assert reply.json()["id"] == "forbidden"
    assert local_api.anonymous.get("/nodes").status_code == 401


def test_a_swarm_runtime_without_a_swarm_says_so(tmp_path: Path, sqlite_database: Database) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        domain="dockyard.test",
        runtime="swarm",
        docker_socket=tmp_path / "no-docker.sock",
    )
    admin = Api(settings, sqlite_database).user("admin@example.com", admin=True).client
    reply = admin.get("/nodes")
    assert reply.status_code == 503
    assert reply.json()["id"] == "unavailable"
    assert "no-docker.sock" in reply.json()["message"]
    assert "docs/swarm.md" in reply.json()["message"]
    assert admin.post("/nodes/x/actions/drain").status_code == 503


@pytest.fixture(scope="module")
def swarm_server(swarm: Swarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("swarm-server") / "data", {"DOCKYARD_RUNTIME": "swarm"}
    )
    yield running
    stop_server(running)


@pytest.fixture
def users(swarm_server: Server, tmp_path: Path) -> Iterator[Users]:
    store = Database(Settings(data_dir=swarm_server.data_dir).database_url)
    yield Users(swarm_server, store, tmp_path)
    store.dispose()


@pytest.mark.e2e
def test_nodes_lists_drains_and_activates_swarm_nodes(swarm: Swarm, users: Users) -> None:
    # A service labelled as the swarm driver labels an app's process type.
    swarm.create_service(
        "dysw-myapp-web",
        {
            "Labels": {
                "dockyard.swarm-test": "1",
                "dockyard.app": "myapp",
                "dockyard.process-type": "web",
            },
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": swarm.image,
                    "Command": ["/bin/sleep", "600"],
                    "Init": True,  # docker-init: SIGTERM stops it at once
                },
                "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.id"}}]},
            },
            "Mode": {"Replicated": {"Replicas": 2}},
            "EndpointSpec": {"Mode": "dnsrr"},
        },
    )
    both = {swarm.manager_id: 1, swarm.worker_id: 1}
    wait_for(lambda: swarm.running_on("dysw-myapp-web") == both, 60, "one task on each node")
    admin: Cli = users.new(admin=True)

    api = admin.api()
    listed = api.get("/nodes").json()
    by_id = {node["id"]: node for node in listed}
    assert set(by_id) == {swarm.manager_id, swarm.worker_id}
    assert listed[0]["id"] == swarm.manager_id  # managers first
    worker = by_id[swarm.worker_id]
    assert (worker["role"], worker["hostname"], worker["state"]) == (
        "worker",
        WORKER_HOSTNAME,
        "ready",
    )
    assert worker["capacity"]["cpus"] >= 1
    assert worker["capacity"]["memory_mb"] == formation.node_memory_mb(None)
    names = {(d["app"], d["name"]) for node in listed for d in node["dynos"]}
    assert names == {("myapp", "web.1"), ("myapp", "web.2")}

    table = admin.out("nodes")
    header, *rows = table.splitlines()
    assert header.split() == [
        "id", "hostname", "role", "state", "availability", "cpus", "memory", "dynos"
    ]  # fmt: skip
    (worker_row,) = [row for row in rows if WORKER_HOSTNAME in row]
    assert worker_row.split()[2:5] == ["worker", "ready", "active"]
    assert "myapp web." in worker_row
    assert "manager (leader)" in table

    drained = admin.run("nodes:drain", WORKER_HOSTNAME)
    assert f"Draining {WORKER_HOSTNAME}... done" in drained.stderr
    assert "is drain" in drained.stderr
    wait_for(
        lambda: swarm.running_on("dysw-myapp-web") == {swarm.manager_id: 2},
        60,
        "the worker's task moved to the manager",
    )
    (worker,) = [n for n in api.get("/nodes").json() if n["id"] == swarm.worker_id]
    assert worker["availability"] == "drain"
    assert worker["dynos"] == []

    activated = admin.run("nodes:activate", swarm.worker_id[:6])
    assert f"{WORKER_HOSTNAME} ({swarm.worker_id[:12]}) is active" in activated.stderr

    unknown = api.post("/nodes/nowhere/actions/drain")
    assert unknown.status_code == 404
    assert "no node 'nowhere' in the swarm" in unknown.json()["message"]
    assert WORKER_HOSTNAME in unknown.json()["message"]  # the nodes it has
    api.close()
    user = users.new()
    assert "only admins" in user.fails("nodes:drain", WORKER_HOSTNAME)
    with user.api() as as_user:
        assert as_user.get("/nodes").status_code == 403
    swarm.remove_service("dysw-myapp-web")
