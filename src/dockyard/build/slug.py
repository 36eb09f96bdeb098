"""Packing a built app directory into a slug: a gzipped tarball of ``/app``.

``.git`` and the patterns in ``.slugignore`` are left out. Patterns follow
``.gitignore``'s common forms: ``*.psd`` (any depth), ``/docs`` (from the root),
``tmp/`` (directories only).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError


class SlugTooLarge(DockyardError):
    """The compressed slug is over the size limit."""


@dataclass(frozen=True)
class Packed:
    path: Path
    size: int
    sha256: str


def ignore_patterns(root: Path) -> list[str]:
    path = root / ".slugignore"
    if not path.is_file():
        return [".git"]
    lines = path.read_text(errors="replace").splitlines()
    return [".git", *(line.strip() for line in lines if line.strip() and not line.startswith("#"))]


def ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    for raw in patterns:
        dir_only = raw.endswith("/")
        pattern = raw.rstrip("/")
        if dir_only and not is_dir:
            continue
        if pattern.startswith("/"):
            if fnmatch.fnmatchcase(relative, pattern.lstrip("/")):
                return True
        elif "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def pack(root: Path, target: Path, limit: int) -> Packed:
    """Write the slug of ``root`` to ``target``; raise :class:`SlugTooLarge` over ``limit``."""
    patterns = ignore_patterns(root)
    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        for directory, dirnames, filenames in os.walk(root):
            base = Path(directory)
            rel_dir = base.relative_to(root).as_posix()
            kept = []
            for dirname in sorted(dirnames):
                relative = dirname if rel_dir == "." else f"{rel_dir}/{dirname}"
                if not ignored(relative, True, patterns):
                    kept.append(dirname)
                    if (base / dirname).is_symlink():
                        tar.add(base / dirname, arcname=f"./{relative}", recursive=False)
            dirnames[:] = [d for d in kept if not (base / d).is_symlink()]
            if rel_dir != ".":
                tar.add(base, arcname=f"./{rel_dir}", recursive=False)
            for filename in sorted(filenames):
                relative = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if not ignored(relative, False, patterns):
                    tar.add(base / filename, arcname=f"./{relative}", recursive=False)
    size = target.stat().st_size
    if size > limit:
        target.unlink()
        raise SlugTooLarge(
            f"the compressed slug is {human_size(size)}, over the limit of {human_size(limit)}; "
            "leave files out with .slugignore"
        )
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return Packed(target, size, digest.hexdigest())


def human_size(size: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.1f}G"
