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

from conftest import APPS, Server, api_client, git, git_url, make_repo

BUILDPACKS = Path(__file__).parent.parent / "buildpacks"


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[tuple[httpx.Client, str]]:
    token = server.create_user("sources@example.com")
    with api_client(server, token) as api:
        yield api, token


def remote(output: str) -> list[str]:
    return [
        line.removeprefix("remote: ").rstrip()
        for line in output.splitlines()
        if line.startswith("remote:")
    ]


def test_buildpacks_run_in_order_and_see_earlier_exports(
    server: Server, client: tuple[httpx.Client, str], tmp_path: Path
) -> None:
    api, token = client
    assert api.post("/apps", json={"name": "two-buildpacks"}).status_code == 201
    packs = [str(BUILDPACKS / "hello"), str(BUILDPACKS / "reads-export")]
    api.put(
        "/apps/two-buildpacks/buildpack-installations",
        json={"updates": [{"buildpack": url} for url in packs]},
    ).raise_for_status()
    repo = make_repo(APPS / "custom-buildpack", tmp_path / "repo")
    done = git("push", git_url(server, token, "two-buildpacks"), "main", cwd=repo, check=False)
    assert done.returncode == 0, done.stdout
    lines = remote(done.stdout)
    assert lines.index("-----> Hello app detected") < lines.index("-----> Second app detected")
    assert "       HELLO_EXPORTED=yes" in lines
    assert "       the first buildpack's bin/hello is here" in lines
    assert "       Default types for buildpack -> web" not in lines, "the last buildpack's release"


def test_build_from_a_tarball_at_an_http_url(
    client: tuple[httpx.Client, str], tmp_path: Path
) -> None:
    api, _token = client
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "app.tar.gz", "w:gz") as tar:
        tar.add(APPS / "procfile-shell", arcname=".")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{web.server_address[1]}"
        assert api.post("/apps", json={"name": "from-url"}).status_code == 201
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
    current = next(r for r in api.get("/apps/from-url/releases").json() if r["current"])
    assert current["version"] == 2
