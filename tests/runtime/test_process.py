"""The runtime contract with real dynos: the ``process`` driver (sandboxed processes; root in
CI: real uids) and, where the behaviour is the contract's, the ``docker`` driver too (tests
that take the ``driver`` fixture, see conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.runtime import Dyno, DynoError, DynoNotFound, DynoSpec, Exit, Runtime, SlugError
from dockyard.runtime.docker import DockerRuntime
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.slugs import sha256_of
from dockyard.runtime.swarm import SwarmRuntime
from swarm.cluster import MANAGER_ADDR

SWARM_REGISTRY = "DOCKYARD_TEST_SWARM_REGISTRY"  # set by the driver fixture for swarm

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="app uids need root")

SERVER = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"env": dict(os.environ), "uid": os.getuid(), "cwd": os.getcwd()})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

print("listening on", os.environ["PORT"], flush=True)
HTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""

WORKER = """\
import signal, time

stopping = False

def stop(*_):
    # Only a flag: printing here could re-enter a print that the signal interrupted.
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, stop)
n = 0
while not stopping:
    print("tick", n, flush=True)
    n += 1
    time.sleep(0.05)
print("bye", flush=True)
"""

FILES = {
    "Procfile": "web: python3 server.py\nworker: python3 worker.py\n",
    "server.py": SERVER,
    "worker.py": WORKER,
    ".profile.d/greet.sh": 'export GREETING="hello from profile"\n',
    "bin/shout": '#!/bin/sh\necho SHOUT "$@"\n',
    "data.txt": "slug data\n",
}


def make_slug(directory: Path, files: dict[str, str] = FILES) -> tuple[Path, str]:
    path = directory / f"slug-{secrets.token_hex(4)}.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path, sha256_of(path)


class App:
    def __init__(self, tmp_path: Path, name: str) -> None:
        self.name = name
        self.id = f"{name}-{secrets.token_hex(4)}"
        self.uid = 1_000_000 + secrets.randbelow(1_000_000) if ROOT else os.geteuid()
        self.slug, self.sha = make_slug(tmp_path)

    def spec(self, name: str, command: str, **extra: Any) -> DynoSpec:
        process_type = name.split(".", maxsplit=1)[0]
        return DynoSpec(
            app_id=self.id,
            app_name=self.name,
            app_uid=self.uid,
            release_version=1,
            slug_path=self.slug,
            slug_sha256=self.sha,
            process_type=process_type,
            name=name,
            command=command,
            **extra,
        )


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def open_runtime(data_dir: Path, driver: str = "process") -> Runtime:
    if driver == "docker":
        return await DockerRuntime.open(data_dir)
    if driver == "swarm":
        # The two-node swarm's registry (the ``driver`` fixture, tests/runtime/conftest.py).
        return await SwarmRuntime.open(data_dir, registry=os.environ[SWARM_REGISTRY])
    return await ProcessRuntime.open(data_dir)


@asynccontextmanager
async def runtime_on(
    data_dir: Path, *, stop_all: bool = True, driver: str = "process"
) -> AsyncIterator[Runtime]:
    runtime = await open_runtime(data_dir, driver)
    try:
        yield runtime
    finally:
        if stop_all:
            for dyno in await runtime.list():
                with contextlib.suppress(DynoNotFound):  # it may be ending by itself
                    await runtime.stop(dyno.id, grace=0.2)
        await runtime.close()


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def has_ended(data: Path, dyno: Dyno, driver: str) -> bool:
    """The dyno's end is recorded on the node (by its supervisor, or by the engine)."""
    if driver == "process":
        return (data / "dynos" / dyno.id / "exit.json").exists()
    if driver == "swarm":
        service = json.loads((data / "swarm" / "dynos" / dyno.id / "dyno.json").read_text())
        done = subprocess.run(
            ["docker", "service", "ps", "-q", "-f", "desired-state=shutdown", service["service"]],
            capture_output=True,
            text=True,
            check=False,
        )
        return bool(done.stdout.strip())
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}}", f"dyno-{dyno.id}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() == "exited"


def assert_ticks_in_order(lines: list[str]) -> None:
    """The worker's ticks, each once, none missing."""
    ticks = [int(line.split()[1]) for line in lines if line.startswith("tick ")]
    assert ticks == list(range(len(ticks))), lines


async def next_exit(exits: AsyncIterator[Exit], timeout: float = 15.0) -> Exit:
    async with asyncio.timeout(timeout):
        return await anext(exits)


def log_lines(dyno: Dyno) -> list[dict[str, str]]:
    if not dyno.log_path.exists():
        return []
    return [json.loads(line) for line in dyno.log_path.read_text().splitlines()]


def printed(dyno: Dyno) -> list[str]:
    return [entry["line"] for entry in log_lines(dyno)]


async def run_to_end(runtime: Runtime, spec: DynoSpec) -> tuple[Dyno, Exit]:
    """Start a one-off dyno and wait for its exit (the only one expected meanwhile)."""
    exits = runtime.exits()
    dyno = await runtime.start(spec)
    ended = await next_exit(exits)
    assert ended.dyno.id == dyno.id
    return dyno, ended


def test_web_dyno_serves_on_its_port_with_the_dyno_environment(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "web-app")

    async def scenario() -> None:
        async with (
            runtime_on(tmp_path / "data", driver=driver) as runtime,
            httpx.AsyncClient() as client,
        ):
            exits = runtime.exits()
            spec = app.spec("web.1", "python3 server.py", env={"FOO": "bar baz"})
            dyno = await runtime.start(spec)
            assert dyno.port is not None
            assert dyno.name == "web.1"
            assert [d.id for d in await runtime.list()] == [dyno.id]
            url = f"http://{dyno.host}:{dyno.port}/"
            replies: list[httpx.Response] = []

            async def answered() -> bool:
                try:
                    replies.append(await client.get(url))
                except httpx.TransportError:
                    return False
                return True

            await until(answered)
            seen = replies[-1].json()
            env = seen["env"]
            assert env["DYNO"] == "web.1"
            assert env["HOME"] == "/app"
            assert env["PORT"] == str(dyno.port)
            assert env["FOO"] == "bar baz"
            assert env["GREETING"] == "hello from profile"
            assert env["PATH"].split(":")[:2] == ["/app/.venv/bin", "/app/bin"]
            assert seen["cwd"] == "/app"
            if ROOT:
                assert seen["uid"] == app.uid
            # Only the dyno's environment: nothing of the control plane's.
            assert "PYTEST_CURRENT_TEST" not in env
            await until(lambda: f"listening on {dyno.port}" in printed(dyno))
            if driver != "swarm" or dyno.host == MANAGER_ADDR:  # else: another node's
                usage = await runtime.usage(dyno.id)
                assert usage.processes == 1  # python: bash exec'd it
                assert 2**20 < usage.memory_bytes < 2**30
                assert usage.cpu_seconds >= 0

            started = time.monotonic()
            stopped = await runtime.stop(dyno.id, grace=10)
            assert time.monotonic() - started < 5
            assert stopped.grace_exceeded is False
            assert stopped.status == 143  # killed by SIGTERM, like Heroku reports it
            ended = await next_exit(exits)
            assert ended.dyno.id == dyno.id
            assert ended.stopped == stopped
            assert await runtime.list() == []
            with pytest.raises(DynoNotFound):
                await runtime.stop(dyno.id)

    run(scenario)


def test_profile_d_path_and_shell_command(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "shell-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            spec = app.spec("run.1", 'shout "$GREETING" && cat data.txt | tr a-z A-Z')
            dyno, ended = await run_to_end(runtime, spec)
            assert ended.status == 0
            assert ended.stopped is None
            assert printed(dyno) == ["SHOUT hello from profile", "SLUG DATA"]

    run(scenario)


def test_exit_status_and_timestamped_output_lines(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "exit-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            before = time.time()
            command = "echo one; echo two >&2; printf 'no newline'; exit 3"
            dyno, ended = await run_to_end(runtime, app.spec("run.4821", command))
            assert ended.status == 3
            assert ended.stopped is None  # a crash, not a stop
            entries = log_lines(dyno)
            by_stream = {(e["stream"], e["line"]) for e in entries}
            assert by_stream == {("stdout", "one"), ("stderr", "two"), ("stdout", "no newline")}
            for entry in entries:
                stamp = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
                assert before - 1 <= stamp <= time.time() + 1
            # A command that does not exist: the dyno starts and exits 127.
            _, missing = await run_to_end(runtime, app.spec("run.2", "no-such-command"))
            assert missing.status == 127

    run(scenario)


def test_app_dir_is_writable_private_and_ephemeral(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "write-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data, driver=driver) as runtime:
            writer = await runtime.start(
                app.spec(
                    "worker.1",
                    "echo changed > data.txt && echo new > /app/new.txt && cat data.txt && "
                    "echo written && exec sleep 600",
                )
            )
            await until(lambda: "written" in printed(writer))
            assert printed(writer) == ["changed", "written"]
            # Another dyno of the same release sees the slug as it was.
            reader, ended = await run_to_end(
                runtime,
                app.spec("run.1", "cat data.txt; test -e new.txt && echo seen || echo absent"),
            )
            assert printed(reader) == ["slug data", "absent"]
            assert ended.status == 0
            assert not list(data.rglob("new.txt"))
            if driver == "process":
                # The shared unpacked slug is untouched; the writer's layer is in its sandbox
                # (a tmpfs, see test_disk.py), nowhere on the host, and goes with it.
                (unpacked,) = (data / "slugs" / str(app.uid)).iterdir()
                assert (unpacked / "data.txt").read_text() == "slug data\n"
                assert not (unpacked / "new.txt").exists()
            await runtime.stop(writer.id, grace=5)

    run(scenario)


def test_slug_is_unpacked_once_per_release(tmp_path: Path) -> None:
    app = App(tmp_path, "once-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data) as runtime:
            first, second = await asyncio.gather(
                runtime.start(app.spec("worker.1", "exec sleep 600")),
                runtime.start(app.spec("worker.2", "exec sleep 600")),
            )
            third = await runtime.start(app.spec("worker.3", "exec sleep 600"))
            assert len({first.id, second.id, third.id}) == 3
            assert len(await runtime.list()) == 3
            assert [p.name for p in (data / "slugs" / str(app.uid)).iterdir()] == [app.sha]

    run(scenario)


@needs_root
def test_apps_cannot_see_each_other_or_the_data_dir(tmp_path: Path, driver: str) -> None:
    one, two = App(tmp_path, "app-one"), App(tmp_path, "app-two")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data, driver=driver) as runtime:
            secret_env = {"SECRET": "one-only"}
            holder = await runtime.start(
                one.spec("worker.1", "echo up; exec sleep 600", env=secret_env)
            )
            await until(lambda: "up" in printed(holder))
            slug_one = data / "slugs" / str(one.uid) / one.sha
            probe = " ; ".join(
                [
                    f"test -e {data} && echo data-visible || echo data-hidden",
                    f"test -e {slug_one} && echo slug-visible || echo slug-hidden",
                    f"test -e {tmp_path} && echo tmp-visible || echo tmp-hidden",
                    "echo uid=$(id -u)",
                    "echo procs=$(ls /proc | grep -c '^[0-9]')",
                    "echo secret=${SECRET:-none}",
                    "test -e /root/.ssh && echo root-visible || echo root-hidden",
                ]
            )
            dyno, ended = await run_to_end(runtime, two.spec("run.1", probe))
            assert ended.status == 0
            lines = printed(dyno)
            assert lines[:3] == ["data-hidden", "slug-hidden", "tmp-hidden"]
            assert lines[3] == f"uid={two.uid}"
            # Its own PID namespace: bwrap's init, bash and ls/grep; not app one's sleep.
            assert int(lines[4].removeprefix("procs=")) <= 5
            assert lines[5:] == ["secret=none", "root-hidden"]
            if driver == "process":
                # On the host the unpacked slugs are root's alone.
                assert (data / "slugs" / str(one.uid)).stat().st_mode & 0o777 == 0o700
                assert (data / "dynos").stat().st_mode & 0o777 == 0o700
            else:
                assert (data / driver / "dynos").stat().st_mode & 0o777 == 0o700

    run(scenario)


def test_stop_gives_sigterm_then_sigkill_after_the_grace(tmp_path: Path, driver: str) -> None:
    if driver == "swarm":
        pytest.skip(
            "swarm: the node's engine kills a dyno after its service's grace period, set when "
            "it starts (30 s, the platform's), not after one given to stop()"
        )
    app = App(tmp_path, "stop-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            exits = runtime.exits()
            polite = await runtime.start(app.spec("worker.1", "python3 worker.py"))
            stubborn = await runtime.start(
                app.spec("worker.2", "trap '' TERM; echo ready; while true; do sleep 0.05; done")
            )
            await until(lambda: "tick 2" in printed(polite) and "ready" in printed(stubborn))

            stopped = await runtime.stop(polite.id, grace=10)
            assert (stopped.status, stopped.grace_exceeded) == (0, False)
            assert printed(polite)[-1] == "bye"

            started = time.monotonic()
            stopped = await runtime.stop(stubborn.id, grace=0.5)
            took = time.monotonic() - started
            assert (stopped.status, stopped.grace_exceeded) == (137, True)  # Heroku's R12
            assert 0.5 <= took < 5
            ended = {(await next_exit(exits)).dyno.id for _ in range(2)}
            assert ended == {polite.id, stubborn.id}
            assert await runtime.list() == []

    run(scenario)


def test_dynos_outlive_the_runtime_and_are_adopted(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "adopt-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data, stop_all=False, driver=driver) as first:
            worker = await first.start(app.spec("worker.1", "python3 worker.py"))
            short = await first.start(app.spec("run.7", "echo waiting; read line; exit 5"))
            await until(lambda: "tick 1" in printed(worker))
        # Ended while no runtime watched: stdin is /dev/null, so `read` returns at once.
        await until(lambda: has_ended(data, short, driver))
        ticks = len(printed(worker))
        if driver == "process":
            await until(lambda: len(printed(worker)) > ticks + 2)  # still running, still logged

        async with runtime_on(data, driver=driver) as second:
            assert await second.list() == [worker]
            # What it printed meanwhile is in its log, once: nothing lost, nothing twice.
            await until(lambda: len(printed(worker)) > ticks + 2)
            assert_ticks_in_order(printed(worker))
            exits = second.exits()
            missed = await next_exit(exits)
            assert (missed.dyno, missed.status, missed.stopped) == (short, 5, None)
            stopped = await second.stop(worker.id, grace=10)
            assert stopped.status == 0
            assert (await next_exit(exits)).dyno == worker
            # Asking for the next one acknowledges the last: nothing more comes.
            with pytest.raises(TimeoutError):
                await next_exit(exits, timeout=0.3)

        # Each acknowledged exit is reported once.
        async with runtime_on(data, driver=driver) as third:
            assert await third.list() == []
            with pytest.raises(TimeoutError):
                await next_exit(third.exits(), timeout=0.3)

    run(scenario)


def test_bad_specs_and_slugs_are_refused(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "bad-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            with pytest.raises(DynoError, match="invalid dyno name"):
                await runtime.start(replace(app.spec("web.1", "true"), name="../web"))
            with pytest.raises(DynoError, match="no command"):
                await runtime.start(app.spec("web.1", "  "))
            wrong = replace(app.spec("run.1", "true"), slug_sha256="0" * 64)
            with pytest.raises(SlugError, match="expected 0000"):
                await runtime.start(wrong)
            evil = tmp_path / "evil.tgz"
            with tarfile.open(evil, "w:gz") as tar:
                info = tarfile.TarInfo("../escape")
                tar.addfile(info, io.BytesIO(b""))
            bad = replace(app.spec("run.1", "true"), slug_path=evil, slug_sha256=sha256_of(evil))
            with pytest.raises(SlugError, match="could not unpack"):
                await runtime.start(bad)
            assert not (tmp_path / "escape").exists()
            assert await runtime.list() == []

    run(scenario)


def test_sigterm_reaches_every_process_of_the_dyno(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "group-app")
    command = (
        "(trap 'echo child-term; exit 0' TERM; echo child-ready; "
        "while true; do sleep 0.05; done) & "
        "trap 'echo main-term; wait; exit 0' TERM; "
        "while true; do sleep 0.05 & wait $!; done"
    )

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            dyno = await runtime.start(app.spec("worker.1", command))
            await until(lambda: "child-ready" in printed(dyno))
            stopped = await runtime.stop(dyno.id, grace=10)
            assert (stopped.status, stopped.grace_exceeded) == (0, False)
            assert {"main-term", "child-term"} <= set(printed(dyno))

    run(scenario)


def test_the_dyno_ends_with_its_main_process(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "leftover-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            started = time.monotonic()
            # The background sleep holds the output pipe; it goes with the dyno.
            dyno, ended = await run_to_end(
                runtime, app.spec("run.1", "sleep 600 & echo started; exit 4")
            )
            assert ended.status == 4
            assert time.monotonic() - started < 10
            assert printed(dyno) == ["started"]

    run(scenario)


def test_a_dyno_that_cannot_start_leaves_nothing_behind(tmp_path: Path) -> None:
    app = App(tmp_path, "broken-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        runtime = await ProcessRuntime.open(data, python=str(tmp_path / "no-python"))
        spec = app.spec("web.1", "python3 server.py", env={"SECRET": "s3cret"})
        with pytest.raises(DynoError, match="could not start the dyno's supervisor"):
            await runtime.start(spec)
        assert await runtime.list() == []
        assert list((data / "dynos").iterdir()) == []  # no launch.json with config vars
        await runtime.close()

    run(scenario)


CONTROL_PLANE = """\
import asyncio, json, os, sys
from pathlib import Path
from dockyard.runtime import DynoSpec
from dockyard.runtime.docker import DockerRuntime
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.swarm import SwarmRuntime

async def main():
    data, driver = Path(sys.argv[1]), sys.argv[4]
    if driver == "swarm":
        runtime = await SwarmRuntime.open(data, registry=os.environ["DOCKYARD_TEST_SWARM_REGISTRY"])
    else:
        runtime = await (DockerRuntime if driver == "docker" else ProcessRuntime).open(data)
    spec = DynoSpec(**{**json.loads(sys.argv[2]), "slug_path": Path(sys.argv[3])})
    dyno = await runtime.start(spec)
    print(json.dumps({"id": dyno.id, "pid": dyno.pid}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_dynos_survive_a_killed_control_plane(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "survivor-app")
    data = tmp_path / "data"
    spec = app.spec("worker.1", "python3 worker.py")
    fields = {k: v for k, v in spec.__dict__.items() if k != "slug_path"}
    plane = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CONTROL_PLANE,
            str(data),
            json.dumps(fields),
            str(spec.slug_path),
            driver,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert plane.stdout is not None
    with plane.stdout:
        started = json.loads(plane.stdout.readline())
    plane.kill()
    assert plane.wait() == -9

    async def scenario() -> None:
        async with runtime_on(data, driver=driver) as runtime:
            (dyno,) = await runtime.list()
            assert (dyno.id, dyno.pid) == (started["id"], started["pid"])
            ticks = len(printed(dyno))
            await until(lambda: len(printed(dyno)) > ticks + 2)  # still printing, still logged
            stopped = await runtime.stop(dyno.id, grace=10)
            assert stopped.status == 0
            assert_ticks_in_order(printed(dyno))

    run(scenario)
