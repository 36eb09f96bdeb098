"""The route table: what the router serves, as plain values a driver turns into proxy state.

:func:`read_table` builds it from the state store (apps, their hostnames, maintenance flags,
whether web dynos should run) and the reconciler's healthy web endpoints. Drivers compare
tables by value, so applying the same table twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from dockyard import certs, domains
from dockyard.certs import Served
from dockyard.settings import Settings
from dockyard.store import App, Database, Domain, Formation, Release

# What the router answers for an app that has no healthy web dyno to send a request to.
WEB = "web"  # web dynos should run: none up means they crashed (H10)
IDLE = "idle"  # no web dynos should run, or nothing is deployed yet (H14)
MAINTENANCE = "maintenance"  # every request gets the maintenance page (H80)


@dataclass(frozen=True, order=True)
class Upstream:
    """Where a request may go: a web dyno's address, and its name for the router's log."""

    host: str
    port: int
    dyno: str = field(default="", compare=False)


@dataclass(frozen=True)
class AppRoute:
    app_id: str
    name: str
    hostnames: frozenset[str]
    upstreams: frozenset[Upstream]
    state: str = WEB  # WEB, IDLE or MAINTENANCE
    https_only: bool = False  # HTTP requests are redirected to HTTPS
    # The app's own timeouts in seconds (None: the platform's): to the response's first byte
    # (H12), and the idle window of an upgraded connection (a WebSocket).
    timeout: int | None = None
    idle_timeout: int | None = None

    @property
    def backend(self) -> str:
        """The app's name inside the proxy: by id, so that a rename changes only hostnames."""
        return f"app-{self.app_id}"


@dataclass(frozen=True)
class RouteTable:
    apps: tuple[AppRoute, ...] = ()
    api_hostname: str | None = None  # api.<domain>: the platform's own API
    api: Upstream | None = None
    # What HTTPS serves, by SNI: the default certificate first (see dockyard.certs.served).
    certificates: tuple[Served, ...] = ()

    def hosts(self) -> dict[str, str]:
        """Hostname (wildcards too) → backend; the API's hostname wins over an app's."""
        found = {name: route.backend for route in self.apps for name in sorted(route.hostnames)}
        if self.api_hostname is not None and self.api is not None:
            found[self.api_hostname] = API_BACKEND
        return found

    def backend_for(self, host: str) -> str | None:
        """The backend a request for ``host`` goes to, by the router's rules (most specific)."""
        hosts = self.hosts()
        name = domains.resolve(hosts, host.partition(":")[0])
        return hosts[name] if name is not None else None

    def by_backend(self) -> dict[str, AppRoute]:
        return {route.backend: route for route in self.apps}


API_BACKEND = "_api"

EndpointsOf = Callable[[uuid.UUID], Iterable[Upstream]]


def read_table(
    database: Database, settings: Settings, endpoints: EndpointsOf | None = None
) -> RouteTable:
    """The route table now: every app with its hostnames, state and healthy web endpoints."""
    with database.transaction() as session:
        apps = list(session.scalars(select(App).order_by(App.name)))
        custom: dict[uuid.UUID, set[str]] = {}
        for domain in session.scalars(select(Domain)):
            custom.setdefault(domain.app_id, set()).add(domain.hostname)
        web = {
            row.app_id: row.quantity
            for row in session.scalars(select(Formation).where(Formation.type == "web"))
        }
        deployed = set(
            session.scalars(
                select(Release.app_id).where(
                    Release.current.is_(True), Release.slug_id.is_not(None)
                )
            )
        )
        routes = []
        for app in apps:
            if app.maintenance:
                state = MAINTENANCE
            elif app.id in deployed and web.get(app.id, 0) > 0:
                state = WEB
            else:
                state = IDLE
            upstreams = frozenset(endpoints(app.id)) if endpoints is not None else frozenset()
            hostnames = {domains.default_hostname(settings, app.name), *custom.get(app.id, ())}
            routes.append(
                AppRoute(
                    str(app.id),
                    app.name,
                    frozenset(hostnames),
                    upstreams,
                    state,
                    app.https_only,
                    timeout=app.router_timeout,
                    idle_timeout=app.router_idle_timeout,
                )
            )
        served = certs.served(
            session, {name: route.app_id for route in routes for name in route.hostnames}
        )
    return RouteTable(
        apps=tuple(routes),
        api_hostname=domains.api_hostname(settings),
        api=Upstream(_reachable(settings.api_host), settings.api_port, "api"),
        certificates=tuple(served),
    )


def _reachable(host: str) -> str:
    """The address the proxy connects to for a listener bound to ``host``."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - matching the wildcard, not binding to it
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
