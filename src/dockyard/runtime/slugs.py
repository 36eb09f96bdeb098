"""Unpacking slugs once per node into read-only directories that dynos share.

A slug lands in ``<root>/<uid>/<sha256>``: it is checked against its sha256, extracted
with tarfile's ``tar`` filter (nothing lands outside the tree, no setuid bits) and no
device files; links may point to absolute paths, since virtualenvs link to the host's
interpreter and links resolve inside the dyno's sandbox,
into a temporary directory, given to the app's user (the dyno sees ``/app`` as its own),
then renamed into place, so a half-unpacked slug is never used. ``<root>/<uid>`` is
root's alone (mode 0700), so no other app's user can reach it on the host. The same
slug promoted to another app is unpacked again under that app's uid.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from dockyard.runtime import SlugError


class SlugCache:
    """Slugs unpacked under ``root``, each once: concurrent starts of a release wait for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, asyncio.Lock] = {}

    async def unpacked(self, slug: Path, sha256: str, uid: int) -> Path:
        """The directory holding ``slug`` unpacked for ``uid``; unpacks it the first time."""
        target = self.root / str(uid) / sha256
        async with self._locks.setdefault(target, asyncio.Lock()):
            if not target.is_dir():
                await asyncio.to_thread(_unpack, slug, sha256, uid, target)
        return target



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
