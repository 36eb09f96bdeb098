"""The state store's behaviour on SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from dockyard import accounts, apps, releases
from dockyard.errors import Conflict, StoreError
from dockyard.store import (
    App,
    Collaborator,
    ConfigVar,
    Database,
    Release,
    SSHKey,
    Token,
    User,
)


def add_user(database: Database, email: str) -> uuid.UUID:
    with database.transaction() as session:
        user = User(email=email)
        session.add(user)
        session.flush()
        return user.id


def add_app(database: Database, owner_id: uuid.UUID, name: str) -> uuid.UUID:
    with database.transaction() as session:
        owner = session.get(User, owner_id)
        assert owner is not None
        return apps.create(session, owner, name).id


def count(database: Database, model: type[object], **where: object) -> int:
    with database.transaction() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return int(session.scalar(query) or 0)


# --- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 7, 1, 23, 30, 0, tzinfo=timezone(timedelta(hours=-7))),
        datetime(2026, 3, 29, 1, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_aware_datetimes_round_trip_as_utc(database: Database, moment: datetime) -> None:
    user_id = add_user(database, "time@example.com")
    set_created_at(database, user_id, moment)
    with database.transaction() as session:
        stored = session.scalar(select(User.created_at).where(User.id == user_id))
    assert stored is not None
    assert stored == moment
    assert stored.utcoffset() == timedelta(0)
    assert stored.tzinfo is not None


def test_defaults_are_aware_utc_and_updated_at_moves(database: Database) -> None:
    user_id = add_user(database, "stamp@example.com")
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        created, updated = user.created_at, user.updated_at
        assert created.tzinfo is not None
        assert created.utcoffset() == timedelta(0)
        user.admin = True
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert user.created_at == created
        assert user.updated_at >= updated


def set_created_at(database: Database, user_id: uuid.UUID, moment: datetime) -> None:
    with database.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.created_at = moment


def test_naive_datetimes_are_refused(database: Database) -> None:
    user_id = add_user(database, "naive@example.com")
    with pytest.raises(StoreError):
        set_created_at(database, user_id, datetime(2026, 1, 1, 12, 0))
    assert count(database, User) == 1


# --- uniqueness ------------------------------------------------------------------------------


def test_user_emails_are_unique(database: Database) -> None:
    add_user(database, "same@example.com")
    with pytest.raises(Conflict, match="retry"):
        add_user(database, "same@example.com")
    assert count(database, User) == 1
    with pytest.raises(Conflict, match="already exists"), database.transaction() as session:
        accounts.create_user(session, "SAME@EXAMPLE.COM")


def test_app_names_are_unique(database: Database) -> None:
    owner = add_user(database, "owner@example.com")
    add_app(database, owner, "unique-app")
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(App(name="unique-app", owner_id=owner, stack="s", region="r"))
    assert count(database, App) == 1


def test_release_versions_are_unique_per_app(database: Database) -> None:
    owner = add_user(database, "owner@example.com")
    first = add_app(database, owner, "first-app")
    second = add_app(database, owner, "second-app")
    # Version 1 of another app is fine; a second version 1 of the same app is not.
    assert count(database, Release, version=1) == 2
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(Release(app_id=first, version=1, description="dup", config={}))
    assert count(database, Release, app_id=first) == 1
    assert count(database, Release, app_id=second) == 1


def test_collaborators_are_unique_per_app(database: Database) -> None:
    owner = add_user(database, "owner@example.com")
    friend = add_user(database, "friend@example.com")
    app_id = add_app(database, owner, "shared-app")
    with database.transaction() as session:
        session.add(Collaborator(app_id=app_id, user_id=friend))
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(Collaborator(app_id=app_id, user_id=friend))
    assert count(database, Collaborator) == 1


def test_token_hashes_and_key_fingerprints_are_unique(database: Database) -> None:
    user_id = add_user(database, "owner@example.com")
    with database.transaction() as session:
        session.add(Token(user_id=user_id, token_hash="a" * 64))
        session.add(SSHKey(user_id=user_id, public_key="k", fingerprint="SHA256:x"))
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(Token(user_id=user_id, token_hash="a" * 64))
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(SSHKey(user_id=user_id, public_key="k2", fingerprint="SHA256:x"))
    assert count(database, Token) == 1
    assert count(database, SSHKey) == 1


def test_config_keys_are_unique_per_app(database: Database) -> None:
    owner = add_user(database, "owner@example.com")
    app_id = add_app(database, owner, "config-app")
    with database.transaction() as session:
        session.add(ConfigVar(app_id=app_id, key="A", value="1"))
    with pytest.raises(Conflict), database.transaction() as session:
        session.add(ConfigVar(app_id=app_id, key="A", value="2"))
    with database.transaction() as session:
        assert session.scalar(select(ConfigVar.value).where(ConfigVar.app_id == app_id)) == "1"


def test_a_failed_transaction_leaves_nothing_behind(database: Database) -> None:
    owner = add_user(database, "owner@example.com")
    add_app(database, owner, "taken-name")

    def user_then_clashing_app() -> None:
        with database.transaction() as session:
            session.add(User(email="half@example.com"))
            session.flush()
            session.add(App(name="taken-name", owner_id=owner, stack="s", region="r"))

    with pytest.raises(Conflict):
        user_then_clashing_app()
    assert count(database, User, email="half@example.com") == 0


# --- cascades --------------------------------------------------------------------------------


def populated_app(database: Database) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    owner = add_user(database, "owner@example.com")
    friend = add_user(database, "friend@example.com")
    app_id = add_app(database, owner, "doomed")
    keep_id = add_app(database, owner, "kept")
    with database.transaction() as session:
        user = session.get(User, owner)
        assert user is not None
        for name in ("doomed", "kept"):
            app = apps.find(session, user, name, lock=True)
            releases.update_config(session, app, {"A": "1", "B": "2"}, user)
            apps.add_collaborator(session, user, app, "friend@example.com")
    assert friend
    return owner, app_id, keep_id


def assert_only_kept_rows(database: Database, app_id: uuid.UUID, keep_id: uuid.UUID) -> None:
    for model in (ConfigVar, Release, Collaborator):
        assert count(database, model, app_id=app_id) == 0, model
        assert count(database, model, app_id=keep_id) > 0, model
    assert count(database, App, id=app_id) == 0
    assert count(database, User) == 2


def test_destroying_an_app_removes_its_config_releases_and_collaborators(
    database: Database,
) -> None:
    owner, app_id, keep_id = populated_app(database)
    with database.transaction() as session:
        user = session.get(User, owner)
        assert user is not None
        apps.destroy(session, user, apps.find(session, user, "doomed"))
    assert_only_kept_rows(database, app_id, keep_id)


def test_the_database_itself_cascades_app_deletes(database: Database) -> None:
    _owner, app_id, keep_id = populated_app(database)
    # A bare DELETE, with no ORM in the way: the foreign keys do the work.
    with database.transaction() as session:
        session.execute(delete(App).where(App.id == app_id))
    assert_only_kept_rows(database, app_id, keep_id)


def test_deleting_a_user_removes_their_tokens_keys_and_memberships(database: Database) -> None:
    owner, _app_id, _keep_id = populated_app(database)
    with database.transaction() as session:
        friend = accounts.get_user(session, "friend@example.com")
        accounts.create_token(session, friend, "x")
        session.add(SSHKey(user_id=friend.id, public_key="k", fingerprint="SHA256:f"))
        friend_id = friend.id
    with database.transaction() as session:
        session.execute(delete(User).where(User.id == friend_id))
    assert count(database, Token, user_id=friend_id) == 0
    assert count(database, SSHKey, user_id=friend_id) == 0
    assert count(database, Collaborator, user_id=friend_id) == 0
    assert count(database, App) == 2
    assert owner


# --- SQLite specifics --------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_database: Database) -> None:
    with sqlite_database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert int(connection.execute(text("PRAGMA busy_timeout")).scalar() or 0) >= 1000
    database_file = Path(str(sqlite_database.engine.url.database))
    assert Path(f"{database_file}-wal").exists()


def test_sqlite_store_makes_its_directory(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "dockyard.db"
    database = Database(f"sqlite:///{nested}")
    try:
        with database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert nested.exists()
    finally:
        database.dispose()


def test_plain_postgresql_urls_use_psycopg_3(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    database = Database(postgres_url)
    try:
        assert database.dialect == "postgresql"
        assert database.engine.driver == "psycopg"
    finally:
        database.dispose()
