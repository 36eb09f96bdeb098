"""dockyard.nodes.SwarmNodes on an engine that answers what a swarm's manager would
(httpx's mock transport): naming nodes, tasks of other services, a node that is down."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.errors import Conflict, NotFound
from dockyard.nodes import NodesUnavailable, SwarmNodes
from dockyard.runtime.docker_engine import Engine


def _node(node_id: str, hostname: str, role: str = "worker", **status: Any) -> dict[str, Any]:
    return {
        "ID": node_id,
        "Version": {"Index": 7},
        "Spec": {"Role": role, "Availability": "active", "Labels": {}},
        "Description": {
            "Hostname": hostname,
            "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 8 * 1024**3},
            "Engine": {"EngineVersion": "20.10.24"},
        },
        "Status": {"State": "ready", "Addr": "10.0.0.9", **status},
        **({"ManagerStatus": {"Leader": True}} if role == "manager" else {}),
    }


NODES = [
    _node("aaaa1111", "web-a"),
    _node("aaaa2222", "web-a", State="down", Message="heartbeat failure"),
    _node("bbbb3333", "boss", role="manager"),
]
SERVICES = [
    {"ID": "s1", "Spec": {"Name": "myapp-web", "Labels": {"dockyard.app": "myapp",
                                                         "dockyard.process-type": "web"}}},
    {"ID": "s2", "Spec": {"Name": "monitoring", "Labels": {}}},
    # The swarm driver's: one service per dyno, named by its label.
    {"ID": "s3", "Spec": {"Name": "shop-worker-3-0123456789ab", "Labels": {
        "dockyard.app": "shop", "dockyard.process-type": "worker",
        "dockyard.dyno-name": "worker.3"}}},
]  # fmt: skip
TASKS = [
    {"ServiceID": "s1", "NodeID": "aaaa1111", "Slot": 2, "Status": {"State": "running"}},
    {"ServiceID": "s1", "NodeID": "bbbb3333", "Slot": 1, "Status": {"State": "starting"}},
    # A global service's tasks have no slot.
    {"ServiceID": "s2", "NodeID": "bbbb3333", "Status": {"State": "running"}},
    {"ServiceID": "s3", "NodeID": "aaaa1111", "Slot": 1, "Status": {"State": "running"}},
]


def _engine(
    updates: list[tuple[str, dict[str, Any]]], *, fail: bool = False, stale: bool = False
) -> Engine:
    def answer(request: httpx.Request) -> httpx.Response:
        if fail:
            return httpx.Response(503, json={"message": "This node is not a swarm manager."})
        path = request.url.path.removeprefix("/v1.41")
        if request.method == "POST" and path.endswith("/update") and stale:
            return httpx.Response(500, json={"message": "update out of sequence"})
        if request.method == "POST" and path.endswith("/update"):
            assert request.url.params["version"] == "7"
            updates.append((path, json.loads(request.content)))
            return httpx.Response(200, json={})
        replies = {"/nodes": NODES, "/services": SERVICES, "/tasks": TASKS}
        return httpx.Response(200, json=replies[path])

    engine = Engine(Path("/nonexistent.sock"))
    engine._client = httpx.AsyncClient(  # the engine's own, on a mock transport
        transport=httpx.MockTransport(answer), base_url="http://docker/v1.41"
    )
    return engine


def test_nodes_list_managers_first_with_their_tasks_and_why_one_is_down() -> None:
    async def listing() -> Any:
        async with _engine([]) as engine:
            return await SwarmNodes(engine).list()

    boss, first, second = asyncio.run(listing())
    assert (boss.id, boss.role, boss.leader) == ("bbbb3333", "manager", True)
    assert [(t.app, t.name, t.state) for t in boss.tasks] == [
        (None, "monitoring", "running"),
        ("myapp", "web.1", "starting"),
    ]
    assert [(t.app, t.name) for t in first.tasks] == [("myapp", "web.2"), ("shop", "worker.3")]
    assert (first.cpus, first.memory_mb) == (4.0, 8192)
    assert (second.state, second.message) == ("down", "heartbeat failure")


@pytest.mark.parametrize(
    ("reference", "found"), [("aaaa1111", "aaaa1111"), ("aaaa2", "aaaa2222"), ("boss", "bbbb3333")]
)
def test_a_node_is_named_by_id_prefix_or_hostname(reference: str, found: str) -> None:
    updates: list[tuple[str, dict[str, Any]]] = []

    async def drain() -> None:
        async with _engine(updates) as engine:
            await SwarmNodes(engine).set_availability(reference, "drain")

    asyncio.run(drain())
    ((path, spec),) = updates
    assert path == f"/nodes/{found}/update"
    assert spec["Availability"] == "drain"
    assert spec["Role"] in ("worker", "manager")  # the rest of the spec is kept


@pytest.mark.parametrize(
    ("reference", "error", "says"),
    [
        ("web-a", Conflict, "'web-a' names 2 nodes (aaaa1111, aaaa2222); give a node ID"),
        ("aaaa", Conflict, "names 2 nodes"),
        ("nope", NotFound, "no node 'nope' in the swarm; its nodes are web-a (aaaa1111)"),
    ],
)
def test_a_reference_that_names_none_or_several_is_refused(
    reference: str, error: type[Exception], says: str
) -> None:
    updates: list[tuple[str, dict[str, Any]]] = []

    async def drain() -> None:
        async with _engine(updates) as engine:
            await SwarmNodes(engine).set_availability(reference, "drain")

    with pytest.raises(error) as raised:
        asyncio.run(drain())
    assert says in str(raised.value)
    assert updates == []


def test_an_engine_that_is_no_manager_is_reported() -> None:
    async def listing() -> Any:
        async with _engine([], fail=True) as engine:
            return await SwarmNodes(engine).list()

    with pytest.raises(NodesUnavailable) as raised:
        asyncio.run(listing())
    assert "This node is not a swarm manager." in raised.value.message
    assert raised.value.status == 503


def test_an_update_swarm_refuses_says_why() -> None:
    async def drain() -> None:
        async with _engine([], stale=True) as engine:
            await SwarmNodes(engine).set_availability("boss", "drain")

    with pytest.raises(NodesUnavailable) as raised:
        asyncio.run(drain())
    assert raised.value.message == (
        "Swarm did not set boss (bbbb3333) to drain: Docker: update out of sequence; try again"
    )
