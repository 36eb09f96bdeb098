"""The client's local parts, in-process: ~/.netrc editing and app names in git URLs."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import credentials, git


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("DOCKYARD_API_URL", raising=False)
    return tmp_path


NETRC = """\
# work
machine git.example.com login me password one
macdef init
cd /pub
machine inside.macro.example

machine 127.0.0.1
  login old@example.com
  password dky_old
default login anonymous password guest
"""


def test_netrc_keeps_other_entries_comments_and_macros(home: Path) -> None:
    (home / ".netrc").write_text(NETRC)
    assert credentials.read_netrc("127.0.0.1") == credentials.NetrcEntry(
        "127.0.0.1", "old@example.com", "dky_old"
    )
    assert credentials.read_netrc("inside.macro.example") is None

    credentials.save_netrc("127.0.0.1", "new@example.com", "dky_new")
    text = (home / ".netrc").read_text()
    assert "dky_old" not in text
    assert text.startswith(
        "# work\nmachine git.example.com login me password one\nmacdef init\ncd /pub\n"
        "machine inside.macro.example\n\n"
    )
    assert "default login anonymous password guest\n" in text
    assert text.endswith("machine 127.0.0.1\n  login new@example.com\n  password dky_new\n")
    assert credentials.read_netrc("127.0.0.1") == credentials.NetrcEntry(
        "127.0.0.1", "new@example.com", "dky_new"
    )
    assert credentials.read_netrc("git.example.com") == credentials.NetrcEntry(
        "git.example.com", "me", "one"
    )
    assert stat.S_IMODE((home / ".netrc").stat().st_mode) == 0o600

    assert credentials.remove_netrc("127.0.0.1") is True
    assert credentials.remove_netrc("127.0.0.1") is False
    assert credentials.read_netrc("127.0.0.1") is None
    assert credentials.read_netrc("git.example.com") is not None


def test_netrc_made_private_when_new(home: Path) -> None:
    credentials.save_netrc("api.example.com", "a@example.com", "dky_1")
    path = home / ".netrc"
    assert path.read_text() == "machine api.example.com\n  login a@example.com\n  password dky_1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in home.iterdir()) == [".netrc"]  # no temporary file left


def test_api_url_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert credentials.api_url() == credentials.DEFAULT_API_URL
    credentials.save_api_url("http://saved.example:5100/")
    assert credentials.api_url() == "http://saved.example:5100"
    monkeypatch.setenv("DOCKYARD_API_URL", "http://env.example:5100")
    assert credentials.api_url() == "http://env.example:5100"


@pytest.mark.parametrize(
    ("url", "app", "host"),
    [
        ("http://127.0.0.1:5100/my-app.git", "my-app", "127.0.0.1"),
        ("https://api.example.com/my-app.git/", "my-app", "api.example.com"),
        ("http://user:dky_x@host:5100/my-app", "my-app", "host"),
        ("ssh://git@host:2222/my-app.git", "my-app", "host"),
        ("git@host:my-app.git", "my-app", "host"),
        ("https://github.com/someone/Not_An_App.git", None, "github.com"),
        ("/srv/repos/my-app.git", None, None),
    ],
)
def test_app_from_git_urls(url: str, app: str | None, host: str | None) -> None:
    assert git.app_from_url(url) == app
    assert git.host_of(url) == host


def test_with_app_replaces_only_the_name() -> None:
    assert (
        git.with_app("ssh://git@app-host:2222/app.git", "new") == "ssh://git@app-host:2222/new.git"
    )
    assert git.with_app("http://h:5100/old-name.git", "new") == "http://h:5100/new.git"


def test_the_cli_imports_nothing_of_the_server() -> None:
    """Each command starts fast: no ORM, migrations, settings model or log hub is loaded."""
    code = (
        "import sys, dockyard.cli; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'alembic', 'fastapi', 'pydantic', 'psycopg', 'uvicorn')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_the_cli_refuses_router_timeouts_the_api_would() -> None:
    from dockyard.apps import MAX_ROUTER_TIMEOUT
    from dockyard.cli import router

    assert router._SECONDS.max == MAX_ROUTER_TIMEOUT


def test_ps_shows_why_a_crashed_dyno_could_not_start() -> None:
    from dockyard.cli.ps import _dyno_line

    dyno = {
        "name": "web.5",
        "state": "crashed",
        "updated_at": "2026-11-27T10:30:00Z",
        "retry_in": 4,
        "reason": "no node can run dyno web.5: no suitable node",
    }
    line = _dyno_line(dyno)
    assert line.startswith("web.5: crashed 2026/11/27 10:30:00 +0000")
    assert line.endswith(
        ", restarts within 4s of the crash (no node can run dyno web.5: no suitable node)"
    )
    up = _dyno_line({**dyno, "state": "up", "reason": None})
    assert "restarts" not in up
    assert "no node" not in up
