"""The HAProxy driver on a real HAProxy, without the rest of the platform: tables applied
through the runtime API (twice is a no-op), reloads only for structural changes, drains that
wait for requests in flight, and a restart after HAProxy is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from dockyard.router import RouterError
from dockyard.router import haproxy as hp
from dockyard.router.table import IDLE, AppRoute, RouteTable, Upstream

pytestmark = pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def upstreams() -> Iterator[list[int]]:
    """Three small HTTP servers that answer with their own port."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(3)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [int(s.server_address[1]) for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def driver() -> Iterator[hp.HAProxy]:
    # A short path: HAProxy's Unix sockets must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="dy-router-") as root:
        proxy = hp.HAProxy(hp.Paths(Path(root)), hp.Options(http_port=free_port()))
        try:
            yield proxy
        finally:
            hp.stop(proxy.paths)


def app(name: str, *ports: int, state: str = "web") -> AppRoute:
    return AppRoute(
        app_id=name,
        name=name,
        hostnames=frozenset({f"{name}.localhost"}),
        upstreams=frozenset(Upstream("127.0.0.1", p, f"web.{p}") for p in ports),
        state=state,
    )


def table(*apps: AppRoute) -> RouteTable:
    return RouteTable(apps, None, None)


def get(driver: hp.HAProxy, host: str, path: str = "/") -> httpx.Response:
    url = f"http://127.0.0.1:{driver.options.http_port}{path}"
    return httpx.get(url, headers={"Host": host}, timeout=10)


def test_tables_are_applied_at_run_time_and_twice_is_a_no_op(
    driver: hp.HAProxy, upstreams: list[int]
) -> None:
    one, two, three = upstreams

    async def scenario() -> None:
        first = table(app("shop", one, two))
        assert await driver.start(first) is False
        assert await driver.apply(first) > 0
        assert await driver.apply(first) == 0, "the same table again changes nothing"
        worker = await driver.worker_pid()
        answers = {(await asyncio.to_thread(get, driver, "shop.localhost")).text for _ in range(6)}
        assert answers == {str(one), str(two)}

        # A rollout: new servers in, old ones out, by the runtime API alone.
        await driver.apply(table(app("shop", three)))
        assert (await asyncio.to_thread(get, driver, "shop.localhost")).text == str(three)
        await driver.apply(table(app("shop", state=IDLE)))
        reply = await asyncio.to_thread(get, driver, "shop.localhost")
        assert reply.headers["dockyard-error"] == "H14"
        assert await driver.worker_pid() == worker
        assert driver.reloads == 0

        # A new app is a structural change: one reload, after which both are served. (Its
        # name is one that HAProxy's error replies use: a map entry must not read as one.)
        await driver.apply(table(app("shop", one), app("failed", two)))
        assert driver.reloads == 1
        assert await driver.worker_pid() != worker
        assert (await asyncio.to_thread(get, driver, "failed.localhost")).text == str(two)
        assert (await asyncio.to_thread(get, driver, "shop.localhost")).text == str(one)
        assert await driver.apply(table(app("shop", one), app("failed", two))) == 0

        # A driver started again (a restarted control plane) adopts the same HAProxy.
        again = hp.HAProxy(driver.paths, driver.options)
        assert await again.start(table(app("shop", one), app("failed", two))) is True
        assert await again.apply(table(app("shop", one), app("failed", two))) == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_drain_waits_for_the_requests_in_flight(driver: hp.HAProxy, upstreams: list[int]) -> None:
    one, two, _ = upstreams

    async def scenario() -> None:
        await driver.start(table(app("shop", one)))
        await driver.apply(table(app("shop", one)))
        slow = asyncio.create_task(asyncio.to_thread(get, driver, "shop.localhost", "/slow"))
        await asyncio.sleep(0.3)  # let the slow request reach the dyno
        await driver.apply(table(app("shop", two)))
        started = time.monotonic()
        left = await driver.drain("app-shop", Upstream("127.0.0.1", one), timeout=10)
        assert left == 0
        assert time.monotonic() - started > 0.5, "it waited for the slow request"
        assert (await slow).status_code == 200
        assert (await asyncio.to_thread(get, driver, "shop.localhost")).text == str(two)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_haproxy_killed_from_outside_is_started_again(
    driver: hp.HAProxy, upstreams: list[int]
) -> None:
    one = upstreams[0]

    async def scenario() -> None:
        await driver.start(table(app("shop", one)))
        await driver.apply(table(app("shop", one)))
        master = hp.master_pid(driver.paths)
        worker = await driver.worker_pid()
        assert master is not None
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        os.kill(master, signal.SIGKILL)
        await driver.apply(table(app("shop", one)))
        assert hp.master_pid(driver.paths) not in (None, master)
        assert (await asyncio.to_thread(get, driver, "shop.localhost")).text == str(one)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_without_haproxy_the_error_says_what_to_install(tmp_path: Path) -> None:
    proxy = hp.HAProxy(hp.Paths(tmp_path), hp.Options(http_port=1))
    proxy.binary = None
    with pytest.raises(RouterError, match="haproxy is not installed"):
        asyncio.run(proxy.start(RouteTable()))
