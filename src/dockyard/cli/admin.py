"""Commands run on the server host itself: ``server``, ``db:migrate``, ``admin:create-user``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.settings import Settings

# The store, settings and accounts modules are imported inside each command: they pull in
# SQLAlchemy and pydantic, which client commands (run far more often) do not need.


def _settings() -> Settings:
    from dockyard import settings

    try:
        return settings.load()
    except DockyardError as exc:
        raise click.ClickException(exc.message) from exc


@click.command("server")
def server() -> None:
    """Run the control plane (API and, later, receivers and dynos) in the foreground.

    Configured by DOCKYARD_* environment variables (docs/settings.md). Migrates the
    state store first; GET /healthz answers 200 once it is ready.
    """
    from dockyard import server as control_plane

    config = _settings()
    try:
        control_plane.run(config)
    except DockyardError as exc:
        raise click.ClickException(exc.message) from exc


@click.command("db:migrate")
def db_migrate() -> None:
    """Bring the state store's schema up to date (the server also does this at start)."""
    from dockyard import store

    config = _settings()
    try:
        database = store.Database(config.database_url)
        store.migrate(database)
        database.dispose()
    except DockyardError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo("Database is up to date.", err=True)


@click.command("admin:create-user")
@click.argument("email")
@click.option("--admin", "is_admin", is_flag=True, help="The user sees and manages every app.")
def create_user(email: str, is_admin: bool) -> None:
    """Create a user; print their new API token as the only line on stdout.

    Runs on the server host against the state store (DOCKYARD_DATABASE_URL).
    """
    from dockyard import accounts, store

    config = _settings()
    try:
        database = store.Database(config.database_url)
        store.migrate(database)
        with database.transaction() as session:
            user, token = accounts.create_user(session, email, admin=is_admin)
            email = user.email
        database.dispose()
    except DockyardError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {'admin ' if is_admin else ''}user {email}.", err=True)
    sys.stdout.write(token + "\n")


def register(group: click.Group) -> None:
    for command in (server, db_migrate, create_user):
        group.add_command(command)
