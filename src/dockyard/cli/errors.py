"""What can go wrong on the client side; each prints one message on stderr and exits 1.

    ClientError             a problem the user can fix, with a message saying how
    ├── ApiError            the API answered with an error (its ``id`` and ``message``)
    ├── Unreachable         no answer from the API: refused, timed out, bad URL, not JSON
    ├── NotLoggedIn         no token in $DOCKYARD_API_KEY nor in ~/.netrc
    └── NoApp               no app given and none found from the git remotes

They are click exceptions, so click prints them and sets the exit status; foreign errors
(httpx, OSError from git or files) are caught where they enter and re-raised as one of these.
"""

from __future__ import annotations

from typing import IO, Any

import click

POINTER = " \u203a  "  # the Heroku CLI marks errors and warnings with a right angle quote


class ClientError(click.ClickException):
    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{POINTER} Error: {self.format_message()}", err=file is None, file=file)


class ApiError(ClientError):
    def __init__(self, message: str, *, status: int, id: str) -> None:
        super().__init__(message)
        self.status = status
        self.id = id


class Unreachable(ClientError):
    pass


class NotLoggedIn(ClientError):
    pass


class NoApp(ClientError):
    pass
