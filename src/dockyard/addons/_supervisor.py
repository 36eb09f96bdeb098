"""Keeps the add-on servers the platform runs itself running.

At start (re-adopting what a previous control plane left running) and every few seconds
after, each provisioned add-on's provider is asked to ``ensure_running`` it; one that died
is started again. Providers whose servers the operator runs do nothing. Every minute or
so, the provider also enforces the limits of the add-on's plan that its server does
not enforce itself (a PostgreSQL database's size).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import select

from dockyard.addons._provider import Catalog
from dockyard.errors import DockyardError
from dockyard.store import Addon, Database

log = logging.getLogger("dockyard.addons")


class Supervisor:
    def __init__(
        self, database: Database, catalog: Catalog, interval: float = 5.0, enforce_every: int = 12
    ) -> None:
        """Every ``interval`` seconds the servers are checked; every ``enforce_every``
        checks, the limits servers do not enforce themselves (a database's size) too."""
        self.database = database
        self.catalog = catalog
        self.interval = interval
        self.enforce_every = enforce_every
        self._checks = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """One pass (so add-on servers answer before the API does), then one every interval."""
        await asyncio.to_thread(self.interrupted)
        await asyncio.to_thread(self.check)
        self._task = asyncio.create_task(self._run(), name="addon-supervisor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.check)

    def interrupted(self) -> None:
        """Add-ons a stopped control plane was provisioning: failed, so a retry can start."""
        with self.database.transaction() as session:
            for addon in session.scalars(select(Addon).where(Addon.state == "provisioning")):
                addon.state = "failed"
                addon.failure = (
                    "the control plane stopped while this add-on was being provisioned; "
                    "create it again to retry"
                )

    def check(self) -> None:
        try:
            with self.database.transaction() as session:
                found = [
                    (a.name, a.service, dict(a.provider_data))
                    for a in session.scalars(select(Addon).where(Addon.state == "provisioned"))
                ]
        except DockyardError as exc:
            log.warning("add-on supervisor: the state store failed: %s", exc.message)
            return
        enforcing = self._checks % self.enforce_every == 0
        self._checks += 1
        for name, service, data in found:
            try:
                self.catalog.provider(service).ensure_running(data)
            except DockyardError as exc:
                log.error("add-on %s is down and would not start: %s", name, exc.message)
                continue
            except OSError as exc:
                log.error("add-on %s is down and would not start: %s", name, exc)
                continue
            if enforcing:
                self.enforce(name, service, data)

    def enforce(self, name: str, service: str, data: dict[str, Any]) -> None:
        """Apply the plan's limits to one add-on; keep what changed (such as ``over_limit``)."""
        try:
            enforced = self.catalog.provider(service).enforce(data)
        except DockyardError as exc:
            log.error("add-on %s: its plan's limits could not be checked: %s", name, exc.message)
            return
        if enforced == data:
            return
        if enforced.get("over_limit") != data.get("over_limit"):
            log.warning(
                "add-on %s is %s its plan's size limit: inserts are %s",
                name,
                "over" if enforced.get("over_limit") else "back under",
                "refused" if enforced.get("over_limit") else "allowed again",
            )
        with self.database.transaction() as session:
            addon = session.scalar(select(Addon).where(Addon.name == name))
            if addon is not None and addon.provider_data == data:
                addon.provider_data = enforced
