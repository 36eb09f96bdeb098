"""HTTPS on a real HAProxy, driven without the rest of the platform: certificates added,
replaced and removed through the runtime API (the same worker throughout), SNI picking the
most specific certificate, the default for clients without SNI, TLS 1.1 refused, HTTP/2 by
ALPN, X-Forwarded-Proto, HTTPS-only redirects, and certificates restored after a restart."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from certs.making import Issued, TestCA
from conftest import free_port
from dockyard.certs import Served
from dockyard.router import haproxy as hp
from dockyard.router import tls
from dockyard.router.table import AppRoute, RouteTable, Upstream

pytestmark = pytest.mark.skipif(hp.find_binary() is None, reason="haproxy is not installed")


class Echo(BaseHTTPRequestHandler):
    """Answers with the forwarding headers it got, as JSON."""

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "path": self.path,
                "proto": self.headers.get("X-Forwarded-Proto"),
                "port": self.headers.get("X-Forwarded-Port"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def driver() -> Iterator[hp.HAProxy]:
    # A short path: HAProxy's Unix sockets must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="dy-tls-") as root:
        options = hp.Options(http_port=free_port(), https_port=free_port())
        proxy = hp.HAProxy(hp.Paths(Path(root)), options)
        try:
            yield proxy
        finally:
            hp.stop(proxy.paths)


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def served(name: str, issued: Issued, *hostnames: str) -> Served:
    return Served(name, issued.chain + issued.key, tuple(hostnames))


def shop(port: int, *, https_only: bool = False) -> AppRoute:
    return AppRoute(
        app_id="shop",
        name="shop",
        hostnames=frozenset({"shop.localhost", "www.shop.test", "*.shop.test"}),
        upstreams=frozenset({Upstream("127.0.0.1", port, "web.1")}),
        https_only=https_only,
    )


def table(app: AppRoute, *certificates: Served) -> RouteTable:
    return RouteTable((app,), None, None, certificates)


def presented(port: int, sni: str | None, ca: TestCA) -> bytes:
    """The certificate (DER) the router presents for ``sni`` (None: the client sends none)."""
    context = ssl.create_default_context(cadata=ca.root_pem)
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def https_get(port: int, host: str, ca: TestCA, path: str = "/") -> httpx.Response:
    """A GET over HTTPS for ``host``, verified against the test CA (SNI is ``host``)."""
    context = ssl.create_default_context(cadata=ca.root_pem)
    transport = httpx.HTTPTransport(verify=context)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(
            f"https://127.0.0.1:{port}{path}",
            headers={"Host": host},
            extensions={"sni_hostname": host},  # SNI, and the name the certificate must have
        )


def test_certificates_are_served_by_sni_and_changed_without_reloads(
    driver: hp.HAProxy, upstream: int, ca: TestCA
) -> None:
    port = driver.options.https_port
    assert port is not None
    default = ca.issue(["*.localhost", "localhost", "shop.localhost"])
    www = ca.issue(["www.shop.test"])
    wildcard = ca.issue(["*.shop.test"])

    async def scenario() -> None:
        first = table(
            shop(upstream),
            served("default", default),
            served("c-www", www, "www.shop.test"),
            served("c-wild", wildcard, "*.shop.test"),
        )
        assert await driver.start(first) is False
        await driver.apply(first)
        worker = await driver.worker_pid()

        def check(sni: str | None, expected: Issued) -> None:
            assert presented(port, sni, ca) == expected.der, sni

        # The most specific certificate wins; clients without SNI get the default.
        await asyncio.to_thread(check, "www.shop.test", www)
        await asyncio.to_thread(check, "a.shop.test", wildcard)
        await asyncio.to_thread(check, "shop.localhost", default)
        await asyncio.to_thread(check, "nothing.example.org", default)
        await asyncio.to_thread(check, None, default)

        # Replaced: the same file gets the renewed certificate.
        renewed = ca.issue(["www.shop.test"])
        second = table(
            shop(upstream),
            served("default", default),
            served("c-www", renewed, "www.shop.test"),
            served("c-wild", wildcard, "*.shop.test"),
        )
        assert await driver.apply(second) > 0
        await asyncio.to_thread(check, "www.shop.test", renewed)
        assert await driver.apply(second) == 0, "the same certificates again change nothing"

        # Removed: www falls back to the wildcard; added: a new one is served at once.
        third = table(
            shop(upstream),
            served("default", default),
            served("c-wild", wildcard, "*.shop.test"),
        )
        await driver.apply(third)
        await asyncio.to_thread(check, "www.shop.test", wildcard)
        assert not (driver.paths.root / "certs" / "c-www.pem").exists()
        api = ca.issue(["api.shop.test", "www.shop.test"])
        fourth = table(
            shop(upstream),
            served("default", default),
            served("c-wild", wildcard, "*.shop.test"),
            served("c-api", api, "api.shop.test", "www.shop.test"),
        )
        await driver.apply(fourth)
        await asyncio.to_thread(check, "api.shop.test", api)
        await asyncio.to_thread(check, "www.shop.test", api)

        # A certificate that serves other hostnames: its new line comes, its old one goes.
        fifth = table(
            shop(upstream),
            served("default", default),
            served("c-wild", wildcard, "*.shop.test"),
            served("c-api", api, "api.shop.test"),
        )
        await driver.apply(fifth)
        await asyncio.to_thread(check, "www.shop.test", wildcard)
        await asyncio.to_thread(check, "api.shop.test", api)
        assert await driver.apply(fifth) == 0

        # The default itself is replaced in place, and stays the default.
        new_default = ca.issue(["*.localhost", "localhost", "shop.localhost"])
        sixth = table(
            shop(upstream),
            served("default", new_default),
            served("c-wild", wildcard, "*.shop.test"),
            served("c-api", api, "api.shop.test"),
        )
        await driver.apply(sixth)
        await asyncio.to_thread(check, None, new_default)
        await asyncio.to_thread(check, "shop.localhost", new_default)

        assert await driver.worker_pid() == worker, "no reload: the same worker serves"
        assert driver.reloads == 0

        # The files are the platform's only, and a control plane started again adopts the
        # HAProxy, asks it what it serves, and finds nothing to change.
        for path in (driver.paths.root / "certs").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        again = hp.HAProxy(driver.paths, driver.options)
        assert await again.start(sixth) is True
        assert await again.apply(sixth) == 0

        # HAProxy started afresh reads the same certificates from disk.
        await asyncio.to_thread(hp.stop, driver.paths)
        restarted = hp.HAProxy(driver.paths, driver.options)
        assert await restarted.start(sixth) is False
        await restarted.apply(sixth)
        await asyncio.to_thread(check, "api.shop.test", api)
        await asyncio.to_thread(check, "b.shop.test", wildcard)
        await asyncio.to_thread(check, None, new_default)

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_tls_versions_alpn_headers_and_https_only(
    driver: hp.HAProxy, upstream: int, ca: TestCA
) -> None:
    port = driver.options.https_port
    assert port is not None
    default = ca.issue(["*.localhost", "localhost", "shop.localhost"])

    async def scenario() -> None:
        plain = table(shop(upstream), served("default", default))
        await driver.start(plain)
        await driver.apply(plain)

        # HTTPS reaches the app, which is told so.
        reply = await asyncio.to_thread(https_get, port, "shop.localhost", ca, "/x?y=1")
        assert reply.status_code == 200
        assert reply.json() == {"path": "/x?y=1", "proto": "https", "port": str(port)}
        reply = await asyncio.to_thread(
            httpx.get,
            f"http://127.0.0.1:{driver.options.http_port}/",
            headers={"Host": "shop.localhost", "X-Forwarded-Proto": "https"},
        )
        assert reply.json()["proto"] == "http", "a client cannot claim https"

        # TLS 1.2 and HTTP/2 by ALPN; TLS 1.1 is refused.
        assert await asyncio.to_thread(negotiate, port, ["h2", "http/1.1"]) == ("TLSv1.3", "h2")
        assert await asyncio.to_thread(negotiate, port, ["http/1.1"], tls12=True) == (
            "TLSv1.2",
            "http/1.1",
        )
        with pytest.raises(ssl.SSLError, match=r"(?i)protocol version"):
            await asyncio.to_thread(negotiate, port, ["http/1.1"], tls11=True)

        # HTTPS-only: HTTP gets a 301 to the same URL over HTTPS, except ACME challenges.
        strict = table(shop(upstream, https_only=True), served("default", default))
        await driver.apply(strict)
        reply = await asyncio.to_thread(
            httpx.get,
            f"http://127.0.0.1:{driver.options.http_port}/a/b?c=d",
            headers={"Host": "www.shop.test"},
        )
        assert reply.status_code == 301
        assert reply.headers["location"] == f"https://www.shop.test:{port}/a/b?c=d"
        challenge = await asyncio.to_thread(
            httpx.get,
            f"http://127.0.0.1:{driver.options.http_port}/.well-known/acme-challenge/abc",
            headers={"Host": "www.shop.test"},
        )
        assert challenge.status_code == 200, "the app (or the platform) answers challenges"
        reply = await asyncio.to_thread(https_get, port, "shop.localhost", ca)
        assert reply.status_code == 200
        await driver.apply(plain)
        reply = await asyncio.to_thread(
            httpx.get,
            f"http://127.0.0.1:{driver.options.http_port}/",
            headers={"Host": "www.shop.test"},
        )
        assert reply.status_code == 200, "HTTPS-only off: HTTP is served again"
        assert driver.reloads == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def negotiate(
    port: int, alpn: list[str], *, tls12: bool = False, tls11: bool = False
) -> tuple[str | None, str | None]:
    """The TLS version and ALPN protocol a handshake with the router settles on."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    if tls11:
        # Python's OpenSSL refuses TLS 1.1 itself unless its security level allows it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated: the very reason the router refuses it
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    elif tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="shop.localhost") as sock,
    ):
        return sock.version(), sock.selected_alpn_protocol()


def test_the_crt_list_puts_the_default_first_and_names_hostnames(tmp_path: Path) -> None:
    ca = TestCA()
    default, other = ca.issue(["*.localhost"]), ca.issue(["a.example.org"])
    listing = tls.crt_list_text(
        tmp_path,
        table(shop(1), served("default", default), served("x1", other, "a.example.org")),
    )
    assert listing == (f"{tmp_path}/certs/default.pem\n{tmp_path}/certs/x1.pem a.example.org\n")
    assert tls.parse_crt_list(
        f"# {tmp_path}/certs.list\n{tmp_path}/certs/default.pem:1\n"
        f"{tmp_path}/certs/x1.pem:2 a.example.org *.b.org\n"
    ) == [
        tls.Line(f"{tmp_path}/certs/default.pem", 1, ()),
        tls.Line(f"{tmp_path}/certs/x1.pem", 2, ("a.example.org", "*.b.org")),
    ]
