"""``ps``, ``ps:scale``, ``ps:type``: the formation, shown and changed the Heroku way.

Process types come from a slug; the tests write them into the server's store as a build does
(:func:`formation.sync`), which is setup, not what they check.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from cli.runner import Cli, Users
from dockyard import formation
from dockyard.store import App, Database

TYPES = {"web": "gunicorn app:app --workers 2", "worker": "python worker.py"}


def deploy(store: Database, app: str, types: dict[str, str]) -> None:
    with store.transaction() as session:
        found = session.scalars(select(App).where(App.name == app)).one()
        formation.sync(session, found, types, limit=100)


def test_ps_shows_the_formation(alice: Cli, app: str, store: Database) -> None:
    result = alice.run("ps", "-a", app)
    assert result.stdout == ""
    assert f"No process types on ⬢ {app} yet: push code with a Procfile" in result.stderr
    assert json.loads(alice.out("ps", "--json", "-a", app)) == []

    deploy(store, app, TYPES)
    assert alice.out("ps", "-a", app) == (
        "=== web (Standard-1X): gunicorn app:app --workers 2 (1)\n"
        "=== worker (Standard-1X): python worker.py (0)\n"
    )
    listed = json.loads(alice.out("ps", "--json", "-a", app))
    assert [(f["type"], f["quantity"], f["command"]) for f in listed] == [
        ("web", 1, TYPES["web"]),
        ("worker", 0, TYPES["worker"]),
    ]


def test_scale_in_herokus_syntax(alice: Cli, app: str, store: Database) -> None:
    deploy(store, app, TYPES)
    result = alice.run("ps:scale", "web=2", "worker+3", "-a", app)
    assert result.stderr == (
        "Scaling dynos... done, now running web at 2:Standard-1X, worker at 3:Standard-1X\n"
    )
    assert alice.out("ps:scale", "-a", app) == "web=2:Standard-1X worker=3:Standard-1X\n"

    result = alice.run("ps:scale", "worker-1", "web=1:standard-2x", "-a", app)
    assert "done, now running worker at 2:Standard-1X, web at 1:Standard-2X\n" in result.stderr
    assert alice.out("ps:scale", "-a", app) == "web=1:Standard-2X worker=2:Standard-1X\n"


def test_scale_mistakes_are_explained_and_change_nothing(
    alice: Cli, app: str, store: Database
) -> None:
    assert f"No process types on {app}. Push code with a Procfile" in alice.fails(
        "ps:scale", "-a", app
    )
    deploy(store, app, TYPES)
    error = alice.fails("ps:scale", "web=1", "web:2", "-a", app)
    assert "'web:2' is not a scale change: use TYPE=N, TYPE+N or TYPE-N" in error
    assert "Scaling" not in error  # refused before asking the server

    error = alice.fails("ps:scale", "web=2", "wrker=1", "-a", app)
    assert "Scaling dynos... !" in error
    assert f"{app} has no process type 'wrker'; the process types of {app} are web, worker" in error
    assert "cannot be scaled above 100 dynos" in alice.fails("ps:scale", "web=500", "-a", app)
    assert "cannot be scaled below 0" in alice.fails("ps:scale", "worker-1", "-a", app)
    error = alice.fails("ps:scale", "web=1:huge", "-a", app)
    assert "'huge' is not a dyno size; the sizes are basic, standard-1x, standard-2x" in error
    assert alice.out("ps:scale", "-a", app) == "web=1:Standard-1X worker=0:Standard-1X\n"


def test_type_shows_and_sets_sizes(alice: Cli, app: str, store: Database) -> None:
    deploy(store, app, {**TYPES, "clock": "python clock.py"})
    alice.run("ps:scale", "worker=2", "-a", app)
    shown = alice.out("ps:type", "-a", app).splitlines()
    assert shown[0] == "=== Process Types"
    assert shown[1].split() == ["type", "size", "qty"]
    assert [line.split() for line in shown[2:5]] == [
        ["clock", "Standard-1X", "0"],
        ["web", "Standard-1X", "1"],
        ["worker", "Standard-1X", "2"],
    ]
    assert shown[6] == "=== Dyno Totals"
    assert shown[8].split() == ["Standard-1X", "3"]

    result = alice.run("ps:type", "web=performance-m", "worker=Basic", "-a", app)
    assert result.stderr == f"Scaling dynos on ⬢ {app}... done\n"
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["web", "Performance-M", "1"] in rows
    assert ["worker", "Basic", "2"] in rows
    assert ["clock", "Standard-1X", "0"] in rows

    alice.run("ps:type", "standard-2x", "-a", app)
    assert alice.out("ps:scale", "-a", app) == (
        "clock=0:Standard-2X web=1:Standard-2X worker=2:Standard-2X\n"
    )
    error = alice.fails("ps:type", "mail=basic", "-a", app)
    assert "no process type 'mail' in the formation; the types are clock, web, worker" in error
    assert "'huge' is not a dyno size" in alice.fails("ps:type", "web=huge", "-a", app)


def test_collaborators_may_scale(alice: Cli, app: str, store: Database, users: Users) -> None:
    bob = users.new()
    alice.share(app, bob.email)
    deploy(store, app, TYPES)
    bob.run("ps:scale", "worker=1", "-a", app)
    assert alice.out("ps:scale", "-a", app) == "web=1:Standard-1X worker=1:Standard-1X\n"
    assert f"Couldn't find that app: {app}." in users.new().fails("ps", "-a", app)
