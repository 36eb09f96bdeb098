"""Dyno sizes end to end: a dyno over its memory is killed (R15), shows crashed, and restarts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS, Server, make_repo, start_server, stop_server, wait_until
from dockyard.runtime.cgroups import platform_layout
from e2e.deploy import Deployer, deployer_for, dynos, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or platform_layout() is None, reason="dyno limits need root and cgroups"
    ),
]

Json = dict[str, Any]
R15 = "Error R15 (Memory quota vastly exceeded)"


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("memory") / "data")
    try:
        yield running
    finally:
        stop_server(running)  # and the dynos it left: they outlive it by design


@pytest.fixture(scope="module")
def deployer(memory_server: Server) -> Iterator[Deployer]:
    with deployer_for(memory_server, "memory@example.com") as deployer:
        yield deployer


def server_log(server: Server) -> str:
    """What ``dockyard server`` printed (conftest's start_server keeps it next to its data)."""
    port = server.url.rsplit(":", 1)[1]
    return (server.data_dir.parent / f"server-{port}.log").read_text(errors="replace")


def test_a_dyno_over_its_memory_is_killed_with_r15_and_restarted(
    deployer: Deployer, memory_server: Server, tmp_path: Path
) -> None:
    app = deployer.create("memory-hog")
    repo = make_repo(APPS / "memory-hog", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    reply = deployer.client.patch(
        f"/apps/{app}/formation/hog", json={"quantity": 1, "size": "standard-1x"}
    )
    assert reply.status_code == 200, reply.text
    seen: list[Json] = []

    def hog(state: str | None = None, other_than: str | None = None) -> Json | None:
        nonlocal seen
        seen = dynos(deployer, app)
        for dyno in seen:
            if (
                dyno["name"] == "hog.1"
                and state in (None, dyno["state"])
                and dyno["id"] != other_than
            ):
                return dyno
        return None

    try:
        wait_until(lambda: hog("crashed") is not None, timeout=60, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"hog.1 never showed crashed: {seen}") from exc
    crashed = hog("crashed") or seen[0]
    assert crashed["exit_status"] == 137, crashed  # SIGKILL, from the kernel
    assert crashed["size"] == "Standard-1X"
    assert R15 in server_log(memory_server)

    # It comes back under the crash back-off: a new dyno of the same name.
    try:
        wait_until(lambda: hog(other_than=crashed["id"]) is not None, timeout=60, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"hog.1 was not restarted after {crashed}: {seen}") from exc

    reply = deployer.client.patch(f"/apps/{app}/formation/hog", json={"quantity": 0})
    assert reply.status_code == 200, reply.text
    settle(deployer, app, {})
