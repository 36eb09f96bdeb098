"""``maintenance``, ``maintenance:on``, ``maintenance:off``: the app's maintenance page.

In maintenance mode the router answers every request to the app with the maintenance page
(503, Error H80), at once and without restarting dynos; they keep running for ``run`` and
workers.
"""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.client import connect, segment
from dockyard.cli.options import app_options


@click.command("maintenance")
@app_options
def maintenance_show(app: str) -> None:
    """Show whether an app is in maintenance mode: on or off."""
    with connect() as client:
        found = client.get(f"/apps/{segment(app)}")
    output.line("on" if found.get("maintenance") else "off")


@click.command("maintenance:on")
@app_options
def maintenance_on(app: str) -> None:
    """Put an app in maintenance mode: every request gets the maintenance page (H80)."""
    with connect() as client, output.action(f"Enabling maintenance mode for {output.hexagon(app)}"):
        client.patch(f"/apps/{segment(app)}", {"maintenance": True})


@click.command("maintenance:off")
@app_options
def maintenance_off(app: str) -> None:
    """Take an app out of maintenance mode: its web dynos get requests again."""
    with (
        connect() as client,
        output.action(f"Disabling maintenance mode for {output.hexagon(app)}"),
    ):
        client.patch(f"/apps/{segment(app)}", {"maintenance": False})


COMMANDS = (maintenance_show, maintenance_on, maintenance_off)
