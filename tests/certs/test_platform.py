"""The platform's default certificate: the local CA's (with every app's name when the domain
has one label), the operator's files instead, and back."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from certs.making import TestCA
from dockyard import certs
from dockyard.accounts import create_user
from dockyard.apps import create
from dockyard.certs import platform
from dockyard.errors import SettingsError
from dockyard.settings import Settings
from dockyard.store import Database


def default_names(database: Database) -> list[str]:
    with database.transaction() as session:
        row = certs.default(session)
        assert row is not None
        return list(row.hostnames)


def test_the_local_ca_names_each_app_for_a_one_label_domain(
    sqlite_database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", domain="localhost")
    made = platform.prepare(sqlite_database, settings)
    assert made.source == certs.PLATFORM
    assert made.ca_path == str(tmp_path / "data" / "tls" / "ca.pem")
    key = tmp_path / "data" / "tls" / "ca-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert default_names(sqlite_database) == ["*.localhost", "localhost", "api.localhost"]
    with sqlite_database.transaction() as session:
        first = certs.default(session)
        assert first is not None
        before = first.chain_pem

    # Nothing changed: the same certificate is kept.
    platform.prepare(sqlite_database, settings)
    with sqlite_database.transaction() as session:
        kept = certs.default(session)
        assert kept is not None
        assert kept.chain_pem == before

    # A new app: the keeper issues a certificate that names it too.
    with sqlite_database.transaction() as session:
        user, _token = create_user(session, "owner@example.com")
        create(session, user, "shop")

    async def keep() -> None:
        keeper = platform.Keeper(sqlite_database, settings)
        await keeper.start()
        keeper.poke()
        deadline = asyncio.get_running_loop().time() + 10
        while "shop.localhost" not in await asyncio.to_thread(default_names, sqlite_database):
            assert asyncio.get_running_loop().time() < deadline, "no new default certificate"
            await asyncio.sleep(0.05)  # polling the store: the keeper works in a thread
        await keeper.close()

    asyncio.run(keep())


def test_the_operators_wildcard_replaces_the_local_ca_and_bad_files_stop_the_start(
    sqlite_database: Database, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    platform.prepare(sqlite_database, Settings(data_dir=data, domain="example.com"))
    assert default_names(sqlite_database) == ["*.example.com", "example.com"]

    issued = TestCA().issue(["*.example.com", "example.com"])
    crt, key = tmp_path / "wild.crt", tmp_path / "wild.key"
    crt.write_text(issued.chain)
    key.write_text(issued.key)
    settings = Settings(data_dir=data, domain="example.com", tls_cert_file=crt, tls_key_file=key)
    made = platform.prepare(sqlite_database, settings)
    assert (made.source, made.ca_path) == (certs.UPLOADED, None)
    with sqlite_database.transaction() as session:
        row = certs.default(session)
        assert row is not None
        assert row.chain_pem == issued.chain

    # Not for *.<domain>: the server does not start, and the store keeps what it had.
    other = TestCA().issue(["www.example.org"])
    crt.write_text(other.chain)
    key.write_text(other.key)
    with pytest.raises(SettingsError, match=r"must be for \*\.example\.com"):
        platform.prepare(sqlite_database, settings)
    with sqlite_database.transaction() as session:
        row = certs.default(session)
        assert row is not None
        assert row.chain_pem == issued.chain

    # The settings gone: the local CA's certificate again.
    made = platform.prepare(sqlite_database, Settings(data_dir=data, domain="example.com"))
    assert made.source == certs.PLATFORM


def test_the_two_files_go_together(tmp_path: Path) -> None:
    crt = tmp_path / "wild.crt"
    crt.write_text("x")
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, tls_cert_file=crt)
