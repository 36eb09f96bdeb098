"""The ``swarm`` driver on the two-node swarm: dynos as one-replica services, spread over
both nodes, reached at their node's address, stopped with SIGTERM, moved off a node that
drains (reported as the node's doing, not a crash), and adopted by a new runtime."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from docker_support import remove_containers_under, remove_services_under, require_docker
from dockyard.runtime import Dyno, DynoError, Exit
from dockyard.runtime.swarm import SwarmRuntime
from runtime.test_process import App, make_slug, next_exit, printed, run, until
from swarm.cluster import LOST_ADDR, MANAGER_ADDR, WORKER_ADDR, Swarm, extra_node

pytestmark = pytest.mark.e2e

SERVER = """\
import json, os
from http.server import HTTPServer, BaseHTTPRequestHandler

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"dyno": os.environ["DYNO"], "uid": os.getuid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("listening on", os.environ["PORT"], flush=True)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def app(swarm: Swarm, tmp_path: Path) -> Iterator[App]:
    require_docker()
    made = App(tmp_path, "swarm-app")
    made.slug, made.sha = make_slug(tmp_path, {"server.py": SERVER, "Procfile": "web: x\n"})
    yield made
    remove_services_under(tmp_path)
    remove_containers_under(tmp_path)


async def answers(dyno: Dyno) -> dict[str, object] | None:
    try:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://{dyno.host}:{dyno.port}/", timeout=2)
    except httpx.TransportError:
        return None
    return dict(reply.json())


def test_dynos_spread_serve_on_their_node_stop_and_move_off_a_draining_node(
    swarm: Swarm, app: App, tmp_path: Path
) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        runtime = await SwarmRuntime.open(data, registry=swarm.registry)
        try:
            exits = runtime.exits()
            dynos = [
                await runtime.start(app.spec(f"web.{n}", "python3 server.py")) for n in (1, 2, 3, 4)
            ]
            assert sorted(d.host for d in dynos) == [MANAGER_ADDR] * 2 + [WORKER_ADDR] * 2
            for dyno in dynos:
                await until(lambda d=dyno: answers(d), 30)  # type: ignore[misc]
                seen = await answers(dyno)
                assert seen == {"dyno": dyno.name, "uid": app.uid}
                await until(lambda d=dyno: f"listening on {d.port}" in printed(d), 15)

            # A crash: its status, not the platform's stop.
            crash = await runtime.start(app.spec("worker.1", "echo going; exit 3"))
            ended = await next_exit(exits)
            assert (ended.dyno.id, ended.status, ended.stopped, ended.reason) == (
                crash.id,
                3,
                None,
                None,
            )
            assert printed(crash) == ["going"]

            # Stopped: SIGTERM, 143.
            first = dynos[0]
            stopped = await runtime.stop(first.id, grace=10)
            assert (stopped.status, stopped.grace_exceeded) == (143, False)
            ended = await next_exit(exits)
            assert ended.dyno.id == first.id
            assert ended.stopped == stopped

            # The worker drains: its dynos end as the node's doing.
            on_worker = {d.id for d in dynos[1:] if d.host == WORKER_ADDR}
            swarm_drain(swarm, "drain")
            try:
                moved: list[Exit] = [await next_exit(exits, 60) for _ in on_worker]
            finally:
                swarm_drain(swarm, "active")
            assert {e.dyno.id for e in moved} == on_worker
            assert {e.reason for e in moved} == {"node"}
            left = {d.id for d in await runtime.list()}
            assert left == {d.id for d in dynos[1:]} - on_worker
        finally:
            await runtime.close()

        # A new runtime adopts what runs.
        again = await SwarmRuntime.open(data, registry=swarm.registry)
        try:
            assert {d.id for d in await again.list()} == left
            for dyno in await again.list():
                assert await answers(dyno) is not None
                await again.stop(dyno.id, grace=5)
        finally:
            await again.close()

    run(scenario)


def test_a_dyno_no_node_can_take_fails_with_swarms_reason(
    swarm: Swarm, app: App, tmp_path: Path
) -> None:
    async def scenario() -> None:
        runtime = await SwarmRuntime.open(tmp_path / "data", registry=swarm.registry)
        runtime.unplaced = 3.0
        try:
            spec = app.spec("web.1", "python3 server.py", size="performance-l")
            too_big: list[Dyno] = []
            failure: DynoError | None = None
            for n in range(1, 8):  # more than both nodes' memory
                try:
                    too_big.append(await runtime.start(replace(spec, name=f"web.{n}")))
                except DynoError as exc:
                    failure = exc
                    break
            assert failure is not None
            assert too_big  # some fit
            assert "no node can run dyno" in failure.message
            assert "insufficient resources" in failure.message
            for dyno in too_big:
                await runtime.stop(dyno.id, grace=5)
        finally:
            await runtime.close()

    run(scenario)


def swarm_drain(swarm: Swarm, availability: str) -> None:
    """Set the worker's availability: drain, pause or active."""
    set_availability(swarm, swarm.worker_id, availability)


def set_availability(swarm: Swarm, node_id: str, availability: str) -> None:
    node = swarm.manager.get(f"/nodes/{node_id}")
    spec = {**node["Spec"], "Availability": availability}
    swarm.manager.call(
        "POST",
        f"/nodes/{node_id}/update",
        params={"version": str(node["Version"]["Index"])},
        json=spec,
    )


def test_a_dyno_whose_node_goes_away_ends_as_the_nodes_doing(
    swarm: Swarm, app: App, tmp_path: Path
) -> None:
    with extra_node(swarm) as (_lost, kill):

        async def scenario() -> None:
            runtime = await SwarmRuntime.open(tmp_path / "data", registry=swarm.registry)
            try:
                exits = runtime.exits()
                # Only the third node takes new dynos for now.
                for node in (swarm.manager_id, swarm.worker_id):
                    set_availability(swarm, node, "pause")
                try:
                    dyno = await runtime.start(app.spec("web.1", "python3 server.py"))
                finally:
                    for node in (swarm.manager_id, swarm.worker_id):
                        set_availability(swarm, node, "active")
                assert dyno.host == LOST_ADDR
                await until(lambda: answers(dyno), 60)  # type: ignore[arg-type]
                kill()  # the node is gone without a word: nobody reports the task's end
                ended = await next_exit(exits, 120)
                assert (ended.dyno.id, ended.stopped, ended.reason) == (dyno.id, None, "node")
                assert await runtime.list() == []
            finally:
                await runtime.close()

        run(scenario)


def test_a_registry_that_is_down_fails_the_start_with_its_address(
    swarm: Swarm, app: App, tmp_path: Path
) -> None:
    async def scenario() -> None:
        runtime = await SwarmRuntime.open(tmp_path / "data", registry="127.0.0.1:9")
        try:
            with pytest.raises(DynoError) as failed:
                await runtime.start(app.spec("web.1", "python3 server.py"))
            assert "could not push the release image to the registry 127.0.0.1:9" in (
                failed.value.message
            )
            assert await runtime.list() == []
        finally:
            await runtime.close()

    run(scenario)


def test_the_swarm_runtime_needs_a_registry_and_a_manager(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(DynoError, match="needs DOCKYARD_REGISTRY"):
            await SwarmRuntime.open(tmp_path / "data", registry=None)
        with pytest.raises(DynoError, match="needs a Docker engine"):
            await SwarmRuntime.open(
                tmp_path / "data", registry="127.0.0.1:5000", socket_path=tmp_path / "no.sock"
            )

    run(scenario)
