"""``access``, ``access:add``, ``access:remove``: who may work on an app."""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.client import connect, segment
from dockyard.cli.options import app_options, json_option


@click.command("access")
@app_options
@json_option
def access_list(app: str, as_json: bool) -> None:
    """List who has access to an app: its owner and its collaborators.

    --json prints the API's collaborator list (the owner is not in it).
    """
    with connect() as client:
        collaborators = client.listing(f"/apps/{segment(app)}/collaborators")
        if as_json:
            output.json(collaborators)
            return
        owner = (client.get(f"/apps/{segment(app)}").get("owner") or {}).get("email", "")
    output.header(f"{app} Access List")
    output.line()
    rows = [[str(owner), "owner"]]
    rows += [
        [str((c.get("user") or {}).get("email", "")), str(c.get("role") or "collaborator")]
        for c in collaborators
    ]
    output.table(rows)


@click.command("access:add")
@click.argument("email")
@app_options
def access_add(app: str, email: str) -> None:
    """Give the user with EMAIL access to an app, as a collaborator.

    Collaborators can deploy, change config and roll back; only the owner can rename or
    destroy the app or change who has access.
    """
    with connect() as client, output.action(f"Adding {email} access to the app {app}"):
        client.post(f"/apps/{segment(app)}/collaborators", {"user": email})


@click.command("access:remove")
@click.argument("email")
@app_options
def access_remove(app: str, email: str) -> None:
    """Take a collaborator's access to an app away."""
    with connect() as client, output.action(f"Removing {email} access from the app {app}"):
        client.delete(f"/apps/{segment(app)}/collaborators/{segment(email)}")


COMMANDS = (access_list, access_add, access_remove)
