"""``router:timeouts``: the router's timeouts for one app.

Heroku's router has fixed timeouts (30 s to the first byte, a 55 s idle window); Dockyard's
are the platform's settings (``DOCKYARD_ROUTER_TIMEOUT``, ``DOCKYARD_ROUTER_IDLE_TIMEOUT``),
which an app may replace with its own. They take effect at once, without restarting dynos.
"""

from __future__ import annotations

from typing import Any

import click

from dockyard.cli import output
from dockyard.cli.client import connect, segment
from dockyard.cli.options import app_options

# The API's limit (dockyard.apps.MAX_ROUTER_TIMEOUT, which a test holds it to): the CLI
# imports nothing of the server, so that each command starts fast.
_SECONDS = click.IntRange(1, 3600)


def _shown(value: Any, setting: str) -> str:
    return f"{value}s" if value is not None else f"the platform's ({setting})"


@click.command("router:timeouts")
@click.option(
    "--timeout",
    type=_SECONDS,
    metavar="SECONDS",
    help="Seconds the app has to start each response before the router answers H12.",
)
@click.option(
    "--idle",
    type=_SECONDS,
    metavar="SECONDS",
    help="Seconds a WebSocket (or other upgraded connection) may stay silent.",
)
@click.option("--reset", is_flag=True, help="Go back to the platform's timeouts.")
@app_options
def router_timeouts(app: str, timeout: int | None, idle: int | None, reset: bool) -> None:
    """Show or set the router's timeouts for an app.

    Without options, shows them. `--timeout 120` gives a slow app two minutes to start
    each response (the platform's default is 30 s; then the client gets the H12 page);
    `--idle 300` lets its WebSockets stay silent for five minutes (55 s by default).
    `--reset` goes back to the platform's. Up to 3600 seconds each.
    """
    if reset and (timeout is not None or idle is not None):
        raise click.UsageError("--reset goes back to the platform's timeouts: give it alone")
    with connect() as client:
        if reset or timeout is not None or idle is not None:
            body: dict[str, int | None] = {}
            if reset or timeout is not None:
                body["router_timeout"] = timeout
            if reset or idle is not None:
                body["router_idle_timeout"] = idle
            with output.action(f"Setting the router's timeouts for {output.hexagon(app)}"):
                found = client.patch(f"/apps/{segment(app)}", body)
        else:
            found = client.get(f"/apps/{segment(app)}")
    output.pairs(
        {
            "Timeout": _shown(found.get("router_timeout"), "DOCKYARD_ROUTER_TIMEOUT"),
            "Idle": _shown(found.get("router_idle_timeout"), "DOCKYARD_ROUTER_IDLE_TIMEOUT"),
        }
    )


COMMANDS = (router_timeouts,)
