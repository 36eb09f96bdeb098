"""The ``dockyard`` command: Heroku's CLI commands (``topic:command``) plus the server's own.

Client commands talk to the API over HTTP (:mod:`dockyard.cli.client`); ``server``,
``db:migrate`` and ``admin:*`` run on the server host against the state store.
"""

from __future__ import annotations

import click

from dockyard import __version__
from dockyard.cli import (
    access,
    addons,
    admin,
    apps,
    auth,
    buildpacks,
    builds,
    certs,
    certs_auto,
    config,
    domains,
    drains,
    keys,
    logs,
    maintenance,
    nodes,
    ps,
    releases,
    router,
    run,
    stack,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dockyard")
def cli() -> None:
    """Dockyard: git push your apps to your own servers, the Heroku way.

    Commands are `topic:command`, as in the Heroku CLI. Most take `-a APP`
    (or `-r REMOTE`, or find the app from the git remote named `dockyard`).
    """


for topic in (
    auth,
    apps,
    config,
    releases,
    builds,
    buildpacks,
    access,
    keys,
    ps,
    run,
    logs,
    drains,
    domains,
    certs,
    certs_auto,
    maintenance,
    router,
    addons,
    stack,
    nodes,
):
    for command in topic.COMMANDS:
        cli.add_command(command)
admin.register(cli)


def main() -> None:
    cli(prog_name="dockyard")


__all__ = ["cli", "main"]
