"""Log lines: one event of an app's stream, made safe, and rendered the way Heroku does.

A :class:`Line` is a timestamp (microseconds since the epoch, UTC), a source (``app`` or
``dockyard``), a process (``web.1``, ``api``, ``router``) and one line of text. It renders as::

    2026-01-05T10:00:00.123456+00:00 app[web.1]: message

What apps write is untrusted: :func:`make` splits text on its newlines, replaces NUL and the
other control characters (and invalid UTF-8, already decoded as U+FFFD) with U+FFFD,
keeps tabs and the ANSI colour sequences (``ESC[...m``) but no other escape sequence, and
cuts lines longer than :data:`MAX_BYTES` bytes of UTF-8 into several.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

APP = "app"
PLATFORM = "dockyard"
SOURCES = (APP, PLATFORM)
# Heroku's name for the platform's source; the Heroku CLI sends it as `logs -s heroku`.
SOURCE_ALIASES = {"heroku": PLATFORM}
MAX_BYTES = 10_000
REPLACEMENT = "\ufffd"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# An ANSI colour (SGR) sequence, kept; or a character a terminal or a parser could trip on.
_UNSAFE = re.compile(r"\x1b\[[0-9;]{0,32}m|[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_NEWLINE = re.compile(r"\r\n|\n|\r")
_RENDERED = re.compile(r"^(\S+) ([a-z]+)\[([^\]]*)\]: ?(.*)$", re.DOTALL)


class Origin(NamedTuple):
    """Where a dyno's line was read: its output log, and the offset just past the line."""

    log: str  # the dyno's id
    offset: int


@dataclass(frozen=True, slots=True)
class Line:
    """One line of an app's log stream."""

    at: int  # microseconds since the epoch, UTC
    source: str  # APP or PLATFORM
    process: str  # web.1, api, router, logplex
    message: str  # one line, already made safe (see make())
    # The app's sequence number, given by the hub; None for a line that is not part of
    # the app's stream (a note to one reader, such as an L10).
    seq: int | None = None
    # Set on a dyno's line (only the last part of a line that was cut): see ingest.py.
    origin: Origin | None = None

    @property
    def tag(self) -> str:
        """``app[web.1]``."""
        return f"{self.source}[{self.process}]"

    def render(self) -> str:
        return f"{timestamp(self.at)} {self.tag}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The line for ``logs --json`` and other programs."""
        return {
            "id": self.seq,
            "time": timestamp(self.at),
            "source": self.source,
            "process": self.process,
            "message": self.message,
        }


def now() -> int:
    """Microseconds since the epoch, now."""
    return (datetime.now(UTC) - _EPOCH) // _MICROSECOND


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def timestamp(at: int) -> str:
    """RFC 5424's timestamp with microseconds: ``2026-01-05T10:00:00.123456+00:00``."""
    return (_EPOCH + timedelta(microseconds=at)).isoformat(timespec="microseconds")


def parse_time(text: str) -> int | None:
    """Microseconds since the epoch of an ISO 8601 time (``…Z`` or ``…+00:00``); None if bad."""
    # The runtime's own stamps (2026-01-05T10:00:00.123456Z), many a second: the quick way.
    if len(text) == 27 and text[19] == "." and text[26] == "Z" and text[20:26].isdigit():
        seconds = _seconds(text[:19])
        if seconds is not None:
            return seconds * 1_000_000 + int(text[20:26])
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=256)
def _seconds(text: str) -> int | None:
    """Seconds since the epoch of ``2026-01-05T10:00:00`` (UTC)."""
    try:
        moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(seconds=1)


def _replace(match: re.Match[str]) -> str:
    found = match.group()
    return found if len(found) > 1 else REPLACEMENT


def sanitise(text: str) -> str:
    """``text`` with control characters (but tabs and colours) and surrogates as U+FFFD."""
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(_replace, text)


def split(text: str, limit: int = MAX_BYTES) -> list[str]:
    """``text`` in parts of at most ``limit`` bytes of UTF-8, never inside a character."""
    if len(text) * 4 <= limit:
        return [text]
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return [text]
    parts = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        parts.append(data[start:end].decode("utf-8", "replace"))
        start = end
    return parts


def make(at: int, source: str, process: str, text: str, origin: Origin | None = None) -> list[Line]:
    """The safe lines of ``text``: one per line of it, and more for any that is too long.

    ``origin`` goes on the last of them only: a line counts as read once all of it is.
    """
    if len(text) <= MAX_BYTES and text.isascii() and text.isprintable():
        return [Line(at, source, process, text, None, origin)]  # most lines: nothing to do
    made = [
        Line(at, source, process, part)
        for one in _NEWLINE.split(text)
        for part in split(sanitise(one))
    ]
    if origin is not None:
        last = made[-1]
        made[-1] = Line(last.at, last.source, last.process, last.message, None, origin)
    return made


def parse_rendered(text: str) -> Line | None:
    """A rendered line read back (by the CLI), or None when ``text`` is not one."""
    found = _RENDERED.match(text)
    if found is None:
        return None
    at = parse_time(found.group(1))
    if at is None:
        return None
    return Line(at, found.group(2), found.group(3), found.group(4))


def normal_source(source: str | None) -> str | None:
    """``app`` or ``dockyard`` (``heroku`` too); raises ValueError for anything else."""
    if not source:
        return None
    name = SOURCE_ALIASES.get(source.lower(), source.lower())
    if name not in SOURCES:
        raise ValueError(f"{source!r} is not a log source; use app or dockyard")
    return name


@dataclass(frozen=True)
class Filter:
    """Which lines a reader wants: by dyno or process type, and by source.

    ``dyno`` is a dyno or process name (``web.1``, ``api``, ``router``) or a process type
    (``web``: ``web.1``, ``web.2``, …).
    """

    dyno: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dyno", self.dyno or None)
        object.__setattr__(self, "source", normal_source(self.source))

    @property
    def everything(self) -> bool:
        return self.dyno is None and self.source is None

    def __call__(self, line: Line) -> bool:
        if self.source is not None and line.source != self.source:
            return False
        if self.dyno is None or line.process == self.dyno:
            return True
        return "." not in self.dyno and line.process.startswith(self.dyno + ".")


Match = Callable[[Line], bool]
