"""A process type as a Swarm service (dockyard.runtime.swarm_services) on the two-node swarm:
replicas spread with their DYNO names and limits, and a release whose tasks never become
healthy is rolled back by Swarm while the old release keeps running."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import formation
from dockyard.runtime.docker_engine import split_frames
from dockyard.runtime.swarm_services import (
    RELEASE_LABEL,
    WEB_PORT,
    HealthCheck,
    ProcessService,
    service_spec,
)
from swarm.cluster import Swarm, wait_for

pytestmark = pytest.mark.e2e

# The test image has socat, not bash: the health check is a TCP connect with it.
TCP_CHECK = HealthCheck(
    ["CMD", "/usr/bin/socat", "-T1", "/dev/null", f"TCP:127.0.0.1:{WEB_PORT}"],
    interval=0.5,
    timeout=1.0,
    retries=2,
    start_period=3.0,
)
SERVE = ["/usr/bin/socat", f"TCP-LISTEN:{WEB_PORT},fork,reuseaddr", "EXEC:/bin/respond"]


def _web(swarm: Swarm, network: str, version: int, argv: list[str]) -> ProcessService:
    return ProcessService(
        app_id="0d6c1c1e-0000-4000-8000-000000000001",
        app_name="dysw-app",
        process_type="web",
        release_version=version,
        image=swarm.image,
        argv=argv,
        quantity=4,
        size=formation.SIZES["standard-1x"],
        network=network,
        env={"GREETING": f"release {version}"},
        health_check=TCP_CHECK,
        monitor=2.0,
        grace=2.0,
    )


def _containers(swarm: Swarm) -> list[dict[str, Any]]:
    """The service's containers on both nodes, inspected."""
    found = []
    for engine in (swarm.manager, swarm.worker):
        for summary in engine.get("/containers/json"):
            if "dysw-app-web" in summary["Names"][0]:
                found.append(engine.get(f"/containers/{summary['Id']}/json"))
    return found


def test_a_process_type_runs_as_a_spread_service_and_a_failing_release_rolls_back(
    swarm: Swarm,
) -> None:
    network = swarm.create_network("dysw-app-net")
    spec = service_spec(_web(swarm, network, 1, SERVE))
    swarm.create_service(spec["Name"], {k: v for k, v in spec.items() if k != "Name"})
    both = {swarm.manager_id: 2, swarm.worker_id: 2}
    wait_for(lambda: swarm.running_on("dysw-app-web") == both, 60, "2 tasks on each node")

    def healthy() -> list[dict[str, Any]] | None:
        found = _containers(swarm)
        states = [c["State"].get("Health", {}).get("Status") for c in found]
        return found if states == ["healthy"] * 4 else None

    containers = wait_for(healthy, 60, "4 healthy tasks")
    envs = [dict(e.split("=", 1) for e in c["Config"]["Env"]) for c in containers]
    assert sorted(env["DYNO"] for env in envs) == ["web.1", "web.2", "web.3", "web.4"]
    assert {env["PORT"] for env in envs} == {str(WEB_PORT)}
    assert {env["GREETING"] for env in envs} == {"release 1"}
    for container in containers:
        host = container["HostConfig"]
        assert host["Memory"] == formation.SIZES["standard-1x"].memory_bytes
        assert host["PidsLimit"] == formation.SIZES["standard-1x"].max_processes
        assert host["Init"] is True

    # Release 2 never listens: its first task fails its health check, Swarm rolls back.
    service = swarm.manager.get("/services/dysw-app-web")
    broken = service_spec(_web(swarm, network, 2, ["/bin/sleep", "600"]))
    swarm.manager.call(
        "POST",
        f"/services/{service['ID']}/update",
        params={"version": str(service["Version"]["Index"])},
        json=broken,
    )

    def rolled_back() -> dict[str, Any] | None:
        status = swarm.manager.get("/services/dysw-app-web").get("UpdateStatus") or {}
        return status if status.get("State") == "rollback_completed" else None

    status = wait_for(rolled_back, 90, "the update rolled back")
    assert "update rolled back" in status["Message"] or "rollback" in status["Message"]
    after = swarm.manager.get("/services/dysw-app-web")
    assert after["Spec"]["Labels"][RELEASE_LABEL] == "1"
    # The old release kept serving: all 4 of its tasks run, none of release 2.
    wait_for(lambda: len(healthy() or []) == 4, 60, "4 healthy tasks of release 1")
    labels = {c["Config"]["Labels"][RELEASE_LABEL] for c in _containers(swarm)}
    assert labels == {"1"}
    swarm.remove_service("dysw-app-web")


def test_the_output_of_tasks_on_every_node_reaches_the_manager(swarm: Swarm) -> None:
    network = swarm.create_network("dysw-logs-net")
    worker = ProcessService(
        app_id="0d6c1c1e-0000-4000-8000-000000000002",
        app_name="dysw-logs",
        process_type="worker",
        release_version=1,
        image=swarm.image,
        argv=["/bin/sh", "-c", 'echo "hello from $DYNO"; exec /bin/sleep 600'],
        quantity=2,
        size=formation.SIZES["basic"],
        network=network,
        grace=2.0,
    )
    spec = service_spec(worker)
    swarm.create_service(spec["Name"], {k: v for k, v in spec.items() if k != "Name"})
    both = {swarm.manager_id: 1, swarm.worker_id: 1}
    wait_for(lambda: swarm.running_on("dysw-logs-worker") == both, 60, "a task on each node")

    def lines() -> dict[str, str] | None:
        reply = swarm.manager.call(
            "GET",
            "/services/dysw-logs-worker/logs",
            params={"stdout": "1", "stderr": "1", "timestamps": "1", "details": "1"},
        )
        found = {}
        for _stream, payload in split_frames(bytearray(reply.content)):
            # "<time> com.docker.swarm.node.id=…,…task.id=… hello from worker.1"
            _time, details, text = payload.decode().rstrip("\n").split(" ", 2)
            node = dict(pair.split("=", 1) for pair in details.split(","))[
                "com.docker.swarm.node.id"
            ]
            found[text] = node
        return found if len(found) == 2 else None

    found = wait_for(lines, 30, "both tasks' output")
    assert set(found) == {"hello from worker.1", "hello from worker.2"}
    assert set(found.values()) == {swarm.manager_id, swarm.worker_id}
    swarm.remove_service("dysw-logs-worker")
