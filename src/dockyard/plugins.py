"""Dockyard's extension points, as pluggy hook specs.

Built-in buildpacks (and, later, add-on providers) are plugins on these same hooks;
a third-party package adds its own through the ``dockyard`` entry point group.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pluggy

hookspec = pluggy.HookspecMarker("dockyard")
hookimpl = pluggy.HookimplMarker("dockyard")


class Specs:
    @hookspec
    def dockyard_buildpacks(self) -> list[Path]:  # type: ignore[empty-body]
        """Directories of classic buildpacks (``bin/detect``, ``bin/compile``, ``bin/release``)
        to try, in order, when an app has no buildpacks set."""


@cache
def manager() -> pluggy.PluginManager:
    from dockyard import buildpacks

    plugins = pluggy.PluginManager("dockyard")
    plugins.add_hookspecs(Specs)
    plugins.register(buildpacks)
    plugins.load_setuptools_entrypoints("dockyard")
    return plugins


def builtin_buildpacks() -> list[Path]:
    found: list[Path] = []
    for paths in manager().hook.dockyard_buildpacks():
        found.extend(paths)
    return found
