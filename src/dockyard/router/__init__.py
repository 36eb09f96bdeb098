"""The router: sends each request to a healthy web dyno of the app its host names.

:class:`Router` keeps a proxy (through a :class:`~dockyard.router.driver.RouterDriver`, HAProxy
by default) serving the route table: every app's hostnames, its state (maintenance, web
dynos wanted or not) from the store, and its healthy web endpoints from the reconciler. It
applies the table when the store or the endpoints change and every few seconds besides (which
also restarts a proxy killed from outside), drains a web dyno before the reconciler stops it,
and turns the proxy's per-request records into router log lines.

Errors::

    DockyardError
    └── RouterError        the proxy could not be started, configured or reached
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from dockyard.backoff import Clock
from dockyard.router.driver import MemoryDriver, RouterDriver, RouterError
from dockyard.router.logs import LogReceiver, Request
from dockyard.router.table import AppRoute, RouteTable, Upstream, read_table
from dockyard.settings import Settings
from dockyard.store import Database

__all__ = [
    "AppRoute",
    "MemoryDriver",
    "RouteTable",
    "Router",
    "RouterDriver",
    "RouterError",
    "Upstream",
]

log = logging.getLogger("dockyard.router")


class LineSink(Protocol):
    def __call__(self, app_id: str, lines: Sequence[tuple[str, int | None]]) -> None:
        """Router log lines of an app, each with when it was logged (microseconds since the
        epoch; None: now); from the router's log thread."""


class _Endpoint(Protocol):
    @property
    def dyno(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class EndpointSource(Protocol):
    """What the router needs of the reconciler."""

    def endpoints(self, app_id: uuid.UUID) -> Iterable[_Endpoint]: ...

    async def endpoints_changed(self, seen: int) -> int: ...


class Router:
    """Keeps the proxy serving the route table (see the module's docstring)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        driver: RouterDriver,
        *,
        grace: float = 30.0,
        interval: float = 5.0,
        hold: float = 0.0,
        log_socket: Path | None = None,
        sink: LineSink | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.database = database
        self.settings = settings
        self.driver = driver
        self.grace = grace
        self.interval = interval
        self.hold = hold
        self.clock = clock
        self.sink = sink
        self.source: EndpointSource | None = None
        self.table = RouteTable()
        self._log = LogReceiver(log_socket, self._record) if log_socket is not None else None
        self._lock = asyncio.Lock()
        self._poked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._hold_until = 0.0
        self._settled: set[str] = set()  # apps the reconciler has reported endpoints for
        self._dynos: dict[tuple[str, int], str] = {}  # (backend, port) → web.1, for log lines
        self._backends: dict[str, AppRoute] = {}

    def follow(self, source: EndpointSource) -> None:
        """Take healthy web endpoints from ``source`` (the reconciler)."""
        self.source = source

    async def start(self) -> None:
        """Start or adopt the proxy and serve the current table; returns once it does."""
        self._loop = asyncio.get_running_loop()
        if self._log is not None:
            await self._log.start()
        table = await self._read()
        if await self.driver.start(table):
            # An adopted proxy serves dynos that the reconciler has not re-adopted yet: keep
            # them until it reports the app's endpoints (or the hold runs out).
            self._hold_until = self.clock() + self.hold
        await self.sync()
        self._tasks = [asyncio.create_task(self._run(), name="router")]
        if self.source is not None:
            self._tasks.append(asyncio.create_task(self._watch(self.source), name="router-watch"))

    async def close(self) -> None:
        """Stop following changes; the proxy keeps serving what it serves."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._log is not None:
            self._log.close()
        await self.driver.close()

    def poke(self) -> None:
        """Apply the table soon: the store changed. Safe to call from any thread."""
        if self._loop is None:
            self._poked.set()
        else:
            self._loop.call_soon_threadsafe(self._poked.set)

    async def sync(self) -> int:
        """Apply the route table now; the changes it took."""
        async with self._lock:
            table = await self._read()
            for route in table.apps:
                if route.upstreams:
                    self._settled.add(route.app_id)
            if self.clock() < self._hold_until:
                table = await self._held(table)
            # Log lines name the app from these: they know the table's apps and dynos before
            # HAProxy serves them (a new app's requests are answered as soon as it does).
            backends = table.by_backend()
            self._backends = {**self._backends, **backends}
            for route in table.apps:
                for upstream in route.upstreams:
                    if upstream.dyno:
                        self._dynos[(route.backend, upstream.port)] = upstream.dyno
            changes = await self.driver.apply(table)
            self.table = table
            self._backends = backends
            return changes

    async def publish_challenge(self, token: str, key_authorization: str) -> None:
        """Answer ``http://<any host>/.well-known/acme-challenge/<token>`` (ACME HTTP-01)."""
        await self.driver.set_challenge(token, key_authorization)

    async def withdraw_challenge(self, token: str) -> None:
        await self.driver.set_challenge(token, None)

    async def drain(self, app_id: str, endpoint: _Endpoint) -> None:
        """Before the reconciler stops a web dyno: no new requests, and the others finished."""
        self._settled.add(app_id)
        upstream = Upstream(endpoint.host, endpoint.port, endpoint.dyno)
        try:
            # The table without the dyno, and with the dynos that replace it, first.
            await self.sync()
            left = await self.driver.drain(f"app-{app_id}", upstream, self.grace)
        except RouterError as exc:
            log.warning("could not drain %s: %s", endpoint.dyno, exc.message)
            return
        if left:
            log.info("%s still had %d requests in flight when its drain ran out", endpoint, left)

    async def _read(self) -> RouteTable:
        table = await asyncio.to_thread(read_table, self.database, self.settings)
        source = self.source
        if source is None:
            return table

        def upstreams(route: AppRoute) -> frozenset[Upstream]:
            return frozenset(
                Upstream(e.host, e.port, e.dyno) for e in source.endpoints(uuid.UUID(route.app_id))
            )

        return dataclasses.replace(
            table,
            apps=tuple(dataclasses.replace(r, upstreams=upstreams(r)) for r in table.apps),
        )

    async def _held(self, table: RouteTable) -> RouteTable:
        serving = await self.driver.upstreams()
        return dataclasses.replace(
            table,
            apps=tuple(
                dataclasses.replace(r, upstreams=serving.get(r.backend, frozenset()))
                if not r.upstreams and r.app_id not in self._settled
                else r
                for r in table.apps
            ),
        )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poked.wait()
            self._poked.clear()
            try:
                await self.sync()
            except RouterError as exc:
                log.warning("the router could not apply the route table: %s", exc.message)
            except Exception:
                # The next poke or interval tries again; a store hiccup must not end routing.
                log.exception("the router could not apply the route table")

    async def _watch(self, source: EndpointSource) -> None:
        seen = 0
        while True:
            seen = await source.endpoints_changed(seen)
            self.poke()

    def _record(self, requests: list[Request]) -> None:
        if self.sink is None:
            return
        backends, dynos = self._backends, self._dynos
        by_app: dict[str, list[tuple[str, int | None]]] = {}
        for request in requests:
            route = backends.get(request.backend)
            if route is None:
                continue  # an unknown host, or the API: no app's log
            dyno = dynos.get((request.backend, request.server_port or 0), "")
            line = (request.line(dyno or "web"), request.at)
            lines = by_app.get(route.app_id)
            if lines is None:
                by_app[route.app_id] = [line]
            else:
                lines.append(line)
        for app_id, lines in by_app.items():
            self.sink(app_id, lines)
