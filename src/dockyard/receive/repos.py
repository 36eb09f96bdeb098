"""The bare git repositories behind apps, and how ``git-receive-pack`` is run on them.

Repositories are named by app id, so renaming an app keeps its history. Hooks come from
the platform's hooks directory through ``core.hooksPath`` given in the environment, so
nothing inside a repository can change them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import StoreError

MAX_PUSH_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Ticket:
    """What one push may do: deploy to this app, as this user."""

    app_id: uuid.UUID
    user_id: uuid.UUID
    repo: Path
    branch: str | None


@dataclass
class Repositories:
    data_dir: Path
    push_base_url: str
    tickets: dict[str, Ticket] = field(default_factory=dict)
    _ended: dict[str, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.data_dir / "repos"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hooks = self.data_dir / "hooks"
        self.hooks.mkdir(parents=True, exist_ok=True, mode=0o700)
        hook = self.hooks / "pre-receive"
        hook.write_text(f"#!/bin/sh\nexec '{sys.executable}' -m dockyard.receive.hook\n")
        hook.chmod(stat.S_IRWXU)

    def path(self, app_id: uuid.UUID) -> Path:
        return self.root / f"{app_id}.git"

    def ensure(self, app_id: uuid.UUID) -> Path:
        repo = self.path(app_id)
        if not (repo / "HEAD").exists():
            try:
                subprocess.run(
                    ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(repo)],
                    check=True,
                    capture_output=True,
                )
            except subprocess.CalledProcessError as exc:
                raise StoreError(
                    f"could not create the app's git repository: {exc.stderr!r}"
                ) from exc
        return repo

    def issue(self, ticket: Ticket) -> str:
        """A one-time push URL token for one run of git-receive-pack."""
        token = secrets.token_urlsafe(32)
        self.tickets[token] = ticket
        self._ended[token] = asyncio.Event()
        return token

    def revoke(self, token: str) -> None:
        """The push's git-receive-pack has ended: its ref updates are done (or failed)."""
        self.tickets.pop(token, None)
        if (ended := self._ended.pop(token, None)) is not None:
            ended.set()

    async def ended(self, token: str, timeout: float = 120) -> None:
        """Wait until the push holding ``token`` has ended, so its ref update is visible."""
        if (event := self._ended.get(token)) is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)

    def environment(self, token: str, ticket: Ticket) -> dict[str, str]:
        """What git-receive-pack and its hook need: the hooks, limits and the push URL."""
        settings = {
            "core.hooksPath": str(self.hooks),
            "receive.maxInputSize": str(MAX_PUSH_BYTES),
            "receive.denyDeletes": "true",
            "receive.fsckObjects": "true",
            "http.receivepack": "true",
            "uploadpack.allowFilter": "true",
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_COUNT": str(len(settings)),
            "DOCKYARD_PUSH_URL": f"{self.push_base_url}/internal/pushes/{token}",
            "DOCKYARD_DEPLOY_BRANCH": ticket.branch or "",
        }
        for number, (key, value) in enumerate(settings.items()):
            env[f"GIT_CONFIG_KEY_{number}"] = key
            env[f"GIT_CONFIG_VALUE_{number}"] = value
        if pythonpath := os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = pythonpath
        return env

    def head(self, repo: Path, ref: str) -> str | None:
        done = subprocess.run(
            ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", ref],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or None
