"""The Docker engine for tests: is it here, the stack image (built once per machine), cleanup,
and the runtime a test server ran its dynos with (either driver).

``scripts/test`` installs Debian's docker.io and starts its daemon (scripts/lib/install.sh),
so in CI the engine is always here; elsewhere docker tests are skipped with the reason.
The stack image is built the first time a test needs it (about a minute and a half) and kept:
later runs find it and go on at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from dockyard import stacks
from dockyard.errors import DockyardError
from dockyard.runtime.docker import DYNO_LABEL, SCOPE_LABEL, DockerRuntime, scope_of
from dockyard.runtime.docker_engine import Engine, EngineError
from dockyard.runtime.process import ProcessRuntime

_checked: dict[str, str | None] = {}


def docker_problem() -> str | None:
    """Why docker tests cannot run here; None when they can (the stack image is there)."""
    if "problem" not in _checked:
        _checked["problem"] = asyncio.run(_prepare())
    return _checked["problem"]


async def _prepare() -> str | None:
    async with Engine() as engine:
        try:
            await engine.version()
        except EngineError as exc:
            return f"no Docker engine: {exc.message}"
        started = time.monotonic()
        try:
            built = await stacks.build(engine)
        except DockyardError as exc:
            return f"could not build the stack image: {exc.message}"
        if built:
            took = time.monotonic() - started
            print(f"\nbuilt the stack image {stacks.STACK.image} in {took:.0f}s", file=sys.stderr)
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem is not None:
        pytest.skip(f"docker runtime: {problem}")


def remove_containers_under(path: Path) -> None:
    """Remove the dyno containers (and their release images) of data directories under ``path``."""

    async def remove() -> None:
        async with Engine() as engine:
            images = set()
            for summary in await engine.containers({SCOPE_LABEL: None}):
                labels = summary.get("Labels") or {}
                try:
                    record = json.loads(labels[DYNO_LABEL])
                except (KeyError, ValueError):
                    continue
                if str(record.get("log_path", "")).startswith(str(path)):
                    await engine.remove(str(summary["Id"]))
                    images.add(str(summary.get("Image")))
            for image in images:
                await engine.remove_image(image)
            # Release images of dynos that never ran (nobody attached, a failed start).
            for data_dir in (path, path / "data"):
                for image in await engine.images({SCOPE_LABEL: scope_of(data_dir)}):
                    for tag in image.get("RepoTags") or [str(image["Id"])]:
                        await engine.remove_image(tag)

    asyncio.run(remove())


def remove_services_under(path: Path) -> None:
    """Remove the swarm runtime's dyno services of data directories under ``path``."""

    async def remove() -> None:
        async with Engine() as engine:
            for service in await engine.services({SCOPE_LABEL: None}):
                labels = (service.get("Spec") or {}).get("Labels") or {}
                try:
                    dyno_id = str(json.loads(labels[DYNO_LABEL])["id"])
                except (KeyError, ValueError, TypeError):
                    continue
                for data_dir in (path, *path.glob("**/data")):
                    if (data_dir / "swarm" / "dynos" / dyno_id).exists():
                        await engine.remove_service(str(service["ID"]))

    asyncio.run(remove())


async def open_node_runtime(data_dir: Path) -> ProcessRuntime | DockerRuntime:
    """The runtime a server on ``data_dir`` ran its dynos with (DOCKYARD_RUNTIME)."""
    if (data_dir / "docker").is_dir():
        return await DockerRuntime.open(data_dir)
    return await ProcessRuntime.open(data_dir)


def dyno_records(data_dir: Path) -> list[Path]:
    """The ``dyno.json`` of every dyno either runtime recorded on ``data_dir``."""
    return [*data_dir.glob("dynos/*/dyno.json"), *data_dir.glob("docker/dynos/*/dyno.json")]
