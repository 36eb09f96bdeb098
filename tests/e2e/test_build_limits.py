"""Builds that hang or fill the disk are stopped at their limits; the push is rejected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import APPS, Server, api_client, git, git_url, make_repo, start_server, stop_server

BUILDPACKS = Path(__file__).parent.parent / "buildpacks"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"DOCKYARD_BUILD_TIMEOUT": "8", "DOCKYARD_BUILD_DISK_LIMIT_MB": "40"}
    server = start_server(tmp_path_factory.mktemp("limited") / "data", env)
    yield server
    stop_server(server)


def deploy_with(server: Server, tmp_path: Path, app: str, buildpack: str) -> tuple[int, str, float]:
    token = server.create_user(f"{app}@example.com")
    with api_client(server, token) as client:
        assert client.post("/apps", json={"name": app}).status_code == 201
        client.put(
            f"/apps/{app}/buildpack-installations",
            json={"updates": [{"buildpack": str(BUILDPACKS / buildpack)}]},
        ).raise_for_status()
        repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
        started = time.monotonic()
        done = git("push", git_url(server, token, app), "main", cwd=repo, check=False)
        elapsed = time.monotonic() - started
        releases = client.get(f"/apps/{app}/releases").json()
        assert [r["version"] for r in releases] == [1], "no release is made"
        (build,) = client.get(f"/apps/{app}/builds").json()
        assert build["status"] == "failed"
    return done.returncode, done.stdout, elapsed


def test_a_hanging_buildpack_is_stopped_at_the_time_limit(limited: Server, tmp_path: Path) -> None:
    status, output, elapsed = deploy_with(limited, tmp_path, "hangs", "hanging")
    assert status != 0
    assert "-----> Hanging forever" in output
    assert "the build ran over its time limit" in output
    assert elapsed < 60, "the push ends soon after the limit"


def test_a_buildpack_filling_the_disk_is_stopped(limited: Server, tmp_path: Path) -> None:
    status, output, _elapsed = deploy_with(limited, tmp_path, "fills-disk", "disk-filler")
    assert status != 0
    assert "-----> Filling the disk" in output
    assert "of disk in /app and /cache" in output
    workspaces = limited.data_dir / "builds"
    assert not any(workspaces.iterdir()), "the build's files are removed"
