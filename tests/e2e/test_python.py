"""The python buildpack end to end: real ``git push`` to a real server, then the slug run.

The Flask sample is pushed once for the module (a cold build downloads its packages); the
tests then look at that build, push it again warm, and push broken variants of it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import APPS, Server, free_port, git, make_repo, wait_until
from dockyard.build import interpreters, sandbox
from dockyard.store import Database, Slug
from e2e.deploy import Deployer, deployer_for, in_order

pytestmark = pytest.mark.e2e


def unpack_slug(server: Server, release: dict[str, Any], target: Path) -> Path:
    """The release's slug, unpacked at ``target`` by tar (the venv links to its interpreter)."""
    database = Database(f"sqlite:///{server.data_dir / 'dockyard.db'}")
    try:
        with database.transaction() as session:
            slug = session.get(Slug, uuid.UUID(release["slug"]["id"]))
            assert slug is not None
            blob = server.data_dir / "blobs" / slug.blob
    finally:
        database.dispose()
    assert re.fullmatch(r"slugs/[0-9a-f]{64}\.tgz", slug.blob)
    with tarfile.open(blob) as tar:
        names = set(tar.getnames())
    assert not any(name == "./.git" or name.startswith("./.git/") for name in names)
    target.mkdir()
    subprocess.run(["tar", "-xzf", blob, "-C", target], check=True)
    return target


@dataclass
class Deployed:
    app: str
    repo: Path
    sha: str
    status: int
    lines: list[str]


@pytest.fixture(scope="module")
def pusher(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "python@example.com") as pusher:
        yield pusher


@pytest.fixture(scope="module")
def flask_app(pusher: Deployer, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    app = pusher.create("flask-pip")
    repo = make_repo(APPS / "flask-pip", tmp_path_factory.mktemp("flask") / "repo")
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    pushed = pusher.push(repo, app)
    return Deployed(app, repo, sha, pushed.status, pushed.lines)


def run_in_slug(slug: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under bash with the slug at /app, as a dyno sees it."""
    argv = sandbox.bwrap_argv(
        sandbox.find_bwrap(),
        ["/bin/bash", "-c", script],
        [sandbox.Mount(slug, "/app"), *interpreters.mounts()],
        {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/app", **env},
    )
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def serving() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; their process groups are killed at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def python_versions() -> list[str]:
    """The versions of the interpreters the server offers builds, as the buildpack lists them."""
    versions = []
    for python in interpreters.pythons():
        done = subprocess.run(
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            check=True,
        )
        versions.append(done.stdout.strip())
    return versions


def test_flask_app_builds_a_virtualenv_slug_that_serves(
    pusher: Deployer,
    flask_app: Deployed,
    tmp_path: Path,
    serving: list[subprocess.Popen[bytes]],
) -> None:
    assert flask_app.status == 0, "\n".join(flask_app.lines)
    in_order(
        flask_app.lines,
        [
            "-----> Building on the dockyard-24 stack",
            "-----> Python app detected",
            r"^-----> No Python version was specified\. Using the default, Python 3\.\d+",
            r"^-----> Installing Python 3\.\d+\.\d+",
            "-----> Installing requirements with pip",
            r"^       Collecting [Ff]lask==3\.1\.3.*",
            r"^       Successfully installed .*flask-3\.1\.3.*gunicorn-23\.0\.0.*",
            "       Saved the virtualenv to the build cache for the next build",
            "-----> Discovering process types",
            "       Procfile declares types -> web",
            "-----> Compressing...",
            r"^       Done: \d+(\.\d)?[KM]",
            "-----> Launching...",
            "       Released v2",
        ],
    )
    (build,) = pusher.builds(flask_app.app)
    assert build["status"] == "succeeded"
    assert build["source_blob"]["version"] == flask_app.sha
    release = pusher.current(flask_app.app)
    assert release["version"] == 2
    assert release["description"] == f"Deploy {flask_app.sha[:7]}"
    assert release["slug"]["id"] == build["slug"]["id"]

    slug = unpack_slug(pusher.server, release, tmp_path / "slug")
    assert (slug / "Procfile").read_text() == (APPS / "flask-pip" / "Procfile").read_text()
    assert (slug / "app.py").is_file()
    assert list(slug.glob(".venv/lib/python3.*/site-packages/flask/__init__.py"))
    assert (slug / ".venv/bin/gunicorn").read_text().startswith("#!/app/.venv/bin/python")
    profile = (slug / ".profile.d/python.sh").read_text()
    assert 'export PATH="/app/.venv/bin:$PATH"' in profile
    assert "export PYTHONUNBUFFERED=1" in profile

    # The virtualenv works where dynos put the slug, with the interpreter it was made from.
    done = run_in_slug(
        slug, ". /app/.profile.d/python.sh; python -c 'import flask, sys; print(sys.prefix)'"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/app/.venv"

    # And the Procfile's web command serves the page from it.
    port = free_port()
    argv = sandbox.bwrap_argv(
        sandbox.find_bwrap(),
        [
            "/bin/bash",
            "-c",
            ". /app/.profile.d/python.sh; exec gunicorn app:app --bind 127.0.0.1:$PORT",
        ],
        [sandbox.Mount(slug, "/app"), *interpreters.mounts()],
        {"PATH": "/usr/bin:/bin", "HOME": "/app", "PORT": str(port), "DYNO": "web.1"},
    )
    serving.append(
        subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    )

    def answers() -> bool:
        assert serving[0].poll() is None, "gunicorn exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout=30)
    assert "Hello from Flask on web.1" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text


def test_unchanged_requirements_reuse_the_cache_without_downloads(
    pusher: Deployer, flask_app: Deployed, tmp_path: Path
) -> None:
    assert flask_app.status == 0
    before = pusher.current(flask_app.app)["version"]
    git("commit", "--quiet", "--allow-empty", "--message", "Nothing changed", cwd=flask_app.repo)
    pushed = pusher.push(flask_app.repo, flask_app.app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            "-----> Python app detected",
            "-----> Restoring cache",
            r"^       Using the cached virtualenv \(Python 3[.\d]+; requirements\.txt unchanged\)",
            "-----> Installing requirements with pip",
            "       Nothing to install: the cached virtualenv already has every requirement",
            "       Procfile declares types -> web",
            f"       Released v{before + 1}",
        ],
    )
    assert not [
        line
        for line in pushed.lines
        if re.search(r"Downloading|Collecting|Installing Python", line)
    ]
    slug = unpack_slug(pusher.server, pusher.current(flask_app.app), tmp_path / "slug")
    done = run_in_slug(slug, "/app/.venv/bin/python -c 'import flask, gunicorn'")
    assert done.returncode == 0, done.stderr


def test_missing_python_version_fails_listing_what_exists(
    pusher: Deployer, flask_app: Deployed, tmp_path: Path
) -> None:
    assert flask_app.status == 0
    repo = tmp_path / "repo"
    shutil.copytree(flask_app.repo, repo)
    before = pusher.current(flask_app.app)
    (repo / ".python-version").write_text("3.99\n")
    git("add", ".python-version", cwd=repo)
    git("commit", "--quiet", "--message", "Ask for Python 3.99", cwd=repo)
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    pushed = pusher.push(repo, flask_app.app)
    assert pushed.status != 0
    assert (
        " !     Python 3.99 (from .python-version) isn't available on this server." in pushed.lines
    )
    (listing,) = [line for line in pushed.lines if "The versions available are:" in line]
    for version in python_versions():
        assert version in listing
    assert "pre-receive hook declined" in pushed.output
    assert pusher.current(flask_app.app)["id"] == before["id"], "the previous release stays current"
    (build,) = [b for b in pusher.builds(flask_app.app) if b["source_blob"]["version"] == sha]
    assert build["status"] == "failed"


def test_uv_project_syncs_without_dev_dependencies(pusher: Deployer, tmp_path: Path) -> None:
    app = pusher.create("uv-app")
    repo = make_repo(APPS / "uv-app", tmp_path / "repo")
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            "-----> Python app detected",
            "-----> Using Python 3.11 specified in .python-version",
            r"^-----> Installing Python 3\.11\.\d+",
            "-----> Installing dependencies with uv",
            r"^       Using CPython 3\.11\.\d+ interpreter at: .*",
            "        + six==1.17.0",
            "       Procfile declares types -> web",
            "       Released v2",
        ],
    )
    assert not [line for line in pushed.lines if "iniconfig" in line], "dev dependencies stay out"
    slug = unpack_slug(pusher.server, pusher.current(app), tmp_path / "slug")
    assert (slug / "uv.lock").is_file()
    done = run_in_slug(
        slug, "/app/.venv/bin/python -c 'import six, sys; print(sys.version_info[:2])'"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 11)"
    assert not list(slug.glob(".venv/lib/python3.11/site-packages/iniconfig*"))

    git("commit", "--quiet", "--allow-empty", "--message", "Again", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            "-----> Restoring cache",
            r"^       Using the cached virtualenv \(Python 3\.11[.\d]+; uv\.lock, pyproject.*",
            "-----> Installing dependencies with uv",
            "       Released v3",
        ],
    )
    assert not [
        line for line in pushed.lines if re.search(r"Prepared|Downloading|Installed|\+ six", line)
    ]

    # A changed pyproject.toml makes a new virtualenv, from uv's download cache.
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("end-to-end tests", "tests"))
    git("commit", "--quiet", "--all", "--message", "Describe it", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            "-----> Restoring cache",
            "       Discarding the cached virtualenv: pyproject.toml changed",
            r"^-----> Installing Python 3\.11\.\d+",
            "        + six==1.17.0",
            "       Saved the virtualenv to the build cache for the next build",
            "       Released v4",
        ],
    )
    assert not [line for line in pushed.lines if re.search(r"Prepared|Downloading", line)], (
        pushed.lines
    )


def test_python_version_files_pick_the_interpreter(pusher: Deployer, tmp_path: Path) -> None:
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    # The newest and the oldest interpreter the sample's requires-python (>=3.9) allows;
    # on a host with only Debian's Python they are the same one.
    usable = sorted((v for v in python_versions() if key(v) >= (3, 9)), key=key)
    newest, oldest = usable[-1], usable[0]
    minor = ".".join(newest.split(".")[:2])
    app = pusher.create("uv-versions")
    repo = make_repo(APPS / "uv-app", tmp_path / "repo")
    (repo / ".python-version").write_text(f"{minor}\n")
    git("commit", "--quiet", "--all", "--message", f"Python {minor}", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            f"-----> Using Python {minor} specified in .python-version",
            f"-----> Installing Python {newest}",
        ],
    )
    slug = unpack_slug(pusher.server, pusher.current(app), tmp_path / "slug")
    config = (slug / ".venv/pyvenv.cfg").read_text()
    assert re.search(rf"^version(_info)? = {re.escape(newest)}", config, re.MULTILINE), config

    # runtime.txt's python-X.Y.Z form, once .python-version is gone; the cache notices.
    git("rm", "--quiet", ".python-version", cwd=repo)
    (repo / "runtime.txt").write_text(f"python-{oldest}\n")
    git("add", "runtime.txt", cwd=repo)
    git("commit", "--quiet", "--message", f"Python {oldest}", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    cache = (
        [f"       Discarding the cached virtualenv: Python changed from {newest} to {oldest}"]
        if oldest != newest
        else [r"^       Using the cached virtualenv \(Python [\d.]+; uv\.lock, pyproject\.toml .*"]
    )
    in_order(pushed.lines, [f"-----> Using Python {oldest} specified in runtime.txt", *cache])
    # uv's download cache lives in the build cache: six is not fetched again.
    assert not [line for line in pushed.lines if re.search(r"Prepared|Downloading", line)], (
        pushed.lines
    )
    slug = unpack_slug(pusher.server, pusher.current(app), tmp_path / "slug2")
    done = run_in_slug(
        slug, "/app/.venv/bin/python -c 'import six, platform; print(platform.python_version())'"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == oldest


def test_more_than_one_package_manager_file_is_refused(pusher: Deployer, tmp_path: Path) -> None:
    app = pusher.create("two-managers")
    repo = make_repo(APPS / "uv-app", tmp_path / "repo")
    (repo / "requirements.txt").write_text("six==1.17.0\n")
    git("add", "requirements.txt", cwd=repo)
    git("commit", "--quiet", "--message", "Both", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status != 0
    assert "-----> Python app detected" in pushed.lines
    (message,) = [line for line in pushed.lines if "more than one package manager file" in line]
    assert "requirements.txt, uv.lock" in message
    assert "Keep the one for the tool you use" in message
    assert pusher.current(app)["version"] == 1


def test_django_collectstatic_runs_with_config_vars(pusher: Deployer, tmp_path: Path) -> None:
    app = pusher.create("python-django")
    reply = pusher.client.patch(
        f"/apps/{app}/config-vars", json={"DJANGO_SECRET_KEY": "not-secret"}
    )
    assert reply.status_code == 200, reply.text
    repo = make_repo(APPS / "python-django", tmp_path / "repo")
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    in_order(
        pushed.lines,
        [
            "-----> Installing requirements with pip",
            "-----> $ python manage.py collectstatic --noinput",
            r"^       \d+ static files copied to '/app/staticfiles'\.",
            "       Released v3",
        ],
    )
    slug = unpack_slug(pusher.server, pusher.current(app), tmp_path / "slug")
    assert (slug / "staticfiles/admin/css/base.css").is_file()

    reply = pusher.client.patch(f"/apps/{app}/config-vars", json={"DISABLE_COLLECTSTATIC": "1"})
    assert reply.status_code == 200, reply.text
    git("commit", "--quiet", "--allow-empty", "--message", "Again", cwd=repo)
    pushed = pusher.push(repo, app)
    assert pushed.status == 0, "\n".join(pushed.lines)
    assert (
        "-----> Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set."
        in pushed.lines
    )
    assert not [line for line in pushed.lines if "static files copied" in line]
    slug = unpack_slug(pusher.server, pusher.current(app), tmp_path / "slug2")
    assert not (slug / "staticfiles").exists()
