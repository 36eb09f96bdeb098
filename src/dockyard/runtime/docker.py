"""The ``docker`` driver: each dyno a container of its release's image, on this machine.

The release's image is its slug as one layer on the stack image
(:mod:`dockyard.runtime._docker_images`, :mod:`dockyard.stacks`), built on the first start
of a dyno of that release. A dyno's container gets the dyno contract:

- the release's config vars, ``PORT`` (web), ``DYNO``, ``HOME=/app`` as its environment
  (not baked into the image); ``.profile.d/*.sh`` sourced, then the command under bash;
- its size's limits as the container's memory (swap off), CPU shares and pids limit; a
  dyno the kernel kills for its memory (Docker's ``OOMKilled``) ends with reason
  ``"memory"`` (R15);
- the app's uid, no capabilities, no new privileges: the image's files are read-only to it
  except ``/app``, whose writes land in the container's own layer and go with it; ``/tmp``
  is a tmpfs of half its memory;
- ``docker-init`` (tini) as its PID 1, which passes SIGTERM on to the command's whole process
  group; :meth:`DockerRuntime.stop` sends SIGTERM, waits out the grace period, then SIGKILL;
- the host's network, as with the ``process`` driver: a web dyno listens on ``$PORT`` on the
  host, where the router and the boot check reach it, and dynos reach add-ons on loopback.

Each container carries labels: the node's scope (a hash of the data directory, so two
control planes on one engine never touch each other's dynos) and the dyno's record, from
which a restarted :class:`DockerRuntime` adopts what runs. Output goes to the engine's
``json-file`` log, which outlives the control plane; a follower task per dyno copies it to
``<data>/docker/dynos/<id>/log`` in the runtime's format (``{"time", "stream", "line"}`` plus
the engine's ``ts``), resuming after a restart from the last line copied. An exit is
reported once its log has been copied in full; once taken (:meth:`DockerRuntime.exits`) the
container is removed.

An attached one-off dyno (``dockyard run``) is created at :meth:`~DockerRuntime.start` and
started by :meth:`~DockerRuntime.attach`, after the client's connection to its stdio is in
place, so none of its output is lost (:mod:`dockyard.runtime._docker_attach`). Nobody
attaching within ``attach_timeout`` removes it unstarted.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from dockyard.build import interpreters
from dockyard.formation import SIZES, Size
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
    _docker_attach,
)
from dockyard.runtime._docker_images import ReleaseImage, ReleaseImages, scope_of
from dockyard.runtime.docker_engine import SOCKET, Engine, EngineError
from dockyard.runtime.process import (
    DYNO_PATH,
    DYNO_RETENTION,
    MAX_ENDED_DYNOS,
    SLUG_IDLE,
    START,
    TIDY_INTERVAL,
    _prune_dynos,
    _read_json,
    _write_json,
    dyno_outputs,
)

__all__ = [
    "ATTACH_LABEL",
    "DYNO_LABEL",
    "SCOPE_LABEL",
    "DockerRuntime",
    "check_spec",
    "copy_log",
    "dyno_from",
    "scope_of",
    "stop_of",
    "usage_of",
]

log = logging.getLogger("dockyard.runtime")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*\.\d+$")
SCOPE_LABEL = "dockyard.scope"
DYNO_LABEL = "dockyard.dyno"
ATTACH_LABEL = "dockyard.attach"
# tini (docker-init) passes the signals it gets to the command's whole process group.
INIT_ENV = {"TINI_KILL_PROCESS_GROUP": "1"}
LOG_MAX_SIZE = "10m"
RETRY = 1.0  # seconds before following a log again after the engine dropped the stream


@dataclass
class _Running:
    dyno: Dyno
    container: str
    directory: Path
    attach: bool = False
    attached: bool = False  # an attached dyno's client came (it was started then)
    ended: asyncio.Future[Exit] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _stamp(engine_time: str) -> str:
    """The engine's RFC 3339 time (nanoseconds) as the runtime's (microseconds, ``Z``)."""
    head, _, fraction = engine_time.rstrip("Z").partition(".")
    return f"{head}.{(fraction + '000000')[:6]}Z"


def _unix(engine_time: str) -> str:
    """The engine's RFC 3339 time as seconds since the epoch with nanoseconds (``since=``)."""
    head, _, fraction = engine_time.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(head[:19], "%Y-%m-%dT%H:%M:%S"))
    return f"{seconds}.{(fraction + '000000000')[:9]}"


def _epoch(engine_time: str | None) -> float | None:
    if not engine_time or engine_time.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(_stamp(engine_time).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _cursor(path: Path) -> tuple[str, int] | None:
    """The engine time of the last line copied to ``path`` and how many lines had it."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            tail = handle.read()
    except FileNotFoundError:
        return None
    last: str | None = None
    count = 0
    for raw in reversed(tail.splitlines()):
        try:
            stamp = str(json.loads(raw)["ts"])
        except (ValueError, KeyError, TypeError):
            continue
        if last is None:
            last = stamp
        if stamp != last:
            break
        count += 1
    return None if last is None else (last, count)


class DockerRuntime:
    """Dynos as containers of the Docker engine at ``socket``; use :meth:`open`."""

    attach_timeout = _attach.TIMEOUT
    hangup_grace = _attach.HANGUP_GRACE

    def __init__(
        self,
        data_dir: Path,
        engine: Engine,
        *,
        dyno_retention: float = DYNO_RETENTION,
        max_ended_dynos: int = MAX_ENDED_DYNOS,
        image_idle: float = SLUG_IDLE,
    ) -> None:
        self._root = data_dir / "docker" / "dynos"
        self._engine = engine
        self._scope = scope_of(data_dir)
        self._images = ReleaseImages(engine, data_dir / "docker" / "contexts", scope=self._scope)
        self._running: dict[str, _Running] = {}
        self._exits: asyncio.Queue[Exit] = asyncio.Queue()
        self._dyno_retention = dyno_retention
        self._max_ended_dynos = max_ended_dynos
        self._image_idle = image_idle
        self._dyno_ended = asyncio.Event()
        self._tidier: asyncio.Task[None] | None = None
        self._side: set[asyncio.Task[Any]] = set()

    @classmethod
    async def open(cls, data_dir: Path, *, socket_path: Path = SOCKET) -> DockerRuntime:
        """A runtime on ``data_dir`` that has adopted its containers that still run."""
        engine = Engine(socket_path)
        try:
            await engine.version()
        except EngineError as exc:
            await engine.close()
            raise DynoError(f"the docker runtime needs a Docker engine: {exc.message}") from exc
        runtime = cls(data_dir, engine)
        runtime._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await runtime._adopt_all()
        except EngineError:
            await runtime.close()
            raise
        runtime._tidier = asyncio.create_task(runtime._tidy_now_and_then())
        return runtime

    # -- adoption ------------------------------------------------------------------------

    async def _adopt_all(self) -> None:
        seen: set[str] = set()
        for summary in await self._engine.containers({SCOPE_LABEL: self._scope}):
            labels = summary.get("Labels") or {}
            try:
                record = json.loads(labels[DYNO_LABEL])
            except (KeyError, ValueError):
                continue
            seen.add(str(record["id"]))
            await self._adopt(str(summary["Id"]), record, labels.get(ATTACH_LABEL) == "1")
        # Dynos whose container went while nobody watched (removed by hand, or lost).
        for directory in sorted(self._root.iterdir()):
            record = _read_json(directory / "dyno.json")
            if record is None or directory.name in seen or (directory / "acknowledged").exists():
                continue
            dyno = dyno_from(record)
            self._exits.put_nowait(Exit(dyno, None, time.time(), stop_of(directory)))

    async def _adopt(self, container: str, record: dict[str, Any], attach: bool) -> None:
        directory = self._root / str(record["id"])
        state = await self._engine.inspect(container)
        if state is None:
            return
        status = state.get("State") or {}
        if (directory / "acknowledged").exists() or not (directory / "dyno.json").exists():
            # Its exit was taken, or its start was cut short before it was recorded.
            await self._engine.remove(container)
            return
        dyno = dyno_from(_read_json(directory / "dyno.json") or record)
        running = _Running(dyno, container, directory, attach=attach)
        if status.get("Status") not in ("created", "running", "paused", "restarting"):
            # Ended while nobody watched: the rest of its output, then its exit, now.
            if attach:
                await self._ended(running)
            else:
                await self._follow(running)
            return
        self._running[dyno.id] = running
        if status.get("Status") == "created":
            if attach:
                running.tasks.append(
                    asyncio.create_task(self._attach_deadline(running, dyno.started_at))
                )
            else:
                await self._engine.remove(container)
                del self._running[dyno.id]
                shutil.rmtree(directory, ignore_errors=True)
            return
        if attach:
            running.attached = True
            running.tasks.append(asyncio.create_task(self._wait_attached(running)))
            if status.get("Running"):
                # Its client's connection went with the last control plane: hang it up.
                self._spawn(self._hang_up(dyno.id))
        else:
            running.tasks.append(asyncio.create_task(self._follow(running)))

    # -- starting ------------------------------------------------------------------------

    async def start(self, spec: DynoSpec) -> Dyno:
        size = check_spec(spec)
        image = await self._images.for_spec(spec)
        dyno_id = f"{spec.app_id}.{spec.name}.{uuid.uuid4().hex[:12]}"
        directory = self._root / dyno_id
        port = spec.port if spec.port is not None else (self._free_port() if spec.web else None)
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
            pid=0,
            started_at=time.time(),
            log_path=directory / "log",
        )
        record = {**asdict(dyno), "log_path": str(dyno.log_path)}
        config = self._config(spec, image, record, size)
        directory.mkdir(mode=0o700)
        try:
            container = await self._engine.create(f"dyno-{dyno_id}", config)
        except EngineError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise DynoError(f"could not create the dyno's container: {exc.message}") from exc
        running = _Running(dyno, container, directory, attach=spec.attach)
        if spec.attach:
            _write_json(directory / "dyno.json", record)
            self._running[dyno_id] = running
            running.tasks.append(asyncio.create_task(self._attach_deadline(running, time.time())))
            return dyno
        try:
            await self._engine.start(container)
            state = await self._engine.inspect(container) or {}
        except EngineError as exc:
            await self._engine.remove(container)
            shutil.rmtree(directory, ignore_errors=True)
            raise DynoError(f"could not start the dyno's container: {exc.message}") from exc
        pid = int((state.get("State") or {}).get("Pid") or 0)
        dyno = _with_pid(dyno, pid)
        running.dyno = dyno
        _write_json(directory / "dyno.json", {**record, "pid": pid})
        self._running[dyno_id] = running
        running.tasks.append(asyncio.create_task(self._follow(running)))
        return dyno

    def _config(
        self, spec: DynoSpec, image: ReleaseImage, record: dict[str, Any], size: Size
    ) -> dict[str, Any]:
        """The dyno's container: its command, environment, labels and limits."""
        env = {"PATH": DYNO_PATH, **spec.env, "HOME": "/app", "DYNO": spec.name, **INIT_ENV}
        if image.dockerfile:
            # The image's own PATH, HOME and working directory; the command under /bin/sh.
            env = {**spec.env, "DYNO": spec.name, **INIT_ENV}
        if record["port"] is not None:
            env["PORT"] = str(record["port"])
        script = START
        if spec.attach and spec.tty:
            rows, columns = _terminal_size(spec.env)
            script = f"stty rows {rows} cols {columns} 2>/dev/null; " + START
        argv = ["/bin/bash", "-c", script, "dyno", spec.command]
        if image.dockerfile:
            argv = ["/bin/sh", "-c", spec.command]
        uid = spec.app_uid if os.geteuid() == 0 else os.geteuid()
        tmp = f"rw,nosuid,nodev,size={size.memory_bytes // 2},mode=1777"
        # Interpreters outside /usr that virtualenvs in slugs link to (as the process driver).
        binds = [f"{m.source}:{m.target}:ro" for m in interpreters.mounts()]
        return {
            "Image": image.reference,
            "Entrypoint": [],
            "Cmd": argv,
            "Env": [f"{key}={value}" for key, value in env.items()],
            "WorkingDir": "" if image.dockerfile else "/app",
            "User": f"{uid}:{uid}",
            "Labels": {
                SCOPE_LABEL: self._scope,
                DYNO_LABEL: json.dumps(record),
                ATTACH_LABEL: "1" if spec.attach else "0",
                "dockyard.app": spec.app_id,
                "dockyard.app-name": spec.app_name,
            },
            "Tty": spec.attach and spec.tty,
            "OpenStdin": spec.attach,
            "StdinOnce": spec.attach,
            "AttachStdin": spec.attach,
            "AttachStdout": spec.attach,
            "AttachStderr": spec.attach,
            "HostConfig": {
                "NetworkMode": "host",
                "Init": True,
                "Memory": size.memory_bytes,
                "MemorySwap": size.memory_bytes,
                "CpuShares": size.cpu_shares,
                "PidsLimit": size.max_processes,
                "Tmpfs": {"/tmp": tmp},  # noqa: S108 - the container's own tmpfs
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "IpcMode": "private",
                "Binds": [] if image.dockerfile else binds,
                "LogConfig": {"Type": "json-file", "Config": {"max-size": LOG_MAX_SIZE}},
                "RestartPolicy": {"Name": "no"},
            },
        }

    def _free_port(self) -> int:
        taken = {r.dyno.port for r in self._running.values()}
        while True:
            with socket.socket() as sock:
                sock.bind(("", 0))
                port = int(sock.getsockname()[1])
            if port not in taken:
                return port

    # -- output and ends -----------------------------------------------------------------

    async def _follow(self, running: _Running) -> None:
        """Copy the container's log to the dyno's, until it stopped; then report its end."""
        follow = True
        while True:
            try:
                await copy_log(
                    self._engine, running.container, running.dyno.log_path, follow=follow
                )
            except EngineError as exc:
                log.warning("following %s's output: %s", running.dyno.name, exc.message)
            if not follow:
                break
            state = await self._inspect_quietly(running.container)
            if state is None:
                break
            if not (state.get("State") or {}).get("Running"):
                # The followed stream can end before the engine logged the container's
                # last output (a line without a newline, say): read once more, to the end.
                follow = False
                continue
            await asyncio.sleep(RETRY)  # the engine dropped the stream; it runs on
        await self._ended(running)

    async def _inspect_quietly(self, container: str) -> dict[str, Any] | None:
        while True:
            try:
                return await self._engine.inspect(container)
            except EngineError as exc:
                log.warning("the Docker engine did not answer (will retry): %s", exc.message)
                await asyncio.sleep(RETRY)

    async def _wait_attached(self, running: _Running) -> None:
        while True:
            try:
                await self._engine.wait(running.container)
                break
            except EngineError as exc:
                log.warning("waiting for %s: %s", running.dyno.name, exc.message)
                state = await self._inspect_quietly(running.container)
                if state is None or not (state.get("State") or {}).get("Running"):
                    break
                await asyncio.sleep(RETRY)
        await self._ended(running)

    async def _ended(self, running: _Running) -> None:
        state = (await self._inspect_quietly(running.container) or {}).get("State") or {}
        status: int | None = state.get("ExitCode") if state else None
        at = _epoch(state.get("FinishedAt")) or time.time()
        reason = "memory" if state.get("OOMKilled") and status == 137 else None
        ended = Exit(running.dyno, status, at, stop_of(running.directory, status), reason)
        self._finish(running, ended)

    def _finish(self, running: _Running, ended: Exit) -> None:
        if self._running.get(running.dyno.id) is running:
            del self._running[running.dyno.id]
        if not running.ended.done():
            running.ended.set_result(ended)
            self._exits.put_nowait(ended)
            self._dyno_ended.set()

    # -- attached dynos ------------------------------------------------------------------

    async def _attach_deadline(self, running: _Running, since: float) -> None:
        await asyncio.sleep(max(0.0, since + self.attach_timeout - time.time()))
        if running.attached:
            return
        running.attached = True  # nobody can attach now
        _write_json(running.directory / "stop.json", {"grace_exceeded": False})
        with contextlib.suppress(EngineError):
            await self._engine.remove(running.container)
        self._finish(running, Exit(running.dyno, None, time.time(), stop_of(running.directory)))

    async def attach(self, dyno_id: str) -> Attachment:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        if not running.attach or running.attached:
            raise DynoError(
                f"dyno {running.dyno.name} cannot be attached to: it runs detached, "
                "or a client attached to it already"
            )
        running.attached = True
        try:
            reader, writer = await self._engine.attach(running.container)
            await self._engine.start(running.container)
        except EngineError as exc:
            self._spawn(self._remove_unstarted(running))
            raise DynoError(f"could not start dyno {running.dyno.name}: {exc.message}") from exc
        state = await self._engine.inspect(running.container) or {}
        pid = int((state.get("State") or {}).get("Pid") or 0)
        running.dyno = _with_pid(running.dyno, pid)
        record = {**asdict(running.dyno), "log_path": str(running.dyno.log_path)}
        _write_json(running.directory / "dyno.json", record)
        running.tasks.append(asyncio.create_task(self._wait_attached(running)))
        tty = bool((state.get("Config") or {}).get("Tty"))
        return _docker_attach.ContainerAttachment(
            reader,
            writer,
            tty=tty,
            ended=running.ended,
            resize=lambda rows, columns: self._engine.resize(running.container, rows, columns),
            hang_up=lambda: self._spawn(self._hang_up(dyno_id)),
        )

    async def _remove_unstarted(self, running: _Running) -> None:
        _write_json(running.directory / "stop.json", {"grace_exceeded": False})
        with contextlib.suppress(EngineError):
            await self._engine.remove(running.container)
        self._finish(running, Exit(running.dyno, None, time.time(), stop_of(running.directory)))

    async def _hang_up(self, dyno_id: str) -> None:
        with contextlib.suppress(DynoNotFound):
            await self.stop(dyno_id, self.hangup_grace)

    # -- stopping ------------------------------------------------------------------------

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        _write_json(running.directory / "stop.json", {"grace_exceeded": False})
        if running.attach and not running.attached:
            running.attached = True
            await self._remove_unstarted(running)
        else:
            try:
                await self._engine.kill(running.container, "TERM")
            except EngineError as exc:
                raise DynoError(f"could not stop dyno {running.dyno.name}: {exc.message}") from exc
        try:
            async with asyncio.timeout(grace):
                ended = await asyncio.shield(running.ended)
        except TimeoutError:
            _write_json(running.directory / "stop.json", {"grace_exceeded": True})
            try:
                await self._engine.kill(running.container, "KILL")
            except EngineError as exc:
                raise DynoError(f"could not kill dyno {running.dyno.name}: {exc.message}") from exc
            ended = await running.ended
        assert ended.stopped is not None
        return ended.stopped

    # -- what runs -----------------------------------------------------------------------

    async def usage(self, dyno_id: str) -> Usage:
        running = self._running.get(dyno_id)
        if running is None:
            raise DynoNotFound(f"no dyno {dyno_id} runs here")
        return usage_of(await self._engine.stats(running.container))

    async def list(self) -> list[Dyno]:
        return [running.dyno for running in self._running.values()]

    async def exits(self) -> AsyncIterator[Exit]:
        while True:
            ended = await self._exits.get()
            yield ended
            # Taken: a restarted control plane does not report it again, and the container
            # (its log copied) can go.
            directory = self._root / ended.dyno.id
            if directory.is_dir():
                (directory / "acknowledged").touch()
            self._spawn(self._remove_container_of(ended.dyno.id))

    async def _remove_container_of(self, dyno_id: str) -> None:
        try:
            await self._engine.remove(f"dyno-{dyno_id}")
        except EngineError as exc:
            log.warning("could not remove the container of dyno %s: %s", dyno_id, exc.message)

    async def outputs(self) -> Sequence[DynoOutput]:
        return await dyno_outputs(self._root)

    async def tidy(self, now: float | None = None) -> None:
        """Remove ended dynos' directories (as the process driver does, see its tidy()),
        and release images no container here has used for ``image_idle`` seconds."""
        now = time.time() if now is None else now
        removed = await asyncio.to_thread(
            _prune_dynos,
            self._root,
            before=now - self._dyno_retention,
            keep=self._max_ended_dynos,
            running=set(self._running),
        )
        containers = await self._engine.containers({SCOPE_LABEL: self._scope})
        used = {str(c.get("ImageID")) for c in containers}
        images = await self._images.prune(used=used, before=now - self._image_idle)
        if removed or images:
            log.info(
                "removed %d ended dynos' directories, %d unused release images",
                len(removed),
                len(images),
            )

    async def _tidy_now_and_then(self) -> None:
        while True:
            try:
                await self.tidy()
            except (OSError, EngineError) as exc:
                log.warning("could not remove ended dynos' directories or images: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TIDY_INTERVAL):
                    await self._dyno_ended.wait()
            self._dyno_ended.clear()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def close(self) -> None:
        tasks = [t for r in self._running.values() for t in r.tasks]
        tasks += list(self._side)
        if self._tidier is not None:
            tasks.append(self._tidier)
            self._tidier = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        await self._engine.close()


def dyno_from(record: dict[str, Any]) -> Dyno:
    """The dyno a ``dyno.json`` record holds (a driver may record more beside it)."""
    known = {f.name for f in fields(Dyno)}
    values = {k: v for k, v in record.items() if k in known}
    return Dyno(**{**values, "log_path": Path(record["log_path"])})


def _with_pid(dyno: Dyno, pid: int) -> Dyno:
    return Dyno(**{**asdict(dyno), "pid": pid})


def stop_of(directory: Path, status: int | None = None) -> Stopped | None:
    """How the platform stopped the dyno (``stop.json``), None when it did not."""
    stop = _read_json(directory / "stop.json")
    return None if stop is None else Stopped(status, bool(stop.get("grace_exceeded")))


def _terminal_size(env: dict[str, str] | Any) -> tuple[int, int]:
    sizes = []
    for name, default in (("LINES", 24), ("COLUMNS", 80)):
        value = str(env.get(name, ""))
        sizes.append(int(value) if value.isdigit() and 0 < int(value) < 0x10000 else default)
    return sizes[0], sizes[1]


def check_spec(spec: DynoSpec) -> Size:
    """The spec's size, once its name, command and size are known to be valid."""
    if not _NAME.match(spec.name):
        raise DynoError(f"invalid dyno name {spec.name!r}; expected a form like web.1")
    if not spec.command.strip():
        raise DynoError(f"dyno {spec.name} has no command")
    size = SIZES.get(spec.size)
    if size is None:
        raise DynoError(f"unknown dyno size {spec.size!r}; known sizes are {', '.join(SIZES)}")
    return size


async def copy_log(
    engine: Engine, source: str, path: Path, *, follow: bool, kind: str = "containers"
) -> None:
    """Append a container's (or a Swarm service's) log to the dyno's at ``path``, from
    where the last copy stopped, in the runtime's format; with ``follow`` until the stream
    ends."""
    cursor = await asyncio.to_thread(_cursor, path)
    last, count = cursor if cursor is not None else (None, 0)
    skip_at, skip = last, count
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        since = None if last is None else _unix(last)
        async for record in engine.logs(source, since=since, follow=follow, kind=kind):
            if record.time == skip_at and skip > 0:
                skip -= 1  # copied before: `since` is inclusive
                continue
            line = {
                "time": _stamp(record.time),
                "stream": record.stream,
                "line": record.text.removesuffix("\n").removesuffix("\r"),
                "ts": record.time,
            }
            os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def usage_of(stats: dict[str, Any]) -> Usage:
    """A container's usage from the engine's stats."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0)
    pids = int((stats.get("pids_stats") or {}).get("current", 0) or 0)
    return Usage(
        memory_bytes=max(0, int(memory.get("usage", 0)) - int(inactive)),
        cpu_seconds=int(cpu) / 1e9,
        processes=max(0, pids - 1),  # not counting the init
    )
