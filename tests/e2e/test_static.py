"""The built-in static buildpack, end to end: push a site, then serve its slug with nginx."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, Server, free_port, git, make_repo
from dockyard.build import sandbox
from dockyard.build.sandbox import Identity, Mount
from e2e.deploy import Deployer, deployer_for, in_order, members, read_member

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sites(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "static@example.com") as sites:
        yield sites


class Dyno:
    """The slug's web process, run the way a dyno runs it: /app, $PORT, the app's own user."""

    def __init__(self, slug_dir: Path, command: str, uid: int) -> None:
        self.port = free_port()
        drop = os.geteuid() == 0 and uid != 0
        script = 'for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; eval "$1"'
        argv = sandbox.bwrap_argv(
            sandbox.find_bwrap(),
            ["/bin/bash", "-c", script, "web", command],
            [Mount(slug_dir, "/app", writable=True)],
            {"PORT": str(self.port), "HOME": "/app", "PATH": sandbox.PATH, "DYNO": "web.1"},
            "/app",
            Identity(uid, uid) if drop else None,
        )
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_until_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.stop()
                raise AssertionError(f"the web process exited early:\n{output}")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"nothing served on {self.url} within {timeout}s:\n{self.stop()}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            output, _ = self.process.communicate()
        return output.decode(errors="replace")


def unpack(blob: Path, target: Path) -> int:
    """Unpack a slug as the dyno's user owns it; return that user's uid."""
    target.mkdir()
    with tarfile.open(blob) as tar:
        uid = tar.getmember("./.dockyard/static/start").uid
        tar.extractall(target, filter="data")
    if os.geteuid() == 0:
        for path in [target, *target.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
    return uid


def test_static_site_deploys_and_serves(sites: Deployer, tmp_path: Path) -> None:
    app = sites.create("static-site")
    repo = make_repo(APPS / "static-site", tmp_path / "repo")
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    pushed = sites.push(repo, app)
    assert pushed.status == 0, pushed.output
    in_order(
        pushed.lines,
        [
            "-----> Building on the dockyard-24 stack",
            "-----> Static HTML app detected",
            "-----> Configuring nginx",
            "       root: public/",
            "       clean_urls: on",
            "       error_page: 404.html",
            "       route: /app/** -> index.html",
            "       Wrote .dockyard/static/nginx.conf and .dockyard/static/start "
            "(checked with nginx -t)",
            "-----> Discovering process types",
            "       Default types for buildpack -> web",
            "-----> Compressing...",
            "-----> Launching...",
            "       Released v2",
        ],
    )
    (build,) = sites.builds(app)
    assert build["status"] == "succeeded"
    assert build["source_blob"]["version"] == sha
    release = sites.current(app)
    assert release["version"] == 2
    assert release["description"] == f"Deploy {sha[:7]}"
    assert release["slug"]["id"] == build["slug"]["id"]

    slug = sites.slug(app, build["slug"]["id"])
    process_types = slug["process_types"]
    assert process_types == {"web": ".dockyard/static/start"}
    assert slug["commit"] == sha
    assert slug["buildpack_provided_description"] == "Static HTML"
    blob = slug["path"]
    files = members(blob)
    conf = read_member(blob, ".dockyard/static/nginx.conf")
    assert {"public/index.html", ".dockyard/static/mime.types"} <= set(files)
    assert files[".dockyard/static/start"].mode & 0o111, "the start script is executable"
    assert "listen @PORT@;" in conf
    assert 'root "@APP@/public";' in conf
    assert "try_files $uri $uri.html $uri/ =404;" in conf, "clean_urls"
    assert 'error_page 404 "/404.html";' in conf

    slug_dir = tmp_path / "slug"
    uid = unpack(blob, slug_dir)
    dyno = Dyno(slug_dir, process_types["web"], uid)
    try:
        dyno.wait_until_serving()
        home = httpx.get(dyno.url + "/")
        assert home.status_code == 200
        assert "Hello from a static site on Dockyard" in home.text
        assert home.headers["content-type"] == "text/html; charset=utf-8"
        about = httpx.get(dyno.url + "/about")
        assert about.status_code == 200, "clean_urls serves about.html at /about"
        assert "About this site" in about.text
        css = httpx.get(dyno.url + "/css/site.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        routed = httpx.get(dyno.url + "/app/deep/link")
        assert routed.status_code == 200, "static.json's routes serve one page for a prefix"
        assert "Hello from a static site on Dockyard" in routed.text
        missing = httpx.get(dyno.url + "/no/such/page")
        assert missing.status_code == 404
        assert "This page is not in the dock" in missing.text, "static.json's error_page"
        for hidden in ("/.dockyard/static/nginx.conf", "/NOTES.md", "/static.json"):
            assert httpx.get(dyno.url + hidden).status_code == 404, hidden
        folder = httpx.get(dyno.url + "/css")
        assert folder.status_code == 301
        assert folder.headers["location"] == "/css/", "redirects stay relative to the router"
    finally:
        output = dyno.stop()
    assert '"GET /about HTTP/1.1" 200' in output, "the access log goes to the dyno's output"


def test_index_html_at_the_root_is_a_static_site(sites: Deployer, tmp_path: Path) -> None:
    app = sites.create("static-plain")
    source = tmp_path / "source"
    source.mkdir()
    (source / "index.html").write_text("<!doctype html><title>plain</title><p>plain site\n")
    repo = make_repo(source, tmp_path / "repo")
    pushed = sites.push(repo, app)
    assert pushed.status == 0, pushed.output
    in_order(
        pushed.lines,
        ["-----> Static HTML app detected", "       root: ./", "       clean_urls: off"],
    )
    (build,) = sites.builds(app)
    slug = sites.slug(app, build["slug"]["id"])
    assert slug["process_types"] == {"web": ".dockyard/static/start"}
    conf = read_member(slug["path"], ".dockyard/static/nginx.conf")
    assert 'root "@APP@";' in conf
    assert "location = /static.json { return 404; }" in conf


@pytest.mark.parametrize(
    ("static_json", "message"),
    [
        ("{ nope", " !     static.json is not valid JSON: "),
        (json.dumps({"root": "../"}), ' !     static.json: "root" must be a path inside the app'),
        (json.dumps({"root": "site/"}), " !     static.json: \"root\" is 'site/', and the app"),
        (
            json.dumps({"root": "public/", "error_page": "oops.html"}),
            " !     static.json: \"error_page\" is 'oops.html', and there is no such file",
        ),
        (json.dumps({"clean_urls": "yes"}), ' !     static.json: "clean_urls" must be true or'),
    ],
    ids=["invalid-json", "root-outside", "root-missing", "error-page-missing", "bad-flag"],
)
def test_bad_static_json_is_refused_clearly(
    sites: Deployer, tmp_path: Path, static_json: str, message: str
) -> None:
    app = sites.create(f"static-bad-{uuid.uuid4().hex[:8]}")
    source = tmp_path / "source"
    shutil.copytree(APPS / "static-site", source)
    (source / "static.json").write_text(static_json)
    repo = make_repo(source, tmp_path / "repo")
    pushed = sites.push(repo, app)
    assert pushed.status != 0
    assert any(line.startswith(message) for line in pushed.lines), pushed.output
    assert "pre-receive hook declined" in pushed.output
    assert sites.current(app)["version"] == 1, "no release was made"
