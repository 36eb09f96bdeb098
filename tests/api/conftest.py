"""Faster stores for the API tests: migrated once per run, then copied or emptied per test.

The store tests (``tests/store``) keep migrating a fresh store every time; here the schema
is a given and only a clean, migrated store per test matters.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dockyard.store import Base, Database, migrate, pending_migrations


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "dockyard.db"
    template = Database(f"sqlite:///{path}")
    migrate(template)
    template.dispose()  # the last connection to close folds the WAL back into the file
    return path


@pytest.fixture
def sqlite_database(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "dockyard.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def postgres_store(postgres_url: str) -> Iterator[Database]:
    """One engine on the scratch PostgreSQL database for the whole run."""
    store = Database(postgres_url)
    yield store
    store.dispose()


def empty_postgres(store: Database) -> Database:
    """The scratch PostgreSQL store, migrated and with every table empty."""
    if pending_migrations(store):
        # First use in this run, or another suite reset the schema meanwhile.
        store.engine.dispose()
        with psycopg.connect(str(store.url), autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        migrate(store)
        return store
    with store.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """A migrated, empty state store: SQLite, then the scratch PostgreSQL."""
    if request.param == "sqlite":
        found: Database = request.getfixturevalue("sqlite_database")
        return found
    return empty_postgres(request.getfixturevalue("postgres_store"))
