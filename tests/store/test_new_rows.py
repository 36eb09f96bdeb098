"""``Database.on_new_rows``: after a commit, the rows it added, described as they were then;
nothing for a transaction that rolled back."""

from __future__ import annotations

import pytest

from dockyard import accounts, apps, releases
from dockyard.errors import InvalidParams
from dockyard.store import Database, Release


def release(database: Database, description: str, *, then: str = "", fail: bool = False) -> None:
    """Make a release of the app ``shop``; rename it to ``then`` after the flush; fail?"""
    with database.transaction() as session:
        user = accounts.find_user(session, "owner@example.com")
        assert user is not None
        found = apps.find(session, user, "shop", lock=True)
        made = releases.create(session, found, description, {}, user=user)
        if then:
            made.description = then
        if fail:
            raise InvalidParams("changed my mind")


def test_rows_added_are_told_after_the_commit_only(sqlite_database: Database) -> None:
    told: list[list[tuple[int, str]]] = []
    sqlite_database.on_new_rows(
        Release, lambda _session, row: (row.version, row.description), told.append
    )
    with sqlite_database.transaction() as session:
        user, _token = accounts.create_user(session, "owner@example.com")
        apps.create(session, user, "shop")
        assert told == []  # not before the commit
    assert told == [[(1, "Initial release")]]

    told.clear()
    with pytest.raises(InvalidParams):
        release(sqlite_database, "Set FOO config vars", fail=True)
    assert told == []
    # What the row says when the transaction commits, also when it changed after a flush.
    release(sqlite_database, "Set FOO config vars", then="Attach DATABASE")
    assert told == [[(2, "Attach DATABASE")]]
