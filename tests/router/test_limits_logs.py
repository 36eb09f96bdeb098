"""Router log records at rate: HAProxy forwards its log ring over one stream to the control
plane, records framed by their length. Every request of a burst arrives, with the time HAProxy
logged it; records kept while nobody reads arrive once the reader is back; requests never
wait for their line."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import free_port, wait_until
from dockyard.logs.lines import now
from dockyard.router import haproxy as hp
from dockyard.router.logs import LogReceiver, Request, frames
from dockyard.router.table import AppRoute, RouteTable, Upstream


def test_frames_are_split_by_their_length() -> None:
    assert frames(b"3 abc5 hello") == ([b"abc", b"hello"], b"")
    assert frames(b"3 abc5 hel") == ([b"abc"], b"5 hel")
    assert frames(b"3 abc12") == ([b"abc"], b"12")
    assert frames(b"11 with spaces") == ([b"with spaces"], b"")
    assert frames(b"") == ([], b"")
    # Not a frame: no length, or a length too long to be one.
    assert frames(b"3 abcxyz hello") == ([b"abc"], None)
    assert frames(b"1234567890123 x") == ([], None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver() -> Iterator[hp.HAProxy]:
    with tempfile.TemporaryDirectory(prefix="dy-logs-") as root:
        proxy = hp.HAProxy(hp.Paths(Path(root)), hp.Options(http_port=free_port()))
        try:
            yield proxy
        finally:
            hp.stop(proxy.paths)


@pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")
def test_every_request_of_a_burst_is_logged_and_a_gap_is_caught_up(
    driver: hp.HAProxy, upstream: int
) -> None:
    got: list[Request] = []
    lock = threading.Lock()

    def sink(requests: list[Request]) -> None:
        with lock:
            got.extend(requests)

    route = AppRoute(
        "shop", "shop", frozenset({"shop.localhost"}), frozenset({Upstream("127.0.0.1", upstream)})
    )
    table = RouteTable((route,), None, None)
    receiver = LogReceiver(driver.paths.log_socket, sink)

    async def start() -> None:
        await receiver.start()
        await driver.start(table)
        await driver.apply(table)

    asyncio.run(asyncio.wait_for(start(), 60))
    url = f"http://127.0.0.1:{driver.options.http_port}/"

    def burst(tag: str, count: int) -> None:
        with httpx.Client(headers={"Host": "shop.localhost"}, timeout=10) as client:
            for n in range(count):
                reply = client.get(url, headers={"X-Request-Id": f"{tag}-{n:04d}-0123456789abcdef"})
                assert reply.status_code == 200

    def ids(tag: str) -> set[str]:
        with lock:
            return {r.request_id for r in got if r.request_id.startswith(tag + "-")}

    try:
        started = now()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: burst(f"burst{n}", 500), range(4)))
        wait_until(lambda: sum(len(ids(f"burst{n}")) for n in range(4)) == 2000, 20)
        with lock:
            first = got[0]
        assert first.backend == "app-shop"
        assert first.status == 200
        assert first.at is not None
        assert started - 1_000_000 < first.at < now() + 1_000_000

        # Nobody reads: requests go on; the records wait in HAProxy's ring.
        receiver.close()
        gap_started = now()
        burst("gap", 200)
        receiver = LogReceiver(driver.paths.log_socket, sink)
        asyncio.run(receiver.start())
        wait_until(lambda: len(ids("gap")) == 200, 30)
        with lock:
            stamps = [r.at for r in got if r.request_id.startswith("gap-") and r.at is not None]
        assert len(stamps) == 200
        assert min(stamps) >= gap_started - 1_000_000, "logged when served, not when read"
    finally:
        receiver.close()
