"""Fixtures of the CLI tests: one real server for all of them, and users made on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.runner import Cli, Users
from conftest import Server, free_port, start_server, stop_server
from dockyard.settings import Settings
from dockyard.store import Database


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for all CLI tests; each test makes its own users and apps."""
    # The SSH receiver gets a free port too, so that other servers on this host do not clash.
    running = start_server(
        tmp_path_factory.mktemp("cli-server") / "data",
        {"DOCKYARD_SSH_PORT": str(free_port())},
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="package")
def store(server: Server) -> Iterator[Database]:
    """The server's own state store, opened in the tests' process to make users quickly."""
    database = Database(Settings(data_dir=server.data_dir).database_url)
    yield database
    database.dispose()


@pytest.fixture
def users(server: Server, store: Database, tmp_path: Path) -> Users:
    return Users(server, store, tmp_path)


@pytest.fixture
def alice(users: Users) -> Cli:
    return users.new()


@pytest.fixture
def app(alice: Cli) -> str:
    """An app of alice's, made without a git remote."""
    return alice.create_app()
