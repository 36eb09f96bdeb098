"""The renewer's policy on fake clocks and a fake CA: who is ordered when, what each status
says, back-off after failures, refresh, renewal 30 days before expiry, and one failing domain
never holding up another."""

from __future__ import annotations

import asyncio
import datetime
import functools
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.orm import Session

from dockyard import accounts, apps, domains
from dockyard.certs import renewal
from dockyard.certs.acme import AcmeError, DnsResponder, Issued, Responder
from dockyard.settings import Settings
from dockyard.store import App, Database, Domain

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def scenario(test: Callable[[World], Coroutine[Any, Any, None]]) -> Callable[[World], None]:
    """Run the async test on a loop of its own, within 30 s."""

    @functools.wraps(test)
    def run(world: World) -> None:
        asyncio.run(asyncio.wait_for(test(world), timeout=30))

    return run


class Clocks:
    """``now`` (dates) and ``clock`` (monotonic seconds), advanced together."""

    def __init__(self) -> None:
        self.moment = START
        self.seconds = 1000.0

    def now(self) -> datetime.datetime:
        return self.moment

    def clock(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.moment += datetime.timedelta(seconds=seconds)
        self.seconds += seconds


@dataclass
class FakeCA:
    """Issues 90-day certificates, except for the hostnames told to fail (with a reason)."""

    clocks: Clocks
    failing: dict[str, str] = field(default_factory=dict)
    stuck: set[str] = field(default_factory=set)  # orders that never finish
    orders: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    retry_after: float | None = None  # what the CA's failures ask (rate limits)

    async def issue(
        self, hostname: str, responder: Responder, *, dns: DnsResponder | None = None
    ) -> Issued:
        self.orders.append(hostname)
        if dns is not None:
            await dns.publish_txt(f"_acme-challenge.{hostname.removeprefix('*.')}", "value")
            await dns.withdraw_txt(f"_acme-challenge.{hostname.removeprefix('*.')}", "value")
        await responder.publish_challenge(hostname, "token.thumbprint")
        try:
            if hostname in self.stuck:
                await self.release.wait()
            if hostname in self.failing:
                raise AcmeError(self.failing[hostname], retry_after=self.retry_after)
        finally:
            await responder.withdraw_challenge(hostname)
        expires = self.clocks.now() + datetime.timedelta(days=90)
        return Issued(hostname, f"chain of {hostname}", "key", expires)


class Challenges:
    def __init__(self) -> None:
        self.live: dict[str, str] = {}

    async def publish_challenge(self, token: str, key_authorization: str) -> None:
        self.live[token] = key_authorization

    async def withdraw_challenge(self, token: str) -> None:
        del self.live[token]


class Store:
    """The certificates saved, by domain id."""

    def __init__(self) -> None:
        self.saved: dict[uuid.UUID, Issued] = {}
        self.default_certificate: tuple[str, datetime.datetime, list[str]] | None = None

    def expiry(self, session: Session, domain: Domain) -> datetime.datetime | None:
        found = self.saved.get(domain.id)
        return found.not_after if found else None

    def save(self, session: Session, domain: Domain, issued: Issued) -> None:
        self.saved[domain.id] = issued

    def prune(self, session: Session, app: App, hostnames: set[str]) -> None:
        for key, issued in list(self.saved.items()):
            if issued.hostname not in hostnames:
                del self.saved[key]

    def default(self, session: Session) -> tuple[str, datetime.datetime, list[str]] | None:
        return self.default_certificate

    def save_default(self, session: Session, issued: Issued) -> None:
        self.default_certificate = ("acm", issued.not_after, [issued.hostname])


class Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def publish_txt(self, name: str, value: str) -> None:
        self.calls.append(("set", name))

    async def withdraw_txt(self, name: str, value: str) -> None:
        self.calls.append(("unset", name))


@dataclass
class World:
    database: Database
    settings: Settings
    clocks: Clocks
    ca: FakeCA
    store: Store
    challenges: Challenges
    renewer: renewal.Renewer
    app_id: uuid.UUID

    def add(self, hostname: str) -> None:
        with self.database.transaction() as session:
            app = session.get(App, self.app_id)
            assert app is not None
            domains.add(session, self.settings, app, hostname)

    def acm(self, on: bool) -> None:
        with self.database.transaction() as session:
            app = session.get(App, self.app_id)
            assert app is not None
            app.acm = on

    def status(self, hostname: str) -> tuple[str | None, str | None]:
        with self.database.transaction() as session:
            found = next(d for d in session.query(Domain).all() if d.hostname == hostname)
            return found.acm_status, found.acm_status_reason

    def set_status(self, hostname: str, status: str | None) -> None:
        with self.database.transaction() as session:
            found = next(d for d in session.query(Domain).all() if d.hostname == hostname)
            found.acm_status = status

    async def settle(self) -> float:
        """One pass, and the orders it started finished; the wait the pass asked for."""
        wait = await self.renewer.run_pass()
        await self.renewer.idle()
        return wait


def renewer_of(
    database: Database, ca: FakeCA, challenges: Challenges, store: Store, clocks: Clocks
) -> renewal.Renewer:
    """A renewer on the world's parts, with nothing in memory (a new control plane's)."""
    return renewal.Renewer(database, ca, challenges, store, now=clocks.now, clock=clocks.clock)


@pytest.fixture
def world(sqlite_database: Database, settings: Settings) -> World:
    with sqlite_database.transaction() as session:
        user, _token = accounts.create_user(session, "acm@example.com")
        app = apps.create(session, user, "shop")
        session.flush()
        app_id = app.id
    clocks = Clocks()
    ca = FakeCA(clocks)
    store = Store()
    challenges = Challenges()
    renewer = renewer_of(sqlite_database, ca, challenges, store, clocks)
    return World(sqlite_database, settings, clocks, ca, store, challenges, renewer, app_id)


@scenario
async def test_nothing_is_ordered_until_acm_is_enabled(world: World) -> None:
    world.add("www.example.org")
    await world.settle()
    assert world.ca.orders == []
    assert world.status("www.example.org") == (None, None)
    world.acm(True)
    await world.settle()
    assert world.ca.orders == ["www.example.org"]
    assert world.status("www.example.org") == (renewal.ISSUED, None)
    assert world.challenges.live == {}, "the challenge is withdrawn after the order"


@scenario
async def test_renewal_30_days_before_expiry(world: World) -> None:
    world.acm(True)
    world.add("www.example.org")
    await world.settle()
    first = world.store.saved
    assert len(first) == 1
    # 90-day certificates: the next pass is due in 60 days (capped at the interval).
    assert await world.settle() == renewal.INTERVAL
    world.clocks.advance(59 * 86400)
    assert world.ca.orders == ["www.example.org"]
    wait = await world.settle()
    assert world.ca.orders == ["www.example.org"], "not yet: 31 days left"
    assert wait == renewal.INTERVAL, "due in a day: the hourly pass comes first"
    world.clocks.advance(86400 - 100)
    wait = await world.settle()
    assert world.ca.orders == ["www.example.org"]
    assert wait == pytest.approx(100), "the pass wakes when the renewal is due"
    world.clocks.advance(100)
    await world.settle()
    assert world.ca.orders == ["www.example.org", "www.example.org"]
    (issued,) = world.store.saved.values()
    assert issued.not_after == world.clocks.now() + datetime.timedelta(days=90)
    assert world.status("www.example.org") == (renewal.ISSUED, None)


@scenario
async def test_a_failing_domain_gets_its_reason_and_back_off_and_others_go_on(
    world: World,
) -> None:
    world.acm(True)
    world.add("good.example.org")
    world.add("bad.example.org")
    reason = "DNS problem: NXDOMAIN looking up A for bad.example.org"
    world.ca.failing["bad.example.org"] = reason
    await world.settle()
    assert world.status("good.example.org") == (renewal.ISSUED, None)
    assert world.status("bad.example.org") == (renewal.FAILED, reason)
    # Retried after a growing wait: 60 s, then 120 s, ...
    wait = await world.settle()
    assert world.ca.orders.count("bad.example.org") == 1
    assert wait == pytest.approx(renewal.RETRY_FIRST)
    world.clocks.advance(renewal.RETRY_FIRST)
    await world.settle()
    assert world.ca.orders.count("bad.example.org") == 2
    wait = await world.settle()
    assert wait == pytest.approx(2 * renewal.RETRY_FIRST)
    # The CA takes it now: issued, and the reason is gone.
    del world.ca.failing["bad.example.org"]
    world.clocks.advance(2 * renewal.RETRY_FIRST)
    await world.settle()
    assert world.status("bad.example.org") == (renewal.ISSUED, None)
    assert world.ca.orders.count("good.example.org") == 1


@scenario
async def test_the_back_off_outlives_a_restart_of_the_control_plane(world: World) -> None:
    world.acm(True)
    world.add("bad.example.org")
    world.ca.failing["bad.example.org"] = "no"
    await world.settle()
    world.clocks.advance(renewal.RETRY_FIRST)
    await world.settle()
    assert world.ca.orders.count("bad.example.org") == 2
    # A new control plane (a renewer with nothing in memory) keeps to the third wait.
    world.clocks.advance(renewal.RETRY_FIRST)
    world.renewer = renewer_of(
        world.database, world.ca, world.challenges, world.store, world.clocks
    )
    wait = await world.settle()
    assert world.ca.orders.count("bad.example.org") == 2, "retried at once after the restart"
    assert wait == pytest.approx(renewal.RETRY_FIRST), "the rest of the 120 s wait"
    world.clocks.advance(wait)
    await world.settle()
    assert world.ca.orders.count("bad.example.org") == 3
    # A refresh starts the back-off over: the next failure waits the first wait again.
    world.set_status("bad.example.org", renewal.PENDING)
    await world.settle()
    assert world.ca.orders.count("bad.example.org") == 4
    assert await world.settle() == pytest.approx(renewal.RETRY_FIRST)


@scenario
async def test_a_stuck_order_does_not_hold_up_other_domains(world: World) -> None:
    world.acm(True)
    world.add("slow.example.org")
    world.add("fast.example.org")
    world.ca.stuck.add("slow.example.org")
    await world.renewer.run_pass()
    for _ in range(100):
        if world.status("fast.example.org")[0] == renewal.ISSUED:
            break
        await asyncio.sleep(0.01)  # the fake CA's task runs on this loop
    assert world.status("fast.example.org") == (renewal.ISSUED, None)
    assert world.status("slow.example.org") == (renewal.PENDING, None)
    await world.renewer.run_pass()
    assert world.ca.orders.count("slow.example.org") == 1, "one order at a time per domain"
    world.ca.release.set()
    await world.renewer.idle()
    assert world.status("slow.example.org") == (renewal.ISSUED, None)


@scenario
async def test_refresh_retries_a_failed_domain_at_once(world: World) -> None:
    world.acm(True)
    world.add("bad.example.org")
    world.ca.failing["bad.example.org"] = "no"
    await world.settle()
    await world.settle()
    assert world.ca.orders == ["bad.example.org"]
    world.set_status("bad.example.org", renewal.PENDING)  # what PATCH /acm does
    del world.ca.failing["bad.example.org"]
    await world.settle()
    assert world.ca.orders == ["bad.example.org", "bad.example.org"]
    assert world.status("bad.example.org") == (renewal.ISSUED, None)


@scenario
async def test_wildcards_fail_with_the_reason_and_are_not_ordered(world: World) -> None:
    world.acm(True)
    world.add("*.example.org")
    await world.settle()
    assert world.ca.orders == []
    assert world.status("*.example.org") == (renewal.FAILED, renewal.WILDCARD_REASON)


@scenario
async def test_a_certificate_issued_after_acm_was_disabled_is_dropped(world: World) -> None:
    world.acm(True)
    world.add("www.example.org")
    world.ca.stuck.add("www.example.org")
    await world.renewer.run_pass()
    await asyncio.sleep(0)
    world.acm(False)
    world.ca.release.set()
    await world.renewer.idle()
    assert world.store.saved == {}


@scenario
async def test_the_loop_runs_passes_when_poked(world: World) -> None:
    world.acm(True)
    await world.renewer.start()
    try:
        world.add("www.example.org")
        world.renewer.poke()
        for _ in range(200):
            if world.status("www.example.org")[0] == renewal.ISSUED:
                break
            await asyncio.sleep(0.01)  # the renewer's task runs on this loop
        assert world.status("www.example.org") == (renewal.ISSUED, None)
    finally:
        await world.renewer.close()


@scenario
async def test_the_wildcard_default_certificate_by_dns01(world: World) -> None:
    hook = Hook()
    renewer = renewal.Renewer(
        world.database,
        world.ca,
        world.challenges,
        world.store,
        now=world.clocks.now,
        clock=world.clocks.clock,
        dns=hook,
        wildcard="*.apps.example.org",
    )
    # The local CA's certificate is the default: the CA's replaces it, through the hook.
    world.store.default_certificate = (
        "platform",
        START + datetime.timedelta(days=365),
        ["*.apps.example.org", "apps.example.org"],
    )
    await renewer.run_pass()
    await renewer.idle()
    assert world.ca.orders == ["*.apps.example.org"]
    assert hook.calls == [
        ("set", "_acme-challenge.apps.example.org"),
        ("unset", "_acme-challenge.apps.example.org"),
    ]
    assert world.store.default_certificate == (
        "acm",
        START + datetime.timedelta(days=90),
        ["*.apps.example.org"],
    )
    assert renewer.default_status == (renewal.ISSUED, None)
    # Renewed like the others, 30 days before it expires.
    await renewer.run_pass()
    assert world.ca.orders == ["*.apps.example.org"]
    world.clocks.advance(61 * 86400)
    await renewer.run_pass()
    await renewer.idle()
    assert world.ca.orders == ["*.apps.example.org"] * 2
    # The CA's for a domain the platform had before: ordered again for this one.
    world.store.default_certificate = (
        "acm",
        world.clocks.now() + datetime.timedelta(days=80),
        ["*.old.example.org"],
    )
    await renewer.run_pass()
    await renewer.idle()
    assert world.ca.orders == ["*.apps.example.org"] * 3
    # An operator's certificate (DOCKYARD_TLS_CERT_FILE) is never replaced.
    world.store.default_certificate = ("uploaded", world.clocks.now(), ["*.apps.example.org"])
    await renewer.run_pass()
    await renewer.idle()
    assert world.ca.orders == ["*.apps.example.org"] * 3


@scenario
async def test_a_failing_hook_fails_the_default_alone(world: World) -> None:
    renewer = renewal.Renewer(
        world.database,
        world.ca,
        world.challenges,
        world.store,
        now=world.clocks.now,
        clock=world.clocks.clock,
        dns=Hook(),
        wildcard="*.apps.example.org",
    )
    world.ca.failing["*.apps.example.org"] = "the DNS hook /hook set failed (exit 1): no token"
    world.acm(True)
    world.add("www.example.org")
    await renewer.run_pass()
    await renewer.idle()
    assert renewer.default_status == (renewal.FAILED, world.ca.failing["*.apps.example.org"])
    assert world.status("www.example.org") == (renewal.ISSUED, None)
    assert await renewer.run_pass() == pytest.approx(renewal.RETRY_FIRST)


@scenario
async def test_the_default_certificates_back_off_outlives_a_restart(world: World) -> None:
    state = world.settings.data_dir / "acme" / "default-certificate.json"

    def plane() -> renewal.Renewer:
        """A new control plane's renewer: nothing in memory, the data dir's file."""
        return renewal.Renewer(
            world.database,
            world.ca,
            world.challenges,
            world.store,
            now=world.clocks.now,
            clock=world.clocks.clock,
            dns=Hook(),
            wildcard="*.apps.example.org",
            default_state=state,
        )

    world.ca.failing["*.apps.example.org"] = "the DNS hook /hook set failed (exit 1): no token"
    first = plane()
    await first.run_pass()
    await first.idle()
    assert world.ca.orders == ["*.apps.example.org"]
    world.clocks.advance(10)

    again = plane()
    assert again.default_status == (renewal.FAILED, world.ca.failing["*.apps.example.org"])
    wait = await again.run_pass()
    await again.idle()
    assert world.ca.orders == ["*.apps.example.org"], "not ordered again at once"
    assert wait == pytest.approx(renewal.RETRY_FIRST - 10)
    world.clocks.advance(wait)
    await again.run_pass()
    await again.idle()
    assert world.ca.orders == ["*.apps.example.org"] * 2


@scenario
async def test_a_rate_limited_domain_waits_as_long_as_the_ca_asks(world: World) -> None:
    world.acm(True)
    world.add("busy.example.org")
    world.ca.failing["busy.example.org"] = "the CA rate-limits this account or domain: too many"
    world.ca.retry_after = 3600.0
    await world.settle()
    assert world.status("busy.example.org") == (
        renewal.FAILED,
        "the CA rate-limits this account or domain: too many",
    )
    renewer = world.renewer
    renewer.interval = 86400.0
    assert await world.settle() == pytest.approx(3600.0), "not the first back-off, 60 s"
    world.clocks.advance(3599)
    await world.settle()
    assert world.ca.orders == ["busy.example.org"]


@scenario
async def test_cert_issued_means_served(world: World) -> None:
    seen: list[tuple[bool, tuple[str | None, str | None]]] = []

    async def serve() -> None:
        # Stored when the router is asked to serve it, and not yet said to be issued.
        seen.append((bool(world.store.saved), world.status("www.example.org")))

    world.renewer.serve = serve
    world.acm(True)
    world.add("www.example.org")
    await world.settle()
    assert seen == [(True, (renewal.PENDING, None))]
    assert world.status("www.example.org") == (renewal.ISSUED, None)
