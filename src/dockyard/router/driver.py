"""The router driver interface: one narrow class between the route table and a proxy.

:class:`~dockyard.router.haproxy.HAProxy` is the real driver; :class:`MemoryDriver` keeps the
table in memory and answers which upstreams a host would reach, for tests. Another proxy
would be one more class with these methods.
"""

from __future__ import annotations

from typing import Protocol

from dockyard.errors import DockyardError
from dockyard.router.table import RouteTable, Upstream


class RouterError(DockyardError):
    """The proxy could not be started, configured or reached."""

    id = "router_error"


class RouterDriver(Protocol):
    async def start(self, table: RouteTable) -> bool:
        """Start the proxy serving ``table``, or adopt the one that runs; True if adopted."""

    async def apply(self, table: RouteTable) -> int:
        """Make the proxy serve ``table``; the changes it took (0: it served it already)."""

    async def upstreams(self) -> dict[str, frozenset[Upstream]]:
        """Where each app backend sends requests now."""

    async def drain(self, backend: str, upstream: Upstream, timeout: float) -> int:
        """Stop sending ``upstream`` new requests and wait for those in flight (or timeout);
        the requests still in flight when it returns."""

    async def set_challenge(self, token: str, answer: str | None) -> None:
        """Answer the ACME HTTP-01 challenge ``token`` with ``answer`` (None: stop), ahead
        of any app, for every hostname."""

    async def close(self) -> None:
        """Stop driving the proxy; the proxy itself keeps serving."""


class MemoryDriver:
    """A driver without a proxy: the last table applied, and what was drained."""

    def __init__(self) -> None:
        self.table = RouteTable()
        self.applied = 0
        self.drained: list[tuple[str, Upstream]] = []
        self.challenges: dict[str, str] = {}

    async def start(self, table: RouteTable) -> bool:
        self.table = table
        return False

    async def apply(self, table: RouteTable) -> int:
        if table == self.table:
            return 0
        self.table = table
        self.applied += 1
        return 1

    async def upstreams(self) -> dict[str, frozenset[Upstream]]:
        return {route.backend: route.upstreams for route in self.table.apps}

    async def drain(self, backend: str, upstream: Upstream, timeout: float) -> int:
        self.drained.append((backend, upstream))
        return 0

    async def set_challenge(self, token: str, answer: str | None) -> None:
        if answer is None:
            self.challenges.pop(token, None)
        else:
            self.challenges[token] = answer

    async def close(self) -> None:
        pass
