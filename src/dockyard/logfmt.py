"""The control plane's own log: one ``key=value`` line per event (logfmt), on its stdout.

::

    time=2026-01-05T10:00:00.123+00:00 level=info logger=dockyard.server msg="…"
    time=2026-01-05T10:00:01.456+00:00 level=warn logger=dockyard.drains msg="drain=d.… failed"

``time``, ``level`` and ``logger`` come first; then whatever the caller passed as
``extra={...}``; then ``msg``; then ``error`` with a traceback, on one line, when there is
one. A value with spaces, quotes or ``=`` is quoted, with ``\\"``,
``\\\\`` and ``\\n`` escaped: each event stays one line, for ``grep`` and log shippers alike.
This log is never part of an app's stream (that is :mod:`dockyard.logs`).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

# What every LogRecord has; anything else on a record came from ``extra`` (but uvicorn's
# color_message, the message again with terminal colours).
_STANDARD = frozenset(
    {
        *vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)),
        "message",
        "asctime",
        "color_message",
    }
)
_LEVELS = {"WARNING": "warn", "CRITICAL": "fatal"}


def quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        level = _LEVELS.get(record.levelname, record.levelname.lower())
        fields = [
            f"time={moment.isoformat(timespec='milliseconds')}",
            f"level={level}",
            f"logger={quote(record.name)}",
        ]
        fields += [
            f"{key}={quote(value)}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_") and key.isidentifier()
        ]
        fields.append(f"msg={quote(record.getMessage())}")
        if record.exc_info:
            fields.append(f"error={quote(self.formatException(record.exc_info))}")
        return " ".join(fields)


def configure(level: int = logging.INFO) -> None:
    """Send every logger's records (uvicorn's too) to stdout as logfmt lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
