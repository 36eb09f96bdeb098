"""The formation's rules: sizes, how a new slug's process types land, scaling all or nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.orm import Session

from dockyard import accounts, apps, formation
from dockyard.cli.errors import ClientError
from dockyard.cli.ps import parse_changes, parse_sizes
from dockyard.errors import InvalidParams, NotFound
from dockyard.store import App, Database

LIMIT = 100


@contextmanager
def app_in(database: Database) -> Iterator[tuple[Session, App]]:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, "dev@example.com")
        yield session, apps.create(session, user, "shop")


def state(session: Session, app: App) -> dict[str, tuple[int, str, str]]:
    return {r.type: (r.quantity, r.size, r.command) for r in formation.listing(session, app)}


# --- sizes -------------------------------------------------------------------------------------


def test_sizes_are_herokus() -> None:
    memory = {name: size.memory_mb for name, size in formation.SIZES.items()}
    assert memory == {
        "basic": 512,
        "standard-1x": 512,
        "standard-2x": 1024,
        "performance-m": 2560,
        "performance-l": 14336,
    }
    two = formation.SIZES["standard-2x"]
    assert (two.label, two.memory_bytes, two.cpu_weight, two.cpu_shares) == (
        "Standard-2X",
        1024 * 1024 * 1024,
        200,
        2048,
    )
    weights = [s.cpu_weight for s in formation.SIZES.values()]
    processes = [s.max_processes for s in formation.SIZES.values()]
    assert weights == sorted(weights)
    assert processes == sorted(processes)
    assert formation.SIZES[formation.DEFAULT_SIZE].name == "standard-1x"


@pytest.mark.parametrize(
    ("given", "name"),
    [("Standard-2X", "standard-2x"), ("basic", "basic"), (" PERFORMANCE-L ", "performance-l"),
     ("2X", "standard-2x"), ("1x", "standard-1x")],
)  # fmt: skip
def test_sizes_are_found_in_any_case(given: str, name: str) -> None:
    assert formation.find_size(given).name == name


def test_an_unknown_size_lists_the_sizes() -> None:
    with pytest.raises(InvalidParams, match="'huge' is not a dyno size; the sizes are basic, "):
        formation.find_size("huge")


# --- sync: a new slug's process types ----------------------------------------------------------


def test_first_release_scales_web_to_one_and_the_rest_to_zero(sqlite_database: Database) -> None:
    with app_in(sqlite_database) as (session, app):
        types = {"web": "gunicorn app", "worker": "python w.py", "release": "./migrate"}
        formation.sync(session, app, types, limit=LIMIT)
        assert state(session, app) == {
            "web": (1, "standard-1x", "gunicorn app"),
            "worker": (0, "standard-1x", "python w.py"),
        }


def test_later_releases_keep_scale_update_commands_and_drop_gone_types(
    sqlite_database: Database,
) -> None:
    with app_in(sqlite_database) as (session, app):
        formation.sync(session, app, {"web": "a", "worker": "b", "clock": "c"}, limit=LIMIT)
        updates = [formation.Update("web", 3, "standard-2x"), formation.Update("worker", 2)]
        formation.scale(session, app, updates, limit=LIMIT)
        formation.sync(session, app, {"web": "a2", "worker": "b2", "mail": "m"}, limit=LIMIT)
        assert state(session, app) == {
            "web": (3, "standard-2x", "a2"),
            "worker": (2, "standard-1x", "b2"),
            "mail": (0, "standard-1x", "m"),
        }
        formation.sync(session, app, {}, limit=LIMIT)
        assert state(session, app) == {}


def test_a_web_scaled_to_zero_stays_at_zero(sqlite_database: Database) -> None:
    with app_in(sqlite_database) as (session, app):
        formation.sync(session, app, {"web": "a"}, limit=LIMIT)
        formation.scale(session, app, [formation.Update("web", 0)], limit=LIMIT)
        formation.sync(session, app, {"web": "b"}, limit=LIMIT)
        assert state(session, app) == {"web": (0, "standard-1x", "b")}


def test_app_json_sets_defaults_for_new_types_only(sqlite_database: Database) -> None:
    defaults: dict[str, Any] = {
        "web": {"quantity": 2, "size": "Standard-2X"},
        "worker": {"size": "basic"},
        "clock": {"quantity": 0},
        "absent": {"quantity": 5},
    }
    with app_in(sqlite_database) as (session, app):
        types = {"web": "w", "worker": "k", "clock": "c"}
        formation.sync(session, app, types, defaults, limit=LIMIT)
        assert state(session, app) == {
            "clock": (0, "standard-1x", "c"),
            "web": (2, "standard-2x", "w"),
            "worker": (1, "basic", "k"),
        }
        formation.scale(session, app, [formation.Update("web", 1, "basic")], limit=LIMIT)
        formation.sync(session, app, types, defaults, limit=LIMIT)
        assert state(session, app)["web"] == (1, "basic", "w")


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"web": {"size": "huge"}}, "app.json: formation.web: 'huge' is not a dyno size"),
        ({"web": {"quantity": 101}}, "app.json: formation.web cannot be scaled above 100"),
        ({"web": {"quantity": "2"}}, "formation.web.quantity must be a whole number"),
    ],
)
def test_bad_app_json_formation_is_explained(
    sqlite_database: Database, defaults: dict[str, Any], message: str
) -> None:
    with app_in(sqlite_database) as (session, app), pytest.raises(InvalidParams) as raised:
        formation.sync(session, app, {"web": "w"}, defaults, limit=LIMIT)
    assert message in raised.value.message


# --- scale -------------------------------------------------------------------------------------


def test_relative_and_string_quantities(sqlite_database: Database) -> None:
    with app_in(sqlite_database) as (session, app):
        formation.sync(session, app, {"web": "w"}, limit=LIMIT)
        for asked, expected in [("+2", 3), ("-1", 2), ("7", 7), (4, 4), (" +0 ", 4)]:
            formation.scale(session, app, [formation.Update("web", asked)], limit=LIMIT)
            assert state(session, app)["web"][0] == expected


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (formation.Update("web", -1), "web cannot be scaled below 0 (asked for -1)"),
        (formation.Update("web", "-2"), "web cannot be scaled below 0 (asked for -1)"),
        (formation.Update("web", 101), "web cannot be scaled above 100 dynos (asked for 101)"),
        (formation.Update("web", "9" * 5000), "web cannot be scaled to 999"),
        (formation.Update("web", "two"), "must be a whole number like 2"),
        (formation.Update("web", True), "must be a whole number"),
        (formation.Update("web", size="huge"), "the sizes are basic, standard-1x"),
        (formation.Update("wrker", 1), "shop has no process type 'wrker'; the process types "
                                       "of shop are web, worker"),
        (formation.Update("release", 1), "release is the release phase command"),
    ],
)  # fmt: skip
def test_bad_scale_changes_nothing(
    sqlite_database: Database, update: formation.Update, message: str
) -> None:
    with app_in(sqlite_database) as (session, app):
        formation.sync(session, app, {"web": "w", "worker": "k"}, limit=LIMIT)
        before = state(session, app)
        good = formation.Update("worker", 3, "performance-m")
        with pytest.raises(InvalidParams) as raised:
            formation.scale(session, app, [good, update], limit=LIMIT)
        assert message in raised.value.message
        assert state(session, app) == before


def test_a_type_given_twice_is_refused(sqlite_database: Database) -> None:
    with app_in(sqlite_database) as (session, app):
        formation.sync(session, app, {"web": "w"}, limit=LIMIT)
        twice = [formation.Update("web", 1), formation.Update("web", 2)]
        with pytest.raises(InvalidParams, match="web is given more than once"):
            formation.scale(session, app, twice, limit=LIMIT)


def test_an_app_without_types_says_how_to_get_some(sqlite_database: Database) -> None:
    with app_in(sqlite_database) as (session, app):
        with pytest.raises(InvalidParams, match="shop has no process types yet: deploy code"):
            formation.scale(session, app, [formation.Update("web", 1)], limit=LIMIT)
        with pytest.raises(NotFound, match="Couldn't find process type 'web'"):
            formation.get(session, app, "web")


# --- the CLI's parsing -------------------------------------------------------------------------


def test_scale_arguments_in_herokus_syntax() -> None:
    assert parse_changes(("web=2", "worker+1", "clock-3", "web-api=1:standard-2x", "w-1-1")) == [
        {"type": "web", "quantity": "2"},
        {"type": "worker", "quantity": "+1"},
        {"type": "clock", "quantity": "-3"},
        {"type": "web-api", "quantity": "1", "size": "standard-2x"},
        {"type": "w-1", "quantity": "-1"},
    ]
    assert parse_changes(()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("web",), "'web' is not a scale change: use TYPE=N, TYPE+N or TYPE-N"),
        (("web=",), "'web=' is not a scale change"),
        (("web=two",), "'web=two' is not a scale change"),
        (("web:2",), "'web:2' is not a scale change"),
        (("web=1:",), "'web=1:' is not a scale change"),
        (("web=1", "web+1"), "web is given more than once"),
    ],
)
def test_bad_scale_arguments_are_explained(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ClientError, match=re.escape(message)):
        parse_changes(args)


def test_type_arguments() -> None:
    types = ["web", "worker"]
    assert parse_sizes(("basic",), types) == [
        {"type": "web", "size": "basic"},
        {"type": "worker", "size": "basic"},
    ]
    assert parse_sizes(("worker=standard-2x",), types) == [
        {"type": "worker", "size": "standard-2x"}
    ]
    with pytest.raises(
        ClientError, match="no process type 'clock' in the formation; the types are web, worker"
    ):
        parse_sizes(("clock=basic",), types)
    with pytest.raises(ClientError, match="'web=' is not TYPE=SIZE"):
        parse_sizes(("web=",), types)
