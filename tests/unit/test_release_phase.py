"""The release phase's states and order, on a real store and a fake runtime.

Releases with a release command wait (``pending``) and deploy in version order, one at a
time; a failure or a timeout leaves the current release (and, for the newest release, the
config) as it was; a release dyno still running after a restart is followed, not started
again; app.json's postdeploy script runs after the first deploy only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dockyard import accounts, apps, releases
from dockyard.blobs import DirectoryStore
from dockyard.reconciler import Reconciler
from dockyard.release_phase import POSTDEPLOY, RELEASE, ReleasePhase, output_key, stored_output
from dockyard.runtime import Dyno, DynoNotFound, DynoSpec, Exit, Stopped, Usage
from dockyard.settings import Settings
from dockyard.store import App, ConfigVar, Database, Formation, Release, Slug

MIGRATE = {"web": "./web", "release": "./migrate"}


class FakeRuntime:
    """Dynos as records with a log file each; the test ends them with :meth:`finish`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, Dyno] = {}
        self.started: list[Dyno] = []
        self.queue: asyncio.Queue[Exit] = asyncio.Queue()

    async def start(self, spec: DynoSpec) -> Dyno:
        dyno_id = f"{spec.name}-{uuid.uuid4().hex[:8]}"
        dyno = Dyno(
            id=dyno_id,
            name=spec.name,
            app_id=spec.app_id,
            app_name=spec.app_name,
            release_version=spec.release_version,
            process_type=spec.process_type,
            size=spec.size,
            command=spec.command,
            port=None,
            pid=0,
            started_at=time.time(),
            log_path=self.logs / f"{dyno_id}.log",
        )
        self.running[dyno.id] = dyno
        self.started.append(dyno)
        return dyno

    def say(self, dyno: Dyno, *lines: str) -> None:
        with dyno.log_path.open("a") as handle:
            for line in lines:
                handle.write(json.dumps({"time": "t", "stream": "stdout", "line": line}) + "\n")

    def finish(self, dyno: Dyno, status: int, *lines: str) -> None:
        self.say(dyno, *lines)
        del self.running[dyno.id]
        self.queue.put_nowait(Exit(dyno, status, time.time()))

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        dyno = self.running.pop(dyno_id, None)
        if dyno is None:
            raise DynoNotFound(dyno_id)
        stopped = Stopped(143, grace_exceeded=False)
        self.queue.put_nowait(Exit(dyno, 143, time.time(), stopped))
        return stopped

    async def usage(self, dyno_id: str) -> Usage:
        return Usage(0, 0.0, 1)

    async def list(self) -> list[Dyno]:
        return list(self.running.values())

    async def exits(self) -> AsyncIterator[Exit]:
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        pass


class Plane:
    """A store, a blob store, a fake runtime, a reconciler (only its one-off dynos are used)
    and the release phase, for one test."""

    def __init__(self, database: Database, tmp_path: Path, **phase: Any) -> None:
        self.database = database
        self.blobs = DirectoryStore(tmp_path / "blobs")
        self.runtime = FakeRuntime(tmp_path)
        self.reconciler = Reconciler(database, self.blobs, self.runtime)
        settings = Settings(data_dir=tmp_path / "data", release_timeout=60)
        self.phase = ReleasePhase(settings, database, self.blobs, self.reconciler, **phase)
        self.exits: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Plane:
        self.exits = asyncio.create_task(self.reconciler.handle_exits())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.phase.close()
        assert self.exits is not None
        self.exits.cancel()
        await asyncio.gather(self.exits, return_exceptions=True)

    async def dyno(self, version: int, kind: str = "release") -> Dyno:
        """The one dyno of ``kind`` running for release ``version``, once it runs."""
        found: list[Dyno] = []

        def started() -> bool:
            found[:] = [
                d
                for d in self.runtime.running.values()
                if d.release_version == version and d.process_type == kind
            ]
            return bool(found)

        await until(started)
        assert len(found) == 1, found
        return found[0]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout}s: {condition!r}")
        await asyncio.sleep(0.01)


def make_app(database: Database) -> uuid.UUID:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, f"{uuid.uuid4().hex[:8]}@example.com")
        app_id: uuid.UUID = apps.create(session, user, None).id
        return app_id


def deploy(
    database: Database,
    blobs: DirectoryStore | None,
    app_id: uuid.UUID,
    types: dict[str, str],
    *,
    postdeploy: str | None = None,
    release_phase: bool = True,
) -> int:
    """A release of a new slug with ``types``, as a build makes it; its version."""
    key = f"slugs/{uuid.uuid4().hex}.tgz"
    if blobs is not None:
        source = blobs.root / "incoming"
        source.write_bytes(b"slug")
        blobs.put(key, source)
    with database.transaction() as session:
        app = session.get(App, app_id)
        assert app is not None
        slug = Slug(
            app_id=app_id,
            blob=key,
            checksum="SHA256:" + "0" * 64,
            size=4,
            process_types=types,
            stack="dockyard-24",
            postdeploy=postdeploy,
        )
        session.add(slug)
        session.flush()
        made = releases.create(
            session,
            app,
            "Deploy",
            releases.config(session, app),
            user=None,
            slug_id=slug.id,
            release_phase=release_phase,
        )
        return made.version


def set_config(database: Database, app_id: uuid.UUID, **changes: str) -> int:
    with database.transaction() as session:
        app = session.get(App, app_id)
        assert app is not None
        releases.update_config(session, app, changes, app.owner)
        return max(r.version for r in releases.history(session, app))


def state(database: Database, app_id: uuid.UUID) -> dict[int, tuple[str, bool]]:
    """Each release's (status, current), by version."""
    with database.transaction() as session:
        rows = session.scalars(select(Release).where(Release.app_id == app_id))
        return {r.version: (r.status, r.current) for r in rows}


def release_id(database: Database, app_id: uuid.UUID, version: int) -> uuid.UUID:
    with database.transaction() as session:
        found: uuid.UUID = session.scalars(
            select(Release.id).where(Release.app_id == app_id, Release.version == version)
        ).one()
    return found


def config(database: Database, app_id: uuid.UUID) -> dict[str, str]:
    with database.transaction() as session:
        rows = session.scalars(select(ConfigVar).where(ConfigVar.app_id == app_id))
        return {r.key: r.value for r in rows}


# --- the store's side: which release waits, which is current ------------------------------------


def test_a_release_with_a_release_command_waits(database: Database) -> None:
    app_id = make_app(database)
    assert deploy(database, None, app_id, {"web": "./web"}) == 2
    assert state(database, app_id) == {1: ("succeeded", False), 2: ("succeeded", True)}

    assert deploy(database, None, app_id, MIGRATE) == 3
    # A config change waits behind it, and carries its code, not the code that runs now.
    assert set_config(database, app_id, A="1") == 4
    assert state(database, app_id) == {
        1: ("succeeded", False),
        2: ("succeeded", True),
        3: ("pending", False),
        4: ("pending", False),
    }
    with database.transaction() as session:
        by_version = {r.version: r for r in session.scalars(select(Release))}
        assert by_version[4].slug_id == by_version[3].slug_id
        assert by_version[4].config == {"A": "1"}

    # A server that cannot run dynos skips the release phase.
    other = make_app(database)
    deploy(database, None, other, MIGRATE, release_phase=False)
    assert state(database, other)[2] == ("succeeded", True)


def test_a_failed_release_changes_nothing(database: Database) -> None:
    app_id = make_app(database)
    deploy(database, None, app_id, MIGRATE, release_phase=False)  # v2, current
    set_config(database, app_id, A="1")  # v3, pending
    set_config(database, app_id, B="2")  # v4, pending behind it
    with database.transaction() as session:
        app = session.get(App, app_id)
        assert app is not None
        by_version = {r.version: r for r in releases.history(session, app)}
        # Not the newest: the config stays, as v4 still carries it.
        releases.fail(session, app, by_version[3])
    assert config(database, app_id) == {"A": "1", "B": "2"}
    with database.transaction() as session:
        app = session.get(App, app_id)
        assert app is not None
        by_version = {r.version: r for r in releases.history(session, app)}
        releases.fail(session, app, by_version[4])
        assert releases.latest_slug(session, app) == by_version[2].slug_id
    assert config(database, app_id) == {}, "the newest failed: back to the current release's"
    assert state(database, app_id)[2] == ("succeeded", True)
    assert [s for s, _ in state(database, app_id).values()].count("failed") == 2


# --- the runner -------------------------------------------------------------------------------


def test_pending_releases_run_in_order_and_a_failure_keeps_the_current_one(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Plane(sqlite_database, tmp_path) as plane:
            app_id = make_app(sqlite_database)
            v2 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE)
            v3 = set_config(sqlite_database, app_id, FAIL="1")
            await plane.phase.on_pass()
            first = await plane.dyno(v2)
            assert first.command == "./migrate"
            assert first.name.startswith("release.")
            await plane.phase.on_pass()  # a second pass starts nothing more
            assert len(plane.runtime.started) == 1, "one at a time, the oldest first"
            assert state(sqlite_database, app_id)[v2] == ("pending", False)

            plane.runtime.finish(first, 0, "migrating", "done")
            second = await plane.dyno(v3)
            assert state(sqlite_database, app_id)[v2] == ("succeeded", True)
            with sqlite_database.transaction() as session:
                kinds = session.scalars(select(Formation.type).where(Formation.app_id == app_id))
                assert sorted(kinds) == ["web"], "the formation follows the deployed slug"

            plane.runtime.finish(second, 3, "no luck")
            await until(lambda: state(sqlite_database, app_id)[v3][0] == "failed")
            assert state(sqlite_database, app_id)[v2] == ("succeeded", True)
            assert config(sqlite_database, app_id) == {}, "the failed config change is undone"
            assert stored_output(
                plane.blobs, output_key(RELEASE, release_id(sqlite_database, app_id, v2))
            ) == ["migrating", "done"]
            assert stored_output(
                plane.blobs, output_key(RELEASE, release_id(sqlite_database, app_id, v3))
            ) == ["no luck", f" !     Release command failed: {second.name} exited with status 3"]

    run(scenario)


def test_a_release_without_a_command_deploys_when_its_turn_comes(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Plane(sqlite_database, tmp_path) as plane:
            app_id = make_app(sqlite_database)
            v2 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE)
            v3 = deploy(sqlite_database, plane.blobs, app_id, {"web": "./web", "clock": "./c"})
            assert state(sqlite_database, app_id)[v3] == ("pending", False), "it waits behind v2"
            await plane.phase.on_pass()
            plane.runtime.finish(await plane.dyno(v2), 0)
            await until(lambda: state(sqlite_database, app_id)[v3] == ("succeeded", True))
            assert state(sqlite_database, app_id)[v2] == ("succeeded", False)
            assert len(plane.runtime.started) == 1

    run(scenario)


def test_a_release_command_past_the_timeout_is_stopped_and_fails(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        # The wall clock says the hour has passed as soon as the dyno starts.
        async with Plane(sqlite_database, tmp_path, wall=lambda: time.time() + 3600) as plane:
            app_id = make_app(sqlite_database)
            deploy(sqlite_database, plane.blobs, app_id, {"web": "./web"})
            v3 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE)
            await plane.phase.on_pass()
            await until(lambda: state(sqlite_database, app_id)[v3][0] == "failed")
            assert plane.runtime.running == {}, "the release dyno was stopped"
            (line,) = stored_output(
                plane.blobs, output_key(RELEASE, release_id(sqlite_database, app_id, v3))
            )
            assert "ran past the timeout of 60 seconds (DOCKYARD_RELEASE_TIMEOUT)" in line
            assert state(sqlite_database, app_id)[2] == ("succeeded", True)

    run(scenario)


def test_a_release_dyno_from_before_a_restart_is_followed_not_started_again(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Plane(sqlite_database, tmp_path) as plane:
            app_id = make_app(sqlite_database)
            v2 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE)
            with sqlite_database.transaction() as session:
                app = session.get(App, app_id)
                assert app is not None
                assert app.uid is not None
                name, uid = app.name, app.uid
            # The previous control plane started it, then died.
            before = await plane.runtime.start(
                DynoSpec(
                    app_id=str(app_id),
                    app_name=name,
                    app_uid=uid,
                    release_version=v2,
                    slug_path=Path("/nonexistent"),
                    slug_sha256="0" * 64,
                    process_type="release",
                    name="release.1234",
                    command="./migrate",
                )
            )
            plane.runtime.say(before, "started before the restart")
            lines: list[str] = []

            async def emit(line: str) -> None:
                lines.append(line)

            push = asyncio.create_task(
                plane.phase.report(release_id(sqlite_database, app_id, v2), emit)
            )
            await until(lambda: "started before the restart" in lines)
            assert plane.runtime.started == [before]
            plane.runtime.finish(before, 0, "and ended after it")
            await push
            assert lines == [
                "",
                "Running release command...",
                "",
                "started before the restart",
                "and ended after it",
                "Waiting for release.... done.",
            ]
            assert state(sqlite_database, app_id)[v2] == ("succeeded", True)

    run(scenario)


def test_postdeploy_runs_after_the_first_deploy_only(
    sqlite_database: Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Plane(sqlite_database, tmp_path) as plane:
            app_id = make_app(sqlite_database)
            v2 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE, postdeploy="./seed")
            lines: list[str] = []

            async def emit(line: str) -> None:
                lines.append(line)

            push = asyncio.create_task(
                plane.phase.report(release_id(sqlite_database, app_id, v2), emit)
            )
            plane.runtime.finish(await plane.dyno(v2), 0, "migrated")
            seed = await plane.dyno(v2, "run")
            assert seed.command == "./seed"
            plane.runtime.finish(seed, 0, "seeded")
            await push
            assert lines[-4:] == [
                "Waiting for release.... done.",
                "-----> Running app.json postdeploy script (first deploy only)...",
                "seeded",
                "       Postdeploy script succeeded",
            ]
            rid = release_id(sqlite_database, app_id, v2)
            assert stored_output(plane.blobs, output_key(POSTDEPLOY, rid)) == ["seeded"]

            # Later deploys, with or without a release phase, do not run it.
            v3 = deploy(sqlite_database, plane.blobs, app_id, {"web": "./w"}, postdeploy="./seed")
            lines.clear()
            await plane.phase.report(release_id(sqlite_database, app_id, v3), emit)
            assert lines == [
                "       app.json postdeploy script skipped: it runs after the first deploy only"
            ]
            with sqlite_database.transaction() as session:
                marks = session.scalars(select(Release.postdeploy).order_by(Release.version))
                assert list(marks) == [None, "succeeded", None]
            assert [d.process_type for d in plane.runtime.started] == ["release", "run"]

    run(scenario)


@pytest.mark.parametrize("status", [0, 1])
def test_a_failed_first_deploy_does_not_use_up_the_postdeploy_script(
    sqlite_database: Database, tmp_path: Path, status: int
) -> None:
    async def scenario() -> None:
        async with Plane(sqlite_database, tmp_path) as plane:
            app_id = make_app(sqlite_database)
            v2 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE, postdeploy="./seed")
            await plane.phase.on_pass()
            plane.runtime.finish(await plane.dyno(v2), 1)
            await until(lambda: state(sqlite_database, app_id)[v2][0] == "failed")
            v3 = deploy(sqlite_database, plane.blobs, app_id, MIGRATE, postdeploy="./seed")
            await plane.phase.on_pass()
            plane.runtime.finish(await plane.dyno(v3), 0)
            seed = await plane.dyno(v3, "run")
            plane.runtime.finish(seed, status, "seeding")
            final = "succeeded" if status == 0 else "failed"
            rid = release_id(sqlite_database, app_id, v3)

            def recorded() -> bool:
                with sqlite_database.transaction() as session:
                    found = session.get(Release, rid)
                    return found is not None and found.postdeploy == final

            await until(recorded)
            assert state(sqlite_database, app_id)[v3] == ("succeeded", True), (
                "a failed postdeploy script does not undo the release"
            )

    run(scenario)
