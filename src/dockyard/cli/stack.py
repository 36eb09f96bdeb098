"""``stack:build``: the stack image dynos run on under the ``docker`` runtime (docs/docker.md).

Runs on the server host, as root, against its Docker engine: nothing goes through the API.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from dockyard.errors import DockyardError


@click.command("stack:build")
@click.option("--force", is_flag=True, help="Build it again even when it exists.")
@click.option(
    "--mirror", metavar="URL", help="Debian mirror (default: the one apt uses on this machine)."
)
@click.option(
    "--docker-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/var/run/docker.sock"),
    show_default=True,
    help="The Docker engine's socket.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the result.")
def build(force: bool, mirror: str | None, docker_socket: Path, quiet: bool) -> None:
    """Make the stack image (dockyard-24: Debian bookworm) with debootstrap and docker import.

    Skipped when the image of the same recipe exists (see --force). Takes a minute or
    two; dynos of the docker runtime need it.
    """
    from dockyard import stacks
    from dockyard.runtime.docker_engine import Engine

    def say(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    async def main() -> bool:
        async with Engine(docker_socket) as engine:
            return await stacks.build(engine, mirror=mirror, force=force, say=say)

    started = time.monotonic()
    try:
        built = asyncio.run(main())
    except DockyardError as exc:
        raise click.ClickException(exc.message) from exc
    image = f"{stacks.STACK.image} ({stacks.STACK.name})"
    if built:
        click.echo(f"Built the stack image {image} in {time.monotonic() - started:.0f}s.", err=True)
    else:
        click.echo(f"The stack image {image} exists already.", err=True)


COMMANDS = [build]
