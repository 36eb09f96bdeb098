"""Release images: a slug as one thin layer on the stack image, one image per release.

``dockyard/app-<app id>:v<version>`` is built from a context of two files: a Dockerfile
``FROM`` the stack image (:mod:`dockyard.stacks`) that ``ADD``s ``slug.tar``, the slug
checked against its sha256 and rewritten with every member under ``app/`` owned by the
app's uid (the same filter as :mod:`dockyard.runtime.slugs`: nothing outside the tree, no
device files). The layer is the slug, nothing more. An image of the same app, slug and uid
(a rollback, a config change) is tagged again rather than built again. Config vars are
never in an image: dynos get them as their container's environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard import stacks
from dockyard.build.dockerfile import MARKER
from dockyard.runtime import DynoError, DynoSpec, SlugError
from dockyard.runtime.docker_engine import Engine, EngineError, file_chunks
from dockyard.runtime.slugs import _slug_filter, sha256_of

REPOSITORY_PREFIX = "dockyard/app-"
SCOPE_LABEL = "dockyard.scope"  # the node's data directory (see docker.scope_of)
APP_LABEL = "dockyard.app"
BUILD_LABEL = "dockyard.build"  # images built from an app's Dockerfile
SLUG_LABEL = "dockyard.slug"
UID_LABEL = "dockyard.uid"
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def scope_of(data_dir: Path) -> str:
    """The label value that marks a data directory's containers and images on the engine."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def repository(app_id: str) -> str:
    return REPOSITORY_PREFIX + (_UNSAFE.sub("-", app_id.lower()).strip("-") or "app")


def reference(spec: DynoSpec) -> str:
    return f"{repository(spec.app_id)}:v{spec.release_version}"


@dataclass(frozen=True)
class ReleaseImage:
    reference: str
    # Built from the app's Dockerfile: run as the image says, not as a slug on the stack.
    dockerfile: bool


class ReleaseImages:
    """Builds (once) and finds the image of each release the dynos run."""

    def __init__(
        self, engine: Engine, scratch: Path, *, scope: str, stack: stacks.Stack = stacks.STACK
    ) -> None:
        self.engine = engine
        self.scope = scope
        self.scratch = scratch
        self.stack = stack
        self._locks: dict[str, asyncio.Lock] = {}

    async def for_spec(self, spec: DynoSpec) -> ReleaseImage:
        """The image of the spec's release, built from its slug if there is none yet."""
        image = reference(spec)
        labels = {
            SCOPE_LABEL: self.scope,
            APP_LABEL: spec.app_id,
            SLUG_LABEL: spec.slug_sha256,
            UID_LABEL: str(spec.app_uid),
        }
        async with self._locks.setdefault(image, asyncio.Lock()):
            found = await self.engine.image(image)
            if found is not None and _labels(found).items() >= labels.items():
                return ReleaseImage(image, dockerfile=False)
            built = await asyncio.to_thread(_dockerfile_image, spec)
            if built is not None:
                # A Dockerfile app's release: its image, built at push time, tagged for it.
                if await self.engine.image(built) is None:
                    raise DynoError(
                        f"the image of v{spec.release_version} ({built}, built from the app's "
                        "Dockerfile) is no longer on this machine; push the app again"
                    )
                await self.engine.tag(built, repository(spec.app_id), f"v{spec.release_version}")
                return ReleaseImage(image, dockerfile=True)
            for other in await self.engine.images(labels):
                # The same slug for the same uid under another release: only a new tag.
                await self.engine.tag(
                    str(other["Id"]), repository(spec.app_id), image.rsplit(":", 1)[1]
                )
                return ReleaseImage(image, dockerfile=False)
            await self._build(spec, image, labels)
        return ReleaseImage(image, dockerfile=False)

    async def prune(self, *, used: set[str], before: float) -> list[str]:
        """Remove this node's release images that no container uses, built before ``before``
        (seconds since the epoch); a release started again later is built again."""
        removed = []
        for image in await self.engine.images({SCOPE_LABEL: self.scope}):
            if str(image["Id"]) in used or float(image.get("Created", 0)) >= before:
                continue
            if BUILD_LABEL in (image.get("Labels") or {}):
                continue  # built from a Dockerfile: no slug to build it again from
            removed.append(str(image["Id"]))
            for tag in image.get("RepoTags") or [str(image["Id"])]:
                await self.engine.remove_image(tag)
        return removed

    async def _build(self, spec: DynoSpec, image: str, labels: dict[str, str]) -> None:
        try:
            await stacks.require(self.engine, self.stack)
        except stacks.StackError as exc:
            raise DynoError(exc.message) from exc
        self.scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="context-", suffix=".tar", dir=self.scratch)
        os.close(fd)
        context = Path(name)
        try:
            await asyncio.to_thread(_write_context, spec, self.stack.image, context)
            output: list[str] = []
            try:
                await self.engine.build(
                    file_chunks(context),
                    tag=image,
                    labels={**labels, "dockyard.release": str(spec.release_version)},
                    on_output=output.append,
                )
            except EngineError as exc:
                said = "".join(output).strip().splitlines()[-3:]
                raise DynoError(
                    f"could not build the release image {image}: {exc.message}"
                    + (f" ({' | '.join(said)})" if said else "")
                ) from exc
        finally:
            context.unlink(missing_ok=True)


def _dockerfile_image(spec: DynoSpec) -> str | None:
    """The image id a Dockerfile app's slug names (its first and only member), else None."""
    if not spec.slug_path.is_file():
        raise SlugError(f"slug {spec.slug_path} does not exist")
    try:
        with tarfile.open(spec.slug_path, "r:*") as tar:
            first = tar.next()
            if first is None or first.name.removeprefix("./") != MARKER or not first.isreg():
                return None
            handle = tar.extractfile(first)
            record = json.loads(handle.read(64 * 1024)) if handle is not None else {}
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise SlugError(f"could not read slug {spec.slug_path}: {exc}") from exc
    if sha256_of(spec.slug_path) != spec.slug_sha256:
        raise SlugError(f"slug {spec.slug_path} does not match its sha256 {spec.slug_sha256}")
    image = record.get("image") if isinstance(record, dict) else None
    return str(image) if image else None


def _labels(image: dict[str, object]) -> dict[str, str]:
    config = image.get("Config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    return dict(labels) if isinstance(labels, dict) else {}


def _write_context(spec: DynoSpec, base: str, context: Path) -> None:
    """The build context: a Dockerfile and the slug as ``slug.tar`` (members under app/)."""
    if not spec.slug_path.is_file():
        raise SlugError(f"slug {spec.slug_path} does not exist")
    if (actual := sha256_of(spec.slug_path)) != spec.slug_sha256:
        raise SlugError(f"slug {spec.slug_path} has sha256 {actual}, expected {spec.slug_sha256}")
    slug_tar = context.with_suffix(".slug")
    uid = spec.app_uid
    try:
        with tarfile.open(spec.slug_path, "r:*") as source, tarfile.open(slug_tar, "w") as out:
            made: set[str] = set()

            def directory(name: str) -> None:
                # Parents the slug does not list are the app's too, not root's.
                if name in made:
                    return
                if "/" in name:
                    directory(name.rsplit("/", 1)[0])
                entry = tarfile.TarInfo(name)
                entry.type, entry.mode, entry.uid, entry.gid = tarfile.DIRTYPE, 0o755, uid, uid
                out.addfile(entry)
                made.add(name)

            directory("app")
            for member in source:
                checked = _slug_filter(member, "/app")
                relative = os.path.normpath(checked.name).lstrip("/")
                if relative in (".", ""):
                    continue
                directory(f"app/{relative}".rsplit("/", 1)[0])
                if checked.isdir():
                    made.add(f"app/{relative}")
                entry = checked.replace(
                    name=f"app/{relative}", uid=uid, gid=uid, uname="", gname="", deep=False
                )
                if entry.islnk():
                    entry = entry.replace(
                        linkname=f"app/{os.path.normpath(entry.linkname)}", deep=False
                    )
                data = source.extractfile(member) if member.isreg() else None
                out.addfile(entry, data)
    except (tarfile.TarError, OSError) as exc:
        slug_tar.unlink(missing_ok=True)
        raise SlugError(f"could not unpack slug {spec.slug_path}: {exc}") from exc
    try:
        dockerfile = f"FROM {base}\nADD slug.tar /\nWORKDIR /app\n".encode()
        with tarfile.open(context, "w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(slug_tar, "slug.tar")
    finally:
        slug_tar.unlink(missing_ok=True)
