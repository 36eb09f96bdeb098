"""Where the client keeps its login: the token in ``~/.netrc``, the API URL in a config file.

The token goes in ``~/.netrc`` as ``machine <API host> login <email> password <token>``, as the
Heroku CLI does, so that ``git`` over HTTP to the same host finds it without asking. The file
is rewritten in place: other machines' entries, comments and layout are kept, and it is
always left readable by its owner only (0600).

The API URL is kept in ``$XDG_CONFIG_HOME/dockyard/config.json`` (``~/.config/dockyard/``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard.cli.errors import ClientError

DEFAULT_API_URL = "http://127.0.0.1:5100"
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class NetrcEntry:
    machine: str
    login: str
    password: str


@dataclass(frozen=True)
class _Block:
    """One ``machine`` (or ``default``) entry: where it lies in the file, and its fields."""

    start: int
    end: int
    machine: str | None
    fields: dict[str, str]


def netrc_path() -> Path:
    return Path.home() / ".netrc"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dockyard" / "config.json"


def _blocks(text: str) -> list[_Block]:
    """Split netrc text into entries, by the offsets of their ``machine``/``default`` words.

    ``macdef`` bodies run to the next blank line and are skipped, as ftp and curl do; a line
    starting with ``#`` is a comment.
    """
    tokens: list[tuple[int, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.search(text, position)
        if match is None:
            break
        word, start = match.group(), match.start()
        line_start = text.rfind("\n", 0, start) + 1
        if word.startswith("#") and not text[line_start:start].strip():
            newline = text.find("\n", start)
            position = len(text) if newline < 0 else newline + 1
            continue
        tokens.append((start, word))
        position = match.end()
        if word == "macdef":
            name = _TOKEN.search(text, position)
            if name is not None:
                tokens.append((name.start(), name.group()))
                blank = text.find("\n\n", name.end())
                position = len(text) if blank < 0 else blank + 2
    blocks: list[_Block] = []
    index = 0
    while index < len(tokens):
        start, word = tokens[index]
        if word not in ("machine", "default"):
            index += 1
            continue
        machine = None
        index += 1
        if word == "machine" and index < len(tokens):
            machine = tokens[index][1]
            index += 1
        fields: dict[str, str] = {}
        while index < len(tokens) and tokens[index][1] not in ("machine", "default"):
            key = tokens[index][1]
            if key == "macdef":  # a macro belongs to the entry before it; its body was skipped
                index += 2
                continue
            if index + 1 < len(tokens):
                fields[key] = tokens[index + 1][1]
            index += 2
        end = tokens[index][0] if index < len(tokens) else len(text)
        blocks.append(_Block(start, end, machine, fields))
    return blocks


def read_netrc(machine: str) -> NetrcEntry | None:
    """The login for ``machine`` in ``~/.netrc``, if there is one."""
    try:
        text = netrc_path().read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientError(f"cannot read {netrc_path()}: {exc.strerror}") from exc
    for block in _blocks(text):
        if block.machine == machine and "password" in block.fields:
            return NetrcEntry(machine, block.fields.get("login", ""), block.fields["password"])
    return None


def _without(text: str, machine: str) -> str:
    for block in reversed(_blocks(text)):
        if block.machine == machine:
            text = text[: block.start] + text[block.end :]
    return text


def save_netrc(machine: str, login: str, password: str) -> None:
    """Set the login for ``machine``, replacing any old one and keeping every other entry."""
    path = netrc_path()
    text = path.read_text() if path.exists() else ""
    text = _without(text, machine)
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"machine {machine}\n  login {login}\n  password {password}\n"
    _write_private(path, text)


def remove_netrc(machine: str) -> bool:
    """Drop the login for ``machine``; say whether there was one."""
    path = netrc_path()
    if not path.exists():
        return False
    text = path.read_text()
    kept = _without(text, machine)
    if kept == text:
        return False
    _write_private(path, kept)
    return True


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def saved_api_url() -> str | None:
    try:
        value = json.loads(config_path().read_text()).get("api_url")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def save_api_url(url: str) -> None:
    path = config_path()
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            config = {}
    except (OSError, ValueError):
        config = {}
    config["api_url"] = url
    _write_private(path, json.dumps(config, indent=2) + "\n")


def api_url() -> str:
    """The API to talk to: ``$DOCKYARD_API_URL``, else the saved login's, else the default."""
    return (os.environ.get("DOCKYARD_API_URL") or saved_api_url() or DEFAULT_API_URL).rstrip("/")
