"""The reconciler: makes the dynos that run match each app's current release and formation.

It is level-triggered: each pass reads the desired state from the store (the current release
that has a slug, and the formation's quantity, size and command per process type), compares
it with what the runtime lists, and acts. A pass runs when poked (:meth:`Reconciler.poke`,
after a change) and every ``interval`` seconds, so a change is picked up even when nobody
pokes, and a restarted control plane converges from whatever it finds. Each app has one
writer at a time: its own lock, held through its pass.

- Missing dynos start (``web.N`` get a ``PORT``); extra ones stop (SIGTERM, grace, SIGKILL).
- Dynos of another release (or size, or command) are replaced. Web dynos without downtime:
  the new ones start and must accept TCP connections on their port within the boot timeout;
  only when every new web dyno is up do the old ones stop. One that does not boot in time is
  stopped (``Error R10 (Boot timeout)``) and counts as a crash; the old ones keep running.
- Any exit of a formation dyno that the platform did not ask for is a crash: it shows as
  ``crashed`` and restarts under :class:`~dockyard.backoff.Backoff`. A new release, a scale
  or a restart forgets the crash count.

One-off dynos (``run.N``, ``release.N``) are not the formation's, and are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dockyard.backoff import Backoff, Clock
from dockyard.blobs import BlobStore
from dockyard.errors import DockyardError
from dockyard.events import Events
from dockyard.formation import DEFAULT_SIZE
from dockyard.runtime import Dyno, DynoError, DynoNotFound, DynoSpec, Exit, Runtime
from dockyard.store import App, Database, Formation, Release, Slug

log = logging.getLogger("dockyard.reconciler")
ONE_OFF = ("run", "release")
UNCLAIMED = 100  # one-off exits kept for whoever asks later


@dataclass(frozen=True)
class ProcessType:
    quantity: int
    size: str
    command: str


@dataclass(frozen=True)
class Desired:
    """What one app should run: its current release (with a slug) and its formation."""

    app_id: uuid.UUID
    app_name: str
    app_uid: int
    release_id: uuid.UUID
    version: int
    config: dict[str, str]
    slug_blob: str
    slug_sha256: str
    types: dict[str, ProcessType]

    def generation(self) -> tuple[object, ...]:
        """Changes when a release or a scale does: crash counts start again then."""
        return (self.version, tuple(sorted((k, v.quantity, v.size) for k, v in self.types.items())))


@dataclass
class DynoState:
    """What the reconciler knows of a dyno beyond what the runtime lists."""

    state: str  # starting | up | crashed
    since: float  # wall clock
    dyno: Dyno
    booted: asyncio.Future[bool] | None = None
    status: int | None = None  # the exit status of a crashed dyno
    retry_in: float | None = None  # seconds from ``since`` until a crashed dyno restarts
    reason: str | None = None  # why a crashed dyno could not start (the runtime's message)


@dataclass(frozen=True)
class Endpoint:
    """A web dyno that accepts connections: where the router may send the app's requests."""

    dyno: str  # web.1
    release_version: int
    host: str
    port: int


@dataclass
class _AppWork:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    generation: tuple[object, ...] | None = None


def read_desired(database: Database) -> dict[uuid.UUID, Desired]:
    """Every app's desired state, from the store; apps without a slug yet are left out."""
    with database.transaction() as session:
        rows = session.execute(
            select(App, Release, Slug)
            .join(Release, (Release.app_id == App.id) & Release.current.is_(True))
            .join(Slug, Slug.id == Release.slug_id)
        ).all()
        formations: dict[uuid.UUID, dict[str, ProcessType]] = {}
        for row in session.scalars(select(Formation)):
            formations.setdefault(row.app_id, {})[row.type] = ProcessType(
                row.quantity, row.size, row.command
            )
        desired = {}
        for app, release, slug in rows:
            if app.uid is None:
                continue
            desired[app.id] = Desired(
                app_id=app.id,
                app_name=app.name,
                app_uid=app.uid,
                release_id=release.id,
                version=release.version,
                config=dict(release.config or {}),
                slug_blob=slug.blob,
                slug_sha256=slug.checksum.removeprefix("SHA256:"),
                types=formations.get(app.id, {}),
            )
        return desired


def _index(dyno: Dyno) -> int:
    _, _, number = dyno.name.rpartition(".")
    return int(number) if number.isdigit() else 0


class Reconciler:
    """Keeps each app's dynos equal to its current release and formation."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        runtime: Runtime,
        *,
        interval: float = 1.0,
        boot_timeout: float = 60.0,
        grace: float = 30.0,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        events: Events | None = None,
    ) -> None:
        self.database = database
        self.events = events or Events()
        self.blobs = blobs
        self.runtime = runtime
        self.interval = interval
        self.boot_timeout = boot_timeout
        self.grace = grace
        self.clock = clock
        self.wall = wall
        self.backoff = backoff or Backoff(clock=clock)
        self._poked = asyncio.Event()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._apps: dict[uuid.UUID, _AppWork] = {}
        self._states: dict[str, DynoState] = {}  # by dyno id, for dynos that run
        self._crashed: dict[tuple[str, str], DynoState] = {}  # by (app id, dyno name)
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Task[None]] = set()
        self._ended: dict[str, asyncio.Future[Exit]] = {}  # one-off dynos someone waits for
        # One-off dynos' exits that nobody waited for (they ended while the control plane was
        # down, say): :meth:`wait` and :meth:`unclaimed` still give them. The newest only.
        self._unclaimed: dict[str, Exit] = {}
        self._endpoints: dict[str, frozenset[Endpoint]] = {}  # by app id
        self._endpoints_version = 0
        self._endpoints_event = asyncio.Event()
        # Called with a web dyno's endpoint after it left the set and before its SIGTERM,
        # to let the router finish the requests it sent there (see :meth:`drain_with`).
        self._drain: Callable[[str, Endpoint], Awaitable[None]] | None = None
        self._pass_hooks: list[Callable[[], Awaitable[None]]] = []  # see :meth:`each_pass`

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loop and the exit watcher as tasks; returns at once."""
        self._event_loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._loop(), name="reconciler"),
            asyncio.create_task(self.handle_exits(), name="reconciler-exits"),
        ]

    async def close(self) -> None:
        """Stop reconciling; the dynos keep running, and the next control plane adopts them."""
        tasks = [*self._tasks, *self._side]
        tasks += [work.task for work in self._apps.values() if work.task is not None]
        for state in self._states.values():
            if state.booted is not None and not state.booted.done():
                state.booted.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.runtime.close()

    def poke(self) -> None:
        """Run a pass soon: something changed. Safe to call from any thread."""
        if self._event_loop is None:
            self._poked.set()
        else:
            self._event_loop.call_soon_threadsafe(self._poked.set)

    # -- what the API shows ------------------------------------------------------------------

    async def dynos(self, app_id: uuid.UUID) -> list[DynoState]:
        """The app's dynos that run (one-off ones too), and crashed ones waiting to restart."""
        running = [d for d in await self.runtime.list() if d.app_id == str(app_id)]
        shown: list[DynoState] = []
        names = set()
        for dyno in running:
            if dyno.process_type in ONE_OFF:
                shown.append(DynoState("up", dyno.started_at, dyno))
                continue
            state = self._states.get(dyno.id) or DynoState("starting", dyno.started_at, dyno)
            shown.append(state)
            names.add(dyno.name)
        for (crashed_app, name), state in self._crashed.items():
            if crashed_app == str(app_id) and name not in names:
                shown.append(state)
        shown.sort(key=lambda s: (s.dyno.process_type, _index(s.dyno), s.dyno.started_at))
        return shown

    def endpoints(self, app_id: uuid.UUID) -> frozenset[Endpoint]:
        """The app's healthy web endpoints: web dynos that are up, and not being stopped.

        The set gains a new dyno once it accepts connections, and loses an old one before it
        is sent SIGTERM, so during a rollout it never runs empty while old dynos serve.
        """
        return self._endpoints.get(str(app_id), frozenset())

    async def endpoints_changed(self, seen: int) -> int:
        """Wait until some app's endpoints differ from version ``seen``; the new version.

        A watcher (the router) loops: ``seen = await endpoints_changed(seen)``, then reads
        :meth:`endpoints`. Version 0 is the empty start, so the first call returns at once
        when any web dyno is up.
        """
        while self._endpoints_version == seen:
            self._endpoints_event.clear()
            await self._endpoints_event.wait()
        return self._endpoints_version

    def drain_with(self, drain: Callable[[str, Endpoint], Awaitable[None]]) -> None:
        """Have ``drain(app_id, endpoint)`` run before each web dyno of the set is stopped.

        The router passes one that stops sending new requests to the endpoint and returns
        once the requests in flight there have finished (or a deadline passed).
        """
        self._drain = drain

    def _publish(self, app_id: str) -> None:
        """Recompute the app's endpoints from the dynos' states; tell watchers of a change."""
        now = frozenset(
            Endpoint(s.dyno.name, s.dyno.release_version, s.dyno.host, s.dyno.port)
            for s in self._states.values()
            if s.dyno.app_id == app_id
            and s.dyno.process_type == "web"
            and s.state == "up"
            and s.dyno.port is not None
        )
        if now != self._endpoints.get(app_id, frozenset()):
            if now:
                self._endpoints[app_id] = now
            else:
                self._endpoints.pop(app_id, None)
            self._endpoints_version += 1
            self._endpoints_event.set()

    async def restart(self, app_id: uuid.UUID, which: str | None = None) -> None:
        """Stop the app's dynos (all, one type, or one by name); the next pass starts new ones.

        A restart forgets the crash counts it touches. One-off dynos stop only when named
        (``run.4821``), and are not started again.
        """
        work = self._work(app_id)
        key = str(app_id)

        def matches(name: str) -> bool:
            return which is None or which in (name, name.rpartition(".")[0])

        one_offs = [
            d
            for d in await self.runtime.list()
            if d.app_id == key and d.process_type in ONE_OFF and d.name == which
        ]
        await self._stop_all(one_offs, "stopped")

        self.backoff.reset(lambda k: isinstance(k, tuple) and k[0] == key and matches(k[1]))
        self._forget_crashes(key, matches)
        async with work.lock:
            dynos = [
                d
                for d in await self.runtime.list()
                if d.app_id == key and d.process_type not in ONE_OFF and matches(d.name)
            ]
            await self._stop_all(dynos, "restart")
        self.poke()

    def restart_soon(self, app_id: uuid.UUID, which: str | None = None) -> None:
        """:meth:`restart` as a task of its own: the caller does not wait out the grace."""
        self._spawn(self.restart(app_id, which))

    # -- one-off dynos ---------------------------------------------------------------------

    async def one_off(
        self,
        desired: Desired,
        kind: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        size: str = DEFAULT_SIZE,
        attach: bool = False,
        tty: bool = False,
    ) -> Dyno:
        """Start a one-off dyno (``run.N``, ``release.N``) of ``desired``'s release.

        It is never restarted; :meth:`wait` gives its exit. ``env`` adds to the release's
        config vars.
        """
        assert kind in ONE_OFF, kind
        key = str(desired.app_id)
        taken = {d.name for d in await self.runtime.list() if d.app_id == key}
        number = secrets.randbelow(9000) + 1000
        while f"{kind}.{number}" in taken:
            number = secrets.randbelow(9000) + 1000
        spec = DynoSpec(
            app_id=key,
            app_name=desired.app_name,
            app_uid=desired.app_uid,
            release_version=desired.version,
            slug_path=self.blobs.path(desired.slug_blob),
            slug_sha256=desired.slug_sha256,
            process_type=kind,
            name=f"{kind}.{number}",
            command=command,
            env={**desired.config, **(env or {})},
            size=size,
            attach=attach,
            tty=tty,
        )
        dyno = await self.runtime.start(spec)
        self._say(dyno, f"Starting process with command `{command}`")
        self._ended[dyno.id] = asyncio.get_running_loop().create_future()
        return dyno

    async def wait(self, dyno_id: str) -> Exit:
        """The exit of a one-off dyno, once it ends (one adopted after a restart too, and one
        that ended while the control plane was down)."""
        if dyno_id in self._unclaimed:
            return self._unclaimed.pop(dyno_id)
        ended = self._ended.get(dyno_id)
        if ended is None:
            if not any(d.id == dyno_id for d in await self.runtime.list()):
                raise DynoNotFound(f"no dyno {dyno_id} runs here")
            ended = self._ended.setdefault(dyno_id, asyncio.get_running_loop().create_future())
        return await asyncio.shield(ended)

    def unclaimed(self, app_id: uuid.UUID) -> list[Exit]:
        """The app's one-off dynos that ended with nobody waiting (oldest first): a release
        dyno that ended while the control plane was down, say. :meth:`wait` claims one."""
        return [e for e in self._unclaimed.values() if e.dyno.app_id == str(app_id)]

    # -- work that other parts do on each pass ---------------------------------------------

    def each_pass(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Have ``hook()`` run at the start of every pass, periodic or poked.

        A hook must return quickly, starting long work as tasks of its own. The release phase
        (:mod:`dockyard.release_phase`) finds pending releases this way, also after a restart.
        """
        self._pass_hooks.append(hook)

    async def _run_pass_hooks(self) -> None:
        for hook in self._pass_hooks:
            try:
                await hook()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The dynos of every app still converge; the hook is tried again next pass.
                log.exception("a reconciler pass hook failed")

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A pass that failed (the store was briefly unreachable) is retried next time.
                log.exception("reconciler pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poked.wait()
            self._poked.clear()

    async def reconcile_all(self) -> None:
        """One pass over every app; each app's work runs as its own task."""
        await self._run_pass_hooks()
        desired = await asyncio.to_thread(read_desired, self.database)
        running = await self.runtime.list()
        app_ids = set(desired) | {uuid.UUID(d.app_id) for d in running}
        for app_id in app_ids:
            work = self._work(app_id)
            if work.task is not None and not work.task.done():
                continue  # still busy (a rollout); the next pass looks again
            work.task = asyncio.create_task(self._reconcile_app(app_id, desired.get(app_id)))

    def _work(self, app_id: uuid.UUID) -> _AppWork:
        return self._apps.setdefault(app_id, _AppWork())

    async def reconcile_app(self, app_id: uuid.UUID) -> None:
        """One pass over one app, now (tests, and callers that must wait for it)."""
        desired = await asyncio.to_thread(read_desired, self.database)
        await self._reconcile_app(app_id, desired.get(app_id))

    async def _reconcile_app(self, app_id: uuid.UUID, desired: Desired | None) -> None:
        work = self._work(app_id)
        async with work.lock:
            try:
                await self._converge(app_id, desired, work)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling app %s failed", app_id)

    async def _converge(self, app_id: uuid.UUID, desired: Desired | None, work: _AppWork) -> None:
        key = str(app_id)
        actual = [
            d
            for d in await self.runtime.list()
            if d.app_id == key and d.process_type not in ONE_OFF
        ]
        for dyno in actual:
            if dyno.id not in self._states:
                self._track(dyno)  # adopted after a restart of the control plane
        if desired is None:
            if actual:
                await self._stop_all(actual, "the app has no release to run")
            self._forget_crashes(key, lambda _name: True)
            return
        if desired.generation() != work.generation:
            if work.generation is not None:
                self.backoff.reset(lambda k: isinstance(k, tuple) and k[0] == key)
                self._forget_crashes(key, lambda _name: True)
            work.generation = desired.generation()

        def wanted(name: str) -> bool:
            kind, _, number = name.rpartition(".")
            found = desired.types.get(kind)
            return found is not None and number.isdigit() and 1 <= int(number) <= found.quantity

        self._forget_crashes(key, lambda name: not wanted(name))
        gone = [d for d in actual if d.process_type not in desired.types]
        if gone:
            await self._stop_all(gone, "its process type is no longer in the formation")
        for kind, spec in sorted(desired.types.items()):
            dynos = [d for d in actual if d.process_type == kind]
            await self._converge_type(desired, kind, spec, dynos)

    async def _converge_type(
        self, desired: Desired, kind: str, spec: ProcessType, dynos: list[Dyno]
    ) -> None:
        def fresh(dyno: Dyno) -> bool:
            return (
                dyno.release_version == desired.version
                and dyno.size == spec.size
                and dyno.command == spec.command
            )

        current: dict[int, Dyno] = {}
        extra: list[Dyno] = []
        old: list[Dyno] = []
        for dyno in sorted(dynos, key=lambda d: d.started_at):
            index = _index(dyno)
            if not fresh(dyno):
                old.append(dyno)
            elif 1 <= index <= spec.quantity and index not in current:
                current[index] = dyno
            else:
                extra.append(dyno)
        if extra:
            await self._stop_all(extra, "scaled down")
        for index in range(1, spec.quantity + 1):
            name = f"{kind}.{index}"
            if index in current or not self.backoff.ready((str(desired.app_id), name)):
                continue
            started = await self._start(desired, kind, index, spec)
            if started is not None:
                current[index] = started
        if not old:
            return
        if kind == "web" and spec.quantity > 0:
            # No downtime: the old web dynos stop only once every new one accepts connections.
            waits = [self._states[d.id].booted for d in current.values() if d.id in self._states]
            results = await asyncio.gather(*(w for w in waits if w is not None))
            complete = len(current) == spec.quantity and all(results)
            if not complete or not all(
                d.id in self._states and self._states[d.id].state == "up" for d in current.values()
            ):
                # Said once per failed boot, not on every pass that waits out a back-off.
                report = log.warning if not all(results) else log.debug
                report(
                    "%s: new web dynos of v%d are not all up; the old ones keep running",
                    desired.app_name,
                    desired.version,
                )
                return
        await self._stop_all(old, f"replaced by v{desired.version}")

    # -- starting, booting, stopping -------------------------------------------------------

    async def _start(
        self, desired: Desired, kind: str, index: int, spec: ProcessType
    ) -> Dyno | None:
        name = f"{kind}.{index}"
        dyno_spec = DynoSpec(
            app_id=str(desired.app_id),
            app_name=desired.app_name,
            app_uid=desired.app_uid,
            release_version=desired.version,
            slug_path=self.blobs.path(desired.slug_blob),
            slug_sha256=desired.slug_sha256,
            process_type=kind,
            name=name,
            command=spec.command,
            env=desired.config,
            size=spec.size,
        )
        try:
            dyno = await self.runtime.start(dyno_spec)
        except DynoError as exc:
            self.events.emit(
                str(desired.app_id),
                desired.app_name,
                name,
                f"Error: the dyno could not start: {exc.message}",
                level=logging.ERROR,
            )
            # Shown as crashed, with the reason (a swarm with no node to fit it, say).
            unstarted = Dyno(
                id=f"{desired.app_id}.{name}.unstarted",
                name=name,
                app_id=str(desired.app_id),
                app_name=desired.app_name,
                release_version=desired.version,
                process_type=kind,
                size=spec.size,
                command=spec.command,
                port=None,
                pid=0,
                started_at=self.wall(),
                log_path=Path(os.devnull),
            )
            self._record_crash(str(desired.app_id), name, unstarted, None, None, reason=exc.message)
            return None
        self._say(dyno, f"Starting process with command `{spec.command}`")
        self._crashed.pop((dyno.app_id, name), None)
        self._track(dyno)
        return dyno

    def _track(self, dyno: Dyno) -> None:
        if dyno.process_type == "web" and dyno.port is not None:
            state = DynoState("starting", self.wall(), dyno)
            state.booted = asyncio.get_running_loop().create_future()
            self._states[dyno.id] = state
            self._spawn(self._boot(state))
        else:
            self._states[dyno.id] = DynoState("up", self.wall(), dyno)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _boot(self, state: DynoState) -> None:
        """Wait until the web dyno accepts connections on its port, or time it out (R10)."""
        dyno = state.dyno
        assert dyno.port is not None
        assert state.booted is not None
        deadline = self.clock() + self.boot_timeout
        while self._states.get(dyno.id) is state:
            if await _accepts(dyno.host, dyno.port):
                state.state, state.since = "up", self.wall()
                self._publish(dyno.app_id)
                self._say(dyno, "State changed from starting to up")
                state.booted.set_result(True)
                return
            if self.clock() >= deadline:
                self._say(
                    dyno,
                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within "
                    f"{self.boot_timeout:g} seconds of launch",
                    logging.ERROR,
                )
                self._states.pop(dyno.id, None)
                self._record_crash(dyno.app_id, dyno.name, dyno, None, "R10")
                state.booted.set_result(False)
                with contextlib.suppress(DynoNotFound):
                    await self.runtime.stop(dyno.id, self.grace)
                return
            # A readiness probe: nothing tells us when a process starts listening.
            await asyncio.sleep(0.1)
        if not state.booted.done():
            state.booted.set_result(False)

    async def _stop_all(self, dynos: list[Dyno], why: str) -> None:
        await asyncio.gather(*(self._stop(dyno, why) for dyno in dynos))

    async def _stop(self, dyno: Dyno, why: str) -> None:
        self._say(dyno, f"Stopping all processes with SIGTERM ({why})")
        state = self._states.pop(dyno.id, None)
        self._publish(dyno.app_id)  # out of the router's set before SIGTERM
        if state is not None and state.booted is not None and not state.booted.done():
            state.booted.set_result(False)
        was_up = state is not None and state.state == "up" and dyno.port is not None
        if was_up and dyno.process_type == "web" and self._drain is not None:
            assert dyno.port is not None
            endpoint = Endpoint(dyno.name, dyno.release_version, dyno.host, dyno.port)
            try:
                await self._drain(dyno.app_id, endpoint)
            except Exception:
                log.exception("draining %s %s failed; stopping it anyway", dyno.app_name, dyno.name)
        try:
            stopped = await self.runtime.stop(dyno.id, self.grace)
        except DynoNotFound:
            return
        except DockyardError as exc:
            self._say(dyno, f"Error: the dyno could not be stopped: {exc.message}", logging.ERROR)
            return
        if stopped.grace_exceeded:
            self._say(
                dyno,
                "Error R12 (Exit timeout) -> At least one process failed to exit within "
                f"{self.grace:g} seconds of SIGTERM",
                logging.ERROR,
            )
        self._say(dyno, f"Process exited with status {stopped.status}")

    def _say(self, dyno: Dyno, message: str, level: int = logging.INFO) -> None:
        """A platform event about ``dyno``: ``dockyard[web.1]: message`` in its app's logs."""
        self.events.emit(dyno.app_id, dyno.app_name, dyno.name, message, level=level)

    # -- crashes ---------------------------------------------------------------------------

    async def handle_exits(self) -> None:
        """Take each exit the runtime reports; :meth:`start` runs this as a task."""
        async for ended in self.runtime.exits():
            self._exited(ended)

    def _exited(self, ended: Exit) -> None:
        dyno = ended.dyno
        waiter = self._ended.pop(dyno.id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ended)
        elif dyno.process_type in ONE_OFF:
            self._unclaimed[dyno.id] = ended
            while len(self._unclaimed) > UNCLAIMED:
                del self._unclaimed[next(iter(self._unclaimed))]
        # The kernel killed it for going over its size's memory (the runtime's limit).
        memory = ended.reason == "memory" and ended.stopped is None
        if memory:
            self._say(dyno, "Error R15 (Memory quota vastly exceeded)", logging.ERROR)
        if dyno.process_type in ONE_OFF:
            self._say(dyno, f"Process exited with status {ended.status}")
        state = self._states.pop(dyno.id, None)
        self._publish(dyno.app_id)
        if state is not None and state.booted is not None and not state.booted.done():
            state.booted.set_result(False)
        if ended.reason == "node" and dyno.process_type not in ONE_OFF:
            # Not a crash: its node drains or went down; the next pass starts it elsewhere.
            self._say(dyno, f"Process exited with status {ended.status} (its node stopped it)")
            self.poke()
            return
        if ended.stopped is not None or dyno.process_type in ONE_OFF:
            return
        if state is None and (dyno.app_id, dyno.name) in self._crashed:
            return  # already counted (R10)
        self._say(dyno, f"Process exited with status {ended.status}")
        self._record_crash(dyno.app_id, dyno.name, dyno, ended.status, "R15" if memory else None)
        self.poke()

    def _record_crash(
        self,
        app_id: str,
        name: str,
        dyno: Dyno | None,
        status: int | None,
        code: str | None,
        *,
        reason: str | None = None,
    ) -> None:
        key: Hashable = (app_id, name)
        crashes = self.backoff.crashed(key)
        wait = max(0.0, crashes.retry_at - self.clock())
        self.events.emit(
            app_id,
            dyno.app_name if dyno is not None else f"app {app_id}",
            name,
            f"State changed to crashed (crash {crashes.count} in a row, restarting in {wait:.0f}s)",
        )
        if dyno is not None:
            self._crashed[(app_id, name)] = DynoState(
                "crashed", self.wall(), dyno, status=status, retry_in=wait, reason=reason
            )

    def _forget_crashes(self, app_id: str, which: Callable[[str], bool]) -> None:
        for key in [k for k in self._crashed if k[0] == app_id and which(k[1])]:
            del self._crashed[key]


async def _accepts(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
