"""Attached dynos: a terminal or pipes to one client, real processes, for each driver."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dockyard.runtime import Attachment, DynoError, DynoNotFound, Output
from runtime.test_process import ROOT, App, next_exit, open_runtime, printed, run, runtime_on


class Client:
    """What an attachment gave so far, by stream."""

    def __init__(self, attachment: Attachment) -> None:
        self.attachment = attachment
        self.output: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.ended = False

    async def until(self, text: str, stream: str = "stdout", timeout: float = 15.0) -> str:
        """Read until ``text`` was written to ``stream``; what that stream has had so far."""
        async with asyncio.timeout(timeout):
            while text.encode() not in self.output[stream]:
                assert not self.ended, f"ended before {text!r}: {self.output}"
                await self.read_one()
        return self.output[stream].decode()

    async def read_one(self) -> None:
        got = await self.attachment.read()
        if got is None:
            self.ended = True
        else:
            assert isinstance(got, Output)
            self.output[got.stream] += got.data

    async def to_end(self, timeout: float = 15.0) -> int | None:
        async with asyncio.timeout(timeout):
            while not self.ended:
                await self.read_one()
        return self.attachment.status


def test_a_terminal_takes_input_and_gives_the_exit_status(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "tty-app")
    command = (
        "tty; stty size; ls /dev/pts; stat -c owner=%u $(tty); "
        "echo ready; read line; echo got:$line; exit 3"
    )

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            spec = app.spec("run.1", command, attach=True, tty=True, env={"LINES": "30"})
            dyno = await runtime.start(spec)
            client = Client(await runtime.attach(dyno.id))
            seen = await client.until("ready")
            lines = seen.splitlines()
            # The host's pseudo-terminal, under its own name in the sandbox, alone there.
            assert lines[0].startswith("/dev/pts/"), seen
            assert lines[1] == "30 80"  # LINES from the client's environment, columns default
            if driver == "process":
                assert lines[2] == lines[0].removeprefix("/dev/pts/")
            assert lines[3] == f"owner={app.uid if ROOT else os.geteuid()}"
            assert "\r\n" in seen  # a terminal's line discipline
            await client.attachment.write(b"hello there\r")
            await client.until("got:hello there")
            assert await client.to_end() == 3
            assert printed(dyno) == []  # an attached dyno's output is not logged

    run(scenario)


def test_resizes_and_ctrl_c_reach_the_dyno_as_signals(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "intr-app")
    command = (
        "trap 'stty size' WINCH; trap 'echo interrupted; exit 7' INT; echo ready; "
        "while true; do sleep 0.05; done"
    )

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            dyno = await runtime.start(app.spec("run.1", command, attach=True, tty=True))
            client = Client(await runtime.attach(dyno.id))
            await client.until("ready")
            await client.attachment.resize(40, 120)
            await client.until("40 120")
            await client.attachment.write(b"\x03")
            await client.until("interrupted")
            assert await client.to_end() == 7

    run(scenario)


def test_pipes_keep_stdout_and_stderr_apart_and_end_stdin(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "pipe-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            spec = app.spec(
                "run.1", "test -t 0 || echo no-tty; cat; echo oops >&2; exit 4", attach=True
            )
            dyno = await runtime.start(spec)
            client = Client(await runtime.attach(dyno.id))
            await client.attachment.write(b"line one\n" + b"x" * 300_000 + b"\n")
            await client.attachment.close_input()
            assert await client.to_end() == 4
            assert client.output["stdout"] == b"no-tty\nline one\n" + b"x" * 300_000 + b"\n"
            assert client.output["stderr"] == b"oops\n"

    run(scenario)


def test_output_before_the_client_attached_is_kept(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "early-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            exits = runtime.exits()
            spec = app.spec("run.1", "echo early; no-such-command", attach=True)
            dyno = await runtime.start(spec)
            # The dyno has ended (or will); its output and status wait for the client.
            client = Client(await runtime.attach(dyno.id))
            assert await client.to_end() == 127
            assert client.output["stdout"] == b"early\n"
            assert "no-such-command: command not found" in client.output["stderr"].decode()
            ended = await next_exit(exits)
            assert (ended.dyno.id, ended.status, ended.stopped) == (dyno.id, 127, None)

    run(scenario)


def test_a_dyno_ends_when_its_client_goes(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "gone-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            exits = runtime.exits()
            for tty in (True, False):
                command = "echo ready; exec sleep 600"
                dyno = await runtime.start(app.spec("run.1", command, attach=True, tty=tty))
                client = Client(await runtime.attach(dyno.id))
                await client.until("ready")
                await client.attachment.close()
                ended = await next_exit(exits)
                assert ended.dyno.id == dyno.id
                # The platform stopped it: SIGHUP from its terminal, or SIGTERM.
                assert ended.stopped is not None
                assert ended.status in (129, 143)
                assert await runtime.list() == []

    run(scenario)


def test_a_dyno_nobody_attaches_to_is_stopped(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "lonely-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            runtime.attach_timeout = 0.5
            exits = runtime.exits()
            dyno = await runtime.start(app.spec("run.1", "exec sleep 600", attach=True))
            ended = await next_exit(exits)
            # The process driver's dyno ran and got SIGTERM; docker's was never started.
            assert (ended.dyno.id, ended.status) == (dyno.id, 143 if driver == "process" else None)
            assert ended.stopped is not None
            with pytest.raises(DynoNotFound):
                await runtime.attach(dyno.id)

    run(scenario)


def test_one_attachment_per_dyno_and_only_to_attached_dynos(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "once-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver=driver) as runtime:
            detached = await runtime.start(app.spec("run.1", "exec sleep 600"))
            with pytest.raises(DynoError, match="cannot be attached to"):
                await runtime.attach(detached.id)
            attached = await runtime.start(app.spec("run.2", "exec sleep 600", attach=True))
            first = await runtime.attach(attached.id)
            with pytest.raises(DynoError, match="cannot be attached to"):
                await runtime.attach(attached.id)
            await first.close()
            with pytest.raises(DynoNotFound):
                await runtime.attach("no-such-dyno")
            if driver == "process":
                socket = tmp_path / "data" / "dynos" / attached.id / "attach.sock"
                assert not socket.exists()  # the one client is in; nobody else can connect

    run(scenario)


def test_the_attach_socket_is_the_platforms_alone(tmp_path: Path) -> None:
    app = App(tmp_path, "mode-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            dyno = await runtime.start(app.spec("run.1", "exec sleep 600", attach=True))
            socket = tmp_path / "data" / "dynos" / dyno.id / "attach.sock"
            assert socket.stat().st_mode & 0o777 == 0o600

    run(scenario)


def test_an_adopted_attached_dyno_can_be_attached_to(tmp_path: Path, driver: str) -> None:
    app = App(tmp_path, "adopted-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data, stop_all=False, driver=driver) as first:
            dyno = await first.start(app.spec("run.1", "read x; echo x=$x", attach=True))
        second = await open_runtime(data, driver)
        try:
            client = Client(await second.attach(dyno.id))
            await client.attachment.write(b"42\n")
            await client.until("x=42")
            assert await client.to_end() == 0
        finally:
            for left in await second.list():
                await second.stop(left.id, grace=0.2)
            await second.close()

    run(scenario)
