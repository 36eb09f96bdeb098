"""Slugs unpack with the links virtualenvs need, and nothing that escapes the tree."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from dockyard.runtime import SlugError
from dockyard.runtime.slugs import SlugCache, sha256_of


def _slug(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size))
    return path


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_a_virtualenv_link_to_the_host_interpreter_is_kept(tmp_path: Path) -> None:
    slug = _slug(
        tmp_path / "slug.tgz",
        _file("./Procfile"),
        _link("./.venv/bin/python3.11", "/usr/bin/python3.11"),
    )
    unpacked = asyncio.run(SlugCache(tmp_path / "slugs").unpacked(slug, sha256_of(slug), 1234567))
    link = unpacked / ".venv" / "bin" / "python3.11"
    assert link.is_symlink()
    assert str(link.readlink()) == "/usr/bin/python3.11"


@pytest.mark.parametrize("member", [_file("../escape"), _link("up", "../../..")])
def test_members_outside_the_tree_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    escaping = _link("./lib", "/etc")
    slug = _slug(tmp_path / "slug.tgz", _file("./Procfile"), member, escaping, _file("./lib/evil"))
    with pytest.raises(SlugError):
        asyncio.run(SlugCache(tmp_path / "slugs").unpacked(slug, sha256_of(slug), 1234567))
    assert not (tmp_path / "escape").exists()
    assert not Path("/etc/evil").exists()
