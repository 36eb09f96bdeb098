"""The local git repository: its remotes, and the app a remote URL points at.

Dockyard git URLs end in ``/<app>.git``: ``http://host:5100/<app>.git``,
``ssh://git@host:2222/<app>.git`` or the short ``git@host:<app>.git``. Git is run as a
program with argument lists; a missing ``git`` counts as "not in a repository".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlsplit

from dockyard.cli.errors import ClientError

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    executable = shutil.which("git")
    if executable is None:
        return None
    try:
        # Arguments are passed as a list, never through a shell.
        return subprocess.run([executable, *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ClientError(f"cannot run git: {exc}") from exc


def _checked(*args: str) -> str:
    done = _git(*args)
    if done is None:
        raise ClientError("git is not installed; install it to manage git remotes")
    if done.returncode != 0:
        problem = done.stderr.strip() or f"exit status {done.returncode}"
        raise ClientError(f"`git {' '.join(args)}` failed: {problem}")
    return done.stdout


def in_repository() -> bool:
    done = _git("rev-parse", "--is-inside-work-tree")
    return done is not None and done.returncode == 0 and done.stdout.strip() == "true"


def remotes() -> dict[str, str]:
    """The current repository's remotes and their URLs; empty outside a repository."""
    done = _git("config", "--null", "--get-regexp", r"^remote\..*\.url$")
    if done is None or done.returncode != 0:
        return {}
    found: dict[str, str] = {}
    for entry in filter(None, done.stdout.split("\0")):
        key, _, url = entry.partition("\n")
        name = key.removeprefix("remote.").removesuffix(".url")
        found.setdefault(name, url)
    return found


def set_remote(name: str, url: str) -> str:
    """Point remote ``name`` at ``url``; say whether it was ``added`` or ``updated``."""
    if name in remotes():
        _checked("remote", "set-url", name, url)
        return "updated"
    _checked("remote", "add", name, url)
    return "added"


def remove_remote(name: str) -> None:
    _checked("remote", "remove", name)


def app_from_url(url: str) -> str | None:
    """The app name in a git URL's last path part (``…/NAME.git``), if it is one."""
    path = urlsplit(url).path if "://" in url else ""
    if not path and (match := _SCP_LIKE.match(url)):
        path = match["path"]
    name = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return name if _APP_NAME.match(name) else None


def host_of(url: str) -> str | None:
    if "://" in url:
        return urlsplit(url).hostname
    match = _SCP_LIKE.match(url)
    return match["host"].lower() if match else None


def with_app(url: str, app: str) -> str:
    """``url`` with its app name (the last path part) replaced by ``app``."""
    old = app_from_url(url)
    if old is None:
        return url
    head, _, tail = url.rpartition(old)
    return head + app + tail


def ssh_url(host: str, port: int, app: str) -> str:
    """``ssh://git@HOST:PORT/APP.git``: where the SSH receiver serves ``app``."""
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"ssh://git@{shown}:{port}/{app}.git"
