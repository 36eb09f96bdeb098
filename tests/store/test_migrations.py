"""Migrations: they build the whole schema, agree with the models, and re-run as no-ops."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from dockyard.store import MIGRATIONS, Base, Database, migrate, pending_migrations


def schema(database: Database) -> dict[str, object]:
    """Tables, columns, indexes, uniques and foreign keys as the database reports them."""
    inspector = inspect(database.engine)
    found: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        found[table] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            sorted(str(sorted(i.items())) for i in inspector.get_indexes(table)),
            sorted(str(sorted(u.items())) for u in inspector.get_unique_constraints(table)),
            sorted(str(sorted(f.items())) for f in inspector.get_foreign_keys(table)),
        )
    return found


def head_revision() -> str | None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_create_every_table(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert tables == {*Base.metadata.tables, "alembic_version"}
    for name in ("users", "tokens", "ssh_keys", "apps", "collaborators", "config_vars", "releases"):
        assert name in tables


def test_the_store_is_at_the_newest_revision(database: Database) -> None:
    assert not pending_migrations(database)
    with database.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_migrating_again_changes_nothing(database: Database) -> None:
    before = schema(database)
    with database.engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    migrate(database)
    migrate(database)
    assert schema(database) == before
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == revision


def test_a_fresh_store_reports_pending_migrations(tmp_path: object) -> None:
    fresh = Database(f"sqlite:///{tmp_path}/fresh.db")
    try:
        assert pending_migrations(fresh)
        migrate(fresh)
        assert not pending_migrations(fresh)
    finally:
        fresh.dispose()


def test_models_and_migrations_agree(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": False}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
