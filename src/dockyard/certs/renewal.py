"""Automated certificate management (ACM): a certificate for every custom domain, kept renewed.

For each app with ACM enabled, :class:`Renewer` orders a certificate from the ACME CA for
every custom domain that has none, or whose certificate expires within 30 days
(:data:`RENEW_BEFORE`), and saves it where the router serves it from. Each domain has its
own order, so one that fails (its DNS does not point here, the CA refuses it, the CA is
down) fails alone: it gets ``acm_status`` ``failed`` with the CA's reason, and is tried
again with a growing back-off; other domains, and deploys, go on.

It runs as a task of ``dockyard server``: a pass when the store changes (a domain added,
ACM enabled or refreshed) and at the next due time (a renewal, a retry), at least every
hour. Orders run as tasks of their own, a few at a time. The clocks are passed in: ``now``
for certificates' dates, ``clock`` for back-off, so both are tested on fake ones.

Statuses (Heroku's ``acm_status``): none while ACM is off; ``pending`` until the first
certificate is issued; ``cert issued``; ``failed`` (with ``acm_status_reason``) until an
order succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import certs
from dockyard.backoff import Backoff, Clock
from dockyard.certs.acme import AcmeClient, AcmeError, DnsResponder, Issued, Responder
from dockyard.certs.acme_dns import DnsHook
from dockyard.errors import DockyardError
from dockyard.settings import Settings
from dockyard.store import App, Certificate, Database, Domain

if TYPE_CHECKING:
    from dockyard.router import Router

log = logging.getLogger("dockyard.certs.renewal")

PENDING = "pending"
ISSUED = "cert issued"
FAILED = "failed"
RENEW_BEFORE = datetime.timedelta(days=30)
INTERVAL = 3600.0  # the longest wait between passes
CONCURRENCY = 4  # orders at a time
# Retries of a failed domain: 1 minute, 2, 4, ... up to 6 hours.
RETRY_FIRST = 60.0
RETRY_CAP = 6 * 3600.0
WILDCARD_REASON = (
    "wildcard domains need a DNS-01 challenge, which automated certificates do not use; "
    "upload a certificate for it with certs:add"
)

Now = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Issuer(Protocol):
    """Who orders certificates: :class:`~dockyard.certs.acme.AcmeClient`, or a fake."""

    async def issue(
        self, hostname: str, responder: Responder, *, dns: DnsResponder | None = None
    ) -> Issued: ...


class Certificates(Protocol):
    """Where issued certificates go: the certificate store, which the router serves from."""

    def expiry(self, session: Session, domain: Domain) -> datetime.datetime | None:
        """When the automated certificate for ``domain`` expires; None when it has none."""

    def save(self, session: Session, domain: Domain, issued: Issued) -> None:
        """Keep ``issued`` as ``domain``'s automated certificate (replacing the old one)."""

    def prune(self, session: Session, app: App, hostnames: set[str]) -> None:
        """Forget the app's automated certificates for hostnames it no longer has."""

    def default(self, session: Session) -> tuple[str, datetime.datetime, Sequence[str]] | None:
        """The platform's default certificate's source, expiry and hostnames; None when it
        has none."""

    def save_default(self, session: Session, issued: Issued) -> None:
        """Make ``issued`` (for ``*.<DOCKYARD_DOMAIN>``) the platform's default certificate."""


class StoredCertificates:
    """The certificate store (:mod:`dockyard.certs`) as the renewer uses it: one ``acm``
    certificate per domain, replaced in place when renewed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _of(self, session: Session, domain: Domain) -> Certificate | None:
        rows = certs.for_app(session, domain.app, source=certs.ACM)
        return next((row for row in rows if row.hostnames == [domain.hostname]), None)

    def expiry(self, session: Session, domain: Domain) -> datetime.datetime | None:
        row = self._of(session, domain)
        return row.expires_at if row is not None else None

    def save(self, session: Session, domain: Domain, issued: Issued) -> None:
        row = self._of(session, domain)
        if row is None:
            certs.save(
                session, self.settings, domain.app, issued.chain_pem, issued.key_pem,
                source=certs.ACM,
            )  # fmt: skip
        else:
            certs.update(session, self.settings, row, issued.chain_pem, issued.key_pem)

    def prune(self, session: Session, app: App, hostnames: set[str]) -> None:
        for row in certs.for_app(session, app, source=certs.ACM):
            if not set(row.hostnames) & hostnames:
                certs.remove(session, row)

    def default(self, session: Session) -> tuple[str, datetime.datetime, Sequence[str]] | None:
        row = certs.default(session)
        return (row.source, row.expires_at, row.hostnames) if row is not None else None

    def save_default(self, session: Session, issued: Issued) -> None:
        certs.set_default(
            session, self.settings, issued.chain_pem, issued.key_pem, source=certs.ACM
        )


def forget_certificates(session: Session, app: App) -> None:
    """ACM was disabled: the app's automated certificates are no longer served."""
    for row in certs.for_app(session, app, source=certs.ACM):
        certs.remove(session, row)


def start(settings: Settings, database: Database, router: Router) -> Renewer:
    """The renewer of ``dockyard server``: the settings' CA, answering through ``router``.

    Call :meth:`Renewer.start` next; every commit that touches an app or a domain pokes it.
    """
    issuer = AcmeClient(
        settings.acme_directory,
        settings.data_dir / "acme",
        email=settings.acme_email,
        ca_file=settings.acme_ca_file,
    )
    wildcard = None
    if settings.acme_dns_hook is not None:
        if settings.tls_cert_file is not None:
            log.info("DOCKYARD_TLS_CERT_FILE is the default certificate: the DNS hook is unused")
        elif "." not in settings.domain:
            log.warning(
                "DOCKYARD_ACME_DNS_HOOK is set, but no CA issues *.%s (a one-label domain): "
                "the local CA's certificate stays the default",
                settings.domain,
            )
        else:
            wildcard = f"*.{settings.domain}"
    renewer = Renewer(
        database,
        issuer,
        router,
        StoredCertificates(settings),
        dns=DnsHook(settings.acme_dns_hook) if settings.acme_dns_hook else None,
        wildcard=wildcard,
        serve=functools.partial(certs.apply_now, router),
        default_state=settings.data_dir / "acme" / "default-certificate.json",
    )
    database.on_commit((App, Domain), renewer.poke)
    return renewer


@dataclasses.dataclass(frozen=True)
class _Work:
    domain_id: uuid.UUID  # DEFAULT for the platform's default certificate
    hostname: str
    status: str | None
    expires: datetime.datetime | None
    # After a failure: how many in a row, and when to order again (kept in the store, so
    # that a restart of the control plane does not retry at once).
    failures: int = 0
    retry_at: datetime.datetime | None = None


DEFAULT = uuid.UUID(int=0)  # the default certificate's place among the domains


def _aware(moment: datetime.datetime | None) -> datetime.datetime | None:
    """A stored time as UTC (SQLite gives it back naive)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment


class Renewer:
    """Keeps a certificate on every custom domain of apps with ACM (see the module)."""

    def __init__(
        self,
        database: Database,
        issuer: Issuer,
        responder: Responder,
        certificates: Certificates,
        *,
        now: Now = utcnow,
        clock: Clock = time.monotonic,
        interval: float = INTERVAL,
        concurrency: int = CONCURRENCY,
        backoff: Backoff | None = None,
        dns: DnsResponder | None = None,
        wildcard: str | None = None,
        serve: Callable[[], Awaitable[None]] | None = None,
        default_state: Path | None = None,
    ) -> None:
        self.database = database
        self.issuer = issuer
        self.responder = responder
        self.certificates = certificates
        self.now = now
        self.clock = clock
        self.interval = interval
        self.backoff = backoff or Backoff(first=RETRY_FIRST, cap=RETRY_CAP, clock=clock)
        # The default certificate, *.<DOCKYARD_DOMAIN>, by DNS-01 through the operator's hook;
        # its status lives here (it has no domain row): PENDING, ISSUED or FAILED and why.
        self.dns = dns
        self.wildcard = wildcard if dns is not None else None
        self.default_status: tuple[str | None, str | None] = (None, None)
        self.serve = serve  # makes the router serve the store's certificates now
        self._slots = asyncio.Semaphore(concurrency)
        self._orders: dict[uuid.UUID, asyncio.Task[None]] = {}
        # The default certificate's failures in a row and next attempt (it has no row): kept
        # in ``default_state`` (a JSON file), so that a restart does not order it at once.
        self._default_failures: tuple[int, datetime.datetime | None] = (0, None)
        self._default_state = default_state
        self._load_default_state()
        self._poked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="acm-renewer")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._orders.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def poke(self) -> None:
        """Look at the domains soon: the store changed. Safe to call from any thread."""
        if self._loop is None:
            self._poked.set()
        else:
            self._loop.call_soon_threadsafe(self._poked.set)

    async def idle(self) -> None:
        """Wait for the orders under way (for tests and shutdown)."""
        while self._orders:
            await asyncio.gather(*self._orders.values(), return_exceptions=True)

    async def run_pass(self) -> float:
        """Start an order for each domain that needs one; the seconds until the next is due."""
        work = await asyncio.to_thread(self._read)
        now = self.now()
        wait = self.interval
        for item in work:
            if item.domain_id in self._orders:
                continue
            due = self._due_in(item, now)
            if due > 0:
                wait = min(wait, due)
                continue
            self._orders[item.domain_id] = asyncio.create_task(
                self._order(item), name=f"acm-{item.hostname}"
            )
        return wait

    def _due_in(self, item: _Work, now: datetime.datetime) -> float:
        """Seconds until ``item`` should be ordered; 0 or less: now."""
        if item.status == FAILED and item.retry_at is not None:
            return (item.retry_at - now).total_seconds()
        if item.expires is None or item.status != ISSUED:
            return 0.0
        return (item.expires - RENEW_BEFORE - now).total_seconds()

    def _read(self) -> list[_Work]:
        """Every custom domain of apps with ACM, with its status and certificate's expiry."""
        work = []
        with self.database.transaction() as session:
            rows = list(
                session.execute(
                    select(Domain).join(App, App.id == Domain.app_id).where(App.acm.is_(True))
                ).scalars()
            )
            hostnames: dict[uuid.UUID, set[str]] = {}
            for domain in rows:
                hostnames.setdefault(domain.app_id, set()).add(domain.hostname)
            for app in session.scalars(select(App).where(App.acm.is_(True))):
                # Removed domains: their certificates go too.
                self.certificates.prune(session, app, hostnames.get(app.id, set()))
            if self.wildcard is not None:
                found = self.certificates.default(session)
                if found is None or found[0] != certs.UPLOADED:  # the operator's stays
                    source, expires, names = found or (None, None, ())
                    # The CA's, for this domain (not one before DOCKYARD_DOMAIN changed).
                    ours = source == certs.ACM and self.wildcard in names
                    status = self.default_status[0]
                    if ours:
                        status = ISSUED
                    elif status == ISSUED:
                        status = None  # ours was replaced since: order it again
                    failures, retry_at = self._default_failures if status == FAILED else (0, None)
                    work.append(
                        _Work(DEFAULT, self.wildcard, status, _aware(expires), failures, retry_at)
                    )
            for domain in rows:
                if domain.hostname.startswith("*."):
                    if domain.acm_status != FAILED:
                        domain.acm_status = FAILED
                        domain.acm_status_reason = WILDCARD_REASON
                    continue
                expires = _aware(self.certificates.expiry(session, domain))
                # Enabled or refreshed since (PENDING): the back-off starts over.
                failed = domain.acm_status == FAILED
                work.append(
                    _Work(
                        domain.id,
                        domain.hostname,
                        domain.acm_status,
                        expires,
                        domain.acm_failures if failed else 0,
                        _aware(domain.acm_retry_at) if failed else None,
                    )
                )
        return work

    async def _order(self, item: _Work) -> None:
        try:
            async with self._slots:
                if item.status is None:
                    await asyncio.to_thread(self._mark, item.domain_id, PENDING, None)
                log.info("ordering a certificate for %s", item.hostname)
                dns = self.dns if item.domain_id == DEFAULT else None
                try:
                    issued = await self.issuer.issue(item.hostname, self.responder, dns=dns)
                except AcmeError as exc:
                    await self._failed(item, exc.reason, exc.retry_after)
                    return
                except DockyardError as exc:  # the router could not publish the challenge
                    await self._failed(item, exc.message, None)
                    return
                if await asyncio.to_thread(self._save, item.domain_id, issued):
                    # "cert issued" once the router serves it, not just once it is stored.
                    await self._serve()
                    await asyncio.to_thread(self._mark, item.domain_id, ISSUED, None)
                log.info("certificate issued for %s (until %s)", item.hostname, issued.not_after)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug: this domain fails, and the others go on.
            log.exception("ordering a certificate for %s failed", item.hostname)
            await self._failed(item, "the platform failed on this order; see the server log", None)
        finally:
            self._orders.pop(item.domain_id, None)
            self.poke()

    async def _failed(self, item: _Work, reason: str, retry_after: float | None) -> None:
        count = item.failures + 1
        # The first failure waits `first` too: an order retried at once fails the same way.
        wait = max(self.backoff.wait_after(count + 1), retry_after or 0.0)
        retry_at = self.now() + datetime.timedelta(seconds=wait)
        log.warning(
            "no certificate for %s (attempt %d, next in %.0fs): %s",
            item.hostname,
            count,
            wait,
            reason,
        )
        with contextlib.suppress(DockyardError):
            await asyncio.to_thread(
                self._mark, item.domain_id, FAILED, reason, failures=(count, retry_at)
            )

    def _mark(
        self,
        domain_id: uuid.UUID,
        status: str,
        reason: str | None,
        *,
        failures: tuple[int, datetime.datetime | None] = (0, None),
    ) -> None:
        """Set a domain's status and reason, and its failures in a row and next attempt."""
        if domain_id == DEFAULT:
            self.default_status = (status, reason)
            self._default_failures = failures
            self._save_default_state()
            return
        with self.database.transaction() as session:
            domain = session.get(Domain, domain_id)
            if domain is None or not domain.app.acm:
                return  # removed, or ACM disabled, meanwhile
            if (domain.acm_status, domain.acm_status_reason) != (status, reason):
                domain.acm_status = status
                domain.acm_status_reason = reason
            if (domain.acm_failures, _aware(domain.acm_retry_at)) != failures:
                domain.acm_failures, domain.acm_retry_at = failures

    def _load_default_state(self) -> None:
        if self._default_state is None:
            return
        try:
            saved = json.loads(self._default_state.read_text())
            status, reason = saved["status"], saved["reason"]
            count, retry_at = int(saved["failures"]), saved["retry_at"]
            when = datetime.datetime.fromisoformat(retry_at) if retry_at else None
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self._default_state, exc)
            return
        self.default_status = (status, reason)
        self._default_failures = (count, _aware(when))

    def _save_default_state(self) -> None:
        if self._default_state is None:
            return
        status, reason = self.default_status
        count, when = self._default_failures
        saved = {
            "status": status,
            "reason": reason,
            "failures": count,
            "retry_at": when.isoformat() if when else None,
        }
        try:
            self._default_state.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._default_state.with_suffix(".tmp")
            temporary.write_text(json.dumps(saved))
            temporary.replace(self._default_state)
        except OSError as exc:
            log.warning("could not keep the default certificate's state: %s", exc)

    def _save(self, domain_id: uuid.UUID, issued: Issued) -> bool:
        """Store ``issued``; False when its domain went, or ACM was disabled, meanwhile."""
        with self.database.transaction() as session:
            if domain_id == DEFAULT:
                self.certificates.save_default(session, issued)
                return True
            domain = session.get(Domain, domain_id)
            if domain is None or not domain.app.acm or domain.hostname != issued.hostname:
                return False  # removed, or ACM disabled, while the CA was at work
            self.certificates.save(session, domain, issued)
            return True

    async def _serve(self) -> None:
        if self.serve is None:
            return
        try:
            await self.serve()
        except DockyardError as exc:
            # The commit poked the router: it serves the certificate at its next pass.
            log.warning("the router could not serve the new certificate yet: %s", exc.message)

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.run_pass()
            except Exception:
                # The next poke or interval tries again; a store hiccup must not end ACM.
                log.exception("the certificate pass failed")
                wait = 60.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._poked.wait()
            self._poked.clear()
