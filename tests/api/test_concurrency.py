"""Concurrent changes to one app: no lost update, no shared or skipped version.

Real threads, each with its own connection, on SQLite (WAL, ``BEGIN IMMEDIATE``) and on
PostgreSQL (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient

from api.checks import ok
from conftest import ACCEPT, Api
from dockyard import accounts, apps, releases
from dockyard.errors import Conflict, DockyardError
from dockyard.store import Database, User

THREADS = 12
ROUNDS = 3


def run_together(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(0..count-1)`` on as many threads, released at the same moment."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(index)
        except BaseException as exc:  # any failure, assertion or not, goes back to the test
            failures.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a worker thread hung"
    return failures


def make_owner(database: Database) -> uuid.UUID:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, "owner@example.com")
        apps.create(session, user, "busy")
        return user.id


def check_history(database: Database, user_id: uuid.UUID, expected_keys: set[str]) -> None:
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        app = apps.find(session, user, "busy")
        history = releases.history(session, app)
        current = releases.config(session, app)
    versions = [r.version for r in history]
    assert versions == list(range(1, len(expected_keys) + 2)), versions
    assert set(current) == expected_keys
    assert set(history[-1].config) == expected_keys
    assert [r.current for r in history].count(True) == 1
    assert history[-1].current
    # Each release holds exactly one more key than the one before: none was lost between.
    assert [len(r.config) for r in history] == list(range(len(expected_keys) + 1))


def test_threads_changing_config_directly_lose_nothing(database: Database) -> None:
    user_id = make_owner(database)

    def work(index: int) -> None:
        for round_ in range(ROUNDS):
            with database.transaction() as session:
                user = session.get(User, user_id)
                assert user is not None
                app = apps.find(session, user, "busy", lock=True)
                releases.update_config(session, app, {f"K_{index}_{round_}": "v"}, user)

    assert run_together(THREADS, work) == []
    expected = {f"K_{i}_{r}" for i in range(THREADS) for r in range(ROUNDS)}
    check_history(database, user_id, expected)


def test_threads_patching_through_the_api_lose_nothing(api_on: Api) -> None:
    owner = api_on.user("owner@example.com")
    ok(owner.client.post("/apps", json={"name": "busy"}), 201)
    statuses: list[int] = []

    def work(index: int) -> None:
        client = TestClient(
            api_on.app, headers={"Accept": ACCEPT, "Authorization": f"Bearer {owner.token}"}
        )
        for round_ in range(ROUNDS):
            reply = client.patch("/apps/busy/config-vars", json={f"K_{index}_{round_}": "v"})
            statuses.append(reply.status_code)

    assert run_together(THREADS, work) == []
    assert statuses == [200] * THREADS * ROUNDS
    expected = {f"K_{i}_{r}" for i in range(THREADS) for r in range(ROUNDS)}
    assert set(ok(owner.client.get("/apps/busy/config-vars"))) == expected
    listed = ok(owner.client.get("/apps/busy/releases"))
    assert [r["version"] for r in listed] == list(range(1, THREADS * ROUNDS + 2))
    assert [r["current"] for r in listed].count(True) == 1


def test_rollbacks_and_config_changes_interleave_safely(database: Database) -> None:
    user_id = make_owner(database)

    def work(index: int) -> None:
        with database.transaction() as session:
            user = session.get(User, user_id)
            assert user is not None
            app = apps.find(session, user, "busy", lock=True)
            if index % 3 == 0:
                releases.rollback(session, app, "1", user, limit=100)
            else:
                releases.update_config(session, app, {f"K_{index}": "v"}, user)

    assert run_together(THREADS, work) == []
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        app = apps.find(session, user, "busy")
        history = releases.history(session, app)
        current = releases.config(session, app)
    assert [r.version for r in history] == list(range(1, THREADS + 2))
    assert current == history[-1].config
    assert [r.current for r in history].count(True) == 1


def test_racing_to_create_one_name_makes_one_app(database: Database) -> None:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, "owner@example.com")
        user_id = user.id
    errors: list[DockyardError] = []

    def work(_index: int) -> None:
        try:
            with database.transaction() as session:
                user = session.get(User, user_id)
                assert user is not None
                apps.create(session, user, "contested")
        except DockyardError as exc:
            errors.append(exc)

    assert run_together(8, work) == []
    assert len(errors) == 7
    assert {exc.status for exc in errors} <= {409, 422}
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert [a.name for a in apps.visible(session, user)] == ["contested"]


def test_racing_to_create_different_apps_makes_them_all(database: Database) -> None:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, "owner@example.com")
        user_id = user.id
    conflicts: list[DockyardError] = []

    def work(index: int) -> None:
        # A clash inside the store may ask the client to retry (409), never corrupt anything.
        for _attempt in range(20):
            try:
                with database.transaction() as session:
                    user = session.get(User, user_id)
                    assert user is not None
                    apps.create(session, user, f"app-{index}")
                return
            except Conflict as exc:
                conflicts.append(exc)
        raise AssertionError(f"app-{index} was never created")

    assert run_together(8, work) == []
    assert all("retry" in exc.message for exc in conflicts)
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        made = apps.visible(session, user)
        assert sorted(a.name for a in made) == [f"app-{i}" for i in range(8)]
        for app in made:
            assert [r.version for r in releases.history(session, app)] == [1]
