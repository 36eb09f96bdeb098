"""Attached dynos (``dockyard run``): their terminal or pipes, and the socket to them.

A dyno started with ``attach`` does not write to its log. Its supervisor
(:mod:`dockyard.runtime._supervisor`) makes a pseudo-terminal for it (with ``tty``) or three
pipes, and listens on ``<dyno dir>/attach.sock`` (mode 0600) for one connection: the control
plane's :class:`SocketAttachment`. Until that connection comes the dyno's output waits in
its terminal or pipes. Both ways the socket carries frames, a kind byte and a length before
each payload::

    control plane → supervisor   STDIN bytes · RESIZE rows, columns · EOF (end of stdin)
    supervisor → control plane   ATTACHED, first · STDOUT bytes · STDERR bytes ·
                                 EXIT {"status": N}, last

When the connection closes before the dyno ended, or none came within the attach timeout,
the supervisor hangs the dyno up: it closes the terminal (its processes get SIGHUP) or the
pipes, sends SIGTERM to every process of the dyno and SIGKILLs what is left after a grace
period, and records that the platform stopped it.

On a terminal the dyno's processes run in a session of their own with the terminal as its
controlling terminal (``setsid --ctty``), so Ctrl-C reaches them as SIGINT; the sandbox's
``/dev/pts`` then holds that terminal alone, under the same name as on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.runtime import DynoError, Output

SOCKET = "attach.sock"
TIMEOUT = 60.0  # seconds for a client to attach before the dyno is hung up
HANGUP_GRACE = 10.0  # seconds from SIGTERM to SIGKILL when a dyno is hung up
HELLO_TIMEOUT = 10.0  # seconds for a supervisor to take a connection
STDIN, STDOUT, STDERR, EXIT, RESIZE, EOF, ATTACHED = range(7)
HEADER = struct.Struct("!BI")
MAX_FRAME = 1024 * 1024
_INPUT_BUFFER = 1024 * 1024  # stdin bytes held for a dyno that does not read them
_STREAMS = {STDOUT: "stdout", STDERR: "stderr"}
_WINSIZE = struct.Struct("HHHH")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameError(Exception):
    """The other end sent something that is not a frame of this protocol."""


@dataclass
class Frames:
    """Splits a byte stream into ``(kind, payload)`` frames."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        found = []
        while len(self.buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self.buffer)
            if length > MAX_FRAME:
                raise FrameError(f"a frame of {length} bytes is over the limit")
            if len(self.buffer) < HEADER.size + length:
                break
            found.append((kind, bytes(self.buffer[HEADER.size : HEADER.size + length])))
            del self.buffer[: HEADER.size + length]
        return found


def _socket_path(directory_fd: int) -> str:
    # Through the directory's descriptor: dyno directories can be longer than the 107 bytes
    # a unix socket's path may have.
    return f"/proc/self/fd/{directory_fd}/{SOCKET}"


def _set_size(terminal: int, rows: int, columns: int) -> None:
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, _WINSIZE.pack(rows, columns, 0, 0))


# -- the supervisor's side ------------------------------------------------------------------


@dataclass
class Terminal:
    """What the supervisor holds of an attached dyno: its stdio and the socket to attach to."""

    listener: socket.socket
    path: Path
    child: tuple[int, int, int]  # the sandbox's stdin, stdout and stderr
    input: int  # where the client's bytes go: the terminal, or the stdin pipe
    outputs: dict[int, str]  # what the dyno writes, by stream
    tty: str | None  # the terminal's path on the host
    timeout: float

    @classmethod
    def open(cls, directory: Path, options: Mapping[str, Any]) -> Terminal:
        """Listen on the dyno's socket and make its terminal (``tty``) or pipes."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        umask = os.umask(0o177)  # the socket is the platform's alone (mode 0600)
        try:
            listener.bind(_socket_path(directory_fd))
        finally:
            os.umask(umask)
            os.close(directory_fd)
        listener.listen(1)
        listener.setblocking(False)
        timeout = float(options.get("timeout", TIMEOUT))
        if options.get("tty"):
            master, slave = os.openpty()
            _set_size(slave, int(options.get("rows") or 24), int(options.get("columns") or 80))
            if options.get("uid") is not None:
                # The dyno's own terminal, as login gives a user theirs.
                os.fchown(slave, int(options["uid"]), -1)
            os.set_blocking(master, False)
            return cls(
                listener,
                directory / SOCKET,
                child=(slave, slave, slave),
                input=master,
                outputs={master: "stdout"},
                tty=os.ttyname(slave),
                timeout=timeout,
            )
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.set_blocking(stdin_w, False)
        return cls(
            listener,
            directory / SOCKET,
            child=(stdin_r, out_w, err_w),
            input=stdin_w,
            outputs={out_r: "stdout", err_r: "stderr"},
            tty=None,
            timeout=timeout,
        )

    def sandbox_argv(self, argv: list[str]) -> list[str]:
        """bubblewrap's command line with the terminal in the sandbox's ``/dev/pts``."""
        if self.tty is None:
            return argv
        at = argv.index("--")  # the end of bubblewrap's own options
        mounts = ["--tmpfs", "/dev/pts", "--dev-bind", self.tty, self.tty]
        return [*argv[:at], *mounts, *argv[at:]]

    def close_child(self) -> None:
        """Close the sandbox's ends, which it has now (or never will)."""
        for fd in set(self.child):
            os.close(fd)

    def close_input(self) -> None:
        if self.input >= 0 and self.input not in self.outputs:
            os.close(self.input)
        self.input = -1

    def close_output(self, fd: int) -> None:
        del self.outputs[fd]
        if fd == self.input:
            self.input = -1
        os.close(fd)

    def close(self) -> None:
        """Close what is left open: the listener (and its socket file) and our ends."""
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close_input()
        for fd in list(self.outputs):
            self.close_output(fd)


def serve(
    terminal: Terminal,
    process: subprocess.Popen[bytes],
    *,
    grace: float = HANGUP_GRACE,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Connect the dyno to its one client until it ends, or hang it up (see the module)."""
    session = _Session(terminal, process)
    try:
        ended = session.run(deadline=clock() + terminal.timeout, clock=clock)
    finally:
        terminal.close()  # a terminal's processes get SIGHUP; pipes' readers get EOF
    if ended:
        process.wait()
        session.finish()
        return
    session.drop()
    if process.poll() is not None:
        return  # it had ended by itself; nobody came for its output
    _terminate(process.pid)
    exceeded = False
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        # The sandbox's other processes die with it (bubblewrap's --die-with-parent).
        exceeded = True
        process.kill()
        process.wait()
    stop = terminal.path.parent / "stop.json"  # read as ProcessRuntime.stop writes it
    stop.with_suffix(".tmp").write_text(json.dumps({"grace_exceeded": exceeded}))
    stop.with_suffix(".tmp").rename(stop)


def _terminate(sandbox: int) -> None:
    """SIGTERM to every process of the dyno (as :meth:`ProcessRuntime.stop` sends it)."""
    from dockyard.runtime.process import _signal_namespace

    _signal_namespace(sandbox, signal.SIGTERM, init_too=False)


class _Session:
    """The supervisor's loop between the dyno's stdio and the client's connection."""

    def __init__(self, terminal: Terminal, process: subprocess.Popen[bytes]) -> None:
        self.terminal = terminal
        self.process = process
        self.selector = selectors.DefaultSelector()
        self.client: socket.socket | None = None
        self.frames = Frames()
        self.pending = bytearray()  # for the dyno's stdin
        self.input_ending = False  # close stdin once ``pending`` is written
        self.interest: dict[int, int] = {}

    def _want(self, fd: int, events: int) -> None:
        """Watch ``fd`` for ``events`` (0: not at all)."""
        before = self.interest.get(fd, 0)
        if events == before:
            return
        if not before:
            self.selector.register(fd, events)
        elif not events:
            self.selector.unregister(fd)
        else:
            self.selector.modify(fd, events)
        if events:
            self.interest[fd] = events
        else:
            self.interest.pop(fd, None)

    @property
    def input_open(self) -> bool:
        return self.terminal.input >= 0

    def _update_input(self) -> None:
        """Watch the input for room while bytes wait; take no more from the client meanwhile."""
        term = self.terminal
        if self.input_open:
            out = selectors.EVENT_READ if term.input in term.outputs else 0
            self._want(term.input, out | (selectors.EVENT_WRITE if self.pending else 0))
        if self.client is not None:
            full = len(self.pending) >= _INPUT_BUFFER
            self._want(self.client.fileno(), 0 if full else selectors.EVENT_READ)

    def run(self, deadline: float, clock: Callable[[], float]) -> bool:
        """True once the dyno ended and its output went to the client (or the platform
        stopped it before one came); False to hang it up."""
        listener = self.terminal.listener
        self._want(listener.fileno(), selectors.EVENT_READ)
        exited = os.pidfd_open(self.process.pid)
        self._want(exited, selectors.EVENT_READ)
        try:
            return self._loop(deadline, clock, exited)
        finally:
            self._want(exited, 0)
            os.close(exited)

    def _loop(self, deadline: float, clock: Callable[[], float], exited: int) -> bool:
        listener = self.terminal.listener
        while self.terminal.outputs or self.client is None:
            timeout = None if self.client is not None else max(0.0, deadline - clock())
            events = self.selector.select(timeout)
            if not events and self.client is None:
                return False  # nobody attached in time
            for key, mask in events:
                fd = int(key.fd)
                if fd == exited:
                    # Ended before its client came: its output waits for the client, unless
                    # the platform stopped it (ProcessRuntime.stop says so first).
                    if self.client is None and self.terminal.path.with_name("stop.json").exists():
                        return True
                    self._want(exited, 0)
                elif fd == listener.fileno():
                    self._accept()
                elif self.client is not None and fd == self.client.fileno():
                    if not self._from_client():
                        return False
                else:
                    if mask & selectors.EVENT_WRITE:
                        self._write_input()
                    if mask & selectors.EVENT_READ and not self._from_dyno(fd):
                        return False
        return True

    def _accept(self) -> None:
        try:
            client, _ = self.terminal.listener.accept()
        except BlockingIOError:
            return
        client.setblocking(True)
        self.client = client
        # One attachment per dyno: nobody else can connect from now on.
        self._want(self.terminal.listener.fileno(), 0)
        with contextlib.suppress(FileNotFoundError):
            self.terminal.path.unlink()
        self.terminal.listener.close()
        # Said first: a connection that was still in the listener's queue gets nothing.
        self._send(frame(ATTACHED))
        for fd in self.terminal.outputs:
            self._want(fd, selectors.EVENT_READ)
        self._update_input()

    def _from_client(self) -> bool:
        assert self.client is not None
        try:
            data = self.client.recv(65536)
        except OSError:
            data = b""
        if not data:
            return False
        try:
            frames = self.frames.feed(data)
        except FrameError:
            return False
        for kind, payload in frames:
            if kind == STDIN and self.input_open and not self.input_ending:
                self.pending += payload
            elif kind == RESIZE and self.terminal.tty is not None and len(payload) == 4:
                rows, columns = struct.unpack("!HH", payload)
                with contextlib.suppress(OSError):
                    _set_size(self.terminal.input, rows, columns)
            elif kind == EOF and self.terminal.tty is None:
                self.input_ending = True
        self._write_input()
        return True

    def _write_input(self) -> None:
        term = self.terminal
        while self.pending and self.input_open:
            try:
                written = os.write(term.input, self.pending)
            except BlockingIOError:
                break
            except OSError:  # the dyno closed its stdin: what it did not read is dropped
                self.pending.clear()
                self._close_input()
                break
            del self.pending[:written]
        if self.input_ending and not self.pending and self.input_open:
            self._close_input()
        self._update_input()

    def _close_input(self) -> None:
        term = self.terminal
        self._want(term.input, selectors.EVENT_READ if term.input in term.outputs else 0)
        term.close_input()

    def _from_dyno(self, fd: int) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: a terminal's last writer went away
            data = b""
        if not data:
            self._want(fd, 0)
            self.terminal.close_output(fd)
            return True
        stream = STDOUT if self.terminal.outputs[fd] == "stdout" else STDERR
        return self._send(frame(stream, data))

    def _send(self, data: bytes) -> bool:
        assert self.client is not None
        try:
            self.client.sendall(data)
        except OSError:
            return False
        return True

    def finish(self) -> None:
        """Tell the client (if one came) how the dyno exited, and part."""
        code = self.process.returncode
        status = code if code >= 0 else 128 - code
        if self.client is not None:
            self._send(frame(EXIT, json.dumps({"status": status}).encode()))
        self.drop()

    def drop(self) -> None:
        self.selector.close()
        if self.client is not None:
            self.client.close()


# -- the control plane's side ---------------------------------------------------------------


class SocketAttachment:
    """:class:`~dockyard.runtime.Attachment` through a supervisor's socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._status: int | None = None
        self._ended = False

    @property
    def status(self) -> int | None:
        return self._status

    async def read(self) -> Output | None:
        while not self._ended:
            try:
                kind, length = HEADER.unpack(await self._reader.readexactly(HEADER.size))
                if length > MAX_FRAME:
                    raise FrameError(f"a frame of {length} bytes is over the limit")
                payload = await self._reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, FrameError):
                self._ended = True  # the supervisor went away without a word
                break
            if kind in _STREAMS:
                return Output(_STREAMS[kind], payload)
            if kind == EXIT:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    self._status = int(json.loads(payload)["status"])
                self._ended = True
        self._writer.close()  # nothing more comes, nor can go
        return None

    async def _send(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        # The dyno may have ended meanwhile: input to it goes nowhere, as to a closed pipe.
        with contextlib.suppress(ConnectionError):
            self._writer.write(data)
            await self._writer.drain()

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_FRAME):
            await self._send(frame(STDIN, data[start : start + MAX_FRAME]))

    async def close_input(self) -> None:
        await self._send(frame(EOF))

    async def resize(self, rows: int, columns: int) -> None:
        size = [max(1, min(n, 0xFFFF)) for n in (rows, columns)]
        await self._send(frame(RESIZE, struct.pack("!HH", *size)))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def connect(directory: Path, name: str) -> SocketAttachment:
    """Attach to the dyno whose directory is ``directory``."""
    refused = DynoError(
        f"dyno {name} cannot be attached to: it runs detached, or a client attached to it already"
    )
    directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        reader, writer = await asyncio.open_unix_connection(_socket_path(directory_fd))
    except OSError as exc:
        raise refused from exc
    finally:
        os.close(directory_fd)
    try:
        async with asyncio.timeout(HELLO_TIMEOUT):
            hello = await reader.readexactly(HEADER.size)
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
        writer.close()
        raise refused from exc
    if HEADER.unpack(hello) != (ATTACHED, 0):
        writer.close()
        raise refused
    return SocketAttachment(reader, writer)
