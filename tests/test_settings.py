"""Settings: defaults, every ``DOCKYARD_*`` variable, and a clear error for each bad value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from dockyard import settings
from dockyard.errors import SettingsError
from dockyard.settings import Settings, load


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DOCKYARD_* variable from the outside, a private HOME, and not root."""
    for name in list(os.environ):
        if name.upper().startswith("DOCKYARD_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(settings, "_is_root", lambda: False)
    return home


def test_defaults_for_a_normal_user(clean_environment: Path) -> None:
    loaded = load()
    data = clean_environment / ".local" / "share" / "dockyard"
    assert loaded.data_dir == data
    assert loaded.database_url == f"sqlite:///{data / 'dockyard.db'}"
    assert loaded.blob_url == f"file://{data / 'blobs'}"
    assert loaded.domain == "localhost"
    assert loaded.http_port == 8080
    assert loaded.https_port == 8443
    assert loaded.api_listen == "127.0.0.1:5100"
    assert loaded.api_host == "127.0.0.1"
    assert loaded.api_port == 5100
    assert loaded.ssh_port == 2222
    assert loaded.runtime == "process"


def test_defaults_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_is_root", lambda: True)
    loaded = load()
    assert loaded.data_dir == Path("/var/lib/dockyard")
    assert loaded.database_url == "sqlite:////var/lib/dockyard/dockyard.db"
    assert loaded.blob_url == "file:///var/lib/dockyard/blobs"
    assert loaded.http_port == 80
    assert loaded.https_port == 443


def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "DOCKYARD_DATA_DIR": str(tmp_path / "state"),
        "DOCKYARD_DATABASE_URL": "postgresql://dockyard@db.internal:5432/dockyard",
        "DOCKYARD_BLOB_URL": "/srv/blobs",
        "DOCKYARD_DOMAIN": "apps.example.com",
        "DOCKYARD_HTTP_PORT": "8000",
        "DOCKYARD_HTTPS_PORT": "8001",
        "DOCKYARD_API_LISTEN": "192.0.2.10:6000",
        "DOCKYARD_SSH_PORT": "2200",
        "DOCKYARD_RUNTIME": "swarm",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    loaded = load()
    assert loaded.data_dir == tmp_path / "state"
    assert loaded.database_url == values["DOCKYARD_DATABASE_URL"]
    assert loaded.blob_url == "/srv/blobs"
    assert loaded.domain == "apps.example.com"
    assert loaded.http_port == 8000
    assert loaded.https_port == 8001
    assert loaded.api_listen == "192.0.2.10:6000"
    assert (loaded.api_host, loaded.api_port) == ("192.0.2.10", 6000)
    assert loaded.ssh_port == 2200
    assert loaded.runtime == "swarm"


def test_explicit_ports_win_over_root_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "_is_root", lambda: True)
    monkeypatch.setenv("DOCKYARD_HTTP_PORT", "8080")
    loaded = load()
    assert loaded.http_port == 8080
    assert loaded.https_port == 443


def test_data_dir_moves_the_default_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(tmp_path / "d"))
    loaded = load()
    assert loaded.database_url == f"sqlite:///{tmp_path / 'd' / 'dockyard.db'}"
    assert loaded.blob_url == f"file://{tmp_path / 'd' / 'blobs'}"


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("DOCKYARD_DATA_DIR", "~/dockyard", "HOME/dockyard"),
        ("DOCKYARD_DOMAIN", "Apps.Example.COM.", "apps.example.com"),
        ("DOCKYARD_DATABASE_URL", "sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("DOCKYARD_DATABASE_URL", "postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("DOCKYARD_BLOB_URL", "file:///srv/blobs", "file:///srv/blobs"),
        ("DOCKYARD_API_LISTEN", "[::1]:5100", "[::1]:5100"),
        ("DOCKYARD_RUNTIME", "docker", "docker"),
        ("DOCKYARD_RUNTIME", "process", "process"),
    ],
)
def test_accepted_forms(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path, name: str, value: str, read: str
) -> None:
    monkeypatch.setenv(name, value)
    loaded = load()
    field = name.removeprefix("DOCKYARD_").lower()
    assert str(getattr(loaded, field)) == read.replace("HOME", str(clean_environment))


def test_ipv6_listen_address_splits_into_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_API_LISTEN", "[::1]:5100")
    loaded = load()
    assert (loaded.api_host, loaded.api_port) == ("::1", 5100)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DOCKYARD_DATA_DIR", "relative/path", "absolute path"),
        ("DOCKYARD_DATABASE_URL", "mysql://root@localhost/dockyard", "sqlite:///"),
        ("DOCKYARD_DATABASE_URL", "dockyard.db", "postgresql://"),
        ("DOCKYARD_BLOB_URL", "s3://bucket/slugs", "absolute directory path"),
        ("DOCKYARD_BLOB_URL", "blobs", "file:// URL"),
        ("DOCKYARD_DOMAIN", "not a domain", "DNS name"),
        ("DOCKYARD_DOMAIN", "under_score.example.com", "DNS name"),
        ("DOCKYARD_DOMAIN", "-leading.example.com", "DNS name"),
        ("DOCKYARD_DOMAIN", "double..dot", "DNS name"),
        ("DOCKYARD_HTTP_PORT", "http", "integer"),
        ("DOCKYARD_HTTP_PORT", "65536", "1 to 65535"),
        ("DOCKYARD_HTTP_PORT", "-1", "1 to 65535"),
        ("DOCKYARD_HTTPS_PORT", "99999", "1 to 65535"),
        ("DOCKYARD_HTTPS_PORT", "4.5", "integer"),
        ("DOCKYARD_API_LISTEN", "5100", "HOST:PORT"),
        ("DOCKYARD_API_LISTEN", ":5100", "HOST:PORT"),
        ("DOCKYARD_API_LISTEN", "localhost:http", "HOST:PORT"),
        ("DOCKYARD_API_LISTEN", "127.0.0.1:70000", "HOST:PORT"),
        ("DOCKYARD_SSH_PORT", "0", "1 to 65535"),
        ("DOCKYARD_SSH_PORT", "65536", "1 to 65535"),
        ("DOCKYARD_SSH_PORT", "ssh", "integer"),
        ("DOCKYARD_RUNTIME", "kubernetes", "'process', 'docker' or 'swarm'"),
        ("DOCKYARD_RUNTIME", "Docker", "'process', 'docker' or 'swarm'"),
        ("DOCKYARD_DRAIN_BUFFER_LINES", "0", "at least 1"),
        ("DOCKYARD_DRAIN_CA_FILE", "/nonexistent/ca.pem", "PEM file of CA certificates"),
        ("DOCKYARD_ACME_DIRECTORY", "acme-v02.api.letsencrypt.org", "ACME directory URL"),
        ("DOCKYARD_ACME_CA_FILE", "/nonexistent/ca.pem", "PEM file of CA certificates"),
        ("DOCKYARD_ACME_DNS_HOOK", "/nonexistent/dns-hook", "executable file"),
    ],
)
def test_each_bad_value_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load()
    message = caught.value.message
    assert f"{name}={value!r}" in message
    assert says in message
    assert caught.value.id == "settings_error"
    # Only the bad variable is reported.
    assert message.count("DOCKYARD_") == 1


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_SSH_PORT", "0")
    monkeypatch.setenv("DOCKYARD_RUNTIME", "vm")
    monkeypatch.setenv("DOCKYARD_DOMAIN", "bad domain")
    with pytest.raises(SettingsError) as caught:
        load()
    message = caught.value.message
    for name in ("DOCKYARD_SSH_PORT", "DOCKYARD_RUNTIME", "DOCKYARD_DOMAIN"):
        assert f"{name}=" in message
    assert len(message.splitlines()) == 4


def test_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's own variables share the prefix; the server must not trip over them.
    monkeypatch.setenv("DOCKYARD_API_URL", "http://127.0.0.1:5100")
    monkeypatch.setenv("DOCKYARD_API_KEY", "dky_x")
    assert load().domain == "localhost"


def test_settings_cannot_change_once_loaded() -> None:
    loaded = load()
    with pytest.raises(ValidationError):
        loaded.domain = "elsewhere.example.com"  # type: ignore[misc]
    assert isinstance(loaded, Settings)
