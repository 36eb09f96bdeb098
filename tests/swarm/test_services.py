"""A dyno as a Swarm service (dockyard.runtime.swarm_services) on the two-node swarm: on its
node's host network with its size's limits, no capabilities and a private /tmp, never
restarted by Swarm, and its output served by the manager from either node."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import formation
from dockyard.runtime.docker_engine import split_frames
from dockyard.runtime.swarm_services import DynoService, dyno_service, service_name
from swarm.cluster import TEST_LABEL, Swarm, wait_for

pytestmark = pytest.mark.e2e

SIZE = formation.SIZES["standard-2x"]


def _dyno(swarm: Swarm, name: str, argv: list[str]) -> dict[str, Any]:
    host = swarm.manager.get("/networks/host")["Id"]
    return dyno_service(
        DynoService(
            name=service_name("dysw-app", name, "0123456789ab"),
            app_id="0d6c1c1e-0000-4000-8000-000000000001",
            app_name="dysw-app",
            dyno_name=name,
            process_type=name.partition(".")[0],
            release_version=1,
            image=swarm.image,
            argv=argv,
            size=SIZE,
            network=host,
            env={"DYNO": name, "GREETING": "hello"},
            user="4242:4242",
            labels={TEST_LABEL: "1"},
            grace=2.0,
        )
    )


def _container(swarm: Swarm, service: str) -> dict[str, Any] | None:
    """The service's container, inspected on whichever node runs it."""
    for engine in (swarm.manager, swarm.worker):
        for summary in engine.get("/containers/json", all="1"):
            if summary["Names"][0].startswith(f"/{service}."):
                found: dict[str, Any] = engine.get(f"/containers/{summary['Id']}/json")
                return found
    return None


def test_a_dyno_service_runs_on_its_nodes_host_network_with_its_limits(swarm: Swarm) -> None:
    spec = _dyno(swarm, "worker.1", ["/bin/sh", "-c", 'echo "hello from $DYNO"; exit 3'])
    name = spec.pop("Name")
    assert name == "dysw-app-worker-1-0123456789ab"
    service = swarm.create_service(name, spec)

    def ended() -> dict[str, Any] | None:
        tasks = swarm.manager.get("/tasks", filters=f'{{"service": ["{service}"]}}')
        done = [t for t in tasks if t["Status"]["State"] in ("complete", "failed")]
        return done[0] if done else None

    task = wait_for(ended, 60, "the dyno's task ran and exited")
    assert task["Status"]["ContainerStatus"]["ExitCode"] == 3
    container = _container(swarm, name)
    assert container is not None
    host = container["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["Memory"] == SIZE.memory_bytes
    assert host["PidsLimit"] == SIZE.max_processes
    assert host["Init"] is True
    assert host["CapDrop"] == ["ALL"]
    assert container["Config"]["User"] == "4242:4242"
    (tmp,) = [m for m in container["Mounts"] if m["Destination"] == "/tmp"]
    assert tmp["Type"] == "tmpfs"

    # Never restarted by Swarm (the reconciler restarts crashed dynos): one task, ended.
    tasks = swarm.manager.get("/tasks", filters=f'{{"service": ["{service}"]}}')
    assert len(tasks) == 1

    reply = swarm.manager.call(
        "GET", f"/services/{service}/logs", params={"stdout": "1", "timestamps": "1"}
    )
    lines = [p.decode().split(" ", 1)[1] for _s, p in split_frames(bytearray(reply.content))]
    assert lines == ["hello from worker.1\n"]
    swarm.remove_service(name)


def test_the_output_of_dynos_on_every_node_reaches_the_manager(swarm: Swarm) -> None:
    names = []
    for n in (1, 2):
        spec = _dyno(
            swarm, f"worker.{n}", ["/bin/sh", "-c", 'echo "hello from $DYNO"; exec /bin/sleep 600']
        )
        names.append(spec.pop("Name"))
        swarm.create_service(names[-1], spec)
    wait_for(
        lambda: sum(sum(swarm.running_on(n).values()) for n in names) == 2, 60, "both dynos run"
    )
    nodes = {node for name in names for node in swarm.running_on(name)}
    assert nodes == {swarm.manager_id, swarm.worker_id}  # spread: one on each

    def lines() -> dict[str, str] | None:
        found = {}
        for name in names:
            reply = swarm.manager.call(
                "GET",
                f"/services/{name}/logs",
                params={"stdout": "1", "stderr": "1", "timestamps": "1", "details": "1"},
            )
            for _stream, payload in split_frames(bytearray(reply.content)):
                # "<time> com.docker.swarm.node.id=…,…task.id=… hello from worker.1"
                _time, details, text = payload.decode().rstrip("\n").split(" ", 2)
                pairs = dict(pair.split("=", 1) for pair in details.split(","))
                found[text] = pairs["com.docker.swarm.node.id"]
        return found if len(found) == 2 else None

    found = wait_for(lines, 30, "both dynos' output")
    assert set(found) == {"hello from worker.1", "hello from worker.2"}
    assert set(found.values()) == {swarm.manager_id, swarm.worker_id}
    for name in names:
        swarm.remove_service(name)
