"""The dyno contract end to end, on apps deployed with git push to a real server.

Scaling web and worker types up and down, restarting and stopping dynos from the CLI, R10 for
a release whose web dynos never bind (the old release keeps serving), a rollout that never
leaves the app without a healthy web dyno, and the isolation of one app's dynos from another
app and from the platform's data.

The server's data directory is under /var/tmp, not /tmp: each dyno has a /tmp of its own, so
a data directory under /tmp would be hidden from dynos whatever the sandbox did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, DOCKYARD, Server, git, make_repo, start_server, stop_server, wait_until
from e2e.deploy import Deployer, Json, deployer_for, dynos, fetch, refuses, scale, settle

BOOT_TIMEOUT = 10  # short for the R10 test, long enough for a loaded machine


@pytest.fixture(scope="module")
def contract_server() -> Iterator[Server]:
    root = Path("/var/tmp") / f"dockyard-e2e-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    running = start_server(root / "data", {"DOCKYARD_BOOT_TIMEOUT": str(BOOT_TIMEOUT)})
    try:
        yield running
    finally:
        stop_server(running)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployer(contract_server: Server) -> Iterator[Deployer]:
    with deployer_for(contract_server, "contract@example.com") as deployer:
        yield deployer


def deploy(deployer: Deployer, name: str, repo: Path) -> tuple[str, int]:
    """A new app with ``repo`` pushed to it; its name and the release's version."""
    app = deployer.create(name)
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    return app, int(deployer.current(app)["version"])


def set_config(deployer: Deployer, app: str, values: dict[str, str | None]) -> int:
    reply = deployer.client.patch(f"/apps/{app}/config-vars", json=values)
    assert reply.status_code == 200, reply.text
    return int(deployer.current(app)["version"])


def cli(server: Server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": token}
    return subprocess.run([*DOCKYARD, *args], env=env, capture_output=True, text=True, check=False)


def server_log(server: Server) -> str:
    port = server.url.rsplit(":", 1)[1]
    return (server.data_dir.parent / f"server-{port}.log").read_text(errors="replace")


def ids(listed: list[Json]) -> dict[str, str]:
    return {d["name"]: d["id"] for d in listed}


def test_web_and_worker_scale_up_down_and_restart(
    deployer: Deployer, contract_server: Server, tmp_path: Path
) -> None:
    app, v = deploy(deployer, "scaled", make_repo(APPS / "dyno-probe", tmp_path / "repo"))
    settle(deployer, app, {"web.1": v})

    def reach_each(listed: list[Json]) -> None:
        for dyno in listed:
            if dyno["type"] == "web":
                assert fetch(dyno)["dyno"] == dyno["name"]

    scale(deployer, app, "web", 3)
    three = settle(deployer, app, {"web.1": v, "web.2": v, "web.3": v})
    assert len({d["port"] for d in three}) == 3
    reach_each(three)

    scale(deployer, app, "worker", 2)
    five = settle(deployer, app, {"web.1": v, "web.2": v, "web.3": v, "worker.1": v, "worker.2": v})
    assert {k: i for k, i in ids(five).items() if k.startswith("web")} == ids(three)

    scale(deployer, app, "web", 0)
    settle(deployer, app, {"worker.1": v, "worker.2": v})
    for dyno in three:
        wait_until(lambda port=dyno["port"]: refuses(port), timeout=30)

    scale(deployer, app, "web", 2)
    scale(deployer, app, "worker", 1)
    running = settle(deployer, app, {"web.1": v, "web.2": v, "worker.1": v})
    reach_each(running)

    # ps:restart TYPE, ps:stop DYNO and restart replace just those dynos.
    token = deployer.token
    before = ids(running)
    done = cli(contract_server, token, "ps:restart", "worker", "-a", app)
    assert done.returncode == 0, done.stderr
    assert f"Restarting worker dynos on ⬢ {app}... done" in done.stderr
    wait_until(lambda: ids(dynos(deployer, app)).get("worker.1") not in (None, before["worker.1"]))
    done = cli(contract_server, token, "ps:stop", "web.2", "-a", app)
    assert done.returncode == 0, done.stderr
    assert f"Stopping dyno web.2 on ⬢ {app}... done" in done.stderr
    wait_until(lambda: ids(dynos(deployer, app)).get("web.2") not in (None, before["web.2"]))
    after = settle(deployer, app, {"web.1": v, "web.2": v, "worker.1": v})
    assert ids(after)["web.1"] == before["web.1"], "ps:stop web.2 left web.1 alone"
    done = cli(contract_server, token, "restart", "-a", app)
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: set(ids(dynos(deployer, app)).values()).isdisjoint(ids(after).values()),
        timeout=30,
    )
    reach_each(settle(deployer, app, {"web.1": v, "web.2": v, "worker.1": v}))
    missing = cli(contract_server, token, "ps:restart", "clock.1", "-a", app)
    assert missing.returncode != 0
    assert "Couldn't find dyno 'clock.1'" in missing.stderr

    scale(deployer, app, "web", 0)
    scale(deployer, app, "worker", 0)
    settle(deployer, app, {})


def test_a_web_dyno_that_never_binds_gets_r10_and_the_old_release_serves(
    deployer: Deployer, contract_server: Server, tmp_path: Path
) -> None:
    app, v = deploy(deployer, "never-binds", make_repo(APPS / "dyno-probe", tmp_path / "repo"))
    (old,) = settle(deployer, app, {"web.1": v})
    bad = set_config(deployer, app, {"NO_BIND": "1"})

    def r10_logged() -> bool:
        return f"{app} dockyard[web.1]: Error R10 (Boot timeout)" in server_log(contract_server)

    wait_until(r10_logged, timeout=BOOT_TIMEOUT + 30)
    # The new release's dyno was stopped; the old one still runs and answers.
    listed = dynos(deployer, app)
    serving = [d for d in listed if d["state"] == "up" and d["name"] == "web.1"]
    assert [(d["id"], d["release"]["version"]) for d in serving] == [(old["id"], v)], listed
    assert fetch(old)["dyno"] == "web.1"
    assert all(d["release"]["version"] in (v, bad) for d in listed)

    # A release that binds again rolls out, and the old dyno goes.
    good = set_config(deployer, app, {"NO_BIND": None})
    (new,) = settle(deployer, app, {"web.1": good}, timeout=60)
    assert new["id"] != old["id"]
    assert fetch(new)["dyno"] == "web.1"
    scale(deployer, app, "web", 0)
    settle(deployer, app, {})


def test_a_deploy_always_leaves_a_healthy_web_dyno(deployer: Deployer, tmp_path: Path) -> None:
    repo = make_repo(APPS / "dyno-probe", tmp_path / "repo")
    app, v = deploy(deployer, "no-downtime", repo)
    set_config(deployer, app, {"BOOT_DELAY": "1"})  # a boot slow enough to overlap with polls
    scale(deployer, app, "web", 2)
    v = int(deployer.current(app)["version"])
    settle(deployer, app, {"web.1": v, "web.2": v}, timeout=60)

    samples: list[tuple[float, list[int], list[int]]] = []  # when, listed versions, answered
    stop = threading.Event()
    failures: list[str] = []

    def answering(listed: list[Json]) -> list[int]:
        answered = []
        for dyno in listed:
            try:
                fetch(dyno)
            except (httpx.TransportError, AssertionError):
                continue
            answered.append(dyno["release"]["version"])
        return answered

    def poll() -> None:
        while not stop.is_set():
            web = [d for d in dynos(deployer, app) if d["type"] == "web" and d["state"] == "up"]
            answered = answering(web)
            if not answered:
                # The set may have changed between listing and asking: look once more.
                web = [d for d in dynos(deployer, app) if d["type"] == "web" and d["state"] == "up"]
                answered = answering(web)
                if not answered:
                    failures.append(f"no healthy web dyno at {time.time()}: {web}")
            samples.append((time.time(), [d["release"]["version"] for d in web], answered))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        (tmp_path / "repo" / "CHANGES").write_text("a new release\n")
        git("add", "CHANGES", cwd=repo)
        git("commit", "--quiet", "-m", "A change", cwd=repo)
        pushed = deployer.push(repo, app)
        assert pushed.status == 0, pushed.output
        new = int(deployer.current(app)["version"])
        assert new == v + 1
        settle(deployer, app, {"web.1": new, "web.2": new}, timeout=60)
    finally:
        stop.set()
        poller.join()
    assert not failures, failures
    answered_versions = {version for _, _, answered in samples for version in answered}
    assert answered_versions == {v, new}, "the polls saw the old release and then the new one"
    assert len(samples) >= 10
    scale(deployer, app, "web", 0)
    settle(deployer, app, {})


def test_dynos_cannot_see_other_apps_or_the_platform(
    deployer: Deployer, contract_server: Server, tmp_path: Path
) -> None:
    repo_a = make_repo(APPS / "dyno-probe", tmp_path / "a")
    repo_b = make_repo(APPS / "dyno-probe", tmp_path / "b")
    (repo_b / "b-only.txt").write_text("only in app b\n")
    git("add", "b-only.txt", cwd=repo_b)
    git("commit", "--quiet", "-m", "B's own file", cwd=repo_b)
    app_a, v_a = deploy(deployer, "isolated-a", repo_a)
    app_b, _ = deploy(deployer, "isolated-b", repo_b)
    secret = f"b-secret-{uuid.uuid4().hex}"
    v_b = set_config(deployer, app_b, {"B_SECRET": secret})
    (web_a,) = settle(deployer, app_a, {"web.1": v_a})
    (web_b,) = settle(deployer, app_b, {"web.1": v_b})

    data = contract_server.data_dir
    assert (data / "dockyard.db").is_file(), "the state store is the data dir's SQLite file"
    private = [
        str(data),
        str(data / "dockyard.db"),
        str(data / "secret.key"),
        str(data / "slugs"),
        str(data / "dynos"),
        str(data.parent),
        "/app/b-only.txt",
        "/root/.ssh",
        "/root/.netrc",
        "/etc/shadow",
    ]
    assert (data / "secret.key").is_file()
    found = fetch(web_a, "/probe?paths=" + ",".join(private))
    assert found["uid"] != 0, "dynos run as the app's own user, not root"
    assert found["uid"] != fetch(web_b, "/probe")["uid"], "each app has its own user"
    for path, result in found["paths"].items():
        assert not result["ok"], f"app a's dyno could read {path}: {result}"
    # Its own processes only: nothing of app b's environment, nor of the server's.
    seen = found["processes"]
    assert 1 <= len(seen) < 10, seen
    for pid, process in seen.items():
        for what in ("environ", "cmdline"):
            text = process[what].get("head", "")
            assert secret not in text, f"app b's secret in /proc/{pid}/{what} of app a's dyno"
            assert "DOCKYARD_" not in text, f"the platform's settings in /proc/{pid}/{what}"
    # App b's dyno sees its own file and its own secret (so the probes above could succeed).
    own = fetch(web_b, "/probe?paths=/app/b-only.txt")
    assert own["paths"]["/app/b-only.txt"]["ok"]
    assert any(secret in p["environ"].get("head", "") for p in own["processes"].values())
    for app in (app_a, app_b):
        scale(deployer, app, "web", 0)
        settle(deployer, app, {})
