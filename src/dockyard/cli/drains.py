"""``drains``, ``drains:add``, ``drains:remove``: where an app's logs are also sent."""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.client import Json, connect, segment
from dockyard.cli.options import app_options, json_option
from dockyard.logs.drain_urls import redact


@click.command("drains")
@app_options
@json_option
def drains_list(app: str, as_json: bool) -> None:
    """List an app's log drains: each URL (its password hidden) and token.

    \b
    Example:
      $ dockyard drains -a my-app
      === my-app Drains
      syslog+tls://logs.example.com:6514  d.0b3f8c1e-5d2a-4e9b-8f71-2c4d6e8a0b13
    """
    with connect() as client:
        found = client.listing(f"/apps/{segment(app)}/log-drains")
    if as_json:
        output.json(found)
        return
    if not found:
        output.message(f"{app} has no drains. Add one with `dockyard drains:add URL -a {app}`.")
        return
    output.header(f"{app} Drains")
    output.table([[redact(str(d["url"])), str(d["token"])] for d in found])


@click.command("drains:add")
@click.argument("url")
@app_options
@json_option
def drains_add(app: str, url: str, as_json: bool) -> None:
    """Send an app's logs to URL too: every line, as it comes, in order.

    \b
    URL is one of:
      syslog://HOST:PORT       RFC 5424 over TCP, octet-counted (RFC 6587)
      syslog+tls://HOST:PORT   the same over TLS (the certificate is verified)
      https://[USER:PASSWORD@]HOST[:PORT]/PATH
                               batches POSTed as application/logplex-1 (Heroku's format)

    Each message names the drain by its token (d.…), the app and the dyno. A drain that
    is down gets what it missed once it is back, up to 10,000 lines behind; past that the
    oldest are dropped and the app's logs say so (Error L10). See docs/logs.md.
    """
    shown = redact(url)
    with connect() as client, output.action(f"Adding drain {shown} to {output.hexagon(app)}"):
        added: Json = client.post(f"/apps/{segment(app)}/log-drains", {"url": url})
    if as_json:
        output.json(added)
        return
    output.message(f"Successfully added drain {shown} (token {added['token']})")


@click.command("drains:remove")
@click.argument("url_or_token", metavar="URL|TOKEN")
@app_options
@json_option
def drains_remove(app: str, url_or_token: str, as_json: bool) -> None:
    """Stop sending an app's logs to a drain, given by its URL or its token (d.…)."""
    with (
        connect() as client,
        output.action(f"Removing drain {redact(url_or_token)} from {output.hexagon(app)}"),
    ):
        removed: Json = client.delete(f"/apps/{segment(app)}/log-drains/{segment(url_or_token)}")
    if as_json:
        output.json(removed)
        return
    output.message(f"Successfully removed drain {redact(str(removed['url']))}")


COMMANDS = (drains_list, drains_add, drains_remove)
