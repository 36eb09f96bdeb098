"""Dockyard's built-in classic buildpacks, offered through the same hook as third-party ones.

Detection tries them in this order: python, nodejs, static, procfile.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.plugins import hookimpl

HERE = Path(__file__).parent
ORDER = ("python", "nodejs", "static", "procfile")


@hookimpl
def dockyard_buildpacks() -> list[Path]:
    return [HERE / name for name in ORDER if (HERE / name / "bin" / "detect").exists()]
