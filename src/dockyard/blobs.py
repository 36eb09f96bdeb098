"""The blob store: slugs, build caches and source archives, addressed by key.

One narrow interface; the local directory store is the default (``DOCKYARD_BLOB_URL``
``file:///path``). Slugs are addressed by their SHA-256, so releases that share a slug
share one blob.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from dockyard.errors import NotFound, SettingsError


class BlobStore(Protocol):
    def put(self, key: str, source: Path) -> None:
        """Store the file ``source`` under ``key`` (moving it when possible)."""

    def path(self, key: str) -> Path:
        """A local path to read the blob ``key`` from."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _file(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"bad blob key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: Path) -> None:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(handle)
        shutil.move(source, temporary)
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)

    def path(self, key: str) -> Path:
        target = self._file(key)
        if not target.is_file():
            raise NotFound(f"blob {key} is missing from the blob store")
        return target

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)


def open_store(url: str) -> BlobStore:
    if url.startswith("file://"):
        return DirectoryStore(Path(url.removeprefix("file://")))
    if url.startswith("/"):
        return DirectoryStore(Path(url))
    raise SettingsError(f"DOCKYARD_BLOB_URL={url!r}: only directories (file://) are supported yet")
