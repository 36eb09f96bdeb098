"""Log drain URLs: which ones Dockyard can send to, and how to show one without its password.

Three kinds of URL:

- ``syslog://host:port``: RFC 5424 messages over TCP, octet-counted (RFC 6587);
- ``syslog+tls://host:port``: the same over TLS, the server's certificate verified;
- ``https://[user:password@]host[:port]/path``: batches POSTed as ``application/logplex-1``.

A drain URL's password never reaches a log line: :func:`redact` hides it. This module
needs nothing of the store, so the CLI imports it cheaply.

By default drains go to public addresses only (:func:`public`): an app's owner must not be
able to make the platform connect to services on its own network (loopback, private,
link-local, the cloud's metadata address). :func:`check_address` refuses such an address
when a drain is added; names are resolved, and checked, on each connection
(:mod:`dockyard.logs.drain_delivery`). ``DOCKYARD_DRAIN_PRIVATE_ADDRESSES`` allows them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from dockyard.errors import InvalidParams

SYSLOG = "syslog"
SYSLOG_TLS = "syslog+tls"
HTTPS = "https"
SCHEMES = (SYSLOG, SYSLOG_TLS, HTTPS)
MAX_URL = 2000
PRIVATE_SETTING = "DOCKYARD_DRAIN_PRIVATE_ADDRESSES"


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


def public(address: str) -> bool:
    """Whether ``address`` (an IP address) is a public one a drain may send to by default."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def not_public(host: str, address: str) -> str:
    """Why a drain may not send to ``address`` (``host``'s)."""
    named = address if host == address else f"{host} ({address})"
    return (
        f"{named} is a private, loopback or link-local address; drains go to public "
        f"addresses only (an operator can allow others with {PRIVATE_SETTING}=true)"
    )


def check_address(target: Target, *, private: bool) -> None:
    """Refuse a target whose host is an IP address a drain may not send to (see above)."""
    if private:
        return
    try:
        ipaddress.ip_address(target.host.split("%", 1)[0])
    except ValueError:
        return  # a name: resolved and checked on each connection
    if not public(target.host):
        raise _invalid(target.url, not_public(target.host, target.host))
