"""The ``swarm`` driver: each dyno a one-replica service of the Docker Swarm this machine
manages, on whichever node Swarm places it (see docs/swarm.md).

The release's image is built here as the ``docker`` driver builds it
(:mod:`dockyard.runtime._docker_images`), then tagged and pushed to the platform's registry
(``DOCKYARD_REGISTRY``), from which every node pulls. A dyno's service
(:func:`~dockyard.runtime.swarm_services.dyno_service`) carries the dyno contract as a
container of the ``docker`` driver does (environment, ``PORT``, ``DYNO``, the size's memory
and process limits, the app's uid, no capabilities, a tmpfs ``/tmp``, ``docker-init``,
SIGTERM then SIGKILL after the grace period) and runs on its node's host network: the
router and the boot check reach a web dyno at its node's address and its ``PORT``.

:meth:`SwarmRuntime.start` returns once Swarm runs the dyno's task, with the node's address
as :attr:`Dyno.host`; a dyno that no node can take within :data:`UNPLACED` seconds fails to
start with Swarm's reason (``no suitable node (insufficient resources on 2 nodes)``), and
its service is removed. One watcher polls the tasks of every dyno; a task that ended
(its command exited, or Swarm stopped it because its node drains or went down) ends its
dyno, after the rest of its output was copied: the manager's engine serves each service's
log from any node, and a follower per dyno copies it to ``<data>/swarm/dynos/<id>/log`` as
the ``docker`` driver does (resuming after a restart of the control plane, from the
services it finds by their labels). Once its exit is taken the service is removed.

A one-off dyno with an attached terminal (``dockyard run``) runs on this machine, as a
container of the ``docker`` driver, which this driver holds: its client's stdio goes
through the local engine. Detached one-off dynos and the release phase run as services on
any node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockyard.build import interpreters
from dockyard.runtime import (
    Attachment,
    Dyno,
    DynoError,
    DynoOutput,
    DynoSpec,
    Exit,
    Stopped,
    Usage,
)
from dockyard.runtime._docker_images import ReleaseImages, scope_of
from dockyard.runtime.docker import (
    DYNO_LABEL,
    INIT_ENV,
    RETRY,
    SCOPE_LABEL,
    DockerRuntime,
    check_spec,
    copy_log,
    dyno_from,
    stop_of,
    usage_of,
)
from dockyard.runtime.docker_engine import SOCKET, Engine, EngineError
from dockyard.runtime.process import (
    DYNO_PATH,
    DYNO_RETENTION,
    MAX_ENDED_DYNOS,
    START,
    TIDY_INTERVAL,
    _prune_dynos,
    _read_json,
    _write_json,
    dyno_outputs,
)
from dockyard.runtime.swarm_services import DynoService, Mount, dyno_service, service_name

__all__ = ["SwarmRuntime"]

log = logging.getLogger("dockyard.runtime")
POLL = 0.5  # seconds between two looks at the dynos' tasks
START_TIMEOUT = 300.0  # seconds for a placed dyno's task to run (its node pulls the image)
UNPLACED = 15.0  # seconds a dyno may wait for a node before its start fails
PORTS = range(20000, 32768)  # web dynos' ports: below Linux's ephemeral range
_ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
_RUNNING = "running"
RETIRED = "node.id==retired"  # a placement no node has: a stopped dyno's service


@dataclass
class _Service:
    dyno: Dyno
    service: str
    task: str
    directory: Path
    last: dict[str, Any] = field(default_factory=dict)  # the task, as last seen
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Future[Exit] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    node_lost: bool = False  # its node went down: its end will never be reported


class SwarmRuntime:
    """Dynos as services of the swarm whose manager is the engine at ``socket``; use
    :meth:`open`."""

    unplaced = UNPLACED

    def __init__(
        self,
        data_dir: Path,
        engine: Engine,
        registry: str,
        local: DockerRuntime,
        *,
        grace: float = 30.0,
    ) -> None:
        self._root = data_dir / "swarm" / "dynos"
        self._engine = engine
        self._registry = registry
        self._local = local
        self._grace = grace
        self._scope = scope_of(data_dir)
        self._images = ReleaseImages(engine, data_dir / "docker" / "contexts", scope=self._scope)
        self._pushed: dict[str, str] = {}  # local image ID → its reference in the registry
        self._push_lock = asyncio.Lock()
        self._running: dict[str, _Service] = {}
        self._exits: asyncio.Queue[Exit] = asyncio.Queue()
        self._addresses: dict[str, str] = {}  # node ID → address
        self._network: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Task[Any]] = set()

    # Attached one-off dynos are the local docker driver's: its settings for them.
    @property
    def attach_timeout(self) -> float:
        return self._local.attach_timeout

    @attach_timeout.setter
    def attach_timeout(self, seconds: float) -> None:
        self._local.attach_timeout = seconds

    @property
    def hangup_grace(self) -> float:
        return self._local.hangup_grace

    @hangup_grace.setter
    def hangup_grace(self, seconds: float) -> None:
        self._local.hangup_grace = seconds

    @classmethod
    async def open(
        cls, data_dir: Path, *, registry: str | None, socket_path: Path = SOCKET
    ) -> SwarmRuntime:
        """A runtime on ``data_dir`` that has adopted its dynos' services."""
        if not registry:
            raise DynoError(
                "the swarm runtime needs DOCKYARD_REGISTRY, the registry every node pulls "
                "release images from (see docs/swarm.md)"
            )
        engine = Engine(socket_path)
        try:
            swarm = (await engine.info()).get("Swarm") or {}
        except EngineError as exc:
            await engine.close()
            raise DynoError(f"the swarm runtime needs a Docker engine: {exc.message}") from exc
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            await engine.close()
            raise DynoError(
                f"the Docker engine at {socket_path} is not a Swarm manager (its swarm is "
                f"{swarm.get('LocalNodeState') or 'inactive'}); run `docker swarm init` "
                "first (see docs/swarm.md)"
            )
        try:
            local = await DockerRuntime.open(data_dir, socket_path=socket_path)
        except DynoError:
            await engine.close()
            raise
        runtime = cls(data_dir, engine, registry, local)
        runtime._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            await runtime._adopt_all()
        except EngineError:
            await runtime.close()
            raise
        runtime._tasks = [
            asyncio.create_task(runtime._watch(), name="swarm-tasks"),
            asyncio.create_task(runtime._tidy_now_and_then(), name="swarm-tidy"),
        ]
        return runtime

    # -- adoption ------------------------------------------------------------------------

    async def _adopt_all(self) -> None:
        seen: set[str] = set()
        for service in await self._engine.services({SCOPE_LABEL: self._scope}):
            labels = (service.get("Spec") or {}).get("Labels") or {}
            try:
                dyno_id = str(json.loads(labels[DYNO_LABEL])["id"])
            except (KeyError, ValueError, TypeError):
                continue
            seen.add(dyno_id)
            directory = self._root / dyno_id
            record = _read_json(directory / "dyno.json")
            if (directory / "acknowledged").exists() or not isinstance(record, dict):
                # Its exit was taken, or its start was cut short before it was placed.
                await self._engine.remove_service(str(service["ID"]))
                continue
            running = _Service(dyno_from(record), str(service["ID"]), record["task"], directory)
            tasks = await self._engine.tasks({"service": [running.service]})
            task = next((t for t in tasks if t["ID"] == running.task), None)
            running.last = task or running.last
            if task is None or str((task.get("Status") or {}).get("State")) in _ENDED:
                running.gone.set()  # ended while nobody watched: its last output, its exit
            else:
                self._running[dyno_id] = running
            self._spawn(self._follow(running))
        # Dynos whose service went while nobody watched (removed by hand).
        for directory in sorted(self._root.iterdir()):
            record = _read_json(directory / "dyno.json")
            if record is None or directory.name in seen or (directory / "acknowledged").exists():
                continue
            self._exits.put_nowait(Exit(dyno_from(record), None, time.time(), stop_of(directory)))

    # -- starting ------------------------------------------------------------------------

    async def start(self, spec: DynoSpec) -> Dyno:
        if spec.attach:
            return await self._local.start(spec)  # its client's stdio goes through this node
        size = check_spec(spec)
        image = await self._images.for_spec(spec)
        pushed = await self._push(image.reference)
        unique = uuid.uuid4().hex[:12]
        dyno_id = f"{spec.app_id}.{spec.name}.{unique}"
        directory = self._root / dyno_id
        port = spec.port if spec.port is not None else (self._free_port() if spec.web else None)
        env = {"PATH": DYNO_PATH, **spec.env, "HOME": "/app", "DYNO": spec.name, **INIT_ENV}
        argv = ["/bin/bash", "-c", START, "dyno", spec.command]
        mounts = [Mount(str(m.source), m.target) for m in interpreters.mounts()]
        if image.dockerfile:
            env = {**spec.env, "DYNO": spec.name, **INIT_ENV}
            argv, mounts = ["/bin/sh", "-c", spec.command], []
        if port is not None:
            env["PORT"] = str(port)
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
        service = DynoService(
            name=service_name(spec.app_name, spec.name, unique),
            app_id=spec.app_id,
            app_name=spec.app_name,
            dyno_name=spec.name,
            process_type=spec.process_type,
            release_version=spec.release_version,
            image=pushed,
            argv=argv,
            size=size,
            network=await self._host_network(),
            env=env,
            user=f"{spec.app_uid}:{spec.app_uid}",
            workdir=None if image.dockerfile else "/app",
            mounts=mounts,
            labels={SCOPE_LABEL: self._scope, DYNO_LABEL: json.dumps({"id": dyno_id})},
            grace=self._grace,
        )
        directory.mkdir(mode=0o700)
        try:
            service_id = await self._engine.create_service(dyno_service(service))
        except EngineError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise DynoError(f"Swarm did not take dyno {spec.name}: {exc.message}") from exc
        try:
            task = await self._placed(service_id, spec.name)
        except BaseException:
            await self._engine.remove_service(service_id)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        dyno = Dyno(**{**asdict(dyno), "host": await self._address(str(task["NodeID"]))})
        _write_json(
            directory / "dyno.json",
            {**record, "host": dyno.host, "service": service_id, "task": str(task["ID"])},
        )
        running = _Service(dyno, service_id, str(task["ID"]), directory, last=task)
        self._running[dyno_id] = running
        self._spawn(self._follow(running))
        return dyno

    async def _push(self, reference: str) -> str:
        """The local image ``reference`` in the registry, pushed once per image."""
        found = await self._engine.image(reference)
        if found is None:
            raise DynoError(f"the release image {reference} is not on this machine")
        image_id = str(found["Id"])
        async with self._push_lock:
            if image_id in self._pushed:
                return self._pushed[image_id]
            repository, _, tag = reference.rpartition(":")
            target = f"{self._registry}/{repository}"
            tag = f"{tag}-{image_id.removeprefix('sha256:')[:12]}"
            try:
                await self._engine.tag(image_id, target, tag)
                await self._engine.push(f"{target}:{tag}")
            except EngineError as exc:
                raise DynoError(
                    f"could not push the release image to the registry {self._registry}: "
                    f"{exc.message}"
                ) from exc
            self._pushed[image_id] = f"{target}:{tag}"
            return self._pushed[image_id]

    async def _host_network(self) -> str:
        if self._network is None:
            reply = await self._engine.request("GET", "/networks/host", timeout=10.0)
            self._network = str(reply.json()["Id"])
        return self._network

    async def _placed(self, service: str, name: str) -> dict[str, Any]:
        """The service's task once it runs; DynoError with Swarm's reason if it cannot."""
        started = time.monotonic()
        while True:
            tasks = await self._engine.tasks({"service": [service]})
            task = min(tasks, key=lambda t: str(t.get("CreatedAt", "")), default=None)
            status = (task or {}).get("Status") or {}
            state = str(status.get("State", "new"))
            reason = str(status.get("Err") or status.get("Message") or state)
            waited = time.monotonic() - started
            if task is not None and state in (_RUNNING, "complete", "failed"):
                return task  # it ran (a quick command may have ended already: its exit)
            if state in _ENDED:
                raise DynoError(f"dyno {name} did not start on its node: {reason}")
            if state in ("new", "pending") and waited > self.unplaced:
                raise DynoError(f"no node can run dyno {name}: {reason}")
            if waited > START_TIMEOUT:
                raise DynoError(f"dyno {name} did not start within {START_TIMEOUT:g}s: {reason}")
            await asyncio.sleep(POLL)  # Swarm says nothing when a task changes: look again

    async def _address(self, node: str) -> str:
        if node not in self._addresses:
            for raw in await self._engine.nodes():
                address = str((raw.get("Status") or {}).get("Addr") or "")
                if address in ("", "0.0.0.0", "127.0.0.1"):  # noqa: S104 - a value, not a bind
                    manager = str((raw.get("ManagerStatus") or {}).get("Addr") or "")
                    address = manager.rpartition(":")[0] or "127.0.0.1"
                self._addresses[str(raw["ID"])] = address
        return self._addresses.get(node, "127.0.0.1")

    def _free_port(self) -> int:
        taken = {r.dyno.port for r in self._running.values()}
        while True:
            port = PORTS[secrets.randbelow(len(PORTS))]
            if port not in taken:
                return port

    # -- watching ------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Each dyno's task, every :data:`POLL` seconds: one that ended ends its dyno."""
        while True:
            services = [r.service for r in self._running.values() if not r.gone.is_set()]
            if services:
                try:
                    tasks = await self._engine.tasks({"service": services})
                except EngineError as exc:
                    log.warning("the swarm's tasks (will retry): %s", exc.message)
                    tasks = None
                if tasks is not None:
                    by_id = {str(t["ID"]): t for t in tasks}
                    for running in list(self._running.values()):
                        if running.service in services:
                            await self._look_at(running, by_id.get(running.task))
            await asyncio.sleep(POLL)

    async def _look_at(self, running: _Service, task: dict[str, Any] | None) -> None:
        if task is not None:
            running.last = task
        state = str(((task or {}).get("Status") or {}).get("State", "remove"))
        if state in _ENDED:
            running.gone.set()
        elif (task or {}).get("DesiredState") not in (None, _RUNNING) and await self._node_down(
            str((task or {}).get("NodeID"))
        ):
            # Its node went away: nobody will report the task's end. It is over for Swarm,
            # which starts no other (restart condition none); the reconciler will.
            running.node_lost = True
            running.gone.set()

    async def _node_down(self, node: str) -> bool:
        try:
            reply = await self._engine.request("GET", f"/nodes/{node}", timeout=10.0)
        except EngineError:
            return False
        return str((reply.json().get("Status") or {}).get("State")) == "down"

    async def _follow(self, running: _Service) -> None:
        """Copy the service's log to the dyno's until its task ended; then report its end."""
        path = running.dyno.log_path
        follower = asyncio.create_task(self._copy_following(running))
        try:
            await running.gone.wait()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, EngineError):
                await follower
        # The followed stream can lag the task's last lines: read once more, to the end.
        with contextlib.suppress(EngineError):
            await copy_log(self._engine, running.service, path, follow=False, kind="services")
        self._ended(running)

    async def _copy_following(self, running: _Service) -> None:
        while True:
            try:
                path = running.dyno.log_path
                await copy_log(self._engine, running.service, path, follow=True, kind="services")
            except EngineError as exc:
                log.warning("following %s's output: %s", running.dyno.name, exc.message)
            await asyncio.sleep(RETRY)  # the engine dropped the stream; the dyno runs on

    def _ended(self, running: _Service) -> None:
        status = running.last.get("Status") or {}
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        state = str(status.get("State", ""))
        code = int(exit_code) if exit_code is not None and state in _ENDED else None
        stopped = stop_of(running.directory, code)
        reason = None
        if stopped is None and (running.node_lost or state in ("shutdown", "orphaned", "remove")):
            # Swarm stopped it, not its command: its node drains, or went down.
            reason = "node"
        ended = Exit(running.dyno, code, time.time(), stopped, reason)
        if self._running.get(running.dyno.id) is running:
            del self._running[running.dyno.id]
        if not running.ended.done():
            running.ended.set_result(ended)
            self._exits.put_nowait(ended)

    # -- stopping ------------------------------------------------------------------------

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        running = self._running.get(dyno_id)
        if running is None:
            return await self._local.stop(dyno_id, grace)
        _write_json(running.directory / "stop.json", {"grace_exceeded": False})
        try:
            await self._retire(running.service)
        except EngineError as exc:
            raise DynoError(f"could not stop dyno {running.dyno.name}: {exc.message}") from exc
        try:
            async with asyncio.timeout(max(grace, self._grace) + 15):
                ended = await asyncio.shield(running.ended)
        except TimeoutError:
            await self._engine.remove_service(running.service)
            ended = await running.ended
        killed = ended.status == 137
        if killed:
            _write_json(running.directory / "stop.json", {"grace_exceeded": True})
        return Stopped(ended.status, killed)

    async def _retire(self, service: str) -> None:
        """Have Swarm stop the service's task and keep its record (its exit status).

        The task must go, and not be replaced: its service is updated to fit no node. Swarm
        then stops the old task (stop-first: SIGTERM, and SIGKILL after the service's grace)
        and keeps it, ended, with its exit status; the new one waits for a node until the
        service is removed. (Scaling to 0 would delete the ended task at once.)
        """
        for _attempt in range(5):
            reply = await self._engine.request("GET", f"/services/{service}", timeout=10.0)
            found = reply.json()
            spec = found["Spec"]
            spec["TaskTemplate"]["Placement"] = {"Constraints": [RETIRED]}
            spec["UpdateConfig"] = {"Parallelism": 1, "Order": "stop-first"}
            try:
                await self._engine.update_service(service, found["Version"]["Index"], spec)
                return
            except EngineError as exc:
                if "out of sequence" not in exc.message:
                    raise
        raise EngineError(f"Swarm kept changing service {service}")

    # -- what runs -----------------------------------------------------------------------

    async def usage(self, dyno_id: str) -> Usage:
        running = self._running.get(dyno_id)
        if running is None:
            return await self._local.usage(dyno_id)
        status = running.last.get("Status") or {}
        container = (status.get("ContainerStatus") or {}).get("ContainerID")
        if not container or await self._engine.inspect(str(container)) is None:
            raise DynoError(f"dyno {running.dyno.name} runs on another node ({running.dyno.host})")
        return usage_of(await self._engine.stats(str(container)))

    async def list(self) -> list[Dyno]:
        return [r.dyno for r in self._running.values()] + await self._local.list()

    async def attach(self, dyno_id: str) -> Attachment:
        running = self._running.get(dyno_id)
        if running is not None:
            raise DynoError(
                f"dyno {running.dyno.name} cannot be attached to: it runs detached, "
                "or a client attached to it already"
            )
        return await self._local.attach(dyno_id)

    async def exits(self) -> AsyncIterator[Exit]:
        forward = asyncio.create_task(self._forward_local_exits())
        try:
            while True:
                ended = await self._exits.get()
                yield ended
                # Taken: a restarted control plane does not report it again, and the service
                # (its log copied) can go.
                directory = self._root / ended.dyno.id
                if directory.is_dir():
                    (directory / "acknowledged").touch()
                    record = _read_json(directory / "dyno.json") or {}
                    if record.get("service"):
                        self._spawn(self._engine.remove_service(str(record["service"])))
        finally:
            forward.cancel()

    async def _forward_local_exits(self) -> None:
        async for ended in self._local.exits():
            self._exits.put_nowait(ended)

    async def outputs(self) -> Sequence[DynoOutput]:
        return [*await dyno_outputs(self._root), *await self._local.outputs()]

    async def tidy(self, now: float | None = None) -> None:
        """Remove ended dynos' directories, as the other drivers do."""
        now = time.time() if now is None else now
        await asyncio.to_thread(
            _prune_dynos,
            self._root,
            before=now - DYNO_RETENTION,
            keep=MAX_ENDED_DYNOS,
            running=set(self._running),
        )

    async def _tidy_now_and_then(self) -> None:
        while True:
            try:
                await self.tidy()
            except OSError as exc:
                log.warning("could not remove ended dynos' directories: %s", exc)
            await asyncio.sleep(TIDY_INTERVAL)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._side]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        await self._local.close()
        await self._engine.close()
