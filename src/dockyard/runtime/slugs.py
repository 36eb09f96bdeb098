"""Unpacking slugs once per node into read-only directories that dynos share.

A slug lands in ``<root>/<uid>/<sha256>``: it is checked against its sha256, extracted
with tarfile's ``tar`` filter (nothing lands outside the tree, no setuid bits) and no
device files; links may point to absolute paths, since virtualenvs link to the host's
interpreter and links resolve inside the dyno's sandbox,
into a temporary directory, given to the app's user (the dyno sees ``/app`` as its own),
then renamed into place, so a half-unpacked slug is never used. ``<root>/<uid>`` is
root's alone (mode 0700), so no other app's user can reach it on the host. The same
slug promoted to another app is unpacked again under that app's uid.

An unpacked slug that no dyno has started from or run on for a while is removed
(:meth:`SlugCache.prune`): renamed out of the way under its lock, then deleted, so a start
either finds it whole or unpacks it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from dockyard.runtime import SlugError


class SlugCache:
    """Slugs unpacked under ``root``, each once: concurrent starts of a release wait for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, asyncio.Lock] = {}
        self._handed_out: dict[Path, float] = {}  # when unpacked() last returned each

    async def unpacked(self, slug: Path, sha256: str, uid: int) -> Path:
        """The directory holding ``slug`` unpacked for ``uid``; unpacks it the first time."""
        target = self.root / str(uid) / sha256
        async with self._locks.setdefault(target, asyncio.Lock()):
            if not target.is_dir():
                await asyncio.to_thread(_unpack, slug, sha256, uid, target)
            self._handed_out[target] = time.time()
        return target

    async def prune(self, used: Mapping[Path, float], *, idle: float, now: float) -> list[Path]:
        """Remove the slugs that no dyno has started from or run on for ``idle`` seconds.

        ``used`` says when dynos last ran on each unpacked slug (``now`` for the ones that
        run). Leftovers of unpacks and removals that were cut short go too. Returns the
        slugs removed.
        """
        before = now - idle
        last = dict(self._handed_out)
        for target, at in used.items():
            last[target] = max(last.get(target, 0.0), at)
        removed = []
        for target in await asyncio.to_thread(_idle, self.root, last, before):
            async with self._locks.setdefault(target, asyncio.Lock()):
                # Look again under the lock: a dyno may have started from it meanwhile.
                if self._handed_out.get(target, 0.0) >= before:
                    continue
                if await asyncio.to_thread(_remove_unless_newer, target, before):
                    self._handed_out.pop(target, None)
                    removed.append(target)
        return removed


def _idle(root: Path, last: Mapping[Path, float], before: float) -> list[Path]:
    """The slugs under ``root`` unpacked and last used before ``before``; removes leftovers."""
    idle = []
    for owner in _entries(root):
        for target in _entries(owner):
            if target.name.startswith("."):  # .unpack-* or .remove-*
                if _changed(target) < before:
                    shutil.rmtree(target, ignore_errors=True)
            elif last.get(target, 0.0) < before and _changed(target) < before:
                idle.append(target)
    return idle


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _changed(path: Path) -> float:
    """When ``path`` was unpacked, or renamed; 0 when it is gone.

    Its ctime, which no one can set: the mtime is the build's, from the slug.
    """
    try:
        return path.lstat().st_ctime
    except FileNotFoundError:
        return 0.0


def _remove_unless_newer(target: Path, before: float) -> bool:
    """Remove an unpacked slug unless it was unpacked again since ``before``."""
    if _changed(target) >= before:
        return False
    trash = target.with_name(f".remove-{uuid.uuid4().hex}")
    try:
        target.rename(trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _slug_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    checked = tarfile.tar_filter(member, path)
    if checked.isdev():
        raise tarfile.FilterError(f"slug member {member.name!r} is a device file")
    return checked


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(slug: Path, sha256: str, uid: int, target: Path) -> None:
    if not slug.is_file():
        raise SlugError(f"slug {slug} does not exist")
    if (actual := sha256_of(slug)) != sha256:
        raise SlugError(f"slug {slug} has sha256 {actual}, expected {sha256}")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target.parent, 0o700)
    temp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        try:
            with tarfile.open(slug, "r:*") as tar:
                tar.extractall(temp, filter=_slug_filter)  # noqa: S202 - filtered
        except (tarfile.TarError, OSError) as exc:
            raise SlugError(f"could not unpack slug {slug}: {exc}") from exc
        os.chmod(temp, 0o755)  # noqa: S103 - /app; its parent keeps others out
        if os.geteuid() == 0:
            for directory, dirnames, filenames in os.walk(temp):
                os.lchown(directory, uid, uid)
                for name in (*dirnames, *filenames):
                    os.lchown(os.path.join(directory, name), uid, uid)
        try:
            temp.rename(target)
        except OSError:
            # Another process unpacked it first; theirs is as good as ours.
            if not target.is_dir():
                raise
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
