"""Logs end to end: a deployed app's output and the platform's events in ``dockyard logs``,
filtered; ``logs --tail`` within a second; every line, once, after a SIGKILL of the control
plane while the dyno kept logging (``logs -n`` and a ``--tail`` that reconnects); build
output, deploys, releases and a crash in the logs and at a syslog drain."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
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
from e2e.deploy import Deployer, dynos, scale, settle
from receivers import syslog_receiver

APP = "logger"
EMAIL = "logs@example.com"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 (\w+)\[([\w.]+)\]: (.*)$")
TICK = re.compile(r"^tick ([0-9a-f]{8}) (\d+)$")


@dataclass
class Cluster:
    """The module's server; a test replaces it when it kills and restarts it."""

    server: Server
    token: str = ""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("logs") / "data"
    held = Cluster(start_server(data_dir))
    try:
        held.token = held.server.create_user(EMAIL)
        yield held
    finally:
        stop_server(held.server)


@pytest.fixture(scope="module")
def deployer(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployer]:
    with api_client(cluster.server, cluster.token) as client:
        deployer = Deployer(cluster.server, cluster.token, client)
        deployer.create(APP)
        repo = make_repo(APPS / "logger", tmp_path_factory.mktemp("repo") / "logger")
        pushed = deployer.push(repo, APP)
        assert pushed.status == 0, pushed.output
        settle(deployer, APP, {"web.1": deployer.current(APP)["version"]})
        yield deployer


def cli_env(cluster: Cluster) -> dict[str, str]:
    return {
        **os.environ,
        "DOCKYARD_API_URL": cluster.server.url,
        "DOCKYARD_API_KEY": cluster.token,
    }


def logs(cluster: Cluster, *args: str) -> list[str]:
    done = subprocess.run(
        [*DOCKYARD, "logs", "-a", APP, *args],
        env=cli_env(cluster),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def tags(lines: list[str]) -> list[str]:
    """``app[web.1]: message`` of each line (each must be a well-formed log line)."""
    shown = []
    for line in lines:
        found = LINE.match(line)
        assert found, line
        shown.append(f"{found.group(1)}[{found.group(2)}]: {found.group(3)}")
    return shown


def shows(cluster: Cluster, wanted: str, *args: str) -> list[str]:
    """Poll ``logs`` until a line has ``wanted`` in it (a regex); the lines then."""
    seen: list[str] = []

    def found() -> bool:
        nonlocal seen
        seen = tags(logs(cluster, *args))
        return any(re.search(wanted, line) for line in seen)

    try:
        wait_until(found, timeout=30, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{wanted!r} not in:\n" + "\n".join(seen[-40:])) from exc
    return seen


@dataclass
class Tail:
    """``dockyard logs --tail`` running, its lines collected with when each came."""

    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [text for _, text in list(self.lines)]

    def wait_for(self, wanted: str, timeout: float = 30) -> float:
        """When the first line matching ``wanted`` came."""

        def came() -> float | None:
            return next((at for at, text in list(self.lines) if re.search(wanted, text)), None)

        try:
            wait_until(lambda: came() is not None, timeout=timeout, interval=0.02)
        except AssertionError as exc:
            raise AssertionError(
                f"{wanted!r} not tailed:\n" + "\n".join(self.texts()[-40:])
            ) from exc
        at = came()
        assert at is not None
        return at


@pytest.fixture
def tail(cluster: Cluster) -> Iterator[Callable[..., Tail]]:
    started: list[tuple[Tail, threading.Thread]] = []

    def start(*args: str) -> Tail:
        process = subprocess.Popen(
            [*DOCKYARD, "logs", "--tail", "-a", APP, *args],
            env=cli_env(cluster),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        running = Tail(process)
        assert process.stdout is not None
        stdout = process.stdout

        def read() -> None:
            for text in stdout:
                running.lines.append((time.monotonic(), text.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started.append((running, reader))
        return running

    yield start
    for running, reader in started:
        running.process.kill()
        running.process.wait()
        reader.join(timeout=10)
        assert running.process.stdout is not None
        running.process.stdout.close()


def ticks(lines: list[str], boot: str) -> list[int]:
    """The counter of the web dyno started as ``boot``, as its lines show it."""
    found = []
    for line in lines:
        message = line.split(": ", 1)[-1]
        tick = TICK.match(message)
        if tick and tick.group(1) == boot:
            found.append(int(tick.group(2)))
    return found


def test_logs_show_dyno_output_and_platform_events_filtered(
    cluster: Cluster, deployer: Deployer
) -> None:
    seen = shows(cluster, r"^app\[web\.1\]: tick ", "-n", "1500")
    assert "dockyard[web.1]: State changed from starting to up" in seen
    assert any(line.startswith("dockyard[web.1]: Starting process with command") for line in seen)

    reply = deployer.client.patch(f"/apps/{APP}/config-vars", json={"GREETING": "hi"})
    assert reply.status_code == 200, reply.text
    shows(cluster, rf"^app\[api\]: Set GREETING config vars by {EMAIL}$")
    scale(deployer, APP, "worker", 1)
    seen = shows(cluster, r"^app\[worker\.1\]: worker tick \d+$", "-n", "1500")
    assert f"app[api]: Scaled to web@1:Standard-1X worker@1:Standard-1X by {EMAIL}" in seen

    worker = tags(logs(cluster, "-p", "worker", "-n", "300"))
    assert worker
    assert all(re.match(r"^\w+\[worker\.1\]: ", line) for line in worker), worker
    assert "dockyard[worker.1]: State changed from starting to up" in worker or any(
        "Starting process" in line for line in worker
    )
    one = tags(logs(cluster, "-p", "web.1", "-n", "100"))
    assert one
    assert all(re.match(r"^\w+\[web\.1\]: ", line) for line in one)
    apps_own = tags(logs(cluster, "-s", "app", "-n", "300"))
    assert all(line.startswith("app[") for line in apps_own)
    assert any(line.startswith("app[api]: ") for line in apps_own)
    platform = tags(logs(cluster, "-s", "dockyard", "-n", "300"))
    assert platform
    assert all(line.startswith("dockyard[") for line in platform)
    web_app = tags(logs(cluster, "-p", "web", "-s", "app", "-n", "20"))
    assert len(web_app) == 20
    assert all(line.startswith("app[web.1]: ") for line in web_app)

    as_json = [json.loads(line) for line in logs(cluster, "--json", "-n", "5", "-p", "web.1")]
    assert len(as_json) == 5
    assert set(as_json[0]) == {"time", "source", "process", "message"}
    assert as_json[0]["process"] == "web.1"
    scale(deployer, APP, "worker", 0)


def test_tail_shows_a_new_line_within_a_second(
    cluster: Cluster, deployer: Deployer, tail: Callable[..., Tail]
) -> None:
    running = tail("-p", "web", "-s", "app")
    running.wait_for(r"app\[web\.1\]: tick ")
    (web,) = [d for d in dynos(deployer, APP) if d["name"] == "web.1" and d["state"] == "up"]
    for n in range(3):
        marker = f"marker-{n}-{time.time_ns()}"
        reply = httpx.get(
            f"http://127.0.0.1:{web['port']}/say", params={"text": marker, "err": f"{marker}-err"}
        )
        assert reply.status_code == 200
        written = time.monotonic()
        assert running.wait_for(rf"app\[web\.1\]: {marker}$") - written < 1.0
        assert running.wait_for(rf"app\[web\.1\]: {marker}-err$") - written < 1.0


def test_every_line_once_after_a_sigkill_of_the_control_plane(
    cluster: Cluster, deployer: Deployer, tail: Callable[..., Tail]
) -> None:
    running = tail("-p", "web.1", "-s", "app")
    running.wait_for(r"tick [0-9a-f]{8} \d+$")
    boot = TICK.match(running.texts()[-1].split(": ", 1)[1])
    assert boot is not None
    boot_id = boot.group(1)
    running.wait_for(rf"tick {boot_id} {int(boot.group(2)) + 5}$")

    old = cluster.server
    old.process.kill()  # SIGKILL: no chance to save anything
    old.process.wait()
    # The dyno keeps logging meanwhile, into its log file.
    (log_file,) = [
        path
        for path in (old.data_dir / "dynos").glob("*/log")
        if f"tick {boot_id} ".encode() in path.read_bytes()
    ]

    def file_ticks() -> list[int]:
        text = log_file.read_text(errors="replace")
        return [int(n) for n in re.findall(rf"tick {boot_id} (\d+)", text)]

    written_then = max(file_ticks())
    wait_until(lambda: max(file_ticks()) >= written_then + 20, timeout=30)
    down_until = max(file_ticks())

    cluster.server = start_server(
        old.data_dir,
        {"DOCKYARD_HTTP_PORT": old.env["DOCKYARD_HTTP_PORT"]},
        port=int(old.url.rsplit(":", 1)[1]),
    )
    seen = shows(cluster, rf"tick {boot_id} {down_until + 5}$", "-n", "5000", "-p", "web.1")
    counted = ticks(seen, boot_id)
    assert counted == list(range(1, max(counted) + 1)), "no gap, no line twice"
    # Nor of the web.1 that the config change replaced, whose log was read before.
    boots = {m.group(1) for line in seen if (m := TICK.match(line.split(": ", 1)[-1]))}
    assert len(boots) >= 2
    for boot in boots:
        counted = ticks(seen, boot)
        assert counted == list(range(1, max(counted) + 1)), boot

    # The tail reconnected, and went on from where it was: no gap, nothing twice.
    running.wait_for(rf"tick {boot_id} {down_until + 10}$", timeout=60)
    tailed = ticks(running.texts(), boot_id)
    assert tailed == list(range(tailed[0], tailed[-1] + 1))
    assert tailed[-1] >= down_until + 10

    # A clean stop ends open log streams (the server does not wait for them), and the tail
    # goes on after the next start as well.
    again = cluster.server
    again.process.terminate()
    again.process.wait(timeout=15)
    cluster.server = start_server(
        again.data_dir,
        {"DOCKYARD_HTTP_PORT": again.env["DOCKYARD_HTTP_PORT"]},
        port=int(again.url.rsplit(":", 1)[1]),
    )
    last = ticks(running.texts(), boot_id)[-1]
    running.wait_for(rf"tick {boot_id} {last + 30}$", timeout=60)
    tailed = ticks(running.texts(), boot_id)
    assert tailed == list(range(tailed[0], tailed[-1] + 1))


def test_builds_deploys_releases_and_a_crash_show_in_logs_and_reach_a_drain(
    cluster: Cluster, deployer: Deployer
) -> None:
    built = shows(cluster, r"^app\[build\]: -----> Launching", "-p", "build", "-n", "1500")
    assert all(line.startswith("app[build]: ") for line in built)
    assert any(re.match(r"^app\[build\]: -----> .* app detected", line) for line in built), built
    said = tags(logs(cluster, "-p", "api", "-s", "app", "-n", "1500"))
    assert any(re.fullmatch(rf"app\[api\]: Deploy [0-9a-f]{{7}} by {EMAIL}", x) for x in said)
    assert any(re.fullmatch(rf"app\[api\]: Release v\d+ created by {EMAIL}", x) for x in said)
    # Heroku's order: the build starts, its release is made, the build succeeded.
    started = said.index(f"app[api]: Build started by {EMAIL}")
    released = next(n for n, x in enumerate(said) if n > started and " created by " in x)
    assert "app[api]: Build succeeded" in said[released:]
    assert all(line.startswith("app[api]: ") for line in said)

    with syslog_receiver() as receiver:
        reply = deployer.client.post(f"/apps/{APP}/log-drains", json={"url": receiver.url})
        assert reply.status_code == 201, reply.text
        token = reply.json()["token"]
        wait_until(lambda: any(" web.1 app - tick " in m for m in receiver.messages), timeout=30)

        (web,) = [d for d in dynos(deployer, APP) if d["name"] == "web.1" and d["state"] == "up"]
        boot = httpx.get(f"http://127.0.0.1:{web['port']}/say", timeout=5).text
        with contextlib.suppress(httpx.HTTPError):  # it exits before it answers
            httpx.get(f"http://127.0.0.1:{web['port']}/exit", params={"code": "3"}, timeout=5)
        # The crash, then the restarted web.1 (a new boot) ticking.
        seen = shows(
            cluster, rf"^app\[web\.1\]: tick (?!{boot})[0-9a-f]{{8}} 3$", "-p", "web.1", "-n", "300"
        )
        exited = seen.index("dockyard[web.1]: Process exited with status 3")
        # The dyno's last words are in the stream; the hub reads output every 50 ms, so they
        # may land just after the platform's exit line (see docs/logs.md).
        assert "app[web.1]: exiting with status 3" in seen
        assert any(x.startswith("dockyard[web.1]: State changed to crashed") for x in seen[exited:])
        assert any(x.startswith("dockyard[web.1]: Starting process") for x in seen[exited:])
        platform = tags(logs(cluster, "-p", "web.1", "-s", "dockyard"))
        assert "dockyard[web.1]: Process exited with status 3" in platform
        assert all(line.startswith("dockyard[web.1]: ") for line in platform)

        # The drain got the same, in order, named by its token, the app and the dyno.
        def drained_the_exit() -> bool:
            return any(
                f" {token} {APP} web.1 dockyard - Process exited with status 3" in m
                for m in list(receiver.messages)
            )

        wait_until(drained_the_exit, timeout=30)
        sent = list(receiver.messages)
        texts = [m.split(" - ", 1)[1] for m in sent if f" {token} {APP} web.1 app - " in m]
        boots: dict[str, list[int]] = {}
        for text in texts:
            if tick := TICK.match(text):
                boots.setdefault(tick.group(1), []).append(int(tick.group(2)))
        for counted in boots.values():
            assert counted == list(range(counted[0], counted[-1] + 1)), "in order, no gap"
        assert "exiting with status 3" in texts
        assert len(boots) >= 2
        reply = deployer.client.delete(f"/apps/{APP}/log-drains/{token}")
        assert reply.status_code == 200, reply.text


def test_a_drain_gets_every_line_across_a_sigkill_of_the_control_plane(
    cluster: Cluster, deployer: Deployer
) -> None:
    with syslog_receiver() as receiver:
        reply = deployer.client.post(f"/apps/{APP}/log-drains", json={"url": receiver.url})
        assert reply.status_code == 201, reply.text
        token = reply.json()["token"]
        (web,) = [d for d in dynos(deployer, APP) if d["name"] == "web.1" and d["state"] == "up"]
        boot = httpx.get(f"http://127.0.0.1:{web['port']}/say", timeout=5).text

        def drained() -> list[int]:
            prefix = f" {token} {APP} web.1 app - tick {boot} "
            return [int(m.rsplit(" ", 1)[1]) for m in list(receiver.messages) if prefix in m]

        wait_until(lambda: len(drained()) >= 5, timeout=30)
        old = cluster.server
        old.process.kill()  # SIGKILL: the drain's sender dies with whatever it had not sent
        old.process.wait()
        sent_then = max(drained())
        (log_file,) = [
            path
            for path in (old.data_dir / "dynos").glob("*/log")
            if f"tick {boot} ".encode() in path.read_bytes()
        ]

        def written() -> int:
            return max(int(n) for n in re.findall(rf"tick {boot} (\d+)", log_file.read_text()))

        wait_until(lambda: written() >= sent_then + 20, timeout=30)
        down_until = written()
        cluster.server = start_server(
            old.data_dir,
            {"DOCKYARD_HTTP_PORT": old.env["DOCKYARD_HTTP_PORT"]},
            port=int(old.url.rsplit(":", 1)[1]),
        )
        wait_until(lambda: max(drained()) >= down_until + 10, timeout=60)
        # In order and without a gap. What was sent just before the kill, but not yet noted
        # as sent, comes again after the restart (at least once, never skipped).
        got = drained()
        fresh: list[int] = []
        for n in got:
            if not fresh or n > fresh[-1]:
                fresh.append(n)
        assert fresh == list(range(fresh[0], fresh[-1] + 1)), got
        assert fresh[0] <= sent_then < down_until + 10 <= fresh[-1]
        reply = deployer.client.delete(f"/apps/{APP}/log-drains/{token}")
        assert reply.status_code == 200, reply.text
