"""Builds: from a source tarball to a slug and a release, one build per app at a time.

:class:`BuildService` lives in the server. It records each build, runs the builder,
keeps the output (live for followers, and on disk for replay), stores the slug in the
blob store and makes release vN. A build that fails leaves the current release as it was.
When the slug declares a release command, the build (and a git push with it) waits for the
release phase (:mod:`dockyard.release_phase`) and prints its output; the build succeeded
whatever the release phase does, as on Heroku.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from dockyard import apps, formation, releases
from dockyard.blobs import BlobStore
from dockyard.build.appjson import AddonSpec
from dockyard.build.pipeline import Builder, BuildFailed, Job, Result
from dockyard.build.slug import SlugTooLarge
from dockyard.errors import DockyardError, InvalidParams, NotFound
from dockyard.settings import Settings
from dockyard.store import App, Build, Database, Slug, User

if TYPE_CHECKING:
    from dockyard.release_phase import ReleasePhase

log = logging.getLogger("dockyard.builds")
T = TypeVar("T")
Emit = Callable[[str], Awaitable[None]]


@dataclass
class Output:
    """The output of one build: what was printed so far, and whether it has ended."""

    path: Path
    lines: list[str] = field(default_factory=list)
    done: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    echo: Callable[[str], None] | None = None  # each line also goes there (the app's logs)

    async def add(self, line: str) -> None:
        self.lines.append(line)
        if self.echo is not None:
            self.echo(line)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        async with self.changed:
            self.changed.notify_all()

    def more_than(self, count: int) -> Callable[[], bool]:
        """A condition: the output has ended or holds more than ``count`` lines."""
        return lambda: self.done or len(self.lines) > count

    async def close(self) -> None:
        self.done = True
        async with self.changed:
            self.changed.notify_all()


@dataclass(frozen=True)
class Released:
    """The release a build made."""

    id: uuid.UUID
    version: int
    status: str  # succeeded, or pending: it waits for a release phase
    release_command: bool  # its slug declares one


class BuildService:
    def __init__(
        self, settings: Settings, database: Database, blobs: BlobStore, builder: Builder
    ) -> None:
        self.settings = settings
        self.database = database
        self.blobs = blobs
        self.builder = builder
        self.outputs_dir = settings.data_dir / "build-output"
        self.outputs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.incoming = settings.data_dir / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._live: dict[uuid.UUID, Output] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set by the server when dynos can run: a push then waits for its release phase.
        self.release_phase: ReleasePhase | None = None
        # Set by the server: each line of a build's output, for the app's logs (app[build]).
        self.log_output: Callable[[uuid.UUID, str], None] | None = None
        # Set by the API: Heroku's app[api] lines for the app's logs (Build started by …,
        # Build succeeded, Build failed), as dockyard.logs.announce.api words them.
        self.announce: Callable[[uuid.UUID, str, str, str | None], None] | None = None
        # Set by the API: on an app's first deploy, provisions the add-ons app.json declares
        # (dockyard.addons.Addons.provision_declared) before the release is made.
        self.provision_addons: (
            Callable[[uuid.UUID, tuple[AddonSpec, ...], Emit], Awaitable[None]] | None
        ) = None

    def background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` (a build) on its own; it is kept until it ends."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def succeeded(self, build_id: uuid.UUID) -> bool:
        with self.database.transaction() as session:
            build = session.get(Build, build_id)
            return build is not None and build.status == "succeeded"

    def store_source(self, source_id: str, path: Path) -> None:
        self.blobs.put(f"sources/{source_id}.tar", path)

    def copy_source(self, source_id: str) -> Path:
        """A private copy of an uploaded source, for one build to unpack and delete."""
        if not self.blobs.exists(f"sources/{source_id}.tar"):
            raise InvalidParams(
                "nothing was uploaded to that source URL yet; PUT the tarball first"
            )
        target = self.incoming / f"{uuid.uuid4()}.tar"
        shutil.copyfile(self.blobs.path(f"sources/{source_id}.tar"), target)
        return target

    def lock(self, app_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(app_id, asyncio.Lock())

    def create(
        self,
        app_id: uuid.UUID,
        user_id: uuid.UUID | None,
        *,
        source_url: str | None,
        version: str | None,
        checksum: str | None = None,
    ) -> uuid.UUID:
        """Record a pending build; its output can be followed from now on."""
        with self.database.transaction() as session:
            app = session.get(App, app_id)
            if app is None:
                raise NotFound("the app was destroyed")
            build = Build(
                app_id=app_id,
                user_id=user_id,
                status="pending",
                source_url=source_url,
                source_version=version,
                source_checksum=checksum,
                buildpacks=list(app.buildpacks),
                stack=app.stack,
            )
            session.add(build)
            session.flush()
            build_id: uuid.UUID = build.id
        self._live[build_id] = Output(self.outputs_dir / f"{build_id}.log", echo=self._echo(app_id))
        return build_id

    def _said(self, app_id: uuid.UUID | None, app_name: str) -> Callable[[str, str | None], None]:
        """Say ``message`` (by a user) in the app's logs as app[api], when the API listens."""
        announce = self.announce

        def said(message: str, by: str | None) -> None:
            if announce is not None and app_id is not None:
                announce(app_id, app_name, message, by)

        return said

    def _echo(self, app_id: uuid.UUID) -> Callable[[str], None] | None:
        log_output = self.log_output
        if log_output is None:
            return None
        return lambda line: log_output(app_id, line)

    async def run(
        self,
        build_id: uuid.UUID,
        source: Path,
        *,
        before: Callable[[], Awaitable[None]] | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Run a recorded build to its end; return whether it succeeded.

        ``before`` runs once the app's build lock is held (a git push checks there that
        its branch did not move while it waited); ``after`` runs before the lock is let go
        (a git push waits there for git to update its branch).
        """
        output = self._live[build_id]
        released = False
        said = self._said(None, "")  # the app's, once it is known
        try:
            with self.database.transaction() as session:
                build = session.get(Build, build_id)
                if build is None:
                    raise NotFound("the build was removed")
                app = session.get(App, build.app_id)
                if app is None:
                    raise NotFound("the app was destroyed")
                app_id, app_name = app.id, app.name
                user = session.get(User, build.user_id) if build.user_id else None
                said = self._said(app_id, app_name)
                said("Build started", user.email if user else None)
            lock = self.lock(app_id)
            if lock.locked():
                await output.add(f"-----> Waiting for another build of {app_name} to finish...")
            async with lock:
                if before is not None:
                    await before()
                result = await self._build(build_id, source, output.add)
                if self.provision_addons is not None and result.app_json is not None:
                    await self.provision_addons(build_id, result.app_json.addons, output.add)
                made = await asyncio.to_thread(self._release, build_id, result)
                released = True
                said("Build succeeded", None)
                await self._launch(app_name, made, output.add)
                await output.close()
                if after is not None:
                    await after()
            return True
        except (BuildFailed, SlugTooLarge, DockyardError) as exc:
            await self._fail(build_id, output, exc.message, said)
            return False
        except asyncio.CancelledError:
            if not released:  # else the build succeeded, and its release phase goes on
                await self._fail(
                    build_id, output, "the build was cancelled (the push was interrupted)", said
                )
            raise
        except Exception as exc:
            log.exception("build %s failed unexpectedly", build_id)
            await self._fail(
                build_id,
                output,
                f"internal error ({type(exc).__name__}); see the server log",
                said,
            )
            return False
        finally:
            await output.close()
            self._live.pop(build_id, None)

    async def _build(self, build_id: uuid.UUID, source: Path, emit: Emit) -> Result:
        with self.database.transaction() as session:
            build = session.get(Build, build_id)
            assert build is not None
            app = session.get(App, build.app_id)
            assert app is not None
            assert app.uid is not None
            job = Job(
                build_id=str(build_id),
                app_id=str(app.id),
                app_name=app.name,
                app_uid=app.uid,
                source=source,
                version=build.source_version,
                config=releases.config(session, app),
                buildpacks=list(app.buildpacks),
                stack=app.stack,
            )
        return await self.builder.run(job, emit)

    async def _launch(self, app_name: str, made: Released, emit: Emit) -> None:
        """Say the release is made; wait for its release phase and postdeploy script."""
        await emit("-----> Launching...")
        if made.release_command:
            await emit(
                " !     Release command declared: this new release will not be available until "
                "the command succeeds."
            )
        await emit(f"       Released v{made.version}")
        await emit(f"       {apps.web_url(self.settings, app_name)} deployed to Dockyard")
        if self.release_phase is not None:
            try:
                await self.release_phase.report(made.id, emit)
            except DockyardError as exc:
                await emit(f" !     The release phase could not be followed: {exc.message}")
        elif made.release_command:
            await emit(
                " !     This server cannot run dynos (see its log), so the release command was "
                f"skipped and v{made.version} is current without it."
            )

    def _release(self, build_id: uuid.UUID, result: Result) -> Released:
        """Store the slug and make the release, all in one transaction."""
        key = f"slugs/{result.slug.sha256}.tgz"
        if not self.blobs.exists(key):
            self.blobs.put(key, result.slug.path)
        result.slug.path.unlink(missing_ok=True)
        with self.database.transaction() as session:
            build = session.get(Build, build_id)
            assert build is not None
            app = session.scalar(select(App).where(App.id == build.app_id).with_for_update())
            if app is None:
                raise NotFound("the app was destroyed during its build")
            slug = Slug(
                app_id=app.id,
                blob=key,
                checksum=f"SHA256:{result.slug.sha256}",
                size=result.slug.size,
                process_types=result.process_types,
                commit=build.source_version,
                buildpack_provided_description=result.description,
                stack=build.stack,
                postdeploy=result.app_json.scripts.get("postdeploy") if result.app_json else None,
            )
            session.add(slug)
            session.flush()
            config = releases.config(session, app)
            if result.config_added:
                config = releases.apply(session, app, result.config_added)
            if result.app_json is not None:
                app.formation_defaults = result.app_json.formation
            user = session.get(User, build.user_id) if build.user_id else None
            version = build.source_version or ""
            description = f"Deploy {version[:7]}" if version else "Deploy"
            release = releases.create(
                session,
                app,
                description,
                config,
                user=user,
                slug_id=slug.id,
                release_phase=self.release_phase is not None,
            )
            if release.current:
                formation.sync(
                    session,
                    app,
                    result.process_types,
                    app.formation_defaults,
                    limit=self.settings.max_quantity,
                )
            else:
                # The formation follows the slug once the release deploys; app.json's
                # formation is checked now, failing the build as it would without a release
                # phase.
                formation.check_defaults(app.formation_defaults, self.settings.max_quantity)
            build.status = "succeeded"
            build.slug_id = slug.id
            build.release_id = release.id
            return Released(
                release.id,
                release.version,
                release.status,
                formation.RELEASE_TYPE in result.process_types,
            )

    async def _fail(
        self,
        build_id: uuid.UUID,
        output: Output,
        reason: str,
        said: Callable[[str, str | None], None],
    ) -> None:
        await output.add(f" !     {reason}")
        await output.add(" !     Push rejected; the current release is unchanged.")
        failed = False
        with contextlib.suppress(DockyardError), self.database.transaction() as session:
            build = session.get(Build, build_id)
            if build is not None and build.status != "succeeded":
                build.status = "failed"
                build.failure = reason
                failed = True
        if failed:
            said("Build failed", None)

    async def follow(self, build_id: uuid.UUID) -> AsyncIterator[str]:
        """Every output line of the build: replayed, then live until it ends."""
        live = self._live.get(build_id)
        if live is None:
            path = self.outputs_dir / f"{build_id}.log"
            if path.exists():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    yield line
            return
        sent = 0
        while True:
            async with live.changed:
                await live.changed.wait_for(live.more_than(sent))
            while sent < len(live.lines):
                yield live.lines[sent]
                sent += 1
            if live.done:
                return

    def purge_cache(self, app_id: uuid.UUID) -> None:
        self.builder.purge_cache(str(app_id))
