"""R15: a dyno the kernel killed for memory is logged as such, and restarts under back-off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from dockyard.backoff import Backoff
from dockyard.events import Events
from dockyard.reconciler import Reconciler
from dockyard.runtime import Exit
from dockyard.store import Database
from unit.test_reconciler import FakeBlobs, FakeClock, FakeRuntime, make_app, run, states


class Blobs(FakeBlobs):
    """FakeBlobs, with the whole BlobStore protocol; the reconciler only reads."""

    def put(self, key: str, source: Path) -> None:
        raise AssertionError(f"unexpected put of {key}")

    def delete(self, key: str) -> None:
        raise AssertionError(f"unexpected delete of {key}")


def test_a_dyno_killed_for_memory_says_r15_and_restarts(sqlite_database: Database) -> None:
    async def scenario() -> None:
        app_id = make_app(sqlite_database, {"worker": 1})
        clock = FakeClock()
        runtime = FakeRuntime()
        events = Events()
        said: list[str] = []
        events.listen(lambda e: said.append(f"{e.tag}: {e.message}"))
        backoff = Backoff(first=1.0, factor=2.0, cap=300.0, clock=clock)
        reconciler = Reconciler(
            sqlite_database, Blobs(), runtime, backoff=backoff, clock=clock, events=events
        )
        exits = asyncio.create_task(reconciler.handle_exits())

        async def killed_for_memory() -> str:
            (dyno,) = runtime.running.values()
            del runtime.running[dyno.id]
            runtime.queue.put_nowait(Exit(dyno, 137, time.time(), None, reason="memory"))
            await runtime.queue.join()
            return dyno.id

        try:
            await reconciler.reconcile_app(app_id)
            first = await killed_for_memory()
            r15 = "dockyard[worker.1]: Error R15 (Memory quota vastly exceeded)"
            exited = "dockyard[worker.1]: Process exited with status 137"
            assert r15 in said
            assert said.index(r15) < said.index(exited)
            (crashed,) = await reconciler.dynos(app_id)
            assert (crashed.state, crashed.status, crashed.retry_in) == ("crashed", 137, 0.0)

            await reconciler.reconcile_app(app_id)
            (again,) = runtime.running.values()
            assert again.id != first, "restarted at once, the first time"
            assert await states(reconciler, app_id) == [("worker.1", "up", 2)]

            # Killed again: a crash in a row, so it waits its back-off.
            await killed_for_memory()
            (crashed,) = await reconciler.dynos(app_id)
            assert (crashed.state, crashed.retry_in) == ("crashed", 1.0)
            assert said.count(r15) == 2
            await reconciler.reconcile_app(app_id)
            assert runtime.running == {}
            clock.now += 1.0
            await reconciler.reconcile_app(app_id)
            assert len(runtime.running) == 1

            # An ordinary crash says nothing of memory.
            (dyno,) = runtime.running.values()
            await runtime.crash(dyno.id, status=1)
            assert said.count(r15) == 2
        finally:
            exits.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exits
            await reconciler.close()

    run(scenario)
