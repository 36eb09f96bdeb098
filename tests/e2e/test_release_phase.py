"""The release phase end to end: git push of an app whose Procfile declares ``release:``.

The release command runs as ``release.NNNN`` before any dyno switches; its output is in the
push and in ``releases:output``. One that fails (a push, a config change) or runs past
DOCKYARD_RELEASE_TIMEOUT marks its release failed, and the old release's web dyno keeps
serving, untouched. app.json's postdeploy script runs after the first deploy only. A release
phase that runs while the control plane is killed is followed again by the next one.
"""

from __future__ import annotations

import asyncio
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
    git,
    make_repo,
    start_server,
    stop_server,
    wait_until,
)
from docker_support import open_node_runtime
from e2e.deploy import Deployer, deployer_for, dynos, fetch, in_order, settle

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
RELEASE_TIMEOUT = 8  # seconds; the release commands here take well under one
ENV = {"DOCKYARD_RELEASE_TIMEOUT": str(RELEASE_TIMEOUT)}
DECLARED = (
    " !     Release command declared: this new release will not be available until the "
    "command succeeds."
)


async def _stop_leftovers(data_dir: Path) -> None:
    """Dynos outlive the server by design; the test stops those it left."""
    runtime = await open_node_runtime(data_dir)
    try:
        for dyno in await runtime.list():
            await runtime.stop(dyno.id, grace=2)
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def release_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("release-phase") / "data"
    running = start_server(data_dir, ENV)
    try:
        yield running
    finally:
        stop_server(running)
        asyncio.run(_stop_leftovers(data_dir))


@pytest.fixture(scope="module")
def deployer(release_server: Server) -> Iterator[Deployer]:
    with deployer_for(release_server, "releases@example.com") as deployer:
        yield deployer


def cli(deployer: Deployer, *args: str) -> subprocess.CompletedProcess[str]:
    """``dockyard ARGS`` as the deployer; it must succeed."""
    env = {
        **os.environ,
        "DOCKYARD_API_URL": deployer.server.url,
        "DOCKYARD_API_KEY": deployer.token,
    }
    done = subprocess.run([*DOCKYARD, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def release(deployer: Deployer, app: str, version: int) -> Json:
    reply = deployer.client.get(f"/apps/{app}/releases/{version}")
    assert reply.status_code == 200, reply.text
    found: Json = reply.json()
    return found


def ended(deployer: Deployer, app: str, version: int, timeout: float = 30.0) -> Json:
    """Release ``version`` once its release phase has ended (it is no longer pending)."""
    seen: Json = {}

    def done() -> bool:
        nonlocal seen
        seen = release(deployer, app, version)
        return seen["status"] != "pending"

    wait_until(done, timeout=timeout, interval=0.1)
    return seen


def commit(repo: Path, message: str) -> None:
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--message", message, cwd=repo)


def test_a_failing_release_phase_keeps_the_old_release_running(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("release-phase")
    repo = make_repo(APPS / "release-phase", tmp_path / "repo")

    # The first deploy: the release command runs first, then the postdeploy script.
    first = deployer.push(repo, app)
    assert first.status == 0, first.output
    in_order(
        first.lines,
        [
            "-----> Launching...",
            DECLARED,
            "       Released v2",
            "Running release command...",
            r"^release command of the first code, as release\.\d{4}$",
            "release command done",
            "Waiting for release.... done.",
            "-----> Running app.json postdeploy script (first deploy only)...",
            r"^postdeploy script of the first code, as run\.\d{4}$",
            "       Postdeploy script succeeded",
        ],
    )
    v2 = deployer.current(app)
    assert (v2["version"], v2["status"]) == (2, "succeeded")
    assert v2["output_stream_url"]
    (web,) = settle(deployer, app, {"web.1": 2})
    assert fetch(web) == {"dyno": "web.1", "code": "first"}
    assert "release command done" in cli(deployer, "releases:output", "v2", "-a", app).stdout
    # The release phase's output is in the app's logs too, as its one-off dyno's lines (the
    # hub reads them from the dyno's log, so they may come after the platform's exit line).
    done = re.compile(r" app\[release\.\d{4}\]: release command done$", re.M)
    logged = ""

    def in_logs() -> bool:
        nonlocal logged
        logged = cli(deployer, "logs", "-a", app, "-p", "release", "-n", "100").stdout
        return done.search(logged) is not None

    try:
        wait_until(in_logs, 10, 0.2)
    except AssertionError as exc:
        raise AssertionError(logged) from exc

    # A deploy whose release command fails: the push says so, and nothing switches.
    (repo / "fail-release").write_text("")
    (repo / "code.txt").write_text("second\n")
    commit(repo, "Fail the release command")
    second = deployer.push(repo, app)
    assert second.status == 0, "as on Heroku, the build succeeded and the push is accepted"
    in_order(
        second.lines,
        [
            DECLARED,
            "       Released v3",
            "Running release command...",
            r"^release command of the second code, as release\.\d{4}$",
            "the release command fails, as asked",
            r"^ !     Release command failed: release\.\d{4} exited with status 3$",
            "Waiting for release.... failed.",
            " !     Release v3 was not deployed; v2 keeps running.",
            " !     `dockyard releases:output v3` shows this output again.",
        ],
    )
    assert not any("postdeploy" in line for line in second.lines), second.output
    v3 = release(deployer, app, 3)
    assert (v3["status"], v3["current"]) == ("failed", False)
    assert deployer.current(app)["id"] == v2["id"]
    output = cli(deployer, "releases:output", "v3", "-a", app).stdout
    assert "the release command fails, as asked" in output
    assert "exited with status 3" in output
    listed = cli(deployer, "releases", "-a", app).stdout
    assert f"=== {app} Releases - Current: v2" in listed
    assert any(
        line.startswith("v3") and "release command failed" in line for line in listed.splitlines()
    ), listed
    (still,) = settle(deployer, app, {"web.1": 2})
    assert still["id"] == web["id"]
    assert fetch(still) == {"dyno": "web.1", "code": "first"}

    # A config change whose release command fails: also no switch, and the change is undone.
    # (It sleeps a second, so the CLI surely sees it pending.)
    changed = cli(deployer, "config:set", "FAIL_RELEASE=1", "RELEASE_SLEEP=1", "-a", app)
    assert "Release command executing: this config change will not be available" in (changed.stderr)
    v4 = ended(deployer, app, 4)
    assert (v4["status"], v4["current"]) == ("failed", False)
    assert v4["slug"] == v2["slug"], "a config change releases the code that last deployed"
    assert "the release command fails, as asked" in (
        cli(deployer, "releases:output", "-a", app).stdout
    )
    assert deployer.current(app)["id"] == v2["id"]
    assert "FAIL_RELEASE" not in deployer.client.get(f"/apps/{app}/config-vars").json()
    (still,) = settle(deployer, app, {"web.1": 2})
    assert still["id"] == web["id"]

    # A deploy that passes switches; the postdeploy script does not run again.
    (repo / "fail-release").unlink()
    (repo / "code.txt").write_text("third\n")
    commit(repo, "Let the release command pass")
    third = deployer.push(repo, app)
    assert third.status == 0, third.output
    in_order(
        third.lines,
        [
            "       Released v5",
            r"^release command of the third code, as release\.\d{4}$",
            "Waiting for release.... done.",
            "       app.json postdeploy script skipped: it runs after the first deploy only",
        ],
    )
    assert not any("Running app.json postdeploy" in line for line in third.lines)
    assert deployer.current(app)["version"] == 5
    (new,) = settle(deployer, app, {"web.1": 5})
    assert new["id"] != web["id"]
    assert fetch(new) == {"dyno": "web.1", "code": "third"}


def test_a_release_command_past_the_timeout_fails(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("release-timeout")
    repo = make_repo(APPS / "release-phase", tmp_path / "repo")
    assert deployer.push(repo, app).status == 0
    (web,) = settle(deployer, app, {"web.1": 2})

    cli(deployer, "config:set", f"RELEASE_SLEEP={RELEASE_TIMEOUT * 10}", "-a", app)
    wait_until(
        lambda: any(d["type"] == "release" for d in dynos(deployer, app)), timeout=30, interval=0.1
    )
    v3 = ended(deployer, app, 3, timeout=RELEASE_TIMEOUT + 30)
    assert (v3["status"], v3["current"]) == ("failed", False)
    output = cli(deployer, "releases:output", "v3", "-a", app).stdout
    assert f"ran past the timeout of {RELEASE_TIMEOUT} seconds" in output
    (still,) = settle(deployer, app, {"web.1": 2})  # the release dyno is gone too
    assert still["id"] == web["id"]


def test_a_release_phase_outlives_a_restart_of_the_control_plane(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"DOCKYARD_RELEASE_TIMEOUT": "120"}
    server = start_server(data_dir, env)
    try:
        with deployer_for(server, "restart@example.com") as deployer:
            app = deployer.create("release-restart")
            repo = make_repo(APPS / "release-phase", tmp_path / "repo")
            assert deployer.push(repo, app).status == 0
            settle(deployer, app, {"web.1": 2})

            reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"RELEASE_SLEEP": "25"})
            assert reply.status_code == 200, reply.text
            wait_until(
                lambda: any(d["type"] == "release" for d in dynos(deployer, app)),
                timeout=30,
                interval=0.05,
            )
            (running,) = [d for d in dynos(deployer, app) if d["type"] == "release"]
            server.process.kill()
            server.process.wait()
            assert release_of(data_dir, running["name"]), "the release dyno outlives the server"

            server = start_server(data_dir, env, port=int(server.url.rsplit(":", 1)[1]))
            v3 = ended(deployer, app, 3)
            assert (v3["status"], v3["current"]) == ("succeeded", True)
            output = deployer.client.get(v3["output_stream_url"]).text
            assert f"release command of the first code, as {running['name']}" in output, output
            assert "release command done" in output, output
            assert "runs again" not in output, "the running dyno was followed, not restarted"
            settle(deployer, app, {"web.1": 3})
    finally:
        stop_server(server)
        asyncio.run(_stop_leftovers(data_dir))


def test_a_release_dyno_that_ends_while_the_control_plane_is_down_does_not_run_again(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {"DOCKYARD_RELEASE_TIMEOUT": "120"}
    server = start_server(data_dir, env)
    try:
        with deployer_for(server, "ended@example.com") as deployer:
            app = deployer.create("release-ended")
            repo = make_repo(APPS / "release-phase", tmp_path / "repo")
            assert deployer.push(repo, app).status == 0
            settle(deployer, app, {"web.1": 2})

            reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"RELEASE_SLEEP": "3"})
            assert reply.status_code == 200, reply.text
            wait_until(
                lambda: any(d["type"] == "release" for d in dynos(deployer, app)),
                timeout=30,
                interval=0.05,
            )
            (running,) = [d for d in dynos(deployer, app) if d["type"] == "release"]
            server.process.kill()
            server.process.wait()
            # It ends (exit 0) while no control plane watches.
            wait_until(lambda: not release_of(data_dir, running["name"]), timeout=30)

            server = start_server(data_dir, env, port=int(server.url.rsplit(":", 1)[1]))
            v3 = ended(deployer, app, 3)
            assert (v3["status"], v3["current"]) == ("succeeded", True)
            output = deployer.client.get(v3["output_stream_url"]).text
            assert f"release command of the first code, as {running['name']}" in output, output
            assert output.count("release command of the") == 1, output  # it did not run again
            assert "release command done" in output, output
            assert "did not see it end" not in output, output
            settle(deployer, app, {"web.1": 3})
    finally:
        stop_server(server)
        asyncio.run(_stop_leftovers(data_dir))


def release_of(data_dir: Path, name: str) -> bool:
    """A dyno called ``name`` runs on ``data_dir``'s runtime."""

    async def look() -> bool:
        runtime = await open_node_runtime(data_dir)
        try:
            return any(d.name == name for d in await runtime.list())
        finally:
            await runtime.close()

    return asyncio.run(look())
