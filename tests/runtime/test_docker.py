"""What only the ``docker`` driver has: release images, the container's limits and
read-only system, OOM kills (R15), a missing stack image, and tidying images.

The contract every driver keeps is tested in test_process.py and test_attach.py with the
``driver`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from docker_support import remove_containers_under, require_docker
from dockyard import stacks
from dockyard.formation import SIZES
from dockyard.runtime import DynoError
from dockyard.runtime.docker import DockerRuntime
from runtime.test_process import App, make_slug, printed, run, run_to_end, runtime_on, until

HOG = 'x = []\nprint("allocating", flush=True)\nwhile True: x.append(b"x" * (1 << 20))'


@pytest.fixture(autouse=True)
def docker(tmp_path: Path) -> Iterator[None]:
    require_docker()
    yield
    remove_containers_under(tmp_path)


def docker_json(*args: str) -> object:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_one_thin_image_per_release_tagged_again_for_the_same_slug(tmp_path: Path) -> None:
    app = App(tmp_path, "image-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver="docker") as runtime:
            _, ended = await run_to_end(runtime, app.spec("run.1", "true"))
            assert ended.status == 0
            # A new release of the same slug (a config change, a rollback): a new tag only.
            again = replace(app.spec("run.2", "true"), release_version=2)
            _, ended = await run_to_end(runtime, again)
            assert ended.status == 0

    run(scenario)
    repository = f"dockyard/app-{app.id}"
    (first,) = docker_json("image", "inspect", f"{repository}:v1")  # type: ignore[misc]
    (second,) = docker_json("image", "inspect", f"{repository}:v2")  # type: ignore[misc]
    assert first["Id"] == second["Id"]
    (stack,) = docker_json("image", "inspect", stacks.STACK.image)  # type: ignore[misc]
    assert first["RootFS"]["Layers"][:-1] == stack["RootFS"]["Layers"]
    labels = first["Config"]["Labels"]
    assert (labels["dockyard.app"], labels["dockyard.slug"]) == (app.id, app.sha)
    assert labels["dockyard.uid"] == str(app.uid)


def test_limits_by_size_and_a_read_only_system(tmp_path: Path) -> None:
    app = App(tmp_path, "limits-app")
    size = SIZES["standard-2x"]
    probe = " ; ".join(
        [
            "touch /usr/x 2>/dev/null && echo usr-writable || echo usr-read-only",
            "touch /etc/x 2>/dev/null && echo etc-writable || echo etc-read-only",
            "touch /app/x && echo app-writable",
            "df -k --output=size /tmp | tail -1",
            "echo caps=$(grep CapEff /proc/self/status | cut -f2)",
            "exec sleep 600",
        ]
    )

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver="docker") as runtime:
            dyno = await runtime.start(app.spec("worker.1", probe, size=size.name))
            await until(lambda: any(line.startswith("caps=") for line in printed(dyno)))
            lines = printed(dyno)
            assert lines[:3] == ["usr-read-only", "etc-read-only", "app-writable"]
            assert int(lines[3]) * 1024 == size.memory_bytes // 2  # /tmp: half its memory
            assert lines[4] == "caps=0000000000000000"
            (container,) = docker_json("inspect", f"dyno-{dyno.id}")  # type: ignore[misc]
            host = container["HostConfig"]
            assert host["Memory"] == host["MemorySwap"] == size.memory_bytes
            assert host["CpuShares"] == size.cpu_shares
            assert host["PidsLimit"] == size.max_processes
            assert host["NetworkMode"] == "host"
            assert container["Config"]["User"] == f"{app.uid}:{app.uid}"
            usage = await runtime.usage(dyno.id)
            assert usage.processes == 1  # sleep; not counting docker-init
            assert 0 < usage.memory_bytes < 2**30

    run(scenario)


def test_a_dyno_over_its_memory_is_killed_for_it(tmp_path: Path) -> None:
    app = App(tmp_path, "hog-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver="docker") as runtime:
            spec = app.spec("run.1", f"python3 -c '{HOG}'", size="standard-1x")
            dyno, ended = await run_to_end(runtime, spec)
            assert printed(dyno)[0] == "allocating"
            assert (ended.status, ended.reason, ended.stopped) == (137, "memory", None)
            _, small = await run_to_end(runtime, app.spec("run.2", "exit 3"))
            assert (small.status, small.reason) == (3, None)

    run(scenario)


def test_a_missing_stack_image_is_named(tmp_path: Path) -> None:
    app = App(tmp_path, "nostack-app")
    missing = stacks.Stack("dockyard-0", "dockyard/no-such-stack", "0", "bookworm", ())

    async def scenario() -> None:
        runtime = await DockerRuntime.open(tmp_path / "data")
        runtime._images.stack = missing  # a stack never built here
        try:
            with pytest.raises(
                DynoError, match=r"dockyard/no-such-stack:0 \(dockyard-0\) is missing"
            ):
                await runtime.start(app.spec("run.1", "true"))
            assert await runtime.list() == []
            assert list((tmp_path / "data" / "docker" / "dynos").iterdir()) == []
        finally:
            await runtime.close()

    run(scenario)


def test_tidy_removes_release_images_no_container_uses(tmp_path: Path) -> None:
    app = App(tmp_path, "tidy-app")
    slug, sha = make_slug(tmp_path, {"Procfile": "web: true\n"})

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data", driver="docker") as runtime:
            assert isinstance(runtime, DockerRuntime)
            exits = runtime.exits()
            worker = await runtime.start(app.spec("worker.1", "exec sleep 600"))
            other = replace(app.spec("run.1", "true"), release_version=2, slug_path=slug)
            done = await runtime.start(replace(other, slug_sha256=sha))
            assert (await anext(exits)).dyno.id == done.id
            # Its exit taken (by asking for the next), its container goes; an hour on,
            # tidy() removes v2's image.
            following = asyncio.create_task(anext(exits))
            await until(lambda: not container_exists(done.id))
            await runtime.tidy(now=time.time() + 2 * 3600)
            assert image_exists(f"dockyard/app-{app.id}:v1")  # worker.1 runs on it
            assert not image_exists(f"dockyard/app-{app.id}:v2")
            await runtime.stop(worker.id, grace=5)
            assert (await following).dyno.id == worker.id

    run(scenario)


def container_exists(name: str) -> bool:
    done = subprocess.run(["docker", "inspect", f"dyno-{name}"], capture_output=True, check=False)
    return done.returncode == 0


def image_exists(reference: str) -> bool:
    done = subprocess.run(
        ["docker", "image", "inspect", reference], capture_output=True, check=False
    )
    return done.returncode == 0
