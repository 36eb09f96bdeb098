"""Certificates in the state store: an app's (uploaded or ACME), and the platform's default.

Every certificate is checked by :func:`dockyard.certs.pem.parse` before it is written, and an
app's must serve at least one of the app's hostnames; nothing is written when a check fails.
:func:`served` says which certificate the router presents for which hostname: for each
hostname of an app, the most specific of the app's certificates that covers it (a name the
certificate lists exactly beats a wildcard), and the platform's default for the rest.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import domains
from dockyard.accounts import parse_uuid
from dockyard.certs.pem import Bundle, CertificateError, name_covers, parse
from dockyard.errors import InvalidParams, NotFound
from dockyard.settings import Settings
from dockyard.store import App, Certificate, Domain

UPLOADED = "uploaded"  # certs:add, the sni-endpoints API, or the operator's default
ACM = "acm"  # issued by an ACME CA
PLATFORM = "platform"  # issued by the platform's local CA
SOURCES = (UPLOADED, ACM, PLATFORM)
DEFAULT_NAME = "default"  # the platform's default certificate (app_id None)
_RANK = {UPLOADED: 0, ACM: 1, PLATFORM: 2}
_WORDS = (
    "akita", "bonito", "brig", "caravel", "clipper", "corvette", "cutter", "dhow",
    "dory", "frigate", "galleon", "junk", "ketch", "lugger", "punt", "schooner",
    "sloop", "skiff", "tender", "yawl",
)  # fmt: skip


@dataclass(frozen=True)
class Served:
    """A certificate as the router presents it: for ``hostnames`` by SNI (all others when it
    is the default, which comes first)."""

    name: str  # unique, file-name safe: "default" or the certificate's id
    pem: str = field(repr=False)  # chain, then key
    hostnames: tuple[str, ...]


def routes(session: Session, settings: Settings) -> dict[str, uuid.UUID]:
    """Every app hostname (default ones, custom ones, wildcards) → the app's id."""
    found = {
        domains.default_hostname(settings, name): app_id
        for app_id, name in session.execute(select(App.id, App.name))
    }
    for hostname, app_id in session.execute(select(Domain.hostname, Domain.app_id)):
        found[hostname] = app_id
    return found


def filters(
    names: tuple[str, ...] | list[str], app_id: uuid.UUID, hosts: Mapping[str, object]
) -> set[str]:
    """The hostnames a certificate for ``names`` serves for the app: those of its names that
    the router sends to the app, and the app's hostnames that its wildcards cover."""
    app_key = str(app_id)
    mine = {h for h, owner in hosts.items() if str(owner) == app_key}
    found: set[str] = set()
    for name in names:
        if name.startswith("*."):
            if name in mine:
                found.add(name)
            found.update(h for h in mine if not h.startswith("*.") and name_covers(name, h))
        else:
            route = domains.resolve(hosts, name)
            if route is not None and str(hosts[route]) == app_key:
                found.add(name)
    return found


def save(
    session: Session,
    settings: Settings,
    app: App,
    chain_pem: str,
    key_pem: str,
    *,
    source: str = UPLOADED,
    name: str | None = None,
    now: datetime | None = None,
) -> Certificate:
    """Check and store a certificate of ``app``; the router serves it after the commit."""
    _check_source(source)
    bundle = _checked(session, settings, app, parse(chain_pem, key_pem, now=now))
    row = Certificate(app_id=app.id, app=app, name=name or _new_name(session), source=source)
    _fill(row, bundle)
    session.add(row)
    session.flush()
    return row


def update(
    session: Session,
    settings: Settings,
    certificate: Certificate,
    chain_pem: str,
    key_pem: str,
    *,
    now: datetime | None = None,
) -> Certificate:
    """Replace ``certificate``'s chain and key (same id and name): a renewal, or certs:update."""
    if certificate.app is None:
        raise InvalidParams("the platform's default certificate is changed with set_default")
    bundle = _checked(session, settings, certificate.app, parse(chain_pem, key_pem, now=now))
    _fill(certificate, bundle)
    certificate.updated_at = datetime.now(UTC)
    covered = filters(bundle.hostnames, certificate.app.id, routes(session, settings))
    for domain in session.scalars(select(Domain).where(Domain.sni_endpoint_id == certificate.id)):
        if domain.hostname not in covered:  # the renewal no longer names it
            domain.sni_endpoint = None
    session.flush()
    return certificate


def associate(
    session: Session, settings: Settings, app: App, domain: str, endpoint: str | None
) -> domains.Hostname:
    """Serve the custom ``domain`` (hostname or id) of ``app`` with the uploaded certificate
    ``endpoint`` (name or id), whichever other certificates cover it; None undoes it.

    The certificate must be one of the app's uploaded ones and cover the hostname, else
    InvalidParams says why, and nothing changes.
    """
    found = domains.find(session, settings, app, domain)
    if found.kind == domains.DEFAULT:
        raise InvalidParams(
            f"{found.hostname} is {app.name}'s default hostname, which the platform's "
            "certificate serves; associate a certificate with a custom domain"
        )
    row = session.get(Domain, found.id)
    assert row is not None
    if endpoint is None:
        row.sni_endpoint = None
    else:
        row.sni_endpoint = _endpoint_for(session, settings, app, row.hostname, endpoint)
    row.updated_at = datetime.now(UTC)
    session.flush()
    return domains.find(session, settings, app, str(row.id))


def _endpoint_for(
    session: Session, settings: Settings, app: App, hostname: str, endpoint: str
) -> Certificate:
    try:
        certificate = find(session, app, endpoint, UPLOADED)
    except NotFound as exc:
        raise InvalidParams(
            f"{endpoint} is not an SNI endpoint of {app.name}: associate one of its uploaded "
            f"certificates (`dockyard certs -a {app.name}` lists them)"
        ) from exc
    if hostname not in filters(tuple(certificate.hostnames), app.id, routes(session, settings)):
        raise InvalidParams(
            f"the certificate {certificate.name} does not cover {hostname}: it is for "
            f"{', '.join(certificate.hostnames)}"
        )
    return certificate


def for_app(session: Session, app: App, source: str | None = None) -> list[Certificate]:
    """The app's certificates, oldest first; of one ``source`` when given."""
    query = select(Certificate).where(Certificate.app_id == app.id)
    if source is not None:
        query = query.where(Certificate.source == source)
    return list(session.scalars(query.order_by(Certificate.created_at, Certificate.name)))


def find(session: Session, app: App, identity: str, source: str | None = None) -> Certificate:
    """One of the app's certificates, by name or id."""
    parsed = parse_uuid(identity)
    for row in for_app(session, app, source):
        if row.name == identity or (parsed is not None and row.id == parsed):
            return row
    raise NotFound(
        f"Couldn't find that SSL certificate: {identity} is not a certificate of {app.name}; "
        f"`dockyard certs -a {app.name}` lists them"
    )


def remove(session: Session, certificate: Certificate) -> None:
    """Stop serving ``certificate`` (after the commit) and forget it, key included; the
    domains associated with it go back to the most specific other certificate."""
    for domain in session.scalars(select(Domain).where(Domain.sni_endpoint_id == certificate.id)):
        domain.sni_endpoint = None
    session.delete(certificate)
    session.flush()


def default(session: Session) -> Certificate | None:
    """The platform's default certificate (``*.<DOCKYARD_DOMAIN>``), if made yet."""
    return session.scalar(select(Certificate).where(Certificate.app_id.is_(None)))


def set_default(
    session: Session,
    settings: Settings,
    chain_pem: str,
    key_pem: str,
    *,
    source: str,
    now: datetime | None = None,
) -> Certificate:
    """Make this the certificate every hostname without one of its own gets (and clients
    without SNI): it must be for ``*.<DOCKYARD_DOMAIN>``."""
    _check_source(source)
    bundle = parse(chain_pem, key_pem, now=now)
    wildcard = f"*.{settings.domain}"
    if wildcard not in bundle.hostnames:
        raise CertificateError(
            f"the default certificate must be for {wildcard} (the apps' default hostnames); "
            f"this one is for {', '.join(bundle.hostnames)}"
        )
    row = default(session)
    if row is None:
        row = Certificate(app_id=None, name=DEFAULT_NAME, source=source)
        session.add(row)
    row.source = source
    _fill(row, bundle)
    row.updated_at = datetime.now(UTC)
    session.flush()
    return row


def served(session: Session, hosts: Mapping[str, object]) -> list[Served]:
    """What the router presents: the default certificate first, then, for each app hostname
    that one of its app's certificates covers, the certificate associated with the domain
    (Heroku's ``sni_endpoint``) if it covers it, else the most specific such certificate.

    ``hosts`` maps each hostname (wildcards too) to its app's id, as the route table has it.
    """
    now = datetime.now(UTC)
    chosen_for: dict[str, uuid.UUID | None] = {
        hostname: endpoint
        for hostname, endpoint in session.execute(
            select(Domain.hostname, Domain.sni_endpoint_id).where(
                Domain.sni_endpoint_id.is_not(None)
            )
        )
    }
    best: dict[str, tuple[tuple[int, int, int, int, float, str], Certificate]] = {}
    for row in session.scalars(select(Certificate).where(Certificate.app_id.is_not(None))):
        assert row.app_id is not None
        for hostname in filters(tuple(row.hostnames), row.app_id, hosts):
            rank = (
                0 if chosen_for.get(hostname) == row.id else 1,  # associated with the domain
                0 if hostname in row.hostnames else 1,  # named exactly, not by a wildcard
                0 if row.expires_at > now else 1,
                _RANK.get(row.source, 3),
                -row.expires_at.timestamp(),
                str(row.id),
            )
            if hostname not in best or rank < best[hostname][0]:
                best[hostname] = (rank, row)
    chosen: dict[uuid.UUID, tuple[Certificate, list[str]]] = {}
    for hostname, (_rank, row) in sorted(best.items()):
        chosen.setdefault(row.id, (row, []))[1].append(hostname)
    found = []
    platform = default(session)
    if platform is not None:
        found.append(Served(DEFAULT_NAME, platform.chain_pem + platform.key_pem, ()))
    for row, names in sorted(chosen.values(), key=lambda item: str(item[0].id)):
        found.append(Served(str(row.id), row.chain_pem + row.key_pem, tuple(names)))
    return found


def expiring(row: Certificate, days: int, now: datetime | None = None) -> bool:
    return row.expires_at - (now or datetime.now(UTC)) < timedelta(days=days)


def _checked(session: Session, settings: Settings, app: App, bundle: Bundle) -> Bundle:
    if not filters(bundle.hostnames, app.id, routes(session, settings)):
        names = [h.hostname for h in domains.hostnames(session, settings, app)]
        raise CertificateError(
            f"the certificate is for {', '.join(bundle.hostnames)}, none of which "
            f"{app.name} is served at ({', '.join(names)}); add the domain first with "
            f"`dockyard domains:add HOSTNAME -a {app.name}`"
        )
    return bundle


def _fill(row: Certificate, bundle: Bundle) -> None:
    row.chain_pem = bundle.chain_pem
    row.key_pem = bundle.key_pem
    row.hostnames = list(bundle.hostnames)
    row.subject = bundle.subject[:500]
    row.issuer = bundle.issuer[:500]
    row.starts_at = bundle.starts_at
    row.expires_at = bundle.expires_at


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"certificate source {source!r} is not one of {SOURCES}")


def _new_name(session: Session) -> str:
    """Heroku's kind of SNI endpoint name: a word and a number, such as ``sloop-41357``."""
    for _ in range(20):
        name = f"{secrets.choice(_WORDS)}-{secrets.randbelow(90000) + 10000}"
        if session.scalar(select(Certificate.id).where(Certificate.name == name)) is None:
            return name
    raise InvalidParams("could not find a free certificate name; give one")
