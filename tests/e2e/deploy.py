"""Deploying to a real ``dockyard server`` as one user: git pushes and the API around them.

The end-to-end modules share these helpers: a :class:`Deployer` per module (one user, one
API client), what a push returned (:class:`Pushed`), and checks on build output and slugs.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from conftest import Server, api_client, git, git_url, wait_until


def remote_lines(output: str) -> list[str]:
    """The lines the server sent during a push (``remote: ``), without that prefix."""
    return [
        line.removeprefix("remote: ").rstrip()
        for line in output.splitlines()
        if line.startswith("remote:")
    ]


@dataclass
class Pushed:
    """What ``git push`` did: its exit status, the server's lines, all output, seconds taken."""

    status: int
    lines: list[str]
    output: str
    elapsed: float


@dataclass
class Deployer:
    """One user of a test server: git pushes with their token, and their API client."""

    server: Server
    token: str
    client: httpx.Client

    def create(self, name: str) -> str:
        """A new app called ``name``; returns the name."""
        reply = self.client.post("/apps", json={"name": name})
        assert reply.status_code == 201, reply.text
        return name

    def push(self, repo: Path, app: str, *refspec: str) -> Pushed:
        """``git push`` of ``refspec`` (``main`` when none) from ``repo`` to the app."""
        started = time.monotonic()
        done = git(
            "push",
            git_url(self.server, self.token, app),
            *(refspec or ("main",)),
            cwd=repo,
            check=False,
        )
        elapsed = time.monotonic() - started
        return Pushed(done.returncode, remote_lines(done.stdout), done.stdout, elapsed)

    def releases(self, app: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client.get(f"/apps/{app}/releases").json()
        return found

    def current(self, app: str) -> dict[str, Any]:
        return next(r for r in self.releases(app) if r["current"])

    def builds(self, app: str) -> list[dict[str, Any]]:
        reply = self.client.get(f"/apps/{app}/builds")
        assert reply.status_code in (200, 206), reply.text
        found: list[dict[str, Any]] = reply.json()
        return found

    def slug(self, app: str, slug_id: str) -> dict[str, Any]:
        """The slug's API record, plus ``path``: its blob, named by its SHA-256."""
        reply = self.client.get(f"/apps/{app}/slugs/{slug_id}")
        assert reply.status_code == 200, reply.text
        slug: dict[str, Any] = reply.json()
        algorithm, _, digest = slug["checksum"].partition(":")
        assert algorithm == "SHA256"
        path = self.server.data_dir / "blobs" / "slugs" / f"{digest}.tgz"
        assert path.is_file(), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        slug["path"] = path
        return slug

    def slug_members(self, release: dict[str, Any]) -> dict[str, tarfile.TarInfo]:
        """The files of ``release``'s slug, by their names in the tarball (``./...``)."""
        blob: Path = self.slug(release["app"]["name"], release["slug"]["id"])["path"]
        with tarfile.open(blob) as tar:
            return {m.name: m for m in tar.getmembers()}


@contextmanager
def deployer_for(server: Server, email: str) -> Iterator[Deployer]:
    """A new user ``email`` on ``server``, as a :class:`Deployer` while the block runs."""
    token = server.create_user(email)
    with api_client(server, token) as client:
        yield Deployer(server, token, client)


def in_order(lines: list[str], expected: list[str]) -> None:
    """Each expected line (or regex, when it starts with ^) is there, in this order."""
    at = 0
    for want in expected:
        for index in range(at, len(lines)):
            line = lines[index]
            if re.fullmatch(want, line) if want.startswith("^") else line == want:
                at = index + 1
                break
        else:
            raise AssertionError(f"{want!r} not found after line {at} of:\n" + "\n".join(lines))


def members(blob: Path) -> dict[str, tarfile.TarInfo]:
    """The files of a slug blob, by their paths in the app (no leading ``./``)."""
    with tarfile.open(blob) as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def read_member(blob: Path, name: str) -> str:
    """The text of the file at ``name`` (a path in the app) in a slug blob."""
    with tarfile.open(blob) as tar:
        handle = tar.extractfile(f"./{name}")
        assert handle is not None
        return handle.read().decode()


# --- dynos ---------------------------------------------------------------------------------

Json = dict[str, Any]


def dynos(deployer: Deployer, app: str) -> list[Json]:
    """The app's dynos, as the API lists them."""
    reply = deployer.client.get(f"/apps/{app}/dynos")
    assert reply.status_code == 200, reply.text
    found: list[Json] = reply.json()
    return found


def settle(deployer: Deployer, app: str, want: dict[str, int], timeout: float = 30.0) -> list[Json]:
    """Poll until the app runs exactly the dynos named in ``want`` (name → release), all up."""
    seen: list[Json] = []

    def settled() -> bool:
        nonlocal seen
        seen = dynos(deployer, app)
        got = {d["name"]: d["release"]["version"] for d in seen if d["state"] == "up"}
        return got == want and len(seen) == len(want)

    try:
        wait_until(settled, timeout=timeout, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"dynos did not settle on {want}: {seen}") from exc
    return seen


def fetch(dyno: Json, path: str = "/") -> Json:
    """What a web dyno answers on its own port."""
    reply = httpx.get(f"http://127.0.0.1:{dyno['port']}{path}", timeout=5)
    assert reply.status_code == 200
    body: Json = reply.json()
    return body


def refuses(port: int) -> bool:
    """Nothing answers HTTP on ``port`` any more."""
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.TransportError:
        return True
    return False


def scale(deployer: Deployer, app: str, kind: str, quantity: int) -> None:
    """Scale one process type through the API."""
    reply = deployer.client.patch(f"/apps/{app}/formation/{kind}", json={"quantity": quantity})
    assert reply.status_code == 200, reply.text
