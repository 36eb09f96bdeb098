"""``logs``: an app's log stream, the last lines and (``--tail``) the new ones as they come.

The command opens a log session (``POST /apps/{app}/log-sessions``) and reads its URL as an
event stream, whose events carry the number of the last line read. When the stream breaks
during ``--tail`` (the server restarts), it opens a new session from that number: no line is
lost or shown twice, as long as the server's history still holds them.
"""

from __future__ import annotations

import json as jsonlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import click
import httpx

from dockyard.cli import output
from dockyard.cli.client import TIMEOUT, Client, Json, connect, segment
from dockyard.cli.errors import ApiError, ClientError, Unreachable
from dockyard.cli.options import app_options
from dockyard.logs.lines import parse_rendered

RETRY_FIRST = 0.25  # seconds before the first reconnection, doubling up to RETRY_MOST
RETRY_MOST = 2.0
_TAG_COLOURS = {("app", "api"): "green", ("dockyard", "router"): "blue"}
_SOURCE_COLOURS = {"app": "cyan", "dockyard": "magenta"}


class _Lost(Exception):
    """The stream broke (the server went away); a tail reconnects."""


def _error(url: str, response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiError(body["message"], status=response.status_code, id=str(body.get("id", "")))
    shown = url.partition("?")[0]  # without the query, which holds the signature
    return ApiError(
        f"the log stream at {shown} answered {response.status_code}",
        status=response.status_code,
        id="",
    )


def events(url: str) -> Iterator[tuple[list[str], str | None]]:
    """The lines of each event of the log session at ``url``, and its ``id`` (a number)."""
    timeout = httpx.Timeout(TIMEOUT, read=None)  # a quiet app sends nothing for long
    headers = {"Accept": "text/event-stream"}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(url, response)
            event_id: str | None = None
            data: list[str] = []
            for raw in response.iter_lines():
                if raw == "":
                    if data or event_id is not None:
                        yield data, event_id
                    event_id, data = None, []
                elif raw.startswith("data:"):
                    data.append(raw[6:] if raw.startswith("data: ") else raw[5:])
                elif raw.startswith("id:"):
                    event_id = raw[3:].strip()
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise _Lost(str(exc)) from exc


def _colour(text: str) -> str:
    line = parse_rendered(text)
    if line is None:
        return text
    colour = _TAG_COLOURS.get((line.source, line.process)) or _SOURCE_COLOURS.get(line.source)
    if line.process == "logplex":
        colour = "red"
    stamp, _, rest = text.partition(" ")
    tag, _, message = rest.partition(": ")
    return f"{click.style(stamp, dim=True)} {click.style(tag, fg=colour)}: {message}"


def _json(text: str) -> str:
    line = parse_rendered(text)
    shown = {"line": text} if line is None else line.to_json()
    shown.pop("id", None)
    return jsonlib.dumps(shown, ensure_ascii=False)


def _printer(as_json: bool, colour: bool) -> Callable[[list[str]], None]:
    def show(texts: list[str]) -> None:
        if as_json:
            shown = [_json(text) for text in texts]
        else:
            shown = [_colour(text) for text in texts] if colour else texts
        click.echo("\n".join(shown), color=colour)  # one write for the whole event

    return show


def follow(
    client: Client, app: str, body: Json, *, tail: bool, show: Callable[[list[str]], None]
) -> None:
    """Show the session's lines; with ``tail``, forever, reconnecting from the last number."""
    cursor: int | None = None
    wait = RETRY_FIRST
    warned = False
    while True:
        try:
            asked = body if cursor is None else {**body, "since": cursor}
            session = client.post(f"/apps/{segment(app)}/log-sessions", asked)
            for lines, event_id in events(str(session["logplex_url"])):
                if lines:
                    show(lines)
                if event_id is not None and event_id.isdigit():
                    cursor = int(event_id)
                    wait = RETRY_FIRST
                    if warned:
                        output.message("reconnected")
                        warned = False
            if not tail:
                return
        except (_Lost, Unreachable) as exc:
            if not tail or cursor is None:
                raise Unreachable(f"the log stream of {app} broke: {exc}") from exc
            if not warned:
                output.warn(f"lost the log stream ({exc}); reconnecting")
                warned = True
        time.sleep(wait)  # the server is restarting: try again, less and less often
        wait = min(wait * 2, RETRY_MOST)


@click.command("logs")
@app_options
@click.option(
    "-n",
    "--num",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How many of the last lines to show (more than 1,500 come from the history).",
)
@click.option(
    "-t", "--tail", is_flag=True, help="Keep showing new lines as they come (Ctrl-C stops)."
)
@click.option(
    "-p",
    "--ps",
    "--process-type",
    "dyno",
    metavar="DYNO",
    help="Only lines of this process type (web) or dyno (web.1); also api, router.",
)
@click.option("-d", "--dyno", "--dyno-name", "dyno_name", metavar="DYNO", hidden=True)
@click.option(
    "-s",
    "--source",
    type=click.Choice(["app", "dockyard", "heroku"], case_sensitive=False),
    help="Only lines of this source: app (your dynos, app[api]) or dockyard (the platform).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--color/--no-color",
    "force_color",
    default=None,
    help="Colour by source (default: when printing to a terminal, unless NO_COLOR is set).",
)
def logs(
    *,
    app: str,
    num: int,
    tail: bool,
    dyno: str | None,
    dyno_name: str | None,
    source: str | None,
    as_json: bool,
    force_color: bool | None,
) -> None:
    """Show an app's logs: its dynos' output, the platform's events and router lines.

    Lines look like `2026-01-05T10:00:00.123456+00:00 app[web.1]: message`. With --tail
    the command keeps running and shows each new line; when the server restarts it
    reconnects and goes on from where it was, without losing or repeating lines.

    \b
    Examples:
      dockyard logs -a my-app
      dockyard logs -n 500 -p web -a my-app
      dockyard logs --tail -s app -a my-app
    """
    colour = force_color
    if colour is None:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    body: Json = {"lines": num, "tail": tail}
    if dyno or dyno_name:
        body["dyno"] = dyno or dyno_name
    if source:
        body["source"] = source.lower()
    try:
        with connect() as client:
            follow(client, app, body, tail=tail, show=_printer(as_json, colour and not as_json))
    except KeyboardInterrupt:
        return  # how --tail ends
    except BrokenPipeError:
        # `dockyard logs | head` closed the pipe: stop quietly, and keep Python from failing
        # again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


COMMANDS = [logs]
