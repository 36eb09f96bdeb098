"""Dynos end to end: git push, then the reconciler runs, scales, replaces and restarts them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    APPS,
    DOCKYARD,
    Server,
    api_client,
    make_repo,
    start_server,
    stop_server,
    wait_until,
)
from docker_support import dyno_records, open_node_runtime
from e2e.deploy import Deployer, deployer_for, dynos, fetch, refuses, scale, settle

Json = dict[str, Any]


async def _stop_leftovers(data_dir: Path) -> None:
    """Dynos outlive the server by design; the test stops those it left."""
    runtime = await open_node_runtime(data_dir)
    try:
        for dyno in await runtime.list():
            await runtime.stop(dyno.id, grace=2)
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def dyno_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("dynos") / "data"
    running = start_server(data_dir)
    try:
        yield running
    finally:
        stop_server(running)
        asyncio.run(_stop_leftovers(data_dir))


@pytest.fixture(scope="module")
def deployer(dyno_server: Server) -> Iterator[Deployer]:
    with deployer_for(dyno_server, "dynos@example.com") as deployer:
        yield deployer


def test_web_dynos_run_scale_and_are_replaced(
    deployer: Deployer, dyno_server: Server, tmp_path: Path
) -> None:
    app = deployer.create("web-dynos")
    repo = make_repo(APPS / "web-shell", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    version = deployer.current(app)["version"]

    # The first release with a web type runs web=1; the crash type starts at 0.
    (web1,) = settle(deployer, app, {"web.1": version})
    assert web1["type"] == "web"
    assert web1["command"] == "bin/web"
    assert web1["size"] == "Standard-1X"
    assert web1["attach_url"] is None
    assert web1["release"]["id"] == deployer.current(app)["id"]
    assert fetch(web1) == {"dyno": "web.1", "port": str(web1["port"]), "greeting": None}
    one = deployer.client.get(f"/apps/{app}/dynos/web.1")
    assert one.status_code == 200
    assert one.json()["id"] == web1["id"]
    missing = deployer.client.get(f"/apps/{app}/dynos/web.9")
    assert missing.status_code == 404
    assert "web.1" in missing.json()["message"]

    # ps shows the type's header and each dyno's state, the Heroku way.
    env = {
        **os.environ,
        "DOCKYARD_API_URL": dyno_server.url,
        "DOCKYARD_API_KEY": deployer.token,
    }
    shown = subprocess.run(
        [*DOCKYARD, "ps", "-a", app], env=env, capture_output=True, text=True, check=True
    )
    assert "=== web (Standard-1X): bin/web (1)" in shown.stdout
    assert re.search(
        r"^web\.1: up \d{4}/\d\d/\d\d \d\d:\d\d:\d\d [+-]\d{4} \(~ \d+[smhd] ago\)$",
        shown.stdout,
        re.MULTILINE,
    ), shown.stdout

    # Scale up: web.2 on a port of its own; web.1 is left as it was.
    scale(deployer, app, "web", 2)
    running = settle(deployer, app, {"web.1": version, "web.2": version})
    by_name = {d["name"]: d for d in running}
    assert by_name["web.1"]["id"] == web1["id"]
    assert by_name["web.1"]["port"] != by_name["web.2"]["port"]
    assert fetch(by_name["web.2"])["dyno"] == "web.2"

    # A config change is a new release: both web dynos are replaced, new before old stop.
    reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"GREETING": "hello"})
    assert reply.status_code == 200, reply.text
    new_version = deployer.current(app)["version"]
    assert new_version == version + 1
    replaced = settle(deployer, app, {"web.1": new_version, "web.2": new_version})
    assert {d["id"] for d in replaced}.isdisjoint(d["id"] for d in running)
    for dyno in replaced:
        assert fetch(dyno)["greeting"] == "hello"
    for old in running:
        wait_until(lambda port=old["port"]: refuses(port), timeout=30)

    # Restarting one dyno gives it a new id; the other keeps running.
    restarted = {d["name"]: d for d in replaced}
    reply = deployer.client.delete(f"/apps/{app}/dynos/web.2")
    assert reply.status_code == 202, reply.text

    def web2_replaced() -> bool:
        now = {d["name"]: d for d in dynos(deployer, app) if d["state"] == "up"}
        return "web.2" in now and now["web.2"]["id"] != restarted["web.2"]["id"]

    wait_until(web2_replaced, timeout=30, interval=0.1)
    assert {d["name"]: d["id"] for d in dynos(deployer, app)}["web.1"] == restarted["web.1"]["id"]

    # Scale to zero: nothing runs, nothing answers.
    scale(deployer, app, "web", 0)
    settle(deployer, app, {})
    wait_until(lambda: refuses(restarted["web.1"]["port"]), timeout=30)


def test_a_crashing_dyno_shows_crashed_and_restarts(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("crash-dynos")
    repo = make_repo(APPS / "web-shell", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    scale(deployer, app, "web", 0)
    scale(deployer, app, "crash", 1)
    seen: list[Json] = []

    def crashed(after: Json | None) -> Json | None:
        """A crashed crash.1 waiting to restart (crash 2 or later), other than ``after``."""
        nonlocal seen
        seen = dynos(deployer, app)
        for dyno in seen:
            if (
                dyno["name"] == "crash.1"
                and dyno["state"] == "crashed"
                and (dyno["retry_in"] or 0) > 0
                and (after is None or dyno["id"] != after["id"])
            ):
                return dyno
        return None

    found: list[Json] = []
    for _ in range(2):
        previous = found[-1] if found else None
        try:
            wait_until(lambda p=previous: crashed(p) is not None, timeout=20, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"no crash back-off seen after {found}: {seen}") from exc
        latest = crashed(previous)
        assert latest is not None
        found.append(latest)
    first, second = found
    assert first["exit_status"] == second["exit_status"] == 3
    # The first crash restarted at once (not seen waiting); later ones wait longer each time.
    assert 0 < first["retry_in"] < second["retry_in"] <= 300
    scale(deployer, app, "crash", 0)
    settle(deployer, app, {})


def dyno_pids(data_dir: Path) -> dict[str, int]:
    """The host pid of each dyno the runtime recorded that runs now, by dyno id."""
    found = {}
    for record in dyno_records(data_dir):
        dyno = json.loads(record.read_text())
        ended = (record.parent / "exit.json", record.parent / "acknowledged")
        if not any(path.exists() for path in ended):
            os.kill(dyno["pid"], 0)  # raises when the process is gone
            found[dyno["id"]] = dyno["pid"]
    return found


def test_a_restarted_server_adopts_its_dynos(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path_factory.mktemp("adopt") / "data"
    first = start_server(data_dir)
    second: Server | None = None
    try:
        with deployer_for(first, "adopt@example.com") as deployer:
            app = deployer.create("adopted")
            repo = make_repo(APPS / "web-shell", tmp_path / "repo")
            pushed = deployer.push(repo, app)
            assert pushed.status == 0, pushed.output
            version = deployer.current(app)["version"]
            (before,) = settle(deployer, app, {"web.1": version})
            token = deployer.token
        pids = dyno_pids(data_dir)
        assert len(pids) == 1, pids
        first.process.kill()  # SIGKILL: no chance to tidy up
        first.process.wait()
        assert fetch(before)["dyno"] == "web.1", "the dyno outlives the control plane"

        second = start_server(data_dir)
        with api_client(second, token) as client:
            again = Deployer(second, token, client)
            (after,) = settle(again, app, {"web.1": version})
            assert after["id"] == before["id"], "adopted, not started again"
            assert after["port"] == before["port"]
            assert fetch(after)["dyno"] == "web.1"
            assert dyno_pids(data_dir) == pids, "the same processes, still running"
    finally:
        stop_server(second or first)
        asyncio.run(_stop_leftovers(data_dir))
