"""The router's limits on a real HAProxy: an app's own timeouts changed at run time (no
reload), request bodies over the limit (413), huge headers and malformed requests (400),
slow clients (408), the control plane not answering (H99); other apps keep serving."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from conftest import free_port
from dockyard.router import haproxy as hp
from dockyard.router.table import AppRoute, RouteTable, Upstream

pytestmark = pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")

LIMIT = 4096  # bytes of request body an app accepts here
FIRST_BYTE = 3.0  # the platform's timeout to the first byte, here
SLOW_CLIENT = 1.0  # seconds a client has to send its headers, here


class Handler(BaseHTTPRequestHandler):
    """/sleep?seconds=N answers after N seconds; /upgrade switches to an echoing tunnel;
    POST answers with the length of the body it read."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/upgrade":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            with contextlib.suppress(OSError):  # the router closed it
                while data := self.connection.recv(4096):
                    self.connection.sendall(data)
            self.close_connection = True
            return
        if url.path == "/sleep":
            time.sleep(float(parse_qs(url.query)["seconds"][0]))
        self.answer(b"ok")

    def do_POST(self) -> None:
        size = len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.answer(str(size).encode())

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
    # A short path: HAProxy's Unix sockets must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="dy-limits-") as root:
        options = hp.Options(
            http_port=free_port(),
            first_byte_timeout=FIRST_BYTE,
            request_timeout=SLOW_CLIENT,
            max_body_bytes=LIMIT,
        )
        proxy = hp.HAProxy(hp.Paths(Path(root)), options)
        try:
            yield proxy
        finally:
            hp.stop(proxy.paths)


def app(
    name: str, port: int, timeout: int | None = None, idle_timeout: int | None = None
) -> AppRoute:
    return AppRoute(
        app_id=name,
        name=name,
        hostnames=frozenset({f"{name}.localhost"}),
        upstreams=frozenset({Upstream("127.0.0.1", port, "web.1")}),
        timeout=timeout,
        idle_timeout=idle_timeout,
    )


def serve(driver: hp.HAProxy, *routes: AppRoute, api: Upstream | None = None) -> None:
    table = RouteTable(routes, "api.localhost" if api else None, api)

    async def apply() -> None:
        await driver.start(table)
        await driver.apply(table)

    asyncio.run(asyncio.wait_for(apply(), 60))


def worker(driver: hp.HAProxy) -> int | None:
    return hp.parse_proc(hp.query(driver.paths, "show proc")).worker


def get(driver: hp.HAProxy, host: str, path: str = "/") -> httpx.Response:
    url = f"http://127.0.0.1:{driver.options.http_port}{path}"
    return httpx.get(url, headers={"Host": host}, timeout=30)


def raw(driver: hp.HAProxy, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection; everything the router answers until it closes."""
    with socket.create_connection(("127.0.0.1", driver.options.http_port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def refused(answer: bytes, status: int, code: str | None = None) -> None:
    """``answer`` is an HTML page with ``status``: the router's page for ``code`` if given,
    else HAProxy's own (it answers requests it cannot parse before any rule runs)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    assert b"text/html" in head.lower()
    if code is None:
        assert f"<h1>{status} ".encode() in body, body
    else:
        assert f"\r\ndockyard-error: {code}\r\n".encode() in head.lower() + b"\r\n", head
        assert f"<code>{code}</code>".encode() in body


def page(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, (reply.status_code, reply.text[:200])
    assert reply.headers["dockyard-error"] == code
    assert f"<code>{code}</code>" in reply.text


def test_an_apps_timeouts_change_at_run_time(driver: hp.HAProxy, upstream: int) -> None:
    serve(driver, app("quick", upstream, timeout=1), app("other", upstream))
    before = worker(driver)
    started = time.monotonic()
    page(get(driver, "quick.localhost", "/sleep?seconds=2"), 503, "H12")
    assert time.monotonic() - started < 1.9, "its own 1 s, not the platform's 3 s"
    assert get(driver, "other.localhost", "/sleep?seconds=2").text == "ok", "the platform's 3 s"

    # Longer: a runtime map entry, no reload.
    serve(driver, app("quick", upstream, timeout=5), app("other", upstream))
    assert get(driver, "quick.localhost", "/sleep?seconds=3.5").text == "ok"
    # Back to the platform's.
    serve(driver, app("quick", upstream), app("other", upstream))
    page(get(driver, "quick.localhost", "/sleep?seconds=3.5"), 503, "H12")
    assert worker(driver) == before
    assert driver.reloads == 0


def upgraded(driver: hp.HAProxy, host: str) -> socket.socket:
    """A connection upgraded through the router to the upstream's echo."""
    sock = socket.create_connection(("127.0.0.1", driver.options.http_port), timeout=10)
    sock.sendall(
        f"GET /upgrade HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
        "Upgrade: echo\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def echoes(sock: socket.socket) -> bool:
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b"ping"
    except OSError:
        return False


def test_an_apps_idle_window_closes_silent_websockets(driver: hp.HAProxy, upstream: int) -> None:
    serve(driver, app("chat", upstream, idle_timeout=1), app("other", upstream))
    with upgraded(driver, "chat.localhost") as short, upgraded(driver, "other.localhost") as long:
        assert echoes(short)
        assert echoes(long)
        # Silent past the app's 1 s window: closed; the other app's (55 s) stays open.
        short.settimeout(5)
        started = time.monotonic()
        assert short.recv(16) == b"", "the router closed it"
        assert 0.8 < time.monotonic() - started < 3
        assert echoes(long)


def test_bodies_over_the_limit_get_413(driver: hp.HAProxy, upstream: int) -> None:
    serve(driver, app("shop", upstream))
    url = f"http://127.0.0.1:{driver.options.http_port}/"
    ok = httpx.post(url, headers={"Host": "shop.localhost"}, content=b"x" * LIMIT, timeout=10)
    assert ok.text == str(LIMIT)
    # Refused on its Content-Length, before a byte of it reaches the app.
    answer = raw(
        driver,
        b"POST / HTTP/1.1\r\nHost: shop.localhost\r\nContent-Length: 1000000000\r\n\r\nxx",
    )
    refused(answer, 413, "413")
    assert get(driver, "shop.localhost").text == "ok"


def test_huge_headers_malformed_requests_and_slow_clients(
    driver: hp.HAProxy, upstream: int
) -> None:
    serve(driver, app("shop", upstream))
    host = b"Host: shop.localhost\r\n"
    for request in (
        b"GET / HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n",  # too large
        b"GET / HTTP/1.1\r\n" + host + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
        b"GET / HTTP/1.1\r\n" + host + b"Not a header\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n" + host + b"\r\n",
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + host + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ):
        refused(raw(driver, request), 400)
        assert get(driver, "shop.localhost").text == "ok"

    # A slowloris: headers a byte at a time, never finished. Cut off after SLOW_CLIENT.
    with socket.create_connection(("127.0.0.1", driver.options.http_port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n" + host + b"X-Slow: ")
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() < started + SLOW_CLIENT + 5:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")  # one more byte, never the end of the headers
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    refused(answer, 408)
    assert SLOW_CLIENT * 0.8 < elapsed < SLOW_CLIENT + 3
    assert get(driver, "shop.localhost").text == "ok"


def test_the_control_plane_not_answering_is_h99(driver: hp.HAProxy, upstream: int) -> None:
    closed = free_port()  # nothing listens there
    serve(driver, app("shop", upstream), api=Upstream("127.0.0.1", closed, "api"))
    page(get(driver, "api.localhost", "/healthz"), 503, "H99")
    assert get(driver, "shop.localhost").text == "ok"
