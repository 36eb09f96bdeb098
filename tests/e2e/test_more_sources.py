"""Several buildpacks in order, and builds from a tarball at an http(s) URL."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, Server, make_repo
from e2e.deploy import Deployer, deployer_for

BUILDPACKS = Path(__file__).parent.parent / "buildpacks"


@pytest.fixture(scope="module")
def deployer(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "sources@example.com") as made:
        yield made


def test_buildpacks_run_in_order_and_see_earlier_exports(
    deployer: Deployer, tmp_path: Path
) -> None:
    api = deployer.client
    deployer.create("two-buildpacks")
    packs = [str(BUILDPACKS / "hello"), str(BUILDPACKS / "reads-export")]
    api.put(
        "/apps/two-buildpacks/buildpack-installations",
        json={"updates": [{"buildpack": url} for url in packs]},
    ).raise_for_status()
    repo = make_repo(APPS / "custom-buildpack", tmp_path / "repo")
    pushed = deployer.push(repo, "two-buildpacks")
    assert pushed.status == 0, pushed.output
    lines = pushed.lines
    assert lines.index("-----> Hello app detected") < lines.index("-----> Second app detected")
    assert "       HELLO_EXPORTED=yes" in lines
    assert "       the first buildpack's bin/hello is here" in lines
    assert "       Default types for buildpack -> web" not in lines, "the last buildpack's release"


def test_build_from_a_tarball_at_an_http_url(deployer: Deployer, tmp_path: Path) -> None:
    api = deployer.client
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "app.tar.gz", "w:gz") as tar:
        tar.add(APPS / "procfile-shell", arcname=".")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{web.server_address[1]}"
        deployer.create("from-url")
        created = api.post(
            "/apps/from-url/builds", json={"source_blob": {"url": f"{base}/app.tar.gz"}}
        )
        assert created.status_code == 201, created.text
        with httpx.stream("GET", created.json()["output_stream_url"], timeout=120) as stream:
            output = "".join(stream.iter_text())
        assert "Released v2" in output
        missing = api.post(
            "/apps/from-url/builds", json={"source_blob": {"url": f"{base}/nothing.tgz"}}
        )
        web.shutdown()
    assert missing.status_code == 422
    assert "answered HTTP 404" in missing.json()["message"]
    assert deployer.current("from-url")["version"] == 2
