"""The built-in nodejs buildpack, end to end: push sample Node apps with the real git client."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import APPS, Server, git, git_url, make_repo
from e2e.deploy import Deployer, Pushed, deployer_for, in_order, members, read_member

pytestmark = pytest.mark.e2e


@functools.cache
def host_node() -> str:
    """The version of the Node.js builds use: the host's (the buildpack downloads none)."""
    done = subprocess.run(
        ["/usr/bin/node", "--version"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix("v")


@pytest.fixture(scope="module")
def node(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "node@example.com") as node:
        yield node


def cache_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def checkout(node: Deployer, app: str, source: Path, target: Path) -> Path:
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
def express(node: Deployer, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """tests/apps/node-express pushed once; the tests below push it again."""
    app = node.create("node-express")
    app_id = node.client.get(f"/apps/{app}").json()["id"]
    repo = make_repo(APPS / "node-express", tmp_path_factory.mktemp("express") / "repo")
    pushed = node.push(repo, app)
    assert pushed.status == 0, pushed.output
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    return Deployed(app, app_id, repo, pushed, sha)


def test_express_app_builds_like_heroku(node: Deployer, express: Deployed) -> None:
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


def test_second_push_reuses_the_cache(node: Deployer, express: Deployed, tmp_path: Path) -> None:
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
    print(f"node-express push: cold {express.first.elapsed:.1f}s, warm {pushed.elapsed:.1f}s")


def test_engines_node_out_of_range_fails_and_keeps_the_release(
    node: Deployer, express: Deployed, tmp_path: Path
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
def test_lockfile_picks_the_package_manager(node: Deployer, tmp_path: Path, tool: str) -> None:
    app = node.create(f"node-{tool}")
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
    node: Deployer, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    app = node.create(f"node-bad-{uuid.uuid4().hex[:8]}")
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
