"""``ps``, ``ps:scale``, ``ps:type``, ``ps:restart``, ``ps:stop``: an app's process types,
their quantity and size, and the dynos that run them."""

from __future__ import annotations

import re

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options, json_option

# Heroku's syntax: web=2, web+1, worker-1, each with an optional :SIZE.
_CHANGE = re.compile(r"^(?P<type>[\w-]+?)(?P<quantity>[=+-]\d+)(?::(?P<size>[\w-]+))?$")
ONE_OFF = ("run", "release")  # dyno types that are not the formation's
_RESIZE = re.compile(r"^(?P<type>[\w-]+)=(?P<size>[\w-]+)$")
_SCALE_HELP = (
    "use TYPE=N, TYPE+N or TYPE-N, optionally with :SIZE (like web=2, worker+1 or "
    "web=2:standard-2x)"
)


def parse_changes(args: tuple[str, ...]) -> list[Json]:
    """``web=2:standard-2x worker+1`` as the API's updates (quantities as the Heroku CLI sends)."""
    changes: list[Json] = []
    for arg in args:
        found = _CHANGE.match(arg)
        if found is None:
            raise ClientError(f"{arg!r} is not a scale change: {_SCALE_HELP}")
        quantity = found["quantity"]
        change: Json = {
            "type": found["type"],
            "quantity": quantity[1:] if quantity.startswith("=") else quantity,
        }
        if found["size"]:
            change["size"] = found["size"]
        if any(c["type"] == change["type"] for c in changes):
            raise ClientError(f"{change['type']} is given more than once; give each type once")
        changes.append(change)
    return changes


def parse_sizes(args: tuple[str, ...], types: list[str]) -> list[Json]:
    """``web=standard-2x worker=basic`` (or one SIZE for every type) as the API's updates."""
    if len(args) == 1 and "=" not in args[0]:
        return [{"type": kind, "size": args[0]} for kind in types]
    changes: list[Json] = []
    for arg in args:
        found = _RESIZE.match(arg)
        if found is None:
            raise ClientError(
                f"{arg!r} is not TYPE=SIZE: give sizes like web=standard-2x worker=basic, "
                "or one SIZE for every type"
            )
        if found["type"] not in types:
            raise ClientError(
                f"no process type {found['type']!r} in the formation; "
                f"the types are {', '.join(types) or '(none)'}"
            )
        changes.append({"type": found["type"], "size": found["size"]})
    return changes


def _formation(client: Client, app: str) -> list[Json]:
    return sorted(client.listing(f"/apps/{segment(app)}/formation"), key=lambda f: f["type"])


def _no_types(app: str) -> ClientError:
    return ClientError(
        f"No process types on {app}. Push code with a Procfile (like `web: ./start`) "
        "to add process types."
    )


@click.command("ps")
@app_options
@json_option
def ps(app: str, as_json: bool) -> None:
    """Show an app's process types and each dyno's state and age.

    \b
    Example:
      $ dockyard ps -a my-app
      === web (Standard-1X): gunicorn app:app (1)
      web.1: up 2026/01/05 10:00:00 +0000 (~ 1m ago)

      === worker (Standard-1X): python worker.py (0)
    """
    with connect() as client:
        found = _formation(client, app)
        running: list[Json] = client.get(f"/apps/{segment(app)}/dynos") if found else []
    if as_json:
        output.json(found)
        return
    if not found:
        output.message(
            f"No process types on {output.hexagon(app)} yet: push code with a Procfile to add them."
        )
        return
    for entry in found:
        output.header(
            f"{entry['type']} ({entry['size']}): {entry['command']} ({entry['quantity']})"
        )
        shown = [d for d in running if d["type"] == entry["type"]]
        for dyno in shown:
            output.line(_dyno_line(dyno))
        if shown:
            output.line()
    one_offs = [d for d in running if d["type"] in ONE_OFF]
    if one_offs:
        output.header(f"run: one-off processes ({len(one_offs)})")
        for dyno in one_offs:
            output.line(
                f"{dyno['name']} ({dyno['size']}): {dyno['state']} "
                f"{output.when(dyno.get('created_at'))}: {dyno['command']}"
            )
        output.line()


def _dyno_line(dyno: Json) -> str:
    """``web.1: up 2026/01/05 10:00:00 +0000 (~ 1m ago)``, as Heroku's ``ps`` shows a dyno."""
    text = f"{dyno['name']}: {dyno['state']} {output.when(dyno.get('updated_at'))}"
    retry_in = dyno.get("retry_in")
    if dyno["state"] == "crashed" and isinstance(retry_in, int | float) and retry_in > 0:
        text += f", restarts within {max(1, round(retry_in))}s of the crash"
    if dyno["state"] == "crashed" and dyno.get("reason"):
        text += f" ({dyno['reason']})"
    return text


@click.command("ps:scale")
@click.argument("changes", nargs=-1, metavar="[TYPE=N[:SIZE]|TYPE+N|TYPE-N]...")
@app_options
def ps_scale(app: str, changes: tuple[str, ...]) -> None:
    """Scale process types up or down, and optionally resize them.

    Without arguments, prints the formation in a form ps:scale takes back.
    Sizes: basic, standard-1x, standard-2x, performance-m, performance-l.

    \b
    Examples:
      $ dockyard ps:scale web=3:standard-2x worker+1 -a my-app
      Scaling dynos... done, now running web at 3:Standard-2X, worker at 1:Standard-1X
      $ dockyard ps:scale -a my-app
      web=3:Standard-2X worker=1:Standard-1X
    """
    updates = parse_changes(changes)
    with connect() as client:
        if not updates:
            found = _formation(client, app)
            if not found:
                raise _no_types(app)
            output.line(" ".join(f"{f['type']}={f['quantity']}:{f['size']}" for f in found))
            return
        with output.action("Scaling dynos") as done:
            changed = client.patch(f"/apps/{segment(app)}/formation", {"updates": updates})
            wanted = [u["type"] for u in updates]
            shown = sorted(
                (f for f in changed if f["type"] in wanted), key=lambda f: wanted.index(f["type"])
            )
            running = ", ".join(f"{f['type']} at {f['quantity']}:{f['size']}" for f in shown)
            done.append(f"now running {running}")


@click.command("ps:type")
@click.argument("sizes", nargs=-1, metavar="[TYPE=SIZE...|SIZE]")
@app_options
def ps_type(app: str, sizes: tuple[str, ...]) -> None:
    """Show or set the dyno size of each process type.

    With TYPE=SIZE arguments, resizes those types; with one SIZE, resizes every type.
    Sizes: basic, standard-1x, standard-2x, performance-m, performance-l.

    \b
    Examples:
      $ dockyard ps:type -a my-app
      $ dockyard ps:type web=standard-2x worker=basic -a my-app
      $ dockyard ps:type performance-m -a my-app
    """
    with connect() as client:
        found = _formation(client, app)
        if not found:
            raise _no_types(app)
        if sizes:
            updates = parse_sizes(sizes, [f["type"] for f in found])
            with output.action(f"Scaling dynos on {output.hexagon(app)}"):
                client.patch(f"/apps/{segment(app)}/formation", {"updates": updates})
            found = _formation(client, app)
    output.header("Process Types")
    output.table(
        [[f["type"], f["size"], str(f["quantity"])] for f in found], ["type", "size", "qty"]
    )
    output.line()
    totals: dict[str, int] = {}
    for entry in found:
        totals[entry["size"]] = totals.get(entry["size"], 0) + int(entry["quantity"])
    output.header("Dyno Totals")
    output.table([[size, str(total)] for size, total in totals.items()], ["type", "total"])


def _which(target: str | None) -> str:
    """``dynos``, ``web dynos`` or ``dyno web.1``, as Heroku's restart and stop messages say."""
    if target is None:
        return "dynos"
    if "." in target:
        return f"dyno {target}"
    return f"{target} dynos"


_RESTART_HELP = """Restart an app's dynos: all of them, one process type (web), or one dyno (web.1).

    Each dyno is stopped (SIGTERM, then SIGKILL after 30 seconds) and the formation starts
    a new one in its place.

    \b
    Examples:
      $ dockyard ps:restart -a my-app
      Restarting dynos on ⬢ my-app... done
      $ dockyard ps:restart web.1 -a my-app
      Restarting dyno web.1 on ⬢ my-app... done
    """


def _restart(app: str, target: str | None) -> None:
    path = f"/apps/{segment(app)}/dynos"
    action = f"Restarting {_which(target)} on {output.hexagon(app)}"
    with connect() as client, output.action(action):
        client.delete(path if target is None else f"{path}/{segment(target)}")


@click.command("ps:restart", help=_RESTART_HELP)
@click.argument("target", required=False, metavar="[TYPE|DYNO]")
@app_options
def ps_restart(app: str, target: str | None) -> None:
    _restart(app, target)


@click.command("restart", help=_RESTART_HELP.replace("ps:restart", "restart"))
@click.argument("target", required=False, metavar="[TYPE|DYNO]")
@app_options
def restart(app: str, target: str | None) -> None:
    _restart(app, target)


@click.command("ps:stop")
@click.argument("target", metavar="TYPE|DYNO")
@app_options
def ps_stop(app: str, target: str) -> None:
    """Stop one dyno (web.1), or every dyno of a process type (web).

    A formation dyno that is stopped is started again by the formation; scale the type to
    0 (`dockyard ps:scale web=0`) to keep it stopped. A one-off dyno (run.1234) just ends.

    \b
    Example:
      $ dockyard ps:stop run.4821 -a my-app
      Stopping dyno run.4821 on ⬢ my-app... done
    """
    action = f"Stopping {_which(target)} on {output.hexagon(app)}"
    with connect() as client, output.action(action):
        client.post(f"/apps/{segment(app)}/dynos/{segment(target)}/actions/stop")


COMMANDS = (ps, ps_scale, ps_type, ps_restart, restart, ps_stop)
