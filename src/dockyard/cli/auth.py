"""``login``, ``logout``, ``auth:token``, ``auth:whoami``."""

from __future__ import annotations

import os
import sys

import click

from dockyard.cli import credentials, output
from dockyard.cli.client import Client, api_host, connect, token
from dockyard.cli.errors import ClientError


@click.command("login")
@click.option("--token", "given_token", metavar="TOKEN", help="API token; asked for if not given.")
@click.option(
    "--api-url",
    metavar="URL",
    help="The Dockyard API. Default: $DOCKYARD_API_URL, else the last login's, "
    f"else {credentials.DEFAULT_API_URL}.",
)
def login(given_token: str | None, api_url: str | None) -> None:
    """Log in to a Dockyard server with an API token.

    Asks for your email and token (an operator makes both with `dockyard admin:create-user`),
    or takes the token from --token. The token is checked against the server, then saved
    in ~/.netrc for the API host, so `git push` over HTTP to the same host uses it too; the
    API URL is saved in ~/.config/dockyard/config.json.

    \b
    Examples:
      dockyard login
      dockyard login --api-url https://api.example.com --token dky_...
    """
    url = (api_url or credentials.api_url()).rstrip("/")
    host = api_host(url)
    email = None
    if given_token is None:
        output.message(f"Log in to {url}")
        email = click.prompt("Email", err=True).strip()
        # A token piped in is read as a plain line: getpass would go to /dev/tty instead.
        given_token = click.prompt("Token", hide_input=sys.stdin.isatty(), err=True)
    given_token = given_token.strip()
    if not given_token:
        raise ClientError("the token is empty; give the one `dockyard admin:create-user` printed")
    with Client(url, given_token) as client:
        account = client.get("/account")
    account_email = str(account.get("email", ""))
    if email is not None and email.lower() != account_email.lower():
        raise ClientError(f"that token belongs to {account_email}, not {email}; nothing was saved")
    credentials.save_netrc(host, account_email, given_token)
    credentials.save_api_url(url)
    output.message(f"Logged in as {account_email}")
    if os.environ.get("DOCKYARD_API_KEY"):
        output.warn("DOCKYARD_API_KEY is set: it is used instead of the saved login")


@click.command("logout")
def logout() -> None:
    """Forget the login to the current server: remove its entry from ~/.netrc."""
    url = credentials.api_url()
    with output.action("Logging out"):
        credentials.remove_netrc(api_host(url))
    if os.environ.get("DOCKYARD_API_KEY"):
        output.warn("DOCKYARD_API_KEY is still set: commands keep using its token")


@click.command("auth:token")
def auth_token() -> None:
    """Print the API token the CLI is using ($DOCKYARD_API_KEY, else the saved login).

    Use it as `Authorization: Bearer <token>` for the API, or as the HTTP password for git.
    """
    output.line(token())


@click.command("auth:whoami")
def auth_whoami() -> None:
    """Print the email of the account the CLI is logged in as."""
    with connect() as client:
        output.line(str(client.get("/account").get("email", "")))


COMMANDS = (login, logout, auth_token, auth_whoami)
