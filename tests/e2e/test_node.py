"""The built-in nodejs buildpack, end to end: push sample Node apps with the real git client."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import APPS, Server, api_client, git, git_url, make_repo

pytestmark = pytest.mark.e2e


@functools.cache
def host_node() -> str:
    """The version of the Node.js builds use: the host's (the buildpack downloads none)."""
    done = subprocess.run(
        ["/usr/bin/node", "--version"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix("v")


@dataclass
class Pushed:
    status: int
    lines: list[str]
    output: str
    seconds: float


@dataclass
class Node:
    server: Server
    token: str
    client: httpx.Client

    def create(self, name: str) -> dict[str, Any]:
        reply = self.client.post("/apps", json={"name": name})
        assert reply.status_code == 201, reply.text
        created: dict[str, Any] = reply.json()
        return created

    def push(self, repo: Path, app: str, refspec: str = "main") -> Pushed:
        started = time.monotonic()
        done = git("push", git_url(self.server, self.token, app), refspec, cwd=repo, check=False)
        lines = [
            line.removeprefix("remote: ").rstrip()
            for line in done.stdout.splitlines()
            if line.startswith("remote:")
        ]
        return Pushed(done.returncode, lines, done.stdout, time.monotonic() - started)

    def current(self, app: str) -> dict[str, Any]:
        releases: list[dict[str, Any]] = self.client.get(f"/apps/{app}/releases").json()
        return next(r for r in releases if r["current"])

    def builds(self, app: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client.get(f"/apps/{app}/builds").json()
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


@pytest.fixture(scope="module")
def node(server: Server) -> Iterator[Node]:
    token = server.create_user("node@example.com")
    with api_client(server, token) as client:
        yield Node(server, token, client)


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
    with tarfile.open(blob) as tar:
        return {m.name.removeprefix("./"): m for m in tar.getmembers()}


def read_member(blob: Path, name: str) -> str:
    with tarfile.open(blob) as tar:
        handle = tar.extractfile(f"./{name}")
        assert handle is not None
        return handle.read().decode()


def cache_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def checkout(node: Node, app: str, source: Path, target: Path) -> Path:
    """A copy of ``source`` at what the app's main branch holds now."""
    git("clone", "--quiet", str(source), str(target), cwd=source.parent)
    git("fetch", "--quiet", git_url(node.server, node.token, app), "main", cwd=target)
    git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=target)
    return target


@dataclass
class Deployed:
    name: str
    app_id: str
    repo: Path
    first: Pushed
    sha: str


@pytest.fixture(scope="module")
def express(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """tests/apps/node-express pushed once; the tests below push it again."""
    app = node.create("node-express")
    repo = make_repo(APPS / "node-express", tmp_path_factory.mktemp("express") / "repo")
    pushed = node.push(repo, app["name"])
    assert pushed.status == 0, pushed.output
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    return Deployed(app["name"], app["id"], repo, pushed, sha)


def test_express_app_builds_like_heroku(node: Node, express: Deployed) -> None:
    in_order(
        express.first.lines,
        [
            "-----> Building on the dockyard-24 stack",
            "-----> Node.js app detected",
            "-----> Creating runtime environment",
            "       NODE_ENV=production",
            "-----> Installing binaries",
            "       engines.node (package.json):  >=18",
            f"^       Using Node.js {re.escape(host_node())}, the version installed on this .*",
            "^       Using npm \\d+\\.\\d+\\.\\d+",
            "-----> Installing dependencies",
            "       Running heroku-prebuild",
            "       prebuild ran",
            "       Installing node modules (package-lock.json)",
            "^       added \\d+ packages in .*",
            "-----> Caching build",
            "-----> Build",
            "       Running build",
            "       build wrote build/info.json (NODE_ENV=production)",
            "-----> Pruning devDependencies",
            "^       removed 1 package in .*",
            "       Running heroku-cleanup",
            "       cleanup ran",
            "-----> Build succeeded!",
            "-----> Discovering process types",
            "       Default types for buildpack -> web",
            "-----> Compressing...",
            "-----> Launching...",
            "       Released v2",
        ],
    )
    assert not any(
        "Using node_modules from the build cache" in line for line in express.first.lines
    )

    (build,) = node.builds(express.name)
    assert build["status"] == "succeeded"
    assert build["source_blob"]["version"] == express.sha
    release = node.current(express.name)
    assert release["version"] == 2
    assert release["description"] == f"Deploy {express.sha[:7]}"
    assert release["slug"]["id"] == build["slug"]["id"]

    slug = node.slug(express.name, build["slug"]["id"])
    assert slug["process_types"] == {"web": "npm start"}
    assert slug["commit"] == express.sha
    assert slug["buildpack_provided_description"] == "Node.js"
    blob = slug["path"]
    files = members(blob)
    assert "node_modules/express/package.json" in files
    assert "node_modules/accepts/package.json" in files, "express's own dependencies are kept"
    assert not any(name.startswith("node_modules/kleur") for name in files), (
        "devDependencies are pruned"
    )
    info = json.loads(read_member(blob, "build/info.json"))
    assert info["node"] == f"v{host_node()}"
    assert info["env"] == "production"
    profile = read_member(blob, ".profile.d/nodejs.sh")
    assert 'export PATH="/app/node_modules/.bin:$PATH"' in profile
    assert "NODE_ENV=${NODE_ENV:-production}" in profile


def test_second_push_reuses_the_cache(node: Node, express: Deployed, tmp_path: Path) -> None:
    repo = checkout(node, express.name, express.repo, tmp_path / "repo")
    npm_cache = node.server.data_dir / "cache" / express.app_id / "npm" / "_cacache"
    before = cache_files(npm_cache)
    assert before, "the first build filled npm's cache"
    git("commit", "--quiet", "--allow-empty", "--message", "Nothing changed", cwd=repo)
    pushed = node.push(repo, express.name)
    assert pushed.status == 0, pushed.output
    in_order(
        pushed.lines,
        [
            "-----> Node.js app detected",
            "-----> Installing dependencies",
            "       prebuild ran",
            "       Using node_modules from the build cache (package-lock.json unchanged); "
            "nothing to download",
            "-----> Build",
            "       build wrote build/info.json (NODE_ENV=production)",
            "-----> Pruning devDependencies",
            "-----> Build succeeded!",
        ],
    )
    assert not any(line.startswith("       Installing node modules") for line in pushed.lines)
    assert not any(re.match(r"       added \d+ packages", line) for line in pushed.lines)
    assert "-----> Caching build" not in pushed.lines
    assert cache_files(npm_cache) == before, "nothing was downloaded into npm's cache"

    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    build = next(b for b in node.builds(express.name) if b["source_blob"]["version"] == sha)
    assert build["status"] == "succeeded"
    blob = node.slug(express.name, build["slug"]["id"])["path"]
    files = members(blob)
    assert "node_modules/express/package.json" in files
    assert not any(name.startswith("node_modules/kleur") for name in files)
    print(f"node-express push: cold {express.first.seconds:.1f}s, warm {pushed.seconds:.1f}s")


def test_engines_node_out_of_range_fails_and_keeps_the_release(
    node: Node, express: Deployed, tmp_path: Path
) -> None:
    repo = checkout(node, express.name, express.repo, tmp_path / "repo")
    before = node.current(express.name)
    package = json.loads((repo / "package.json").read_text())
    package["engines"]["node"] = ">=99"
    (repo / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    git("commit", "--quiet", "--all", "--message", "Ask for Node 99", cwd=repo)
    pushed = node.push(repo, express.name)
    assert pushed.status != 0
    assert any(
        re.fullmatch(
            r" !     package\.json asks for Node\.js >=99 \(engines\.node\), but this server "
            rf"has Node\.js {re.escape(host_node())} \(/usr/bin/node\)\.",
            line,
        )
        for line in pushed.lines
    ), pushed.output
    assert "-----> Installing dependencies" not in pushed.lines
    assert "pre-receive hook declined" in pushed.output
    assert node.current(express.name)["id"] == before["id"], "the previous release stays current"
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    build = next(b for b in node.builds(express.name) if b["source_blob"]["version"] == sha)
    assert build["status"] == "failed"


@pytest.mark.parametrize("tool", ["yarn", "pnpm"])
def test_lockfile_picks_the_package_manager(node: Node, tmp_path: Path, tool: str) -> None:
    app = node.create(f"node-{tool}")["name"]
    repo = make_repo(APPS / f"node-{tool}", tmp_path / "repo")
    pushed = node.push(repo, app)
    assert pushed.status == 0, pushed.output
    lockfile = {"yarn": "yarn.lock", "pnpm": "pnpm-lock.yaml"}[tool]
    in_order(
        pushed.lines,
        [
            "-----> Node.js app detected",
            f"^       Using {tool} \\d+\\.\\d+\\.\\d+ \\(through corepack\\)",
            "-----> Installing dependencies",
            f"       Installing node modules ({lockfile})",
            "-----> Caching build",
            "-----> Build",
            f"       built with {tool}",
            "-----> Pruning devDependencies",
            "-----> Build succeeded!",
            "       Released v2",
        ],
    )
    (build,) = node.builds(app)
    slug = node.slug(app, build["slug"]["id"])
    assert slug["process_types"] == {"web": "npm start"}
    blob = slug["path"]
    files = members(blob)
    assert any(name.startswith("node_modules/ms") for name in files), sorted(files)[:20]
    assert not any(name.startswith("node_modules/kleur") for name in files), (
        "devDependencies are pruned"
    )
    assert "package.json" in files
    assert lockfile in files
    assert json.loads(read_member(blob, "package.json")).get("packageManager") is None, (
        "corepack does not rewrite package.json"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"package.json": "{ not json"}, " !     package.json is not valid JSON: "),
        (
            {"yarn.lock": "# yarn lockfile v1\n"},
            " !     Found lockfiles of different package managers: package-lock.json, yarn.lock.",
        ),
        (
            {"package.json": json.dumps({"name": "x", "engines": {"node": "twenty"}})},
            ' !     engines.node in package.json is "twenty", which is not a semver range.',
        ),
    ],
    ids=["invalid-json", "two-lockfiles", "bad-range"],
)
def test_bad_package_json_is_refused_clearly(
    node: Node, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    app = node.create(f"node-bad-{uuid.uuid4().hex[:8]}")["name"]
    source = tmp_path / "source"
    shutil.copytree(APPS / "node-express", source)
    for name, text in change.items():
        (source / name).write_text(text)
    repo = make_repo(source, tmp_path / "repo")
    pushed = node.push(repo, app)
    assert pushed.status != 0
    assert any(line.startswith(message) for line in pushed.lines), pushed.output
    assert node.current(app)["version"] == 1, "no release was made"
    (build,) = node.builds(app)
    assert build["status"] == "failed"
