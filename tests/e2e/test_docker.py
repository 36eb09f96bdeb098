"""The ``docker`` runtime end to end: a real server with DOCKYARD_RUNTIME=docker.

A buildpack sample app (flask-pip: the python buildpack's virtualenv, gunicorn) is pushed
with git, runs as containers of its release's image on the stack image, is reached through
the router (HAProxy), scaled, rolled back, and runs one-off commands with `dockyard run`;
a restarted server adopts its containers. A Dockerfile app runs its own image (its CMD, or
its Procfile's types); one whose base image is not on the machine fails to build, naming
it. Skipped, with the reason, only where there is no Docker engine (scripts/test installs
one).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, DOCKYARD, Server, git, make_repo, start_server, stop_server, wait_until
from docker_support import remove_containers_under, require_docker
from dockyard import stacks
from dockyard.runtime.docker import DYNO_LABEL, SCOPE_LABEL, scope_of
from dockyard.runtime.docker_engine import Engine
from e2e.deploy import Deployer, deployer_for, dynos, scale, settle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def docker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_docker()
    root = tmp_path_factory.mktemp("docker")
    running = start_server(root / "data", {"DOCKYARD_RUNTIME": "docker"})
    try:
        yield running
    finally:
        stop_server(running)
        remove_containers_under(root)


@pytest.fixture(scope="module")
def deployer(docker_server: Server) -> Iterator[Deployer]:
    with deployer_for(docker_server, "docker@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def app(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = deployer.create("flask-docker")
    repo = make_repo(APPS / "flask-pip", tmp_path_factory.mktemp("flask") / "repo")
    pushed = deployer.push(repo, name)
    assert pushed.status == 0, pushed.output
    settle(deployer, name, {"web.1": deployer.current(name)["version"]}, timeout=60)
    return name


def via_router(server: Server, app: str) -> httpx.Response:
    return httpx.get(
        f"http://127.0.0.1:{server.http_port}/", headers={"Host": f"{app}.localhost"}, timeout=30
    )


def containers(server: Server) -> list[dict[str, object]]:
    """The server's dyno containers that run, as the engine lists them."""

    async def listed() -> list[dict[str, object]]:
        async with Engine() as engine:
            found = await engine.containers({SCOPE_LABEL: scope_of(server.data_dir)})
            return [c for c in found if c.get("State") == "running"]

    return asyncio.run(listed())


def names(server: Server) -> dict[str, str]:
    """Dyno name → the image its container runs."""
    found = {}
    for container in containers(server):
        labels = container["Labels"]
        assert isinstance(labels, dict)
        found[json.loads(labels[DYNO_LABEL])["name"]] = str(container["Image"])
    return found


def cli(server: Server, deployer: Deployer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": deployer.token}
    return subprocess.run(
        [*DOCKYARD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_buildpack_app_runs_as_containers_behind_the_router(
    docker_server: Server, deployer: Deployer, app: str
) -> None:
    wait_until(lambda: via_router(docker_server, app).status_code == 200, 30)
    assert "Hello from Flask on web.1" in via_router(docker_server, app).text
    (web,) = dynos(deployer, app)
    version = web["release"]["version"]
    app_id = deployer.client.get(f"/apps/{app}").json()["id"]
    # Its container runs the release's image: the slug as a layer on the stack image.
    assert names(docker_server) == {"web.1": f"dockyard/app-{app_id}:v{version}"}
    inspected = subprocess.run(
        ["docker", "image", "inspect", f"dockyard/app-{app_id}:v{version}"],
        capture_output=True,
        text=True,
        check=True,
    )
    (image,) = json.loads(inspected.stdout)
    stack = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", stacks.STACK.image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    layers, base = image["RootFS"]["Layers"], stack["RootFS"]["Layers"]
    assert layers[: len(base)] == base
    assert len(layers) == len(base) + 1  # one thin layer: the slug
    # Config vars are the container's environment, never the image's.
    assert not any(e.startswith("DYNO=") for e in image["Config"].get("Env") or [])

    # Its output reaches the app's log.
    def logged() -> bool:
        done = cli(docker_server, deployer, "logs", "-a", app, "-n", "200")
        return "Listening at" in done.stdout

    wait_until(logged, 30)


def test_scale_config_and_rollback(docker_server: Server, deployer: Deployer, app: str) -> None:
    first = deployer.current(app)["version"]
    scale(deployer, app, "web", 2)
    settle(deployer, app, {"web.1": first, "web.2": first}, timeout=60)
    seen = set()

    def both() -> bool:
        seen.add(via_router(docker_server, app).text.strip())
        return len(seen) >= 2

    wait_until(both, 30)
    assert {line.rsplit(" on ", 1)[1].split("<")[0] for line in seen} == {"web.1", "web.2"}

    reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"GREETING": "hi"})
    assert reply.status_code == 200, reply.text
    second = deployer.current(app)["version"]
    settle(deployer, app, {"web.1": second, "web.2": second}, timeout=60)
    done = cli(
        docker_server, deployer, "run", "-x", "-a", app, "--", "bash", "-c", 'echo "$GREETING"'
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("hi")

    reply = deployer.client.post(f"/apps/{app}/releases", json={"release": str(first)})
    assert reply.status_code == 201, reply.text
    third = deployer.current(app)["version"]
    assert third == second + 1
    settle(deployer, app, {"web.1": third, "web.2": third}, timeout=60)
    assert via_router(docker_server, app).status_code == 200
    done = cli(
        docker_server, deployer, "run", "-x", "-a", app, "--", "bash", "-c", 'echo "[$GREETING]"'
    )
    assert done.stdout.strip().endswith("[]"), done.stdout  # the rollback's config: no GREETING
    app_id = deployer.client.get(f"/apps/{app}").json()["id"]
    assert set(names(docker_server).values()) == {f"dockyard/app-{app_id}:v{third}"}
    scale(deployer, app, "web", 1)
    settle(deployer, app, {"web.1": third}, timeout=60)
    wait_until(lambda: set(names(docker_server)) == {"web.1"}, 30)


def test_run_exit_codes_and_the_slug(docker_server: Server, deployer: Deployer, app: str) -> None:
    command = ["python3", "-c", "import flask, sys; print(flask.__name__); sys.exit(3)"]
    done = cli(docker_server, deployer, "run", "-x", "-a", app, "--", *command)
    assert done.returncode == 3, done.stderr
    assert "flask" in done.stdout  # the virtualenv of the slug, on the stack's Python
    done = cli(docker_server, deployer, "run", "-x", "-a", app, "--", "bash", "-c", "id -u; exit 4")
    assert done.returncode == 4
    assert done.stdout.strip().splitlines()[-1] != "0"  # never root
    # Without -x the command exits 0, as Heroku's does.
    done = cli(docker_server, deployer, "run", "-a", app, "--", "bash", "-c", "exit 3")
    assert done.returncode == 0, done.stderr


def test_a_restarted_server_adopts_its_containers(
    docker_server: Server, deployer: Deployer, app: str
) -> None:
    before = {c["Id"] for c in containers(docker_server)}
    assert before
    docker_server.process.kill()
    docker_server.process.wait()
    assert via_router(docker_server, app).status_code == 200  # HAProxy and the dyno run on
    data_dir = docker_server.data_dir
    port = int(docker_server.url.rsplit(":", 1)[1])
    extra = {
        k: v
        for k, v in docker_server.env.items()
        if k.startswith("DOCKYARD_") and k not in ("DOCKYARD_DATA_DIR", "DOCKYARD_API_LISTEN")
    }
    again = start_server(data_dir, extra, port=port)
    docker_server.process = again.process
    settle(deployer, app, {"web.1": deployer.current(app)["version"]}, timeout=60)
    assert {c["Id"] for c in containers(docker_server)} == before  # the same, no restarts


def test_a_dockerfile_app_runs_its_image(
    docker_server: Server, deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("dockerfile-app")
    repo = make_repo(APPS / "dockerfile-app", tmp_path / "repo")
    reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"GREETING": "hello"})
    assert reply.status_code == 200, reply.text
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    assert "-----> Building the Dockerfile with Docker" in pushed.lines
    assert "       The image's CMD -> web: python3 server.py" in pushed.lines
    version = deployer.current(app)["version"]
    settle(deployer, app, {"web.1": version}, timeout=60)
    wait_until(lambda: via_router(docker_server, app).status_code == 200, 30)
    seen = via_router(docker_server, app).json()
    # The image's working directory, the release's config, never root.
    assert (seen["dyno"], seen["greeting"], seen["cwd"], seen["argv"]) == (
        "web.1",
        "hello",
        "/srv",
        [],
    )
    assert seen["uid"] != 0
    # Not baked into the image: config vars are the container's environment only.
    app_id = deployer.client.get(f"/apps/{app}").json()["id"]
    (image,) = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", f"dockyard/app-{app_id}:v{version}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert not any("hello" in e for e in image["Config"].get("Env") or [])

    # A Procfile names the process types instead of the image's CMD.
    (repo / "Procfile").write_text("web: python3 server.py from-procfile\n")
    git("add", "Procfile", cwd=repo)
    git("commit", "-q", "-m", "Procfile", cwd=repo)
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    assert "       Procfile declares types -> web" in pushed.lines
    version = deployer.current(app)["version"]
    settle(deployer, app, {"web.1": version}, timeout=60)
    wait_until(lambda: via_router(docker_server, app).json()["argv"] == ["from-procfile"], 30)
    done = cli(docker_server, deployer, "run", "-x", "-a", app, "--", "sh", "-c", "pwd; exit 5")
    assert done.returncode == 5, done.stderr
    assert done.stdout.strip().endswith("/srv")


def test_a_dockerfile_whose_base_image_is_missing_fails_with_its_name(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("dockerfile-nobase")
    repo = make_repo(APPS / "dockerfile-app", tmp_path / "repo")
    dockerfile = (repo / "Dockerfile").read_text()
    (repo / "Dockerfile").write_text(dockerfile.replace("dockyard/stack:24", "debian:bookworm"))
    git("commit", "-q", "-am", "another base", cwd=repo)
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert "the Dockerfile's base image debian:bookworm is not on this server" in pushed.output
    assert "never pulls" in pushed.output
    releases = deployer.client.get(f"/apps/{app}/releases").json()
    assert [r["description"] for r in releases] == ["Initial release"]  # no new one
