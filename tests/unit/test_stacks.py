"""The stack's name, recipe and the Debian mirror it is built from (no Docker needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dockyard import apps, stacks


def test_the_stack_image_is_the_stack_apps_report() -> None:
    assert stacks.STACK.name == apps.STACK == "dockyard-24"
    assert stacks.STACK.image == "dockyard/stack:24"


def test_a_changed_recipe_is_another_image() -> None:
    more = replace(stacks.STACK, packages=(*stacks.STACK.packages, "git"))
    assert more.recipe != stacks.STACK.recipe
    assert replace(stacks.STACK, packages=tuple(reversed(stacks.PACKAGES))).recipe == (
        stacks.STACK.recipe
    )


def test_the_mirror_comes_from_apt_sources(tmp_path: Path) -> None:
    listed = tmp_path / "sources.list"
    listed.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian/ bookworm main contrib\n"
    )
    assert stacks.find_mirror((listed,)) == "http://mirror.example/debian"

    directory = tmp_path / "sources.list.d"
    directory.mkdir()
    (directory / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://other.example/debian-security\n"
        "Suites: bookworm-security\n"
        "\n"
        "Types: deb deb-src\n"
        "# a snapshot would go here\n"
        "URIs: http://deb822.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    (directory / "nodesource.list").write_text(
        "deb https://deb.nodesource.com/node_20.x nodistro main\n"
    )
    assert stacks.find_mirror((tmp_path / "missing", directory)) == "http://deb822.example/debian"
    assert stacks.find_mirror((tmp_path / "missing",)) == stacks.DEFAULT_MIRROR
