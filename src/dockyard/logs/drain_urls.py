"""Log drain URLs: which ones Dockyard can send to, and how to show one without its password.

Three kinds of URL:

- ``syslog://host:port``: RFC 5424 messages over TCP, octet-counted (RFC 6587);
- ``syslog+tls://host:port``: the same over TLS, the server's certificate verified;
- ``https://[user:password@]host[:port]/path``: batches POSTed as ``application/logplex-1``.

A drain URL's password never reaches a log line: :func:`redact` hides it. This module
needs nothing of the store, so the CLI imports it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from dockyard.errors import InvalidParams

SYSLOG = "syslog"
SYSLOG_TLS = "syslog+tls"
HTTPS = "https"
SCHEMES = (SYSLOG, SYSLOG_TLS, HTTPS)
MAX_URL = 2000


@dataclass(frozen=True)
class Target:
    """Where a drain sends: its kind, host and port, and (HTTPS) the rest of its URL."""

    scheme: str
    host: str
    port: int
    url: str  # the URL as stored

    @property
    def tls(self) -> bool:
        return self.scheme in (SYSLOG_TLS, HTTPS)


def _invalid(url: str, why: str) -> InvalidParams:
    return InvalidParams(f"{redact(url)!r} is not a drain URL Dockyard can send to: {why}")


def parse(url: str) -> Target:
    """The target of a drain URL, or InvalidParams saying what is wrong with it."""
    given = url.strip()
    if not given:
        raise InvalidParams("a drain needs a URL, such as syslog+tls://logs.example.com:6514")
    if len(given) > MAX_URL:
        raise _invalid(given[:80] + "…", f"it is longer than {MAX_URL} characters")
    if not given.isascii() or any(c.isspace() or not c.isprintable() for c in given):
        raise _invalid(given, "it holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError as exc:
        raise _invalid(given, f"{exc} (the port must be a number from 1 to 65535)") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _invalid(given, "use syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST/PATH")
    host = parts.hostname or ""
    if not host:
        raise _invalid(given, "it has no host")
    if scheme == HTTPS:
        if parts.fragment:
            raise _invalid(given, "an HTTPS drain URL has no #fragment")
        return Target(scheme, host, port or 443, given)
    if port is None or port == 0:
        raise _invalid(given, f"a {scheme}:// drain needs a port, such as {scheme}://{host}:6514")
    if parts.username is not None or parts.password is not None:
        raise _invalid(given, "a syslog drain takes no user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _invalid(given, f"a syslog drain is only {scheme}://HOST:PORT, with no path")
    return Target(scheme, host, port, given)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``: what logs and events may show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(SplitResult(parts.scheme, f"{user}:***@{netloc}", *parts[2:]))
