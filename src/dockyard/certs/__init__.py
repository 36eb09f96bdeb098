"""TLS certificates: checked, stored, and served by the router by SNI.

The API other parts use (``session`` is a store session; nothing is served before it commits)::

    save(session, settings, app, chain_pem, key_pem, *, source="uploaded", name=None)
        -> Certificate          check (pem.parse, and that it serves one of the app's
                                hostnames) and store an app's certificate; source is
                                "uploaded" (certs:add) or "acm" (issued by an ACME CA)
    update(session, settings, certificate, chain_pem, key_pem) -> Certificate
                                replace its chain and key in place (renewal, certs:update)
    for_app(session, app, source=None) -> list[Certificate]
    find(session, app, name_or_id, source=None) -> Certificate      (or NotFound)
    remove(session, certificate)
    associate(session, settings, app, domain, endpoint_or_None) -> Hostname
                                serve a custom domain with one of the app's uploaded
                                certificates before any other (Heroku's sni_endpoint)
    default(session) -> Certificate | None                          the platform's default
    set_default(session, settings, chain_pem, key_pem, *, source) -> Certificate
                                the certificate for *.<DOCKYARD_DOMAIN> and clients
                                without SNI (an ACME DNS-01 wildcard: source="acm")
    parse(chain_pem, key_pem) -> Bundle                              check only
    await apply_now(router)     make the router serve the store's certificates at once

Every commit that touches a :class:`~dockyard.store.Certificate` (or an app or domain) pokes
the router, which then serves the change through HAProxy's runtime API without a reload;
:func:`apply_now` is for callers that must know it is served (an ACME client before it asks
the CA to validate, a test). Private keys never leave the platform: the API shows chains
only, and ``Bundle``'s and ``Certificate``'s ``repr`` leave the key out.

Errors::

    InvalidParams
    └── CertificateError    a chain or key that cannot be served; the message says why
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.certs.localca import LocalCA
from dockyard.certs.pem import Bundle, CertificateError, name_covers, parse
from dockyard.certs.store import (
    ACM,
    DEFAULT_NAME,
    PLATFORM,
    SOURCES,
    UPLOADED,
    Served,
    associate,
    default,
    filters,
    find,
    for_app,
    remove,
    routes,
    save,
    served,
    set_default,
    update,
)
from dockyard.store import Certificate

if TYPE_CHECKING:
    from dockyard.router import Router


async def apply_now(router: Router) -> None:
    """Serve the store's certificates now (the commit's poke would, within moments)."""
    await router.sync()


__all__ = [
    "ACM",
    "DEFAULT_NAME",
    "PLATFORM",
    "SOURCES",
    "UPLOADED",
    "Bundle",
    "Certificate",
    "CertificateError",
    "LocalCA",
    "Served",
    "apply_now",
    "associate",
    "default",
    "filters",
    "find",
    "for_app",
    "name_covers",
    "parse",
    "remove",
    "routes",
    "save",
    "served",
    "set_default",
    "update",
]
