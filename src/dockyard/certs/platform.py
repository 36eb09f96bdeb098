"""The platform's default certificate, for ``*.<DOCKYARD_DOMAIN>``, settled at start and kept.

In order: the operator's files (``DOCKYARD_TLS_CERT_FILE`` and ``DOCKYARD_TLS_KEY_FILE``); a
default issued by an ACME CA (``source: acm``, which the certificate manager keeps); else one
issued by the local CA, made again when it is missing, for another domain, or near expiry.

Clients accept a wildcard only two labels up (``*.example.com``, never ``*.localhost``): for a
one-label domain such as ``localhost``, the local CA's certificate names every app's default
hostname, and :class:`Keeper` issues a new one when an app is created or renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import domains
from dockyard.certs import localca
from dockyard.certs.pem import parse
from dockyard.certs.store import ACM, PLATFORM, UPLOADED, default, expiring, set_default
from dockyard.errors import DockyardError, SettingsError
from dockyard.settings import Settings
from dockyard.store import App, Database

log = logging.getLogger("dockyard.certs")


@dataclass(frozen=True)
class Default:
    """What serves as the default certificate after :func:`prepare`."""

    source: str
    hostnames: tuple[str, ...]
    ca_path: str | None  # the local CA's certificate, when it issued the default


def local_ca(settings: Settings) -> localca.LocalCA:
    return localca.LocalCA(settings.data_dir / "tls")


def prepare(database: Database, settings: Settings) -> Default:
    """Make sure a default certificate is stored, as the module's docstring says."""
    ca = local_ca(settings)
    with database.transaction() as session:
        current = default(session)
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            chain = settings.tls_cert_file.read_text(errors="replace")
            key = settings.tls_key_file.read_text(errors="replace")
            try:
                bundle = parse(chain, key)
                if current is None or current.chain_pem != bundle.chain_pem:
                    current = set_default(session, settings, chain, key, source=UPLOADED)
            except DockyardError as exc:
                raise SettingsError(
                    f"DOCKYARD_TLS_CERT_FILE={settings.tls_cert_file}: {exc.message}"
                ) from exc
            return Default(UPLOADED, tuple(current.hostnames), None)
        wanted = f"*.{settings.domain}"
        names = local_names(session, settings)
        keep = current is not None and (
            current.source == ACM
            or (
                current.source == PLATFORM
                and set(names) <= set(current.hostnames)
                and not expiring(current, localca.RENEW_DAYS)
                and ca.issued(current.chain_pem)
            )
        )
        if current is None or not keep:
            made = ca.ensure()
            chain, key = ca.issue(names)
            current = set_default(session, settings, chain, key, source=PLATFORM)
            if made:
                log.info("made the local certificate authority %s", ca.certificate_path)
            log.info("the local CA issued the default certificate for %s", wanted)
        return Default(
            current.source,
            tuple(current.hostnames),
            str(ca.certificate_path) if current.source == PLATFORM else None,
        )


def local_names(session: Session, settings: Settings) -> list[str]:
    """The names the local CA's default certificate must have."""
    names = [f"*.{settings.domain}", settings.domain]
    if "." not in settings.domain:
        names.append(domains.api_hostname(settings))
        names += [
            domains.default_hostname(settings, name)
            for name in session.scalars(select(App.name).order_by(App.name))
        ]
    return names


class Keeper:
    """Keeps the default certificate current while the server runs: after an app is created
    or renamed (:meth:`poke`), and every ``interval`` seconds (renewal near expiry)."""

    def __init__(self, database: Database, settings: Settings, interval: float = 3600.0) -> None:
        self.database = database
        self.settings = settings
        self.interval = interval
        self._poked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="default-certificate")

    def poke(self) -> None:
        """Check soon (the apps changed). Safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._poked.set)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poked.wait()
            self._poked.clear()
            try:
                await asyncio.to_thread(prepare, self.database, self.settings)
            except DockyardError as exc:
                log.warning("could not renew the default certificate: %s", exc.message)
