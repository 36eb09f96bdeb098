"""The stack: the base image every dyno runs on under the ``docker`` runtime.

Like Heroku's stacks (``heroku-24``), Dockyard's has a name and a generation: ``dockyard-24``,
the stack every app reports (:data:`dockyard.apps.STACK`), is Debian 12 (bookworm), and its
image is ``dockyard/stack:24``. It is made
on the machine itself (``dockyard stack:build``): ``debootstrap`` of bookworm's ``minbase``
from the Debian mirror this machine's apt uses, plus what the built-in buildpacks' slugs run
with (:data:`PACKAGES`: Python with venv, Node.js, nginx), then ``docker import``. Nothing is
pulled from a registry. The image carries a label with a hash of its recipe (suite and
packages): a build is skipped while an image of the same recipe exists, and a changed
recipe builds a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError
from dockyard.runtime.docker_engine import Engine, EngineError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# What dynos of the built-in buildpacks run with: the python buildpack's virtualenvs link
# to Debian's /usr/bin/python3.X, the nodejs buildpack's apps run `node`, the static
# buildpack's run /usr/sbin/nginx; curl and procps for one-off dynos.
PACKAGES = (
    "bash",
    "ca-certificates",
    "curl",
    "netbase",
    "nginx-light",
    "nodejs",
    "procps",
    "python3",
    "python3-venv",
    "tzdata",
)
# Left out of the image: package caches, documentation and translations.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
RECIPE_LABEL = "dockyard.stack.recipe"
STACK_LABEL = "dockyard.stack"


class StackError(DockyardError):
    """The stack image could not be built, or is missing."""


@dataclass(frozen=True)
class Stack:
    name: str  # dockyard-24
    repository: str  # dockyard/stack
    tag: str  # 24
    suite: str  # bookworm
    packages: tuple[str, ...]

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def recipe(self) -> str:
        """A hash of what goes into the image: another recipe makes another image."""
        text = "\n".join([self.suite, "minbase", *sorted(self.packages), *PRUNE])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


STACK = Stack("dockyard-24", "dockyard/stack", "24", "bookworm", PACKAGES)

_DEB_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def find_mirror(sources: tuple[Path, ...] = SOURCES, suite: str = STACK.suite) -> str:
    """The Debian mirror apt uses here for ``suite`` (one-line or deb822 sources)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources"))
        elif source.is_file():
            files.append(source)
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        uris = _deb822_uris(text, suite) if path.suffix == ".sources" else _list_uris(text, suite)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _list_uris(text: str, suite: str) -> list[str]:
    found = (_DEB_LINE.match(line) for line in text.splitlines())
    return [m.group(1) for m in found if m is not None and m.group(2) == suite]


def _deb822_uris(text: str, suite: str) -> list[str]:
    uris = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = _deb822(stanza)
        if suite in fields.get("suites", "").split() and "deb" in fields.get("types", "").split():
            uris += fields.get("uris", "").split()
    return uris


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


async def current(engine: Engine, stack: Stack = STACK) -> bool:
    """True when the stack image of this recipe exists here."""
    found = await engine.image(stack.image)
    labels = ((found or {}).get("Config") or {}).get("Labels") or {}
    return found is not None and labels.get(RECIPE_LABEL) == stack.recipe


async def require(engine: Engine, stack: Stack = STACK) -> None:
    """Raise :class:`StackError` unless the stack image exists (of any recipe)."""
    if await engine.image(stack.image) is None:
        raise StackError(
            f"the stack image {stack.image} ({stack.name}) is missing on this machine; "
            "build it with `dockyard stack:build`"
        )


async def build(
    engine: Engine,
    *,
    stack: Stack = STACK,
    mirror: str | None = None,
    force: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    workdir: Path | None = None,
) -> bool:
    """Make the stack image; False (and nothing done) when it exists already."""
    if not force and await current(engine, stack):
        return False
    if os.geteuid() != 0:
        raise StackError("building the stack image needs root (debootstrap chroots)")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.access(debootstrap, os.X_OK):
        raise StackError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    mirror = mirror or find_mirror(suite=stack.suite)
    parent = workdir or Path("/var/tmp")  # noqa: S108 - a private directory under it
    scratch = Path(tempfile.mkdtemp(prefix="dockyard-stack-", dir=parent))

    try:
        root = scratch / "root"
        say(f"debootstrap {stack.suite} from {mirror}")
        argv = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(stack.packages)}",
            stack.suite,
            str(root),
            mirror,
        ]
        await _run(argv, say, what="debootstrap")
        await asyncio.to_thread(_prune, root)
        say(f"importing the root filesystem as {stack.image}")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"LABEL {STACK_LABEL}={stack.name} {RECIPE_LABEL}={stack.recipe}",
            'CMD ["/bin/bash"]',
        ]
        try:
            await engine.import_image(
                _tar(root), repository=stack.repository, tag=stack.tag, changes=changes
            )
        except EngineError as exc:
            raise StackError(f"could not import the stack image: {exc.message}") from exc
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    if not await current(engine, stack):
        raise StackError(f"the stack image {stack.image} is not there after its import")
    return True


def _prune(root: Path) -> None:
    for relative in PRUNE:
        target = root / relative
        if target.is_dir():
            for entry in target.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    (root / "app").mkdir(mode=0o755, exist_ok=True)


async def _run(argv: list[str], say: Callable[[str], None], *, what: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    tail: list[str] = []
    async for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        tail = [*tail[-19:], line]
        say(line)
    if await process.wait() != 0:
        raise StackError(
            f"{what} failed (exit status {process.returncode}): " + " | ".join(tail[-3:])
        )


async def _tar(root: Path) -> AsyncIterator[bytes]:
    """The root filesystem as a tar stream, owners as numbers."""
    process = await asyncio.create_subprocess_exec(
        "tar",
        "--numeric-owner",
        "--xattrs",
        "-C",
        str(root),
        "-cf",
        "-",
        ".",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    while chunk := await process.stdout.read(1 << 20):
        yield chunk
    errors = await process.stderr.read()
    if await process.wait() != 0:
        raise StackError(
            f"tar of the stack's root failed: {errors.decode(errors='replace')[-500:]}"
        )
