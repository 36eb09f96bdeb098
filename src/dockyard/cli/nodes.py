"""``nodes``, ``nodes:drain``, ``nodes:activate``: the machines dynos run on (admins only)."""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.client import Json, connect, segment
from dockyard.cli.options import json_option


def _dynos(node: Json) -> str:
    names = [
        f"{d['app']} {d['name']}" if d.get("app") else d["name"] for d in node.get("dynos", [])
    ]
    return ", ".join(names) if names else "-"


def _cpus(value: float) -> str:
    return f"{value:g}"


def _row(node: Json) -> list[str]:
    role = node["role"] + (" (leader)" if node["role"] == "manager" and node["leader"] else "")
    capacity = node["capacity"]
    return [
        node["id"][:12],
        node["hostname"],
        role,
        node["state"],
        node["availability"],
        _cpus(capacity["cpus"]),
        f"{capacity['memory_mb']} MB",
        _dynos(node),
    ]


HEADERS = ["id", "hostname", "role", "state", "availability", "cpus", "memory", "dynos"]


@click.command("nodes")
@json_option
def nodes(as_json: bool) -> None:
    """List the nodes dynos run on: role, state, availability, capacity and dynos.

    With DOCKYARD_RUNTIME=swarm these are the swarm's nodes; with the process or
    docker runtime, the server alone. Admins only.

    \b
    Example:
      $ dockyard nodes
      id            hostname  role              state  availability  cpus  memory    dynos
      ynfr2z4ex0p2  manager1  manager (leader)  ready  active        2     24105 MB  myapp web.1
      900qv89xmvo8  worker1   worker            ready  active        2     24105 MB  myapp web.2
    """
    with connect() as client:
        found: list[Json] = client.get("/nodes")
    if as_json:
        output.json(found)
        return
    output.table([_row(node) for node in found], HEADERS)
    for node in found:
        if node.get("message") and node["state"] != "ready":
            output.warn(
                f"{node['hostname']} ({node['id'][:12]}) is {node['state']}: {node['message']}"
            )


def _change(node: str, action: str, doing: str) -> None:
    with connect() as client, output.action(f"{doing} {node}") as done:
        changed: Json = client.post(f"/nodes/{segment(node)}/actions/{action}")
        done.append(f"{changed['hostname']} ({changed['id'][:12]}) is {changed['availability']}")


@click.command("nodes:drain")
@click.argument("node")
def drain(node: str) -> None:
    """Move every dyno off NODE (an ID, ID prefix or hostname); Swarm starts them elsewhere.

    The node stays in the swarm and runs no dynos until nodes:activate. Admins only.
    """
    _change(node, "drain", "Draining")


@click.command("nodes:activate")
@click.argument("node")
def activate(node: str) -> None:
    """Let NODE (an ID, ID prefix or hostname) run dynos again after nodes:drain.

    Dynos that run elsewhere stay there; new ones and rescheduled ones may land on it.
    Admins only.
    """
    _change(node, "activate", "Activating")


COMMANDS = [nodes, drain, activate]
