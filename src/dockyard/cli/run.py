"""``run`` and ``run:detached``: one-off dynos of the app's current release.

``run`` attaches to the dyno through the API's WebSocket (the dyno's ``attach_url``; its
messages are described in :mod:`dockyard.api.dynos`). With a terminal on stdin (and no
``--no-tty``) the dyno gets a pseudo-terminal: the local one is put in raw mode, so every key,
Ctrl-C included, goes to the dyno, and size changes (SIGWINCH) follow. Otherwise stdin,
stdout and stderr are plain pipes, and the end of stdin reaches the dyno. The dyno ends when
this command does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import click

from dockyard import __version__
from dockyard.cli import credentials, output
from dockyard.cli.client import Client, Json, segment, token
from dockyard.cli.errors import ApiError, ClientError, Unreachable
from dockyard.cli.options import app_options

# The attach WebSocket's channels: the first byte of each message (see dockyard.api.dynos).
STDIN, STDOUT, STDERR, EXIT, RESIZE, EOF = range(6)
_ENV_PART = re.compile(r"^\s*([\w.-]+)\s*=\s*(.*?)\s*$")
_COMMAND = {"ignore_unknown_options": True}


def build_command(args: tuple[str, ...]) -> str:
    """The command line to run, as the Heroku CLI builds it.

    One argument is taken as it is (``dockyard run 'rake db:migrate && echo done'``);
    several are joined with spaces, with double quotes around those that hold a space or a
    double quote.
    """
    if len(args) == 1:
        return args[0]
    quoted = []
    for arg in args:
        special = " " in arg or '"' in arg
        quoted.append('"' + arg.replace('"', '\\"') + '"' if special else arg)
    return " ".join(quoted)


def parse_env(text: str | None) -> dict[str, str]:
    """``-e "A=1;B=2"`` as variables; a part that is not NAME=VALUE is warned about."""
    env: dict[str, str] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        found = _ENV_PART.match(part)
        if found is None:
            output.warn(f"env flag {part} appears invalid. Avoid using ';' in values.")
            continue
        env[found[1]] = found[2]
    return env


def _run_options(command: Any) -> Any:
    command = click.option(
        "-e",
        "--env",
        metavar="'KEY=VALUE;KEY2=VALUE2'",
        help="Environment variables for the dyno, besides the app's config vars.",
    )(command)
    return click.option(
        "-s",
        "--size",
        metavar="SIZE",
        help="Dyno size: basic, standard-1x (the default), standard-2x, performance-m or "
        "performance-l.",
    )(command)


def _create(client: Client, app: str, body: Json, action: str) -> Json:
    click.echo(f"Running {body['command']} on {output.hexagon(app)}... ", err=True, nl=False)
    try:
        dyno: Json = client.post(f"/apps/{segment(app)}/dynos", body)
    except BaseException:
        click.echo("!", err=True)
        raise
    click.echo(f"{action}, {dyno['name']} ({dyno['size']})", err=True)
    return dyno


@click.command("run", context_settings=_COMMAND)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_run_options
@click.option("-x", "--exit-code", is_flag=True, help="Exit with the dyno's exit status.")
@click.option(
    "--no-tty", is_flag=True, help="Plain pipes rather than a terminal, even on a terminal."
)
@app_options
def run(
    *,
    app: str,
    command: tuple[str, ...],
    env: str | None,
    size: str | None,
    exit_code: bool,
    no_tty: bool,
) -> None:
    """Run a command in a one-off dyno, attached to this terminal.

    The dyno (run.N) runs the current release with the app's config vars, like the
    formation's dynos, and is never restarted; it ends when the command exits or when this
    command does. A Procfile process type's name runs that type's command (`dockyard run
    worker`). Put `--` before a command that has options of its own. Without -x, this
    command exits 0 whatever the dyno's status, as the Heroku CLI does.

    \b
    Examples:
      $ dockyard run bash -a my-app
      Running bash on ⬢ my-app... up, run.4821 (Standard-1X)
      $ dockyard run -x -a my-app -- python manage.py migrate --check
      $ dockyard run -e "DEBUG=1;LEVEL=2" -s standard-2x -a my-app worker
    """
    line = build_command(command)
    terminal = not no_tty and sys.stdin.isatty()
    variables = parse_env(env)
    if os.environ.get("TERM"):
        variables.setdefault("TERM", os.environ["TERM"])
    if terminal:
        columns, lines = os.get_terminal_size(sys.stdin.fileno())
        variables |= {"COLUMNS": str(columns), "LINES": str(lines)}
    body: Json = {
        "command": line,
        "attach": True,
        "env": variables,
        "force_no_tty": not terminal,
        "type": "run",
    }
    if size:
        body["size"] = size
    url, key = credentials.api_url(), token()
    with Client(url, key) as client:
        dyno = _create(client, app, body, "up")
    status = _attach(_websocket_url(url, dyno["attach_url"]), key, terminal)
    if exit_code:
        if status is None:
            raise ClientError(f"lost the connection to {dyno['name']} before it exited")
        sys.exit(status)


@click.command("run:detached", context_settings=_COMMAND)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_run_options
@app_options
def run_detached(*, app: str, command: tuple[str, ...], env: str | None, size: str | None) -> None:
    """Run a command in a one-off dyno in the background, with its output in the app's log.

    Prints the dyno's name (run.N), which `dockyard ps:stop` takes to end it early. The dyno
    is never restarted.

    \b
    Example:
      $ dockyard run:detached -a my-app -- python manage.py clearsessions
      Running python manage.py clearsessions on ⬢ my-app... done, run.4821 (Standard-1X)
      run.4821
    """
    body: Json = {"command": build_command(command), "attach": False, "env": parse_env(env)}
    body["type"] = "run"
    if size:
        body["size"] = size
    with Client(credentials.api_url(), token()) as client:
        dyno = _create(client, app, body, "done")
    output.line(dyno["name"])


def _websocket_url(api_url: str, attach_url: str) -> str:
    """``attach_url`` on the API as this client reaches it (the server may see another host)."""
    attach = urlsplit(attach_url)
    scheme, _, rest = api_url.rstrip("/").partition("://")
    query = f"?{attach.query}" if attach.query else ""
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{attach.path}{query}"


def _attach(url: str, key: str, terminal: bool) -> int | None:
    """Connect this process's stdio to the dyno until it ends; its exit status."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    try:
        socket = connect(
            url,
            additional_headers={"Authorization": f"Bearer {key}"},
            user_agent_header=f"dockyard-cli/{__version__}",
            open_timeout=30,
            max_size=None,
        )
    except InvalidStatus as exc:
        raise _refused(exc.response.status_code, bytes(exc.response.body or b"")) from exc
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise Unreachable(f"cannot attach to the dyno at {url.partition('?')[0]}: {exc}") from exc
    with socket:
        return _Session(socket, terminal).run()


def _refused(status: int, body: bytes) -> ApiError:
    try:
        reply = json.loads(body)
        return ApiError(str(reply["message"]), status=status, id=str(reply.get("id", "")))
    except (ValueError, TypeError, KeyError):
        return ApiError(f"the API refused to attach to the dyno ({status})", status=status, id="")


class _Session:
    """Local stdio on one side, the dyno's attach WebSocket on the other."""

    def __init__(self, socket: Any, terminal: bool) -> None:
        self.socket = socket
        self.terminal = terminal
        self.status: int | None = None
        self.ended = threading.Event()
        self.resized = False
        self.wake_r, self.wake_w = os.pipe()

    def run(self) -> int | None:
        reader = threading.Thread(target=self._receive, name="dyno-output", daemon=True)
        with self._local_terminal(), self._signals():
            reader.start()
            if self.terminal:
                self._send_size()
            try:
                self._forward_input()
            finally:
                self.socket.close()
                reader.join()
                os.close(self.wake_r)
                os.close(self.wake_w)
        return self.status

    def _receive(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for message in self.socket:
                if not isinstance(message, bytes) or not message:
                    continue
                channel, payload = message[0], message[1:]
                if channel == STDOUT:
                    _write(sys.stdout.buffer, payload)
                elif channel == STDERR:
                    _write(sys.stderr.buffer, payload)
                elif channel == EXIT:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        self.status = int(json.loads(payload)["status"])
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.ended.set()
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"e")

    def _forward_input(self) -> None:
        from websockets.exceptions import ConnectionClosed

        stdin = sys.stdin.fileno()
        reading = True
        while not self.ended.is_set():
            ready, _, _ = select.select([self.wake_r, *([stdin] if reading else [])], [], [])
            try:
                if self.wake_r in ready:
                    os.read(self.wake_r, 512)
                    if self.resized:
                        self.resized = False
                        self._send_size()
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if data:
                        self.socket.send(bytes([STDIN]) + data)
                    else:
                        reading = False
                        if not self.terminal:
                            self.socket.send(bytes([EOF]))
            except ConnectionClosed:
                return

    def _send_size(self) -> None:
        columns, rows = os.get_terminal_size(sys.stdin.fileno())
        self.socket.send(bytes([RESIZE]) + json.dumps({"rows": rows, "cols": columns}).encode())

    @contextlib.contextmanager
    def _local_terminal(self) -> Iterator[None]:
        """Raw mode while attached with a terminal: keys go to the dyno as they are."""
        if not self.terminal:
            yield
            return
        stdin = sys.stdin.fileno()
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin, termios.TCSANOW)  # keys typed ahead go to the dyno too
        try:
            yield
        finally:
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGWINCH: send the new size; SIGTERM, SIGHUP: detach (and restore the terminal)."""

        def resized(_number: int, _frame: FrameType | None) -> None:
            self.resized = True
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"w")

        def leave(number: int, _frame: FrameType | None) -> None:
            raise SystemExit(128 + number)

        handlers: dict[int, Callable[[int, FrameType | None], None]]
        handlers = {signal.SIGTERM: leave, signal.SIGHUP: leave}
        if self.terminal:
            handlers[signal.SIGWINCH] = resized
        saved = {number: signal.signal(number, handler) for number, handler in handlers.items()}
        try:
            yield
        finally:
            for number, handler in saved.items():
                signal.signal(number, handler)


def _write(stream: Any, data: bytes) -> None:
    stream.write(data)
    stream.flush()


COMMANDS = (run, run_detached)
