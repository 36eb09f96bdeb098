"""``config``, ``config:get``, ``config:set``, ``config:unset``: an app's config vars.

Every change makes a new release and restarts the app; the messages say which version.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options


def shell_lines(values: Mapping[str, str]) -> list[str]:
    """``KEY=value`` lines, quoted so that a shell's ``eval`` or ``source`` reads them back."""
    return [f"{key}={shlex.quote(value)}" for key, value in values.items()]


def show_config(values: Mapping[str, str], *, shell: bool, as_json: bool) -> None:
    if as_json:
        output.json(dict(values))
    elif shell:
        for entry in shell_lines(values):
            output.line(entry)
    else:
        output.pairs(values)


def latest_release(client: Client, app: str) -> Json | None:
    releases = client.listing(
        f"/apps/{segment(app)}/releases", "version ..; max=1, order=desc", limit=1
    )
    return releases[0] if releases else None


def version_of(release: Json | None) -> str:
    return f"v{release['version']}" if release else ""


def latest_version(client: Client, app: str) -> str:
    return version_of(latest_release(client, app))


def warn_if_pending(release: Json | None, change: str) -> None:
    """Heroku's warning when the new release waits for its release command."""
    if release is not None and release.get("status") == "pending":
        output.warn(
            f"Release command executing: this {change} will not be available until the "
            "command succeeds. Use `dockyard releases:output` to view the log."
        )


def _assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(
                f"{pair!r} is not KEY=VALUE: config:set takes arguments like "
                "FOO=bar 'GREETING=hello world'"
            )
        values[key] = value
    return values


@click.command("config")
@app_options
@click.option("-s", "--shell", is_flag=True, help="Print KEY=value lines, quoted for a shell.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print a JSON object.")
def config_list(app: str, shell: bool, as_json: bool) -> None:
    """Show an app's config vars.

    \b
    Examples:
      dockyard config -a my-app
      dockyard config -s -a my-app > .env
    """
    with connect() as client:
        values = client.get(f"/apps/{segment(app)}/config-vars")
    if not as_json and not shell:
        output.header(f"{app} Config Vars")
        output.line()
    show_config(values, shell=shell, as_json=as_json)


@click.command("config:get")
@click.argument("key")
@app_options
@click.option("-s", "--shell", is_flag=True, help="Print KEY=value, quoted for a shell.")
def config_get(app: str, key: str, shell: bool) -> None:
    """Print the value of one config var (an empty line when it is not set)."""
    with connect() as client:
        values = client.get(f"/apps/{segment(app)}/config-vars")
    value = values.get(key)
    if shell:
        output.line(shell_lines({key: value or ""})[0])
    else:
        output.line(value or "")


@click.command("config:set")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@app_options
def config_set(app: str, pairs: tuple[str, ...]) -> None:
    """Set config vars; makes a new release and restarts the app.

    Only the first '=' splits a pair, so values may hold '=' too; quote values with
    spaces for your shell.

    \b
    Examples:
      dockyard config:set RAILS_ENV=production -a my-app
      dockyard config:set 'GREETING=hello world' 'DATABASE_URL=postgres://u:p@db/x?a=b'
    """
    values = _assignments(pairs)
    with connect() as client:
        names = ", ".join(values)
        with output.action(f"Setting {names} and restarting {output.hexagon(app)}") as done:
            result = client.patch(f"/apps/{segment(app)}/config-vars", values)
            latest = latest_release(client, app)
            done.append(version_of(latest))
    warn_if_pending(latest, "config change")
    output.pairs({key: result.get(key, value) for key, value in values.items()})


@click.command("config:unset")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@app_options
def config_unset(app: str, keys: tuple[str, ...]) -> None:
    """Unset config vars; makes a new release and restarts the app."""
    with connect() as client:
        names = ", ".join(keys)
        with output.action(f"Unsetting {names} and restarting {output.hexagon(app)}") as done:
            client.patch(f"/apps/{segment(app)}/config-vars", dict.fromkeys(keys))
            latest = latest_release(client, app)
            done.append(version_of(latest))
    warn_if_pending(latest, "config change")


COMMANDS = (config_list, config_get, config_set, config_unset)
