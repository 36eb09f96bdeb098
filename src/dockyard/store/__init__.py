"""The state store: models, the database connection and its migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dockyard.store.database import Database
from dockyard.store.models import (
    Addon,
    AddonAttachment,
    App,
    Base,
    Build,
    Certificate,
    Collaborator,
    ConfigVar,
    Domain,
    Formation,
    LogDrain,
    Release,
    Slug,
    SSHKey,
    Token,
    User,
    utcnow,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(database: Database) -> None:
    """Bring the schema up to the newest revision; safe to run every start."""
    config = _alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def pending_migrations(database: Database) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(database))
    with database.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current != script.get_current_head()


__all__ = [
    "Addon",
    "AddonAttachment",
    "App",
    "Base",
    "Build",
    "Certificate",
    "Collaborator",
    "ConfigVar",
    "Database",
    "Domain",
    "Formation",
    "LogDrain",
    "Release",
    "SSHKey",
    "Slug",
    "Token",
    "User",
    "migrate",
    "pending_migrations",
    "utcnow",
]
