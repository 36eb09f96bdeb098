"""The ``dockyard`` command run as a real process, as one user at their own terminal.

Each user gets a home directory of their own (so ``~/.netrc`` and ``~/.config`` are theirs)
and a working directory in it, where tests may ``git init``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from conftest import ACCEPT, Server
from dockyard import accounts
from dockyard.store import Database

DOCKYARD = [sys.executable, "-m", "dockyard"]


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"dockyard {' '.join(self.args)} exited {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Cli:
    """One user at their own terminal: a home, a working directory, an environment."""

    def __init__(self, server: Server, home: Path, email: str = "", token: str = "") -> None:
        self.server = server
        self.home = home
        self.email = email
        self.token = token
        self.cwd = home / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DOCKYARD_", "GIT_", "XDG_"))
        }
        self.env.update(
            HOME=str(home),
            DOCKYARD_API_URL=server.url,
            GIT_CONFIG_NOSYSTEM="1",
            NO_COLOR="1",
        )

    def run(
        self,
        *args: str,
        ok: bool = True,
        input: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``dockyard ARGS``; ``ok`` says whether it must succeed or must fail."""
        done = subprocess.run(
            [*DOCKYARD, *args],
            cwd=cwd or self.cwd,
            env={**self.env, **(env or {})},
            input=input,
            # No stdin unless given: a command must never wait for a terminal in a test.
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        result = Result(args, done.returncode, done.stdout, done.stderr)
        if ok:
            assert result.code == 0, str(result)
        else:
            assert result.code != 0, str(result)
            assert "Traceback" not in result.stderr, str(result)
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        """Run a command that must fail; return its stderr."""
        return self.run(*args, ok=False, input=input).stderr

    def api(self) -> httpx.Client:
        """The API as this user, for setting things up faster than the CLI would."""
        return httpx.Client(
            base_url=self.server.url,
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def create_app(self, name: str | None = None) -> str:
        """Make an app through the API (setup, not what a test checks); return its name."""
        name = name or app_name()
        with self.api() as api:
            api.post("/apps", json={"name": name}).raise_for_status()
        return name

    def set_config(self, app: str, **values: str | None) -> None:
        with self.api() as api:
            api.patch(f"/apps/{app}/config-vars", json=values).raise_for_status()

    def share(self, app: str, email: str) -> None:
        with self.api() as api:
            api.post(f"/apps/{app}/collaborators", json={"user": email}).raise_for_status()

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout


class Users:
    """Makes users on the server, each with a :class:`Cli` of their own.

    Users are written straight into the server's state store, as ``admin:create-user`` does
    (that command, a process of its own, costs most of a second; the login tests use it).
    A user made ``logged_in`` has the token in ``DOCKYARD_API_KEY``; the login tests go
    through ``dockyard login`` and ``~/.netrc`` instead.
    """

    def __init__(self, server: Server, database: Database, root: Path) -> None:
        self.server = server
        self.database = database
        self.root = root

    def new(self, *, admin: bool = False, logged_in: bool = True) -> Cli:
        email = f"user-{secrets.token_hex(4)}@example.com"
        with self.database.transaction() as session:
            _user, token = accounts.create_user(session, email, admin=admin)
        cli = Cli(self.server, self.root / email, email, token)
        if logged_in:
            cli.env["DOCKYARD_API_KEY"] = token
        return cli

    def stranger(self) -> Cli:
        """Someone with a home but no account and no login."""
        return Cli(self.server, self.root / f"stranger-{secrets.token_hex(4)}")


def app_name(prefix: str = "app") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
