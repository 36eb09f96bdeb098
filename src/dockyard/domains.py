"""The hostnames an app is served at: its default one, and custom domains its users add.

Every app has a default hostname, ``<app>.<DOCKYARD_DOMAIN>``, that follows its name and is not
stored. Custom domains are rows of :class:`~dockyard.store.Domain`: a hostname belongs to at
most one app, and a wildcard (``*.example.com``) claims every subdomain that no more specific
hostname claims. The router resolves a request's host with :func:`resolve`'s rules.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts import parse_uuid
from dockyard.errors import InvalidParams, NotFound
from dockyard.settings import Settings
from dockyard.store import App, Domain

DEFAULT = "default"
CUSTOM = "custom"
# How many leading labels a wildcard may stand for: *.example.com serves a.example.com and
# a.b.example.com; the router tries the host itself, then one wildcard per level, up to this.
WILDCARD_DEPTH = 4
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IPV4 = re.compile(r"^\d+(\.\d+){3}$")
_NAMESPACE = uuid.UUID("6b1f7c50-3d0e-4f0a-9a43-5f0c2a8e7d11")


@dataclass(frozen=True)
class Hostname:
    """One hostname of an app, as the API shows it."""

    id: uuid.UUID
    hostname: str
    kind: str  # default | custom
    app: App
    created_at: datetime
    updated_at: datetime
    # Automated certificates (custom domains of apps with ACM): Heroku's acm_status and the
    # CA's reason when it failed.
    acm_status: str | None = None
    acm_status_reason: str | None = None
    # The uploaded certificate associated with it (Heroku's sni_endpoint): (id, name).
    sni_endpoint: tuple[uuid.UUID, str] | None = None


def default_hostname(settings: Settings, app_name: str) -> str:
    return f"{app_name}.{settings.domain}"


def api_hostname(settings: Settings) -> str:
    """Where the router serves the platform's own API (and git over HTTP)."""
    return f"api.{settings.domain}"


def check_hostname(settings: Settings, given: str) -> str:
    """``given`` as a custom domain: lowercase, without a trailing dot; or InvalidParams."""
    hostname = given.strip().lower().rstrip(".")
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _invalid(given, "it is not a valid internationalized domain name") from exc
    labels = hostname.split(".")
    wildcard = labels[0] == "*"
    rest = labels[1:] if wildcard else labels
    if len(hostname) > 253:
        raise _invalid(given, "it is longer than 253 characters")
    if "*" in hostname and not (wildcard and "*" not in ".".join(rest)):
        raise _invalid(given, "a wildcard may only be the whole first label: *.example.com")
    if not all(_LABEL.match(label) for label in rest):
        raise _invalid(
            given,
            "each label must be 1 to 63 letters, digits or dashes, not starting or ending "
            "with a dash",
        )
    if len(rest) < 2:
        raise _invalid(given, "it needs at least two labels, such as www.example.com")
    if _IPV4.match(".".join(rest)):
        raise _invalid(given, "IP addresses are not domains; add a name that points at this server")
    platform = settings.domain
    if ".".join(rest) == platform or ".".join(rest).endswith("." + platform):
        raise _invalid(
            given,
            f"names under {platform} belong to the platform: each app has "
            f"<app>.{platform} already, and api.{platform} is the API",
        )
    return hostname


def _invalid(given: str, why: str) -> InvalidParams:
    return InvalidParams(f"{given!r} is not a valid hostname: {why}")


def default_of(settings: Settings, app: App) -> Hostname:
    return Hostname(
        id=uuid.uuid5(_NAMESPACE, str(app.id)),
        hostname=default_hostname(settings, app.name),
        kind=DEFAULT,
        app=app,
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


def _custom(row: Domain) -> Hostname:
    return Hostname(
        row.id,
        row.hostname,
        CUSTOM,
        row.app,
        row.created_at,
        row.updated_at,
        row.acm_status,
        row.acm_status_reason,
        (row.sni_endpoint.id, row.sni_endpoint.name) if row.sni_endpoint is not None else None,
    )


def hostnames(session: Session, settings: Settings, app: App) -> list[Hostname]:
    """The app's default hostname, then its custom domains by name."""
    rows = session.scalars(select(Domain).where(Domain.app_id == app.id).order_by(Domain.hostname))
    return [default_of(settings, app), *(_custom(row) for row in rows)]


def find(session: Session, settings: Settings, app: App, identity: str) -> Hostname:
    """One of the app's hostnames, by id or by name."""
    wanted = identity.strip().lower().rstrip(".")
    parsed = parse_uuid(identity)
    for found in hostnames(session, settings, app):
        if found.hostname == wanted or (parsed is not None and found.id == parsed):
            return found
    raise NotFound(
        f"Couldn't find that domain: {identity} is not a domain of {app.name}; "
        f"`dockyard domains -a {app.name}` lists them"
    )


def add(session: Session, settings: Settings, app: App, given: str) -> Hostname:
    hostname = check_hostname(settings, given)
    taken = session.scalar(select(Domain).where(Domain.hostname == hostname))
    if taken is not None:
        if taken.app_id == app.id:
            raise InvalidParams(f"{hostname} is already a domain of {app.name}")
        raise InvalidParams(
            f"{hostname} is already in use by another app; a hostname belongs to one app only"
        )
    # With ACM on, the new domain's certificate is ordered at once (dockyard.certs.renewal).
    row = Domain(
        app=app, app_id=app.id, hostname=hostname, acm_status="pending" if app.acm else None
    )
    session.add(row)
    session.flush()
    return _custom(row)


def remove(session: Session, settings: Settings, app: App, identity: str) -> Hostname:
    found = find(session, settings, app, identity)
    if found.kind == DEFAULT:
        raise InvalidParams(
            f"{found.hostname} is {app.name}'s default hostname and cannot be removed; "
            "it follows the app's name"
        )
    row = session.get(Domain, found.id)
    assert row is not None
    session.delete(row)
    return found


def candidates(host: str) -> list[str]:
    """The names a request for ``host`` is looked up by, most specific first.

    ``a.b.example.com`` → itself, ``*.b.example.com``, ``*.example.com`` (a wildcard never
    stands for all but one label: ``*.com`` is not a domain).
    """
    host = host.lower().rstrip(".")
    names = [host]
    labels = host.split(".")
    for depth in range(1, WILDCARD_DEPTH + 1):
        if len(labels) - depth < 2:
            break
        names.append("*." + ".".join(labels[depth:]))
    return names


def resolve(routes: Iterable[str], host: str) -> str | None:
    """Which of ``routes`` (hostnames, wildcards too) serves ``host``: the most specific."""
    known = set(routes)
    return next((name for name in candidates(host) if name in known), None)
