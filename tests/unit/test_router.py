"""The router's pure parts: route table → HAProxy configuration and runtime commands, the
router's log lines, hostname rules; and the Router service on a memory driver."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from dockyard import accounts, apps, domains
from dockyard.errors import InvalidParams
from dockyard.router import MemoryDriver, Router
from dockyard.router import haproxy as hp
from dockyard.router.logs import LOG_FORMAT, parse
from dockyard.router.table import IDLE, MAINTENANCE, WEB, AppRoute, RouteTable, Upstream
from dockyard.settings import Settings
from dockyard.store import App, Database, Domain

PATHS = hp.Paths(Path("/srv/dockyard/router"))
API = Upstream("127.0.0.1", 5100, "api")


def route(name: str, *ports: int, state: str = WEB, hostnames: Iterable[str] = ()) -> AppRoute:
    return AppRoute(
        app_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        name=name,
        hostnames=frozenset({f"{name}.example.test", *hostnames}),
        upstreams=frozenset(Upstream("127.0.0.1", p, f"web.{i}") for i, p in enumerate(ports, 1)),
        state=state,
    )


def table(*routes: AppRoute) -> RouteTable:
    return RouteTable(routes, "api.example.test", API)


def fresh(t: RouteTable, slots: int = hp.MIN_SLOTS) -> hp.Observed:
    """What HAProxy reports right after loading the configuration for ``t``."""
    return hp.Observed(
        backends={r.backend for r in t.apps} | {"_api", "_unknown"},
        slots={
            r.backend: {
                f"s{n}": hp.Slot(f"s{n}", "127.0.0.1", 1, 0x05) for n in range(1, slots + 1)
            }
            for r in t.apps
        },
    )


def execute(observed: hp.Observed, commands: list[str]) -> hp.Observed:
    """Apply runtime commands to ``observed`` as HAProxy would."""
    for command in commands:
        words = command.split()
        if words[:2] == ["set", "server"]:
            backend, _, name = words[2].partition("/")
            slot = observed.slots[backend][name]
            if words[3] == "addr":
                slot = hp.Slot(name, words[4], int(words[6]), slot.admin)
            elif words[4] == "ready":
                slot = hp.Slot(name, slot.addr, slot.port, slot.admin & ~0x09)
            elif words[4] == "maint":
                slot = hp.Slot(name, slot.addr, slot.port, slot.admin | 0x01)
            observed.slots[backend][name] = slot
        else:
            verb, path, key = words[0], words[2], words[3]
            entries = observed.hosts if path == str(PATHS.hosts_map) else observed.apps
            if verb == "add":
                entries.setdefault(key, []).append(words[4])
            elif verb == "set":
                entries[key] = [words[4]]
            else:
                entries.pop(key, None)
    return observed


def serving(observed: hp.Observed, backend: str) -> set[int]:
    return {s.port for s in observed.slots[backend].values() if s.active}


def test_applying_a_table_then_the_same_again_takes_no_commands() -> None:
    t = table(route("shop", 4001, 4002), route("blog", state=IDLE, hostnames={"*.blog.org"}))
    observed = fresh(t)
    commands = hp.plan(t, observed, PATHS)
    assert commands
    execute(observed, commands)
    assert hp.plan(t, observed, PATHS) == []
    shop, blog = t.apps
    assert serving(observed, shop.backend) == {4001, 4002}
    assert serving(observed, blog.backend) == set()
    assert observed.hosts == {
        "api.example.test": ["_api"],
        "shop.example.test": [shop.backend],
        "blog.example.test": [blog.backend],
        "*.blog.org": [blog.backend],
    }
    assert observed.apps == {shop.backend: [WEB], blog.backend: [IDLE]}


def test_a_rollout_enables_the_new_servers_before_it_disables_the_old() -> None:
    before = table(route("shop", 4001, 4002))
    observed = execute(fresh(before), hp.plan(before, fresh(before), PATHS))
    after = table(route("shop", 5001, 5002))
    commands = hp.plan(after, observed, PATHS)
    ready = [i for i, c in enumerate(commands) if c.endswith("state ready")]
    maint = [i for i, c in enumerate(commands) if c.endswith("state maint")]
    assert len(ready) == 2
    assert len(maint) == 2
    assert max(ready) < min(maint)
    execute(observed, commands)
    assert serving(observed, after.apps[0].backend) == {5001, 5002}
    assert hp.plan(after, observed, PATHS) == []


def test_a_returning_address_gets_its_old_slot_back_without_a_new_addr() -> None:
    one = table(route("shop", 4001))
    observed = execute(fresh(one), hp.plan(one, fresh(one), PATHS))
    backend = one.apps[0].backend
    (slot,) = [n for n, s in observed.slots[backend].items() if s.active]
    none = table(route("shop"))
    execute(observed, hp.plan(none, observed, PATHS))
    assert serving(observed, backend) == set()
    commands = hp.plan(one, observed, PATHS)
    assert commands == [f"set server {backend}/{slot} state ready"]


def test_a_free_slot_freed_longest_ago_is_used_first() -> None:
    t = table(route("shop"))
    backend = t.apps[0].backend
    freed = {(backend, f"s{n}"): 100.0 + n for n in range(1, hp.MIN_SLOTS + 1)}
    freed[(backend, "s7")] = 1.0
    commands = hp.plan(table(route("shop", 4001)), fresh(t), PATHS, freed)
    assert commands[0] == f"set server {backend}/s7 addr 127.0.0.1 port 4001"


def test_maintenance_and_hostnames_change_through_maps() -> None:
    t = table(route("shop", 4001, hostnames={"www.shop.org"}))
    observed = execute(fresh(t), hp.plan(t, fresh(t), PATHS))
    backend = t.apps[0].backend
    off = table(route("shop", 4001, state=MAINTENANCE, hostnames={"*.shop.org"}))
    commands = hp.plan(off, observed, PATHS)
    assert sorted(commands) == sorted(
        [
            f"add map {PATHS.hosts_map} *.shop.org {backend}",
            f"del map {PATHS.hosts_map} www.shop.org",
            f"set map {PATHS.apps_map} {backend} {MAINTENANCE}",
        ]
    )


def test_duplicate_map_entries_are_replaced_by_one() -> None:
    t = table(route("shop"))
    observed = fresh(t)
    observed.hosts = {"shop.example.test": ["a", "b"]}
    commands = hp.plan(t, observed, PATHS)
    backend = t.apps[0].backend
    assert commands[1:3] == [
        f"del map {PATHS.hosts_map} shop.example.test",
        f"add map {PATHS.hosts_map} shop.example.test {backend}",
    ]


def test_slots_grow_only_when_a_rollout_needs_more() -> None:
    small = table(route("shop", *range(4001, 4001 + hp.MIN_SLOTS)))
    assert hp.layout(small, fresh(small)) == {small.apps[0].backend: hp.MIN_SLOTS}
    big = table(route("shop", *range(4001, 4002 + hp.MIN_SLOTS)))
    assert hp.layout(big, fresh(big)) == {big.apps[0].backend: 2 * hp.MIN_SLOTS}
    # Servers being replaced count too: old and new run side by side during a rollout.
    observed = fresh(small)
    execute(observed, hp.plan(small, observed, PATHS))
    other = table(route("shop", 6001))
    assert hp.layout(other, observed) == {small.apps[0].backend: 2 * hp.MIN_SLOTS}


def test_the_configuration_depends_on_the_apps_not_on_their_dynos() -> None:
    options = hp.Options(http_port=8080)
    one = hp.render_config(table(route("shop", 4001)), {route("shop").backend: 16}, options, PATHS)
    two = hp.render_config(
        table(route("shop", 5001, 5002)), {route("shop").backend: 16}, options, PATHS
    )
    assert one == two
    assert "4001" not in one
    three = hp.render_config(
        table(route("shop"), route("blog")),
        {route("shop").backend: 16, route("blog").backend: 16},
        options,
        PATHS,
    )
    assert three != one


@pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    paths = hp.Paths(tmp_path / "router")
    paths.pages.mkdir(parents=True)
    for path, text in hp.page_files(paths).items():
        path.write_text(text)
    t = table(route("shop", 4001), route("blog", hostnames={"*.blog.org"}))
    paths.hosts_map.write_text(hp.map_text(t.hosts()))
    paths.apps_map.write_text(hp.map_text(hp.app_states(t)))
    paths.timeouts_map.write_text(hp.map_text(hp.app_timeouts(t)))
    paths.acme_map.write_text("")
    paths.server_state.write_text("1\n")
    config = hp.render_config(t, hp.layout(t, hp.Observed()), hp.Options(http_port=8080), paths)
    paths.config.write_text(config)
    binary = hp.find_binary()
    assert binary is not None
    done = subprocess.run(
        [binary, "-c", "-f", str(paths.config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_state_and_map_dumps_are_read() -> None:
    state = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
        "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
        "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
        "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
        "srv_agent_port\n"
        "4 app1 1 s1 127.0.0.1 2 4 1 1 1 1 0 4 8 0 0 0 - 19002 - 0 0 - - 0\n"
        "4 app1 2 s2 127.0.0.1 0 5 1 1 170 1 0 0 8 0 0 0 - 1 - 0 0 - - 0\n"
        "4 app1 3 s3 127.0.0.1 2 8 1 1 1 1 0 4 8 0 0 0 - 19003 - 0 0 - - 0\n"
    )
    slots = hp.parse_servers_state(state)["app1"]
    assert slots["s1"].active
    assert not slots["s1"].draining
    assert slots["s1"].port == 19002
    assert not slots["s2"].active
    assert slots["s3"].draining
    assert hp.parse_map("0x55f2 app1.localhost app1\n0x55f3 *.example.com app1\n\n") == {
        "app1.localhost": ["app1"],
        "*.example.com": ["app1"],
    }
    proc = hp.parse_proc(
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
        "1310            master          2 [failed: 0]   0d00h03m54s     2.6.12\n"
        "# workers\n"
        "5684            worker          0               0d00h00m01s     2.6.12\n"
        "# old workers\n"
        "5600            worker          1               0d00h00m09s     2.6.12\n"
        "# programs\n\n"
    )
    assert proc == hp.Process(master=1310, worker=5684, reloads=2, failed=0)


def test_the_log_format_is_what_the_parser_reads() -> None:
    assert LOG_FORMAT.count("%") == 16
    record = (
        b'dockyard-router app-1 s3 41234 200 195 0 18 ---- http GET "/a#22b" "shop.example.test" '
        b'"0123456789abcdefghij" "1.2.3.4, 127.0.0.1" ""\n'
    )
    request = parse(record)
    assert request is not None
    assert request.path == '/a"b'
    assert request.line("web.2") == (
        'at=info method=GET path="/a"b" host=shop.example.test request_id=0123456789abcdefghij '
        'fwd="1.2.3.4, 127.0.0.1" dyno=web.2 connect=0ms service=18ms status=200 bytes=195 '
        "protocol=http"
    )
    assert parse(b"Server app1/s1 is UP/READY (leaving forced maintenance).\n") is None


@pytest.mark.parametrize(
    ("status", "termination", "code", "expected"),
    [
        ("504", "sH--", "", 'at=error code=H12 desc="Request timeout"'),
        ("502", "SH--", "", 'at=error code=H13 desc="Connection closed without response"'),
        ("503", "LR--", "H80", 'at=error code=H80 desc="Maintenance mode"'),
        ("503", "LR--", "H14", 'at=error code=H14 desc="No web processes running"'),
        ("503", "LR--", "H10", 'at=error code=H10 desc="App crashed"'),
        ("404", "----", "", "at=info"),
    ],
)
def test_errors_get_heroku_codes(status: str, termination: str, code: str, expected: str) -> None:
    connect = "-1" if code else "0"
    request = parse(
        f'dockyard-router app-1 s1 4000 {status} 0 {connect} 30001 {termination} http GET "/" '
        f'"shop.example.test" "r" "1.2.3.4" "{code}"'
    )
    assert request is not None
    line = request.line("web.1")
    assert line.startswith(expected + " method=GET"), line
    if code or status in ("502", "504"):
        assert " status=503 " in line
    if code:
        assert " dyno= connect=0ms service=0ms " in line


@pytest.mark.parametrize(
    "given",
    [
        "localhost",
        "bad_name.example.com",
        "-a.example.com",
        "a..example.com",
        "*.com",
        "www.*.example.com",
        "**.example.com",
        "10.0.0.1",
        "x" * 64 + ".example.com",
        "shop.dockyard.test",
        "*.dockyard.test",
        "dockyard.test",
        "",
    ],
)
def test_invalid_hostnames_are_refused(settings: Settings, given: str) -> None:
    with pytest.raises(InvalidParams, match="is not a valid hostname"):
        domains.check_hostname(settings, given)


def test_valid_hostnames_are_normalized(settings: Settings) -> None:
    assert domains.check_hostname(settings, "WWW.Example.COM.") == "www.example.com"
    assert domains.check_hostname(settings, "*.example.com") == "*.example.com"
    assert domains.check_hostname(settings, "bücher.example") == "xn--bcher-kva.example"


def test_the_most_specific_hostname_wins() -> None:
    names = {"*.example.com", "*.b.example.com", "a.b.example.com", "example.com"}
    assert domains.resolve(names, "a.b.example.com") == "a.b.example.com"
    assert domains.resolve(names, "c.b.example.com") == "*.b.example.com"
    assert domains.resolve(names, "x.y.z.example.com") == "*.example.com"
    assert domains.resolve(names, "example.com") == "example.com"
    assert domains.resolve(names, "example.org") is None
    assert domains.candidates("a.b.c") == ["a.b.c", "*.b.c"]


def test_the_api_hostname_wins_over_an_app_named_api() -> None:
    t = table(route("api"), route("shop", hostnames={"*.example.test"}))
    assert t.backend_for("api.example.test:8080") == "_api"
    assert t.backend_for("other.example.test") == t.apps[1].backend


# -- the Router service ---------------------------------------------------------------------


class Endpoints:
    """The reconciler's side: endpoints per app, and a version that changes with them."""

    def __init__(self) -> None:
        self.by_app: dict[uuid.UUID, frozenset[Upstream]] = {}
        self.version = 0
        self.changed = asyncio.Event()

    def set(self, app_id: uuid.UUID, *ports: int) -> None:
        self.by_app[app_id] = frozenset(Upstream("127.0.0.1", p, f"web.{p}") for p in ports)
        self.version += 1
        self.changed.set()

    def endpoints(self, app_id: uuid.UUID) -> frozenset[Upstream]:
        return self.by_app.get(app_id, frozenset())

    async def endpoints_changed(self, seen: int) -> int:
        while self.version == seen:
            self.changed.clear()
            await self.changed.wait()
        return self.version


class AdoptingDriver(MemoryDriver):
    """A proxy found running, with a server per app from before the control plane restarted."""

    def __init__(self, serving: dict[str, frozenset[Upstream]]) -> None:
        super().__init__()
        self.serving = serving

    async def start(self, table: RouteTable) -> bool:
        return True

    async def upstreams(self) -> dict[str, frozenset[Upstream]]:
        return self.serving


def make_app(database: Database, name: str, *, custom: str | None = None) -> App:
    with database.transaction() as session:
        user, _token = accounts.create_user(session, f"{name}@example.com")
        app = apps.create(session, user, name)
        if custom is not None:
            session.add(Domain(app_id=app.id, hostname=custom))
        return app


def test_the_router_builds_its_table_from_the_store(
    sqlite_database: Database, settings: Settings
) -> None:
    asyncio.run(
        asyncio.wait_for(
            _test_the_router_builds_its_table_from_the_store(sqlite_database, settings), 30
        )
    )


async def _test_the_router_builds_its_table_from_the_store(
    sqlite_database: Database, settings: Settings
) -> None:
    shop = make_app(sqlite_database, "shop", custom="*.shop.org")
    make_app(sqlite_database, "blog")
    source = Endpoints()
    driver = MemoryDriver()
    router = Router(sqlite_database, settings, driver)
    router.follow(source)
    await router.start()
    try:
        by_name = {r.name: r for r in driver.table.apps}
        assert by_name["shop"].hostnames == {"shop.dockyard.test", "*.shop.org"}
        assert by_name["shop"].state == IDLE  # nothing deployed yet
        assert driver.table.backend_for("a.b.shop.org") == by_name["shop"].backend
        assert driver.table.backend_for("api.dockyard.test") == "_api"

        source.set(shop.id, 4001)
        await asyncio.wait_for(_until(lambda: _ports(driver, "shop") == {4001}), 5)
        assert await router.sync() == 0, "the same table again changes nothing"
    finally:
        await router.close()


def test_an_adopted_proxy_keeps_serving_until_the_reconciler_reports(
    sqlite_database: Database, settings: Settings
) -> None:
    asyncio.run(
        asyncio.wait_for(
            _test_an_adopted_proxy_keeps_serving_until_the_reconciler_reports(
                sqlite_database, settings
            ),
            30,
        )
    )


async def _test_an_adopted_proxy_keeps_serving_until_the_reconciler_reports(
    sqlite_database: Database, settings: Settings
) -> None:
    shop = make_app(sqlite_database, "shop")
    backend = f"app-{shop.id}"
    old = frozenset({Upstream("127.0.0.1", 4001)})
    driver = AdoptingDriver({backend: old})
    source = Endpoints()
    router = Router(sqlite_database, settings, driver, hold=60.0)
    router.follow(source)
    await router.start()
    try:
        assert _ports(driver, "shop") == {4001}, "not emptied before the reconciler adopts"
        source.set(shop.id, 4002)
        await asyncio.wait_for(_until(lambda: _ports(driver, "shop") == {4002}), 5)
        source.set(shop.id)  # scaled to zero: now that it reported, that is the truth
        await asyncio.wait_for(_until(lambda: _ports(driver, "shop") == set()), 5)
    finally:
        await router.close()


def test_a_drain_applies_the_table_first(sqlite_database: Database, settings: Settings) -> None:
    asyncio.run(
        asyncio.wait_for(_test_a_drain_applies_the_table_first(sqlite_database, settings), 30)
    )


async def _test_a_drain_applies_the_table_first(
    sqlite_database: Database, settings: Settings
) -> None:
    shop = make_app(sqlite_database, "shop")
    source = Endpoints()
    driver = MemoryDriver()
    router = Router(sqlite_database, settings, driver, interval=3600)
    router.follow(source)
    await router.start()
    try:
        source.by_app[shop.id] = frozenset({Upstream("127.0.0.1", 4002, "web.1")})
        endpoint = Upstream("127.0.0.1", 4001, "web.1")
        await router.drain(str(shop.id), endpoint)
        assert _ports(driver, "shop") == {4002}, "the new dyno is in before the old drains"
        assert driver.drained == [(f"app-{shop.id}", endpoint)]
    finally:
        await router.close()


def _ports(driver: MemoryDriver, name: str) -> set[int]:
    (found,) = [r for r in driver.table.apps if r.name == name]
    return {u.port for u in found.upstreams}


async def _until(condition: object) -> None:
    assert callable(condition)
    while not condition():
        await asyncio.sleep(0.01)
