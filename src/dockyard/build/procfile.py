"""The ``Procfile``: ``<type>: <command>`` per line."""

from __future__ import annotations

import re

from dockyard.errors import InvalidParams

TYPE = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
MAX_SIZE = 64 * 1024


class ProcfileError(InvalidParams):
    """The Procfile cannot be read; the message names the line."""


def parse(text: str) -> dict[str, str]:
    """Process types to commands; blank lines and ``#`` comments are skipped."""
    if len(text.encode()) > MAX_SIZE:
        raise ProcfileError(f"Procfile is over {MAX_SIZE // 1024} kB; it should list commands only")
    types: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon:
            raise ProcfileError(f"Procfile line {number} is not '<type>: <command>': {line[:80]!r}")
        if not TYPE.match(name):
            raise ProcfileError(
                f"Procfile line {number}: process type {name[:40]!r} is invalid; "
                "use letters, digits, '_' and '-' (like web or worker)"
            )
        if not command:
            raise ProcfileError(f"Procfile line {number}: process type {name} has no command")
        if name in types:
            raise ProcfileError(f"Procfile line {number}: process type {name} is declared twice")
        types[name] = command
    return types
