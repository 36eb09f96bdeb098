"""What a drain receives: each log line as an RFC 5424 syslog message, octet-counted.

One line of ``myapp``'s stream, sent to the drain ``d.8c0e…``::

    2026-01-05T10:00:00.123456+00:00 app[web.1]: listening on 5000

becomes the frame (RFC 6587 octet counting: the length in bytes, a space, the message)::

    93 <190>1 2026-01-05T10:00:00.123456+00:00 d.8c0e… myapp web.1 app - listening on 5000

- PRI: facility local7 (23); severity info (6) for the app's own lines, notice (5) for the
  platform's (``dockyard[…]``);
- HOSTNAME: the drain's token, which tells a log service whose lines these are;
- APP-NAME: the app's name; PROCID: the dyno or process (``web.1``, ``router``, ``api``);
- MSGID: the line's source, ``app`` or ``dockyard``; no STRUCTURED-DATA (``-``);
- MSG: the line's text, UTF-8.

A syslog drain gets frames one after another on one TCP (or TLS) connection; an HTTPS drain
gets them in batches, one POST each (``Content-Type: application/logplex-1``), as Heroku's
Logplex sends them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from dockyard.logs.lines import APP, Line, timestamp

FACILITY = 23  # local7, as Heroku's Logplex
INFO = 6
NOTICE = 5
CONTENT_TYPE = "application/logplex-1"
# RFC 5424's limits on its header fields, in printable US-ASCII.
_LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}


def _field(value: str, limit: int) -> str:
    cleaned = "".join(c if "!" <= c <= "~" else "_" for c in value)[:limit]
    return cleaned or "-"


def message(line: Line, *, token: str, app_name: str) -> bytes:
    """One line as an RFC 5424 message (without its octet count)."""
    severity = INFO if line.source == APP else NOTICE
    header = " ".join(
        (
            f"<{FACILITY * 8 + severity}>1",
            timestamp(line.at),
            _field(token, _LIMITS["hostname"]),
            _field(app_name, _LIMITS["app_name"]),
            _field(line.process, _LIMITS["procid"]),
            _field(line.source, _LIMITS["msgid"]),
            "-",
        )
    )
    return f"{header} {line.message}".encode("utf-8", "replace")


def frame(line: Line, *, token: str, app_name: str) -> bytes:
    """One line, octet-counted (RFC 6587): ``LENGTH SP MESSAGE``."""
    data = message(line, token=token, app_name=app_name)
    return b"%d %s" % (len(data), data)


def frames(lines: Sequence[Line], *, token: str, app_name: str) -> bytes:
    return b"".join(frame(line, token=token, app_name=app_name) for line in lines)


def frame_id(token: str, lines: Sequence[Line]) -> str:
    """``Logplex-Frame-Id`` of a batch: the same for the same lines, retried or not."""
    first, last = lines[0].seq, lines[-1].seq
    return hashlib.sha256(f"{token}|{first}|{last}|{len(lines)}".encode()).hexdigest()[:32]


def read_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The whole octet-counted messages at the start of ``data``, and what is left after
    them (the start of a message still coming). Raises ValueError on a bad count."""
    found: list[bytes] = []
    at = 0
    while True:
        space = data.find(b" ", at)
        if space < 0:
            if len(data) - at > 10:
                raise ValueError("an octet count longer than 10 digits")
            return found, data[at:]
        count = data[at:space]
        if not count.isdigit() or len(count) > 10:
            raise ValueError(f"not an octet count: {count[:20]!r}")
        end = space + 1 + int(count)
        if end > len(data):
            return found, data[at:]
        found.append(data[space + 1 : end])
        at = end
