"""The Python interpreters on the host that apps may ask for (``.python-version``).

Debian's ``/usr/bin/python3.X`` are inside every sandbox already (``/usr``); others, such
as pyenv's under ``/root``, are mounted read-only at the same path so that virtualenvs
made at build time keep working in dynos.
"""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
from functools import cache
from pathlib import Path

from dockyard.build.sandbox import Mount

_VERSIONED = re.compile(r"^python3\.\d+$")
TOOLS = "/opt/dockyard/bin"


def _roots() -> list[Path]:
    roots = [Path("/usr/local/bin")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        roots += sorted(p / "bin" for p in pyenv.iterdir() if (p / "bin").is_dir())
    return [Path("/usr/bin"), *roots]


@cache
def pythons() -> tuple[Path, ...]:
    """Every ``python3.X`` found, newest version first within each place."""
    found: list[Path] = []
    for root in _roots():
        if not root.is_dir():
            continue
        names = sorted((n for n in os.listdir(root) if _VERSIONED.match(n)), reverse=True)
        found += [root / n for n in names if os.access(root / n, os.X_OK)]
    return tuple(found)


def mounts() -> list[Mount]:
    """Read-only mounts for the interpreters outside ``/usr``."""
    seen: list[Mount] = []
    for python in pythons():
        if python.parts[1] == "usr":
            continue
        prefix = python.parent.parent
        if all(m.source != prefix for m in seen):
            seen.append(Mount(prefix, str(prefix)))
    return seen


@cache
def _uv() -> Path | None:
    """The ``uv`` binary of the PyPI ``uv`` package installed with Dockyard, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "uv"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("uv")
    return Path(found) if found else None


def tools() -> list[Mount]:
    """Build tools from the host, read-only under ``/opt/dockyard/bin`` (the python
    buildpack's ``uv``)."""
    uv = _uv()
    return [Mount(uv, f"{TOOLS}/uv")] if uv else []
