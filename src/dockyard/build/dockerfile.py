"""Dockerfile apps (the ``docker`` runtime): a ``Dockerfile`` at the root is built with Docker.

Used instead of buildpacks when the runtime is ``docker``, the source has a ``Dockerfile``
at its root and the app has no buildpacks set. The source is the build context (Docker
applies its ``.dockerignore``). Every base image (``FROM``) must be on this machine already,
the stack image (``dockyard/stack:24``) or another local one: Dockyard never pulls, and a
missing one fails the build with its name. The image is tagged
``dockyard/app-<app id>:build-<build id>``; no config var goes into it. Build arguments (the
Dockerfile's ``ARG``) come only from ``app.json``'s ``"build": {"args": {...}}``.

Process types come from the ``Procfile`` when there is one, else the image's ``ENTRYPOINT``
and ``CMD`` are the ``web`` type. The release's "slug" is then a tiny tarball holding only
``.dockyard-image.json`` (the image's id): releases stay immutable and checksummed, and the
docker runtime runs that image (:mod:`dockyard.runtime._docker_images`).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.runtime.docker_engine import Engine, EngineError, file_chunks

MARKER = ".dockyard-image.json"
Emit = Callable[[str], Awaitable[None]]


class DockerfileError(DockyardError):
    """The Dockerfile app could not be built (the pipeline reports it as a failed build)."""


def wants_dockerfile(app_dir: Path, buildpacks: list[str]) -> bool:
    return not buildpacks and (app_dir / "Dockerfile").is_file()


def base_images(dockerfile: str) -> list[str]:
    """The images the Dockerfile's ``FROM`` lines name, without its own stages and scratch."""
    text = dockerfile.replace("\\\n", " ")
    stages: set[str] = set()
    bases: list[str] = []
    for raw in text.splitlines():
        words = raw.split()
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if not args:
            continue
        image = args[0]
        if image.lower() not in stages and image != "scratch" and image not in bases:
            bases.append(image)
        if len(args) >= 3 and args[1].lower() == "as":
            stages.add(args[2].lower())
    return bases


def web_command(image: dict[str, Any]) -> str | None:
    """The image's ``ENTRYPOINT`` + ``CMD`` as one shell command, None when it has neither."""
    config = image.get("Config") or {}
    words = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return shlex.join(words) if words else None


class DockerfileBuilder:
    """Builds Dockerfile apps on the Docker engine behind ``socket``."""

    def __init__(self, socket: Path, data_dir: Path) -> None:
        self.socket = socket
        self.data_dir = data_dir  # whose images they are (the runtime's scope label)

    async def build(
        self,
        *,
        app_id: str,
        build_id: str,
        app_dir: Path,
        workspace: Path,
        emit: Emit,
        build_args: dict[str, str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Build the image; its tag and its inspection."""
        from dockyard.runtime._docker_images import (
            APP_LABEL,
            BUILD_LABEL,
            SCOPE_LABEL,
            repository,
            scope_of,
        )

        dockerfile = (app_dir / "Dockerfile").read_text(errors="replace")
        tag = f"{repository(app_id)}:build-{build_id[:12]}"
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        async def forward() -> None:
            while (line := await lines.get()) is not None:
                await emit(f"       {line}")

        async with Engine(self.socket) as engine:
            for base in base_images(dockerfile):
                if "$" not in base and await engine.image(base) is None:
                    raise DockerfileError(
                        f"the Dockerfile's base image {base} is not on this server, and "
                        "Dockyard never pulls images; build FROM the stack image "
                        "dockyard/stack:24 or another image on the server"
                    )
            await emit("-----> Building the Dockerfile with Docker")
            context = Path(tempfile.mkstemp(prefix="context-", suffix=".tar", dir=workspace)[1])
            await asyncio.to_thread(_pack_context, app_dir, context)
            forwarder = asyncio.create_task(forward())

            def output(text: str) -> None:
                for line in text.splitlines():
                    if line.strip():
                        lines.put_nowait(line.rstrip())

            try:
                await engine.build(
                    file_chunks(context),
                    tag=tag,
                    labels={
                        SCOPE_LABEL: scope_of(self.data_dir),
                        APP_LABEL: app_id,
                        BUILD_LABEL: build_id,
                    },
                    build_args=build_args or {},
                    on_output=output,
                )
            except EngineError as exc:
                raise DockerfileError(f"docker build failed: {exc.message}") from exc
            finally:
                lines.put_nowait(None)
                await forwarder
                context.unlink(missing_ok=True)
            image = await engine.image(tag)
        if image is None:
            raise DockerfileError(f"the image {tag} is not there after its build")
        return tag, image


def _pack_context(app_dir: Path, target: Path) -> None:
    with tarfile.open(target, "w") as tar:
        for path in sorted(app_dir.iterdir()):
            if path.name != ".git":
                tar.add(path, arcname=path.name)


def write_marker(directory: Path, tag: str, image: dict[str, Any]) -> None:
    """The release's slug content: which image it runs."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"image": str(image["Id"]), "tag": tag}
    (directory / MARKER).write_text(json.dumps(record) + "\n")
