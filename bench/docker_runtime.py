"""The docker runtime's costs: the stack image, release images, and dyno starts vs processes.

    .venv/bin/python bench/docker_runtime.py [--runs 5] [--rebuild-stack]

Prints the time to find the stack image built (or, with --rebuild-stack, to build it again),
the time to build a release image from a small slug (cold) and to tag it again for a new
release of the same slug (warm), and the median time from start to exit of a one-off `true`
dyno with the process and the docker runtimes, with their ratio. Needs root and a Docker
engine; uses a scratch data directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dockyard import stacks
from dockyard.runtime import DynoSpec, Runtime
from dockyard.runtime.docker import SCOPE_LABEL, DockerRuntime, scope_of
from dockyard.runtime.docker_engine import Engine
from dockyard.runtime.process import ProcessRuntime
from dockyard.runtime.slugs import sha256_of


def make_slug(directory: Path) -> tuple[Path, str]:
    path = directory / "slug.tgz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"web: python3 -m http.server $PORT\n"
        info = tarfile.TarInfo("./Procfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path, sha256_of(path)


async def one_off(runtime: Runtime, spec: DynoSpec) -> float:
    exits = runtime.exits()
    started = time.monotonic()
    await runtime.start(spec)
    await anext(exits)
    return time.monotonic() - started


async def main(runs: int, rebuild: bool) -> None:
    async with Engine() as engine:
        started = time.monotonic()
        built = await stacks.build(engine, force=rebuild)
        took = time.monotonic() - started
        what = "built" if built else "found built"
        print(f"stack image {stacks.STACK.image}: {what} in {took:.2f}s")

    scratch = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    try:
        slug, sha = make_slug(scratch)
        app_id = f"bench-{secrets.token_hex(4)}"
        spec = DynoSpec(
            app_id=app_id,
            app_name="bench",
            app_uid=1_000_000 + secrets.randbelow(1_000_000) if os.geteuid() == 0 else os.geteuid(),
            release_version=1,
            slug_path=slug,
            slug_sha256=sha,
            process_type="run",
            name="run.1",
            command="true",
        )
        docker = await DockerRuntime.open(scratch / "docker-data")
        process = await ProcessRuntime.open(scratch / "process-data")
        try:
            cold = await one_off(docker, spec)
            warm_tag = await one_off(docker, replace(spec, release_version=2))
            print(f"release image: first dyno (build + run) {cold:.2f}s, new tag {warm_tag:.2f}s")
            times: dict[str, list[float]] = {"process": [], "docker": []}
            await one_off(process, spec)  # unpacks the slug, as the image was built above
            for _ in range(runs):
                times["process"].append(await one_off(process, spec))
                times["docker"].append(await one_off(docker, spec))
            medians = {k: statistics.median(v) for k, v in times.items()}
            for kind, values in times.items():
                shown = " ".join(f"{v:.2f}" for v in values)
                print(f"one-off `true`, {kind}: median {medians[kind]:.2f}s ({shown})")
            print(f"docker / process: {medians['docker'] / medians['process']:.1f}x")
        finally:
            await docker.close()
            await process.close()
            async with Engine() as engine:
                scope = scope_of(scratch / "docker-data")
                for container in await engine.containers({SCOPE_LABEL: scope}):
                    await engine.remove(str(container["Id"]))  # the last exit, not taken
                for image in await engine.images({"dockyard.app": app_id}):
                    for tag in image.get("RepoTags") or []:
                        await engine.remove_image(tag)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rebuild-stack", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: dynos of both runtimes run as app users")
    asyncio.run(main(args.runs, args.rebuild_stack))
