"""The reconciler against a fake runtime and a real store: rollouts, R10 and crash back-off."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dockyard import accounts, apps, releases
from dockyard.backoff import Backoff
from dockyard.events import Events
from dockyard.reconciler import Endpoint, Reconciler
from dockyard.runtime import Dyno, DynoError, DynoNotFound, DynoSpec, Exit, Stopped, Usage
from dockyard.store import App, Database, Formation, Slug


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeBlobs:
    def path(self, key: str) -> Path:
        return Path("/nonexistent") / key

    def exists(self, key: str) -> bool:
        return True


class FakeRuntime:
    """Dynos as records; a web dyno listens on a real port only while ``binds`` is set."""

    def __init__(self) -> None:
        self.running: dict[str, Dyno] = {}
        self.binds = True
        self.queue: asyncio.Queue[Exit] = asyncio.Queue()
        self._servers: dict[str, asyncio.Server] = {}
        self.started: list[Dyno] = []
        self.refuse: str | None = None  # start() fails with this (no node has room, say)

    async def start(self, spec: DynoSpec) -> Dyno:
        if self.refuse is not None:
            raise DynoError(self.refuse)
        port = None
        server = None
        if spec.web:
            if self.binds:
                server = await asyncio.start_server(_close, "127.0.0.1", 0)
                port = int(server.sockets[0].getsockname()[1])
            else:
                port = _unused_port()
        dyno = Dyno(
            id=f"{spec.name}-{uuid.uuid4().hex[:8]}",
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
            log_path=Path("/nonexistent"),
        )
        self.running[dyno.id] = dyno
        self.started.append(dyno)
        if server is not None:
            self._servers[dyno.id] = server
        return dyno

    async def _end(self, dyno_id: str, stopped: Stopped | None, status: int) -> None:
        dyno = self.running.pop(dyno_id)
        server = self._servers.pop(dyno_id, None)
        if server is not None:
            server.close()
            await server.wait_closed()
        self.queue.put_nowait(Exit(dyno, status, time.time(), stopped))

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        if dyno_id not in self.running:
            raise DynoNotFound(dyno_id)
        stopped = Stopped(143, grace_exceeded=False)
        await self._end(dyno_id, stopped, 143)
        return stopped

    async def crash(self, dyno_id: str, status: int = 1) -> None:
        """End a dyno on its own; returns once the reconciler has taken the exit."""
        await self._end(dyno_id, None, status)
        await self.queue.join()

    async def usage(self, dyno_id: str) -> Usage:
        return Usage(0, 0.0, 1)

    async def list(self) -> list[Dyno]:
        return list(self.running.values())

    async def exits(self) -> AsyncIterator[Exit]:
        while True:
            ended = await self.queue.get()
            yield ended
            self.queue.task_done()

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()


async def _close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app(database: Database, types: dict[str, int]) -> uuid.UUID:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, f"{uuid.uuid4().hex[:8]}@example.com")
        app = apps.create(session, user, None)
        for kind, quantity in types.items():
            session.add(
                Formation(
                    app_id=app.id,
                    type=kind,
                    quantity=quantity,
                    size="standard-1x",
                    command=f"bin/{kind}",
                )
            )
        app_id: uuid.UUID = app.id
    release(database, app_id, {})
    return app_id


def release(database: Database, app_id: uuid.UUID, config: dict[str, str]) -> int:
    with database.transaction() as session:
        app = session.get(App, app_id)
        assert app is not None
        slug = Slug(
            app_id=app_id,
            blob=f"slugs/{uuid.uuid4().hex}.tgz",
            checksum="SHA256:" + "0" * 64,
            size=1,
            process_types={},
            stack="dockyard-24",
        )
        session.add(slug)
        session.flush()
        made = releases.create(session, app, "Deploy", config, user=None, slug_id=slug.id)
        return made.version


def set_quantity(database: Database, app_id: uuid.UUID, kind: str, quantity: int) -> None:
    with database.transaction() as session:
        row = session.scalars(
            select(Formation).where(Formation.app_id == app_id, Formation.type == kind)
        ).one()
        row.quantity = quantity


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


async def states(reconciler: Reconciler, app_id: uuid.UUID) -> list[tuple[str, str, int]]:
    return [(s.dyno.name, s.state, s.dyno.release_version) for s in await reconciler.dynos(app_id)]


def test_web_rollout_waits_for_boot_and_r10_keeps_the_old_dynos(
    sqlite_database: Database,
) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {"web": 2})
        runtime = FakeRuntime()
        reconciler = Reconciler(sqlite_database, FakeBlobs(), runtime, boot_timeout=0.5)
        exits = asyncio.create_task(reconciler.handle_exits())
        try:
            await reconciler.reconcile_app(app_id)
            await reconciler.reconcile_app(app_id)  # the boots are awaited by nothing yet
            assert len(runtime.started) == 2, "a second pass starts nothing more"
            old = dict(runtime.running)

            # A release whose web dynos never bind: R10, and the old release keeps serving.
            runtime.binds = False
            v3 = release(sqlite_database, app_id, {"A": "1"})
            await reconciler.reconcile_app(app_id)
            assert runtime.running == old
            assert sorted(await states(reconciler, app_id)) == [
                ("web.1", "up", 2),
                ("web.2", "up", 2),
            ]
            crashes = reconciler.backoff.get((str(app_id), "web.1"))
            assert crashes is not None
            assert crashes.count == 1

            # Bound this time: the new dynos come up, and only then the old ones stop.
            runtime.binds = True
            await reconciler.reconcile_app(app_id)
            assert {d.release_version for d in runtime.running.values()} == {v3}
            assert sorted(await states(reconciler, app_id)) == [
                ("web.1", "up", v3),
                ("web.2", "up", v3),
            ]
            assert not set(old) & set(runtime.running)

            # Scaling down stops the extra dyno; scaling to zero stops all.
            set_quantity(sqlite_database, app_id, "web", 1)
            await reconciler.reconcile_app(app_id)
            assert [d.name for d in runtime.running.values()] == ["web.1"]
            set_quantity(sqlite_database, app_id, "web", 0)
            await reconciler.reconcile_app(app_id)
            assert runtime.running == {}
        finally:
            exits.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exits
            await reconciler.close()

    run(scenario)


def test_crashes_back_off_on_the_clock_and_a_scale_resets_them(
    sqlite_database: Database,
) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {"worker": 1})
        clock = FakeClock()
        runtime = FakeRuntime()
        backoff = Backoff(first=1.0, factor=2.0, cap=300.0, clock=clock)
        reconciler = Reconciler(sqlite_database, FakeBlobs(), runtime, backoff=backoff, clock=clock)
        exits = asyncio.create_task(reconciler.handle_exits())

        async def crash_worker() -> None:
            (dyno,) = runtime.running.values()
            await runtime.crash(dyno.id, status=3)

        try:
            await reconciler.reconcile_app(app_id)
            assert await states(reconciler, app_id) == [("worker.1", "up", 2)]

            await crash_worker()
            (crashed,) = await reconciler.dynos(app_id)
            assert (crashed.state, crashed.status, crashed.retry_in) == ("crashed", 3, 0.0)
            await reconciler.reconcile_app(app_id)
            assert len(runtime.running) == 1, "the first crash restarts at once"

            for wait in (1.0, 2.0, 4.0):
                await crash_worker()
                (crashed,) = await reconciler.dynos(app_id)
                assert crashed.state == "crashed"
                assert crashed.retry_in == wait
                await reconciler.reconcile_app(app_id)
                assert runtime.running == {}, f"waiting {wait}s"
                clock.now += wait - 0.01
                await reconciler.reconcile_app(app_id)
                assert runtime.running == {}, "not early"
                clock.now += 0.01
                await reconciler.reconcile_app(app_id)
                assert len(runtime.running) == 1

            # Crashed again; a scale forgets the count: both start now.
            await crash_worker()
            set_quantity(sqlite_database, app_id, "worker", 2)
            await reconciler.reconcile_app(app_id)
            assert sorted(d.name for d in runtime.running.values()) == ["worker.1", "worker.2"]
            assert reconciler.backoff.get((str(app_id), "worker.1")) is None
        finally:
            exits.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exits
            await reconciler.close()

    run(scenario)


def test_web_endpoints_never_run_empty_during_a_rollout(sqlite_database: Database) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {"web": 2})
        runtime = FakeRuntime()
        events = Events()
        said: list[str] = []
        events.listen(lambda e: said.append(f"{e.tag}: {e.message}"))
        reconciler = Reconciler(
            sqlite_database, FakeBlobs(), runtime, boot_timeout=5, events=events
        )
        exits = asyncio.create_task(reconciler.handle_exits())
        seen_at_stop: list[tuple[str, frozenset[str]]] = []
        real_stop = runtime.stop

        async def stop(dyno_id: str, grace: float = 30.0) -> Stopped:
            names = frozenset(
                f"{e.dyno}@v{e.release_version}" for e in reconciler.endpoints(app_id)
            )
            dyno = runtime.running[dyno_id]
            seen_at_stop.append((f"{dyno.name}@v{dyno.release_version}", names))
            return await real_stop(dyno_id, grace)

        runtime.stop = stop  # type: ignore[method-assign]
        drained: list[tuple[str, int, bool]] = []  # dyno, release, still running then

        async def drain(app: str, endpoint: Endpoint) -> None:
            assert app == str(app_id)
            running = {(d.name, d.port) for d in runtime.running.values()}
            drained.append(
                (endpoint.dyno, endpoint.release_version, (endpoint.dyno, endpoint.port) in running)
            )

        reconciler.drain_with(drain)
        try:
            assert reconciler.endpoints(app_id) == frozenset()
            watcher = asyncio.create_task(reconciler.endpoints_changed(0))
            await reconciler.reconcile_app(app_id)
            version = await asyncio.wait_for(watcher, 5)
            while len(reconciler.endpoints(app_id)) < 2:  # the watched value, not a sleep
                version = await asyncio.wait_for(reconciler.endpoints_changed(version), 5)
            assert {e.dyno for e in reconciler.endpoints(app_id)} == {"web.1", "web.2"}
            ports = {e.port for e in reconciler.endpoints(app_id)}
            assert ports == {d.port for d in runtime.running.values()}

            v3 = release(sqlite_database, app_id, {"A": "1"})
            await reconciler.reconcile_app(app_id)
            # Each old dyno left the set before it was stopped, and the new ones were in it.
            assert len(seen_at_stop) == 2
            for stopped, endpoints in seen_at_stop:
                assert stopped not in endpoints
                assert {"web.1@v3", "web.2@v3"} <= endpoints, seen_at_stop
            assert {e.release_version for e in reconciler.endpoints(app_id)} == {v3}
            # The router drained each old web dyno while it still ran, before its SIGTERM.
            assert sorted(drained) == [("web.1", 2, True), ("web.2", 2, True)]

            set_quantity(sqlite_database, app_id, "web", 0)
            await reconciler.reconcile_app(app_id)
            assert reconciler.endpoints(app_id) == frozenset()
            # Each step was a platform event for the app's log stream.
            assert "dockyard[web.1]: Starting process with command `bin/web`" in said
            assert "dockyard[web.2]: State changed from starting to up" in said
            assert "dockyard[web.1]: Stopping all processes with SIGTERM (replaced by v3)" in said
            assert "dockyard[web.1]: Process exited with status 143" in said
        finally:
            exits.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exits
            await reconciler.close()

    run(scenario)


def test_a_dyno_that_cannot_start_shows_crashed_with_the_reason(
    sqlite_database: Database,
) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {"worker": 1})
        clock = FakeClock()
        runtime = FakeRuntime()
        runtime.refuse = "no node can run dyno worker.1: no suitable node"
        backoff = Backoff(first=1.0, factor=2.0, cap=300.0, clock=clock)
        reconciler = Reconciler(sqlite_database, FakeBlobs(), runtime, backoff=backoff, clock=clock)
        try:
            await reconciler.reconcile_app(app_id)
            (shown,) = await reconciler.dynos(app_id)
            assert (shown.state, shown.dyno.name, shown.reason) == (
                "crashed",
                "worker.1",
                "no node can run dyno worker.1: no suitable node",
            )
            # Room again: it starts once its back-off is over, and the reason goes.
            runtime.refuse = None
            clock.now += 1.0
            await reconciler.reconcile_app(app_id)
            (shown,) = await reconciler.dynos(app_id)
            assert (shown.state, shown.reason) == ("up", None)
        finally:
            await reconciler.close()

    run(scenario)


def test_a_one_off_that_ended_unwatched_is_kept_for_whoever_asks(
    sqlite_database: Database,
) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {})
        runtime = FakeRuntime()
        reconciler = Reconciler(sqlite_database, FakeBlobs(), runtime)
        exits = asyncio.create_task(reconciler.handle_exits())
        try:
            # A release dyno started by an earlier control plane, ending with nobody waiting.
            spec = DynoSpec(
                app_id=str(app_id),
                app_name="shop",
                app_uid=1,
                release_version=3,
                slug_path=Path("/nonexistent"),
                slug_sha256="0" * 64,
                process_type="release",
                name="release.4821",
                command="./migrate",
            )
            dyno = await runtime.start(spec)
            await runtime.crash(dyno.id, status=0)
            (kept,) = reconciler.unclaimed(app_id)
            assert (kept.dyno.id, kept.status) == (dyno.id, 0)
            assert (await reconciler.wait(dyno.id)).status == 0
            assert reconciler.unclaimed(app_id) == []  # claimed once
        finally:
            exits.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exits
            await reconciler.close()

    run(scenario)
