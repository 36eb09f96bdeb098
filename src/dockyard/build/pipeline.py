"""One build: source tarball in, slug out, with output in Heroku's shape.

Steps: unpack the source (refusing paths that escape it), read ``app.json`` and the
``Procfile``, pick buildpacks (the app's own, else ``app.json``'s, else detection of the
built-in ones), run each buildpack's ``bin/compile`` in the sandbox with ``/app``,
``/cache`` and ``/env``, read the last one's ``bin/release``, and pack the slug.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dockyard.build import appjson, dockerfile, interpreters, procfile, sandbox, slug
from dockyard.build.appjson import AppJson
from dockyard.build.dockerfile import DockerfileBuilder
from dockyard.build.sandbox import Emit, Identity, Mount
from dockyard.errors import DockyardError
from dockyard.plugins import builtin_buildpacks

INDENT = "       "
MAX_SOURCE_FILES = 200_000


class BuildFailed(DockyardError):
    """The build failed; the message is shown to the pusher as the reason."""

    status = 422
    id = "build_failed"


@dataclass(frozen=True)
class Limits:
    timeout: float = 15 * 60
    slug_bytes: int = 500 * 1024 * 1024
    source_bytes: int = 1024 * 1024 * 1024
    disk_bytes: int = 4 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    build_id: str
    app_id: str
    app_name: str
    app_uid: int
    source: Path
    version: str | None
    config: Mapping[str, str]
    buildpacks: Sequence[str] = ()
    stack: str = "dockyard-24"


@dataclass
class Result:
    slug: slug.Packed
    process_types: dict[str, str]
    buildpacks: list[str]
    description: str
    config_added: dict[str, str] = field(default_factory=dict)
    app_json: AppJson | None = None


@dataclass(frozen=True)
class Buildpack:
    url: str
    path: Path


class Builder:
    """Builds apps under ``data_dir``: workspaces, per-app caches, fetched buildpacks."""

    def __init__(
        self,
        data_dir: Path,
        limits: Limits | None = None,
        *,
        dockerfile: DockerfileBuilder | None = None,
    ) -> None:
        self.limits = limits or Limits()
        # Dockerfile apps, with the docker runtime (build/dockerfile.py); None: buildpacks only.
        self.dockerfile = dockerfile
        self.workspaces = data_dir / "builds"
        self.caches = data_dir / "cache"
        self.checkouts = data_dir / "buildpacks"
        for directory in (self.workspaces, self.caches, self.checkouts):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def cache_dir(self, app_id: str) -> Path:
        return self.caches / app_id

    def purge_cache(self, app_id: str) -> None:
        shutil.rmtree(self.cache_dir(app_id), ignore_errors=True)

    async def run(self, job: Job, emit: Emit) -> Result:
        workspace = self.workspaces / job.build_id
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.mkdir(mode=0o700)
        try:
            return await self._run(job, workspace, emit)
        finally:
            shutil.rmtree(workspace, ignore_errors=True)

    async def _run(self, job: Job, workspace: Path, emit: Emit) -> Result:
        started = time.monotonic()
        identity = Identity.for_app(job.app_uid)
        app_dir = workspace / "app"
        unpack(job.source, app_dir, self.limits.source_bytes)
        manifest = _read_app_json(app_dir)
        config = dict(job.config)
        added = manifest.config_defaults(config) if manifest else {}
        config.update(added)
        declared = _read_procfile(app_dir)

        env_dir = workspace / "env"
        env_dir.mkdir(mode=0o700)
        for name, value in config.items():
            (env_dir / name).write_text(value)
        cache_dir = self.cache_dir(job.app_id)
        if not cache_dir.exists():
            cache_dir.mkdir(mode=0o700)
            _chown_tree(cache_dir, identity)
        urls = list(job.buildpacks) or (list(manifest.buildpacks) if manifest else [])
        packs = [self._fetch(url) for url in urls]
        copies = workspace / "buildpacks"
        copies.mkdir(mode=0o700)
        for directory in (app_dir, env_dir, copies):
            _chown_tree(directory, identity)

        runner = _Runner(
            identity=identity,
            app_dir=app_dir,
            cache_dir=cache_dir,
            env_dir=env_dir,
            copies=copies,
            job=job,
            limits=self.limits,
            started=started,
            emit=emit,
        )
        await emit(f"-----> Building on the {job.stack} stack")
        if self.dockerfile is not None and dockerfile.wants_dockerfile(app_dir, urls):
            return await self._run_dockerfile(
                job,
                workspace=workspace,
                app_dir=app_dir,
                declared=declared,
                emit=emit,
                added=added,
                build_args=manifest.build_args if manifest else {},
            )
        if packs:
            names = []
            for index, pack in enumerate(packs):
                await emit(f"-----> Using buildpack: {pack.url}")
                names.append(await runner.detect(index, pack, required=True) or pack.url)
        else:
            packs, names = await self._detect(runner)
        for index, (pack, name) in enumerate(zip(packs, names, strict=True)):
            await emit(f"-----> {name} app detected")
            await runner.compile(index, pack, len(packs))
        defaults = await runner.release(len(packs) - 1, packs[-1])

        process_types = await _discover_process_types(declared, defaults, emit)
        await emit("-----> Compressing...")
        packed = slug.pack(
            app_dir, workspace.parent / f"{job.build_id}.slug.tgz", self.limits.slug_bytes
        )
        await emit(f"{INDENT}Done: {slug.human_size(packed.size)}")
        return Result(
            slug=packed,
            process_types=process_types,
            buildpacks=[p.url for p in packs],
            description=names[-1],
            config_added=added,
            app_json=manifest,
        )

    async def _run_dockerfile(
        self,
        job: Job,
        *,
        workspace: Path,
        app_dir: Path,
        declared: dict[str, str] | None,
        emit: Emit,
        added: dict[str, str],
        build_args: dict[str, str],
    ) -> Result:
        assert self.dockerfile is not None
        try:
            tag, image = await self.dockerfile.build(
                app_id=job.app_id,
                build_id=job.build_id,
                app_dir=app_dir,
                workspace=workspace,
                emit=emit,
                build_args=build_args,
            )
        except dockerfile.DockerfileError as exc:
            raise BuildFailed(exc.message) from exc
        await emit("-----> Discovering process types")
        if declared:
            await emit(f"{INDENT}Procfile declares types -> {', '.join(declared)}")
            process_types = dict(declared)
        else:
            command = dockerfile.web_command(image)
            if command is None:
                raise BuildFailed("the image has no CMD and the app no Procfile: nothing to run")
            await emit(f"{INDENT}The image's CMD -> web: {command}")
            process_types = {"web": command}
        marker = workspace / "image"
        dockerfile.write_marker(marker, tag, image)
        packed = slug.pack(
            marker, workspace.parent / f"{job.build_id}.slug.tgz", self.limits.slug_bytes
        )
        await emit(f"{INDENT}Done: image {tag}")
        return Result(
            slug=packed,
            process_types=process_types,
            buildpacks=[],
            description="Dockerfile",
            config_added=added,
            app_json=_read_app_json(app_dir),
        )

    async def _detect(self, runner: _Runner) -> tuple[list[Buildpack], list[str]]:
        for path in builtin_buildpacks():
            pack = Buildpack(url=f"builtin:{path.name}", path=path)
            name = await runner.detect(0, pack, required=False)
            if name is not None:
                return [pack], [name]
        raise BuildFailed(
            "No default language could be detected for this app. Add a Procfile (`web: ./start`), "
            "or a requirements.txt, uv.lock, package.json or index.html, or set a buildpack "
            "with `dockyard buildpacks:set URL`."
        )

    def _fetch(self, url: str) -> Buildpack:
        """A local directory as it is; a git URL cloned (``#ref`` picks a branch or tag)."""
        if url.startswith("builtin:"):
            for path in builtin_buildpacks():
                if path.name == url.removeprefix("builtin:"):
                    return Buildpack(url, path)
            raise BuildFailed(f"there is no built-in buildpack {url}")
        repository, _, ref = url.partition("#")
        if repository.startswith(("/", "file://")):
            path = Path(repository.removeprefix("file://"))
            if (path / "bin" / "compile").is_file() and not ref:
                return Buildpack(url, path)
            if not (path / "HEAD").is_file() and not (path / ".git").exists():
                raise BuildFailed(
                    f"buildpack {url} is neither a buildpack directory (with bin/compile) "
                    "nor a git repository"
                )
        target = self.checkouts / hashlib.sha256(url.encode()).hexdigest()[:16]
        shutil.rmtree(target, ignore_errors=True)
        command = ["git", "clone", "--quiet", "--depth", "1", *(["--branch", ref] if ref else [])]
        try:
            subprocess.run(
                [*command, "--", repository, str(target)],
                check=True,
                capture_output=True,
                timeout=300,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise BuildFailed(
                f"could not fetch buildpack {url}: {detail.decode(errors='replace').strip()[:300]}"
            ) from exc
        return Buildpack(url, target)


async def _discover_process_types(
    declared: dict[str, str] | None, defaults: dict[str, str], emit: Emit
) -> dict[str, str]:
    """The Procfile's types over the buildpack's defaults, reported as Heroku does."""
    await emit("-----> Discovering process types")
    if declared is not None:
        await emit(f"{INDENT}Procfile declares types -> {', '.join(declared) or '(none)'}")
    process_types = {**defaults, **(declared or {})}
    shown = ", ".join(t for t in defaults if t not in (declared or {}))
    if shown:
        await emit(f"{INDENT}Default types for buildpack -> {shown}")
    if not process_types:
        await emit(f"{INDENT}No process types declared; add a Procfile such as `web: ./start`")
    return process_types


class _Runner:
    """Runs buildpack scripts in the sandbox with the build's mounts and limits."""

    def __init__(
        self,
        *,
        identity: Identity,
        app_dir: Path,
        cache_dir: Path,
        env_dir: Path,
        copies: Path,
        job: Job,
        limits: Limits,
        started: float,
        emit: Emit,
    ) -> None:
        self.identity = identity
        self.copies = copies
        self.installed: dict[int, Buildpack] = {}
        self.limits = limits
        self.started = started
        self.watched = (app_dir, cache_dir)
        self.emit = emit
        self.mounts = [
            Mount(app_dir, "/app", writable=True),
            Mount(cache_dir, "/cache", writable=True),
            Mount(env_dir, "/env"),
            Mount(copies, "/buildpacks", writable=True),
            *interpreters.mounts(),
            *interpreters.tools(),
        ]
        self.env = {
            "HOME": "/app",
            "STACK": job.stack,
            "SOURCE_VERSION": job.version or "",
            "LANG": "C.UTF-8",
            "DOCKYARD_PYTHONS": " ".join(str(p) for p in interpreters.pythons()),
        }

    def remaining(self) -> float:
        left = self.limits.timeout - (time.monotonic() - self.started)
        if left <= 0:
            raise BuildFailed(f"the build ran over its time limit of {self.limits.timeout:.0f}s")
        return left

    def guard(self) -> str | None:
        used = sum(disk_usage(path) for path in self.watched)
        if used > self.limits.disk_bytes:
            return (
                f"the build used {slug.human_size(used)} of disk in /app and /cache, over "
                f"its limit of {slug.human_size(self.limits.disk_bytes)}, and was stopped"
            )
        return None

    def _install(self, index: int, pack: Buildpack) -> str:
        """A private, writable copy of the buildpack (it may write its ``export`` file)."""
        target = self.copies / str(index)
        if self.installed.get(index) != pack:
            shutil.rmtree(target, ignore_errors=True)
            self.installed[index] = pack
            shutil.copytree(pack.path, target, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            _chown_tree(target, self.identity)
        return f"/buildpacks/{index}"

    async def _step(self, command: list[str], emit: Emit) -> int:
        try:
            return await sandbox.run(
                command,
                mounts=self.mounts,
                env=self.env,
                identity=self.identity,
                emit=emit,
                timeout=self.remaining(),
                guard=self.guard,
            )
        except sandbox.StepLimit as exc:
            raise BuildFailed(exc.message) from exc
        except sandbox.StepTimeout as exc:
            raise BuildFailed(
                f"the build ran over its time limit and was stopped ({exc.message})"
            ) from exc

    async def detect(self, index: int, pack: Buildpack, *, required: bool) -> str | None:
        root = self._install(index, pack)
        lines: list[str] = []

        async def keep(line: str) -> None:
            lines.append(line)

        status = await self._step([f"{root}/bin/detect", "/app"], keep)
        if status == 0:
            return (lines[0].strip() if lines else "") or pack.path.name
        if required:
            raise BuildFailed(f"App not compatible with buildpack: {pack.url}")
        return None

    async def compile(self, index: int, pack: Buildpack, total: int) -> None:
        root = self._install(index, pack)
        # Each buildpack sees what the ones before it exported, as the classic API says.
        exports = " ".join(f'"/buildpacks/{i}/export"' for i in range(index))
        script = (
            f'for f in {exports}; do [ -f "$f" ] && . "$f"; done; '
            f'exec "{root}/bin/compile" /app /cache /env'
        )
        status = await self._step(["/bin/bash", "-c", script], self.emit)
        if status != 0:
            raise BuildFailed(
                f"the buildpack {pack.url} failed to compile the app (exit status {status}); "
                "its output above says why"
            )

    async def release(self, index: int, pack: Buildpack) -> dict[str, str]:
        root = self._install(index, pack)
        if not (pack.path / "bin" / "release").exists():
            return {}
        lines: list[str] = []

        async def keep(line: str) -> None:
            lines.append(line)

        status = await self._step([f"{root}/bin/release", "/app"], keep)
        if status != 0:
            raise BuildFailed(
                f"the buildpack {pack.url}'s bin/release failed (exit status {status})"
            )
        try:
            data = yaml.safe_load("\n".join(lines)) or {}
        except yaml.YAMLError as exc:
            raise BuildFailed(
                f"the buildpack {pack.url}'s bin/release printed invalid YAML"
            ) from exc
        types = data.get("default_process_types") if isinstance(data, dict) else None
        if not types:
            return {}
        if not isinstance(types, dict):
            raise BuildFailed(
                f"the buildpack {pack.url} gave default_process_types that aren't a map"
            )
        return {str(k): str(v) for k, v in types.items()}


def unpack(source: Path, target: Path, limit: int) -> None:
    """Extract a source tarball, refusing anything that would land outside ``target``."""
    target.mkdir(mode=0o700)
    total = 0
    try:
        with tarfile.open(source, "r:*") as tar:
            members = []
            for number, member in enumerate(tar):
                if number >= MAX_SOURCE_FILES:
                    raise BuildFailed(f"the source holds over {MAX_SOURCE_FILES} files")
                if member.name.startswith("/"):
                    raise BuildFailed(
                        f"the source holds {member.name!r}, which points outside the app "
                        "(an absolute path); archive paths relative to the app's root"
                    )
                total += max(member.size, 0)
                if total > limit:
                    raise BuildFailed(f"the source is over {slug.human_size(limit)} unpacked")
                members.append(member)
            tar.extractall(target, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise BuildFailed(
            f"the source holds {exc.tarinfo.name!r}, which points outside the app "
            "(an absolute path, '..', or a link out of the repository); remove it"
        ) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BuildFailed(f"the source archive could not be read: {exc}") from exc
    if not any(target.iterdir()):
        raise BuildFailed("the source is empty: commit your app's files and push again")


def _read_app_json(app_dir: Path) -> AppJson | None:
    path = app_dir / "app.json"
    if not path.is_file():
        return None
    try:
        return appjson.parse(path.read_text())
    except appjson.AppJsonError as exc:
        raise BuildFailed(exc.message) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"app.json could not be read: {exc}") from exc


def _read_procfile(app_dir: Path) -> dict[str, str] | None:
    path = app_dir / "Procfile"
    if path.is_symlink() or not path.exists():
        return None
    try:
        return procfile.parse(path.read_text())
    except procfile.ProcfileError as exc:
        raise BuildFailed(exc.message) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"the Procfile could not be read: {exc}") from exc


def disk_usage(root: Path) -> int:
    """Bytes of disk the files under ``root`` take (not following links)."""
    total = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total


def _chown_tree(root: Path, identity: Identity) -> None:
    if os.geteuid() != 0:
        return
    os.chown(root, identity.uid, identity.gid, follow_symlinks=False)
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.chown(
                os.path.join(directory, name), identity.uid, identity.gid, follow_symlinks=False
            )
