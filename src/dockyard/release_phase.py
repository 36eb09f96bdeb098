"""The release phase, and app.json's ``postdeploy`` script.

A release whose slug's Procfile declares ``release:`` is made ``pending``
(:func:`dockyard.releases.create`). :class:`ReleasePhase` runs its command as a one-off dyno
``release.NNNN`` of that release, with its slug and config, before any dyno switches to it::

    pending ──► release.NNNN exits 0 ─────────────────────────► succeeded and current;
       │                                                         the formation follows its slug
       └──────► it exits non-zero, runs past the timeout ─────► failed; the current release
                (DOCKYARD_RELEASE_TIMEOUT), or cannot start       keeps running

An app's pending releases run one at a time, in version order; a pending release without a
release command (one that waited behind another) deploys when its turn comes. The output is
kept in the blob store (``release-output/<release id>.log``) for ``releases:output``.

The work is level-triggered: every reconciler pass calls :meth:`ReleasePhase.on_pass`, which
starts a task for each app that has a pending release. After a restart of the control plane a
``release.NNNN`` dyno that still runs is followed again (its timeout counts from its start),
and one that ended meanwhile counts with the exit status the runtime kept. Only one whose end
went unseen altogether (its node rebooted, say) runs again, so a release command should be
safe to repeat (as Heroku advises too: migrations are).

After an app's first successful deploy, app.json's ``scripts.postdeploy`` runs once, as a
one-off ``run.NNNN`` dyno of that release. Its failure is reported (push output, app log) but
does not undo the release. It never runs again, also when it failed or was interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select

from dockyard import formation, releases
from dockyard.blobs import BlobStore
from dockyard.builds import Output
from dockyard.errors import DockyardError, InvalidParams
from dockyard.events import APP
from dockyard.reconciler import Desired, Reconciler
from dockyard.runtime import Dyno, DynoError, DynoNotFound
from dockyard.settings import Settings
from dockyard.store import App, Database, Release, Slug

log = logging.getLogger("dockyard.release_phase")
Emit = Callable[[str], Awaitable[None]]
RELEASE = "release"
POSTDEPLOY = "postdeploy"
RUNNING = ("pending", "running")  # postdeploy states that still have work to do
# How often a running release command's log is read for new lines: the runtime's log is a
# file that nothing announces changes of.
POLL = 0.2
# How often someone following an output checks the store, in case the work ended elsewhere.
RECHECK = 5.0


def output_key(kind: str, release_id: uuid.UUID) -> str:
    """Where the output of a release's release phase (or postdeploy script) is kept."""
    return f"{kind}-output/{release_id}.log"


def stored_output(blobs: BlobStore, key: str) -> list[str]:
    """The kept output at ``key``; empty when there is none (yet)."""
    if not blobs.exists(key):
        return []
    return blobs.path(key).read_text(encoding="utf-8", errors="replace").splitlines()


@dataclass(frozen=True)
class _Job:
    """One command to run for one release: its release phase or its postdeploy script."""

    kind: str  # RELEASE | POSTDEPLOY
    release_id: uuid.UUID
    version: int
    command: str | None  # None: a release that waited behind another and has no command
    state: str  # the release's status (RELEASE) or its postdeploy state (POSTDEPLOY)
    desired: Desired | None  # None when the app cannot run dynos (it has no uid)

    @property
    def key(self) -> str:
        return output_key(self.kind, self.release_id)


@dataclass(frozen=True)
class _Outcome:
    ok: bool | None  # None: the end was not seen, and a release command runs again
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    """Where one release stands, for whoever waits on it (a git push)."""

    app_id: uuid.UUID
    version: int
    status: str
    postdeploy: str | None
    has_command: bool  # its slug has a release command
    slug_postdeploy: bool  # its slug has a postdeploy script
    current_version: int | None
    ahead: int | None  # the version of an older pending release it waits behind


class ReleasePhase:
    """Runs pending releases' release commands, and the first deploy's postdeploy script."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        blobs: BlobStore,
        reconciler: Reconciler,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.reconciler = reconciler
        self.timeout = float(settings.release_timeout)
        self.max_quantity = settings.max_quantity
        self.wall = wall
        self.outputs_dir = settings.data_dir / "release-output"
        self.outputs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._live: dict[str, Output] = {}  # by output key, while the work runs

    # -- driving it ------------------------------------------------------------------------

    async def on_pass(self) -> None:
        """Start work for every app with a pending release or postdeploy script (a pass hook)."""
        for app_id in await asyncio.to_thread(self._apps_with_work):
            self.kick(app_id)

    def kick(self, app_id: uuid.UUID) -> None:
        """Work through the app's pending releases now, unless that already happens."""
        task = self._tasks.get(app_id)
        if task is None or task.done():
            self._tasks[app_id] = asyncio.create_task(
                self._run_app(app_id), name=f"release-phase-{app_id}"
            )

    async def close(self) -> None:
        """Stop following; release dynos keep running, and the next control plane adopts them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _apps_with_work(self) -> list[uuid.UUID]:
        with self.database.transaction() as session:
            return list(
                session.scalars(
                    select(Release.app_id)
                    .where(or_(Release.status == "pending", Release.postdeploy.in_(RUNNING)))
                    .distinct()
                )
            )

    async def _run_app(self, app_id: uuid.UUID) -> None:
        try:
            while (job := await asyncio.to_thread(self._next_job, app_id)) is not None:
                await self._run(app_id, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The next pass starts over from the store.
            log.exception("the release phase of app %s failed", app_id)

    def _next_job(self, app_id: uuid.UUID) -> _Job | None:
        """The app's next piece of work: a postdeploy script first, then the oldest pending
        release."""
        with self.database.transaction() as session:
            app = session.get(App, app_id)
            if app is None:
                return None
            release = session.scalar(
                select(Release)
                .where(Release.app_id == app_id, Release.postdeploy.in_(RUNNING))
                .order_by(Release.version)
                .limit(1)
            )
            kind = POSTDEPLOY
            if release is None:
                release = releases.pending(session, app)
                kind = RELEASE
            if release is None:
                return None
            slug = session.get(Slug, release.slug_id) if release.slug_id is not None else None
            if kind == POSTDEPLOY:
                command = slug.postdeploy if slug is not None else None
                state = release.postdeploy or ""
            else:
                command = slug.process_types.get(RELEASE) if slug is not None else None
                state = release.status
            desired = None
            if slug is not None and app.uid is not None:
                desired = Desired(
                    app_id=app.id,
                    app_name=app.name,
                    app_uid=app.uid,
                    release_id=release.id,
                    version=release.version,
                    config=dict(release.config or {}),
                    slug_blob=slug.blob,
                    slug_sha256=slug.checksum.removeprefix("SHA256:"),
                    types={},
                )
            return _Job(kind, release.id, release.version, command, state, desired)

    # -- running one job -------------------------------------------------------------------

    async def _run(self, app_id: uuid.UUID, job: _Job) -> None:
        if job.kind == RELEASE and job.command is None:
            await asyncio.to_thread(self._finish, app_id, job, _Outcome(True))
            waiting = self._live.pop(job.key, None)  # a push that waits for it to deploy
            if waiting is not None:
                await waiting.close()
            return
        output = self._live.get(job.key)
        if output is None:
            output = self._live[job.key] = Output(self._local_path(job.key))
        output.path.write_text("", encoding="utf-8")
        try:
            outcome = await self._execute(app_id, job, output)
            if outcome.ok is None:
                again = "; it runs again" if job.kind == RELEASE else ""
                await output.add(
                    f"(The control plane restarted while this ran and did not see it end{again}.)"
                )
                outcome = await self._execute(app_id, job, output)
            if not outcome.ok:
                what = "Release command" if job.kind == RELEASE else "Postdeploy script"
                await output.add(f" !     {what} failed: {outcome.reason}")
            # Kept before the store says it ended: whoever then looks finds the whole output.
            await asyncio.to_thread(self.blobs.put, job.key, output.path)
            await asyncio.to_thread(self._finish, app_id, job, outcome)
        finally:
            await output.close()
            if self._live.get(job.key) is output:
                del self._live[job.key]
            output.path.unlink(missing_ok=True)

    async def _execute(self, app_id: uuid.UUID, job: _Job, output: Output) -> _Outcome:
        dyno = await self._dyno_for(app_id, job)
        if isinstance(dyno, _Outcome):
            return dyno
        ended = asyncio.Event()
        follower = asyncio.create_task(self._copy(_Tail(dyno.log_path), output, ended))
        try:
            outcome = await self._wait(dyno)
        except BaseException:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            raise
        ended.set()
        await follower  # it reads the last lines, then returns
        return outcome

    async def _dyno_for(self, app_id: uuid.UUID, job: _Job) -> Dyno | _Outcome:
        """The job's dyno: one that still runs from before a restart, else a new one."""
        if job.desired is None or job.command is None:
            return _Outcome(False, "the release has no slug to run it from")
        kind = "release" if job.kind == RELEASE else "run"
        running = [
            d
            for d in await self.reconciler.runtime.list()
            if d.app_id == str(app_id)
            and d.process_type == kind
            and d.release_version == job.version
            # A postdeploy script is only adopted once it was started (a `dockyard run` of the
            # same command is not it).
            and (job.kind == RELEASE or (job.state == "running" and d.command == job.command))
        ]
        if running:
            log.info(
                "following %s of %s v%d again", running[0].name, job.desired.app_name, job.version
            )
            return running[0]
        gone = [
            e.dyno
            for e in self.reconciler.unclaimed(app_id)
            if e.dyno.process_type == kind
            and e.dyno.release_version == job.version
            and e.status is not None  # else it was cut short (a reboot): it runs again
            and (job.kind == RELEASE or (job.state == "running" and e.dyno.command == job.command))
        ]
        if gone:
            # It ended while the control plane was down: its output and exit are kept.
            name, app = gone[-1].name, job.desired.app_name
            log.info("%s of %s v%d ended meanwhile", name, app, job.version)
            return gone[-1]
        if job.kind == POSTDEPLOY and job.state == "running":
            return _Outcome(
                False,
                "the control plane restarted while it ran and did not see it end; "
                "it is not run again",
            )
        if job.kind == POSTDEPLOY:
            await asyncio.to_thread(self._postdeploy_started, job)
        try:
            return await self.reconciler.one_off(job.desired, kind, job.command)
        except DynoError as exc:
            return _Outcome(False, f"it could not start: {exc.message}")

    async def _wait(self, dyno: Dyno) -> _Outcome:
        """How the dyno ended: by itself, or stopped at the timeout."""
        remaining = dyno.started_at + self.timeout - self.wall()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                ended = await self.reconciler.wait(dyno.id)
        except DynoNotFound:
            return _Outcome(None)  # an adopted dyno ended before anyone waited on it
        except TimeoutError:
            with contextlib.suppress(DynoNotFound):
                await self.reconciler.runtime.stop(dyno.id, self.reconciler.grace)
            return _Outcome(
                False,
                f"{dyno.name} ran past the timeout of {self.timeout:g} seconds "
                "(DOCKYARD_RELEASE_TIMEOUT) and was stopped",
            )
        if ended.status == 0:
            return _Outcome(True)
        if ended.reason == "memory":
            return _Outcome(False, f"{dyno.name} went over its memory (Error R15) and was killed")
        if ended.status is None:
            return _Outcome(False, f"{dyno.name} ended, but its exit status was not recorded")
        return _Outcome(False, f"{dyno.name} exited with status {ended.status}")

    async def _copy(self, tail: _Tail, output: Output, ended: asyncio.Event) -> None:
        """Copy the dyno's log to ``output`` as it grows, to its end once ``ended`` is set."""
        while True:
            done = ended.is_set()
            for line in await asyncio.to_thread(tail.read):
                await output.add(line)
            if done:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await ended.wait()

    def _local_path(self, key: str) -> Path:
        return self.outputs_dir / key.replace("/", "-")

    def _postdeploy_started(self, job: _Job) -> None:
        with self.database.transaction() as session:
            release = session.get(Release, job.release_id)
            if release is not None and release.postdeploy == "pending":
                release.postdeploy = "running"

    def _finish(self, app_id: uuid.UUID, job: _Job, outcome: _Outcome) -> None:
        """Record how the job ended, in one transaction with the app's row locked."""
        ok = bool(outcome.ok)
        reason = outcome.reason
        try:
            name = self._record(app_id, job, ok)
        except InvalidParams as exc:
            # app.json's formation no longer fits (DOCKYARD_MAX_QUANTITY changed): not deployed.
            ok, reason = False, exc.message
            name = self._record(app_id, job, ok)
        if name is None:
            return
        if job.kind == RELEASE:
            message = f"Release v{job.version} command " + (
                "succeeded" if ok else f"failed ({reason})"
            )
        else:
            message = f"Postdeploy script of v{job.version} " + (
                "succeeded" if ok else f"failed ({reason})"
            )
        self.reconciler.events.emit(str(app_id), name, "api", message, source=APP)
        self.reconciler.poke()

    def _record(self, app_id: uuid.UUID, job: _Job, ok: bool) -> str | None:
        with self.database.transaction() as session:
            app = session.scalar(select(App).where(App.id == app_id).with_for_update())
            release = session.get(Release, job.release_id)
            if app is None or release is None:
                return None
            if job.kind == POSTDEPLOY:
                if release.postdeploy not in RUNNING:
                    return None
                release.postdeploy = "succeeded" if ok else "failed"
                return app.name
            if release.status != "pending":
                return None  # ended elsewhere
            if not ok:
                releases.fail(session, app, release)
                return app.name
            releases.promote(session, app, release)
            slug = session.get(Slug, release.slug_id) if release.slug_id is not None else None
            if slug is not None:
                formation.sync(
                    session,
                    app,
                    slug.process_types,
                    app.formation_defaults,
                    limit=self.max_quantity,
                )
            return app.name

    # -- following it ----------------------------------------------------------------------

    async def follow(self, kind: str, release_id: uuid.UUID) -> AsyncIterator[str]:
        """The output of a release's release phase (or postdeploy script): what was printed
        so far, then live until it ends; the kept output once it has ended."""
        key = output_key(kind, release_id)
        live = self._live.get(key)
        if live is None:
            # The runner takes this one up when it starts the work.
            live = self._live[key] = Output(self._local_path(key))
        if not await asyncio.to_thread(self._running, kind, release_id):
            if self._live.get(key) is live and not live.lines and not live.done:
                del self._live[key]
            for line in await asyncio.to_thread(stored_output, self.blobs, key):
                yield line
            return
        sent = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK), live.changed:
                    await live.changed.wait_for(live.more_than(sent))
            while sent < len(live.lines):
                yield live.lines[sent]
                sent += 1
            if live.done:
                return
            if not await asyncio.to_thread(self._running, kind, release_id):
                # It ended without this process seeing it: the rest is in the kept output.
                for line in (await asyncio.to_thread(stored_output, self.blobs, key))[sent:]:
                    yield line
                return

    def _running(self, kind: str, release_id: uuid.UUID) -> bool:
        with self.database.transaction() as session:
            release = session.get(Release, release_id)
            if release is None:
                return False
            if kind == RELEASE:
                return release.status == "pending"
            return release.postdeploy in RUNNING

    def progress(self, release_id: uuid.UUID) -> Progress:
        with self.database.transaction() as session:
            release = session.get(Release, release_id)
            if release is None:
                raise DockyardError("the release was removed (was the app destroyed?)")
            slug = session.get(Slug, release.slug_id) if release.slug_id is not None else None
            current = session.scalar(
                select(Release.version).where(
                    Release.app_id == release.app_id, Release.current.is_(True)
                )
            )
            ahead = session.scalar(
                select(Release.version)
                .where(
                    Release.app_id == release.app_id,
                    Release.status == "pending",
                    Release.version < release.version,
                )
                .order_by(Release.version)
                .limit(1)
            )
            return Progress(
                app_id=release.app_id,
                version=release.version,
                status=release.status,
                postdeploy=release.postdeploy,
                has_command=bool(slug is not None and RELEASE in slug.process_types),
                slug_postdeploy=bool(slug is not None and slug.postdeploy),
                current_version=current,
                ahead=ahead,
            )

    async def report(self, release_id: uuid.UUID, emit: Emit) -> None:
        """Wait for a new release's release phase and postdeploy script, printing their output
        the way Heroku's git push does."""
        state = await asyncio.to_thread(self.progress, release_id)
        version = state.version
        # (It may have run already: the report replays the output then.)
        if state.status == "pending" or state.has_command:
            self.kick(state.app_id)
            await emit("")
            if state.ahead is not None:
                await emit(f"Waiting for the release command of v{state.ahead} to finish first...")
            if state.has_command:
                await emit("Running release command...")
                await emit("")
            async for line in self.follow(RELEASE, release_id):
                await emit(line)
            state = await asyncio.to_thread(self.progress, release_id)
            if state.status == "succeeded":
                await emit("Waiting for release.... done.")
            elif state.status == "failed":
                await emit("Waiting for release.... failed.")
                kept = (
                    f"v{state.current_version} keeps running"
                    if state.current_version is not None
                    else "no release runs"
                )
                await emit(f" !     Release v{version} was not deployed; {kept}.")
                await emit(f" !     `dockyard releases:output v{version}` shows this output again.")
            else:
                await emit("Waiting for release.... (interrupted)")
                await emit(
                    f" !     The release phase of v{version} goes on without this push; "
                    f"follow it with `dockyard releases:output v{version}`."
                )
        if state.postdeploy is not None:  # this is the first deploy (it may have run already)
            self.kick(state.app_id)
            await emit("-----> Running app.json postdeploy script (first deploy only)...")
            async for line in self.follow(POSTDEPLOY, release_id):
                await emit(line)
            state = await asyncio.to_thread(self.progress, release_id)
            if state.postdeploy == "succeeded":
                await emit("       Postdeploy script succeeded")
            else:
                await emit(
                    " !     Postdeploy script failed; the release stays deployed and the "
                    "script does not run again. Run it by hand with `dockyard run`."
                )
        elif state.status == "succeeded" and state.slug_postdeploy and state.postdeploy is None:
            await emit(
                "       app.json postdeploy script skipped: it runs after the first deploy only"
            )


class _Tail:
    """Reads a dyno's log (JSON lines ``{"time", "stream", "line"}``) as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[str]:
        """The output lines written since the last call."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for raw in complete:
            try:
                record = json.loads(raw)
                lines.append(str(record["line"]))
            except (ValueError, KeyError, TypeError):
                lines.append(raw.decode("utf-8", "replace"))
        return lines
