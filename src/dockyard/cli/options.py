"""Options many commands share, and how the app a command acts on is found.

The app is, in order: ``-a/--app APP``; the app in the URL of ``-r/--remote REMOTE``; the app
in the URL of the git remote named ``dockyard`` (which ``apps:create`` adds).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from dockyard.cli import git
from dockyard.cli.errors import NoApp

DEFAULT_REMOTE = "dockyard"
_HOW = (
    "give one with -a APP, or -r REMOTE for a git remote of the app, or run the command "
    f"in a git repository with a `{DEFAULT_REMOTE}` remote (`dockyard apps:create` adds one)"
)


def resolve_app(app: str | None, remote: str | None) -> str:
    if app:
        return app
    if remote:
        url = git.remotes().get(remote)
        if url is None:
            where = "this git repository" if git.in_repository() else "(not in a git repository)"
            raise NoApp(f"no git remote named {remote!r} in {where}; {_HOW}")
        name = git.app_from_url(url)
        if name is None:
            raise NoApp(f"git remote {remote!r} ({url}) does not point at a Dockyard app; {_HOW}")
        return name
    url = git.remotes().get(DEFAULT_REMOTE)
    name = git.app_from_url(url) if url else None
    if name is None:
        raise NoApp(f"no app specified: {_HOW}")
    return name


def app_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add ``-a/--app`` and ``-r/--remote``; the command gets the resolved ``app`` name."""

    @functools.wraps(command)
    def resolved(*args: Any, app: str | None, remote: str | None, **kwargs: Any) -> None:
        command(*args, app=resolve_app(app, remote), **kwargs)

    with_remote = click.option(
        "-r",
        "--remote",
        metavar="REMOTE",
        help=f"Git remote of the app to use; without -a or -r, the {DEFAULT_REMOTE!r} remote.",
    )(resolved)
    return click.option("-a", "--app", metavar="APP", help="App to run the command against.")(
        with_remote
    )


def json_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")(command)
