"""How commands print, in the Heroku CLI's habits.

Data (tables, values, JSON) goes to stdout; messages and progress (``Setting FOO and
restarting ⬢ app... done, v4``) go to stderr, so that ``$(dockyard config:get X)`` and
``dockyard apps --json | jq`` see only data. Values are printed as text, never as rich markup.
"""

from __future__ import annotations

import io
import json as jsonlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from dockyard.cli.errors import POINTER

_WIDE = 100_000


def hexagon(app: str) -> str:
    """``⬢ app``, or just ``app`` where stderr cannot show the symbol."""
    encoding = getattr(sys.stderr, "encoding", None) or "ascii"
    try:
        "⬢".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return app
    return f"⬢ {app}"


def message(text: str) -> None:
    click.echo(text, err=True)


def warn(text: str) -> None:
    click.echo(f"{POINTER} Warning: {text}", err=True)


def line(text: str = "") -> None:
    click.echo(text)


def header(text: str) -> None:
    click.secho(f"=== {text}", bold=True)  # click drops the style when stdout is not a terminal


def json(value: Any) -> None:
    click.echo(jsonlib.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def action(text: str) -> Iterator[list[str]]:
    """Print ``text...`` on stderr, then ``done`` (plus what the block appends) or ``!``.

    The block may append to the yielded list to extend the ending: ``done, v5``.
    """
    click.echo(f"{text}... ", err=True, nl=False)
    suffix: list[str] = []
    try:
        yield suffix
    except BaseException:
        click.echo("!", err=True)
        raise
    click.echo(", ".join(["done", *filter(None, suffix)]), err=True)


def table(rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None) -> None:
    """Rows in aligned columns; never wrapped or cut when stdout is not a terminal."""
    # rich is imported here, not at the top: most commands print no table.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(
        box=None,
        show_header=headers is not None,
        pad_edge=False,
        header_style="bold",
        padding=(0, 2, 0, 0),
    )
    for title in headers or [""] * (len(rows[0]) if rows else 0):
        grid.add_column(title, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    console = Console(highlight=False, soft_wrap=True)
    if console.is_terminal:
        console.print(grid)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=_WIDE, color_system=None, highlight=False).print(grid)
    for text_line in buffer.getvalue().splitlines():
        click.echo(text_line.rstrip())


def pairs(values: Mapping[str, Any]) -> None:
    """``Key: value`` lines with the values aligned (Heroku's styled object)."""
    if not values:
        return
    width = max(len(key) for key in values) + 1
    for key, value in values.items():
        shown = "" if value is None else str(value)
        click.echo(f"{key + ':':<{width}} {shown}".rstrip())


def when(stamp: str | None, now: datetime | None = None) -> str:
    """An API time as Heroku shows it: local ``2026/01/05 10:00:00 +0100``, ``(~ 3m ago)``."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    shown = moment.astimezone().strftime("%Y/%m/%d %H:%M:%S %z")
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if 0 <= seconds < 60:
        return f"{shown} (~ {int(seconds)}s ago)"
    if 0 <= seconds < 3600:
        return f"{shown} (~ {int(seconds // 60)}m ago)"
    if 0 <= seconds < 86400:
        return f"{shown} (~ {int(seconds // 3600)}h ago)"
    return shown
