"""ACME HTTP-01 challenges answered by a real HAProxy: for any hostname, ahead of the app and
of its maintenance page, through reloads and restarts; tokens the platform did not publish
go on to the app, and nothing but base64url reaches the runtime API."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from dockyard.router import RouterError
from dockyard.router import haproxy as hp
from dockyard.router.table import MAINTENANCE, WEB, AppRoute, RouteTable, Upstream

pytestmark = pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
ANSWER = f"{TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = f"/.well-known/acme-challenge/{TOKEN}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"app saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver() -> Iterator[hp.HAProxy]:
    with tempfile.TemporaryDirectory(prefix="dy-acme-") as root:
        proxy = hp.HAProxy(hp.Paths(Path(root)), hp.Options(http_port=free_port()))
        try:
            yield proxy
        finally:
            hp.stop(proxy.paths)


def shop(port: int, state: str = WEB, *more: str) -> RouteTable:
    route = AppRoute(
        app_id="shop",
        name="shop",
        hostnames=frozenset({"shop.localhost", "www.example.org", *more}),
        upstreams=frozenset({Upstream("127.0.0.1", port, "web.1")}),
        state=state,
    )
    return RouteTable((route,), None, None)


def get(driver: hp.HAProxy, host: str, path: str = PATH) -> httpx.Response:
    url = f"http://127.0.0.1:{driver.options.http_port}{path}"
    return httpx.get(url, headers={"Host": host}, timeout=10)


def test_published_challenges_are_answered_before_the_app(
    driver: hp.HAProxy, upstream: int
) -> None:
    async def scenario() -> None:
        await driver.start(shop(upstream))
        await driver.apply(shop(upstream))
        assert get(driver, "www.example.org").text == f"app saw {PATH}", "not published yet"
        await driver.set_challenge(TOKEN, ANSWER)
        for host in ("www.example.org", "unknown.example.net"):
            reply = get(driver, host)
            assert reply.status_code == 200
            assert reply.text == ANSWER
            assert reply.headers["content-type"].startswith("text/plain")
        # Other tokens, and other paths, are the app's.
        other = "/.well-known/acme-challenge/someone-elses-token"
        assert get(driver, "www.example.org", other).text == f"app saw {other}"
        assert get(driver, "www.example.org", "/").text == "app saw /"
        # In maintenance the app's requests get the H80 page; the CA still gets its answer.
        await driver.apply(shop(upstream, MAINTENANCE))
        assert get(driver, "www.example.org", "/").headers["dockyard-error"] == "H80"
        assert get(driver, "www.example.org").text == ANSWER
        # A reload (a new hostname that needs none is not one; a new app is) keeps it.
        reloads = driver.reloads
        bigger = shop(upstream, WEB)
        other_app = AppRoute("blog", "blog", frozenset({"blog.localhost"}), frozenset(), WEB)
        await driver.apply(RouteTable((*bigger.apps, other_app), None, None))
        assert driver.reloads == reloads + 1
        assert get(driver, "www.example.org").text == ANSWER
        # Withdrawn: the app's again.
        await driver.set_challenge(TOKEN, None)
        assert get(driver, "www.example.org").text == f"app saw {PATH}"
        await driver.set_challenge(TOKEN, None)  # twice is fine

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_a_restarted_haproxy_still_answers(driver: hp.HAProxy, upstream: int) -> None:
    async def scenario() -> None:
        await driver.start(shop(upstream))
        await driver.set_challenge(TOKEN, ANSWER)
        assert hp.stop(driver.paths)
        await driver.apply(shop(upstream))  # finds it gone, starts it again
        assert get(driver, "www.example.org").text == ANSWER

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_an_adopting_control_plane_drops_stale_challenges(
    driver: hp.HAProxy, upstream: int
) -> None:
    async def scenario() -> None:
        await driver.start(shop(upstream))
        await driver.apply(shop(upstream))
        await driver.set_challenge(TOKEN, ANSWER)
        # A new control plane adopts the running HAProxy: the old one's order is over.
        again = hp.HAProxy(driver.paths, driver.options)
        assert await again.start(shop(upstream)) is True
        await again.apply(shop(upstream))
        assert get(driver, "www.example.org").text == f"app saw {PATH}"
        assert driver.paths.acme_map.read_text() == ""

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


@pytest.mark.parametrize(
    ("token", "answer"),
    [
        ("tok en", ANSWER),
        ("token\nshow map", ANSWER),
        (TOKEN, "no-dot-in-it"),
        (TOKEN, f"{TOKEN}.x;del map"),
        ("", ANSWER),
    ],
)
def test_only_base64url_tokens_reach_the_runtime_api(
    driver: hp.HAProxy, token: str, answer: str
) -> None:
    with pytest.raises(RouterError, match="not an ACME HTTP-01 token"):
        asyncio.run(driver.set_challenge(token, answer))
    assert not driver.paths.acme_map.exists() or driver.paths.acme_map.read_text() == ""
