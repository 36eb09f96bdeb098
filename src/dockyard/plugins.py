"""Dockyard's extension points, as pluggy hook specs.

Built-in buildpacks and add-on providers are plugins on these same hooks;
a third-party package adds its own through the ``dockyard`` entry point group.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from dockyard.addons import Provider
    from dockyard.settings import Settings

hookspec = pluggy.HookspecMarker("dockyard")
hookimpl = pluggy.HookimplMarker("dockyard")


class Specs:
    @hookspec
    def dockyard_buildpacks(self) -> list[Path]:  # type: ignore[empty-body]
        """Directories of classic buildpacks (``bin/detect``, ``bin/compile``, ``bin/release``)
        to try, in order, when an app has no buildpacks set."""

    @hookspec
    def dockyard_addon_providers(self, settings: Settings) -> list[Provider]:  # type: ignore[empty-body]
        """Add-on providers (:class:`dockyard.addons.Provider`), one per service they offer.

        A service name offered twice is an error; ``settings`` holds the operator's choices.
        """


@cache
def manager() -> pluggy.PluginManager:
    from dockyard import buildpacks
    from dockyard.addons import builtin

    plugins = pluggy.PluginManager("dockyard")
    plugins.add_hookspecs(Specs)
    plugins.register(buildpacks)
    plugins.register(builtin)
    plugins.load_setuptools_entrypoints("dockyard")
    return plugins


def builtin_buildpacks() -> list[Path]:
    found: list[Path] = []
    for paths in manager().hook.dockyard_buildpacks():
        found.extend(paths)
    return found
