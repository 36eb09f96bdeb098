"""Log drains against real receivers on loopback: a syslog server over TCP and over TLS (its
certificate made here with ``cryptography``), and an HTTPS server. Framing (RFC 6587 octet
counting), the RFC 5424 fields, order, retries after the receiver was down, certificate
failures, the L10 report when a drain is too slow, and resuming after a restart."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port
from dockyard import accounts, apps
from dockyard.backoff import Backoff
from dockyard.errors import InvalidParams, SettingsError
from dockyard.logs import drain_urls, drains
from dockyard.logs.drain_delivery import (
    Cursors,
    DrainFailed,
    Drains,
    DrainSpec,
    DrainWorker,
    tls_context,
    transport_for,
)
from dockyard.logs.drain_frames import frame, frame_id, read_frames
from dockyard.logs.hub import LogHub
from dockyard.logs.lines import Line
from dockyard.store import Database

T = TypeVar("T")
APP_ID = "0b6f1f0e-7a1c-4c1e-9d4e-2f3a4b5c6d7e"
TOKEN = "d.6a0f2a51-37a4-4c8e-9f0e-6b1f8f7c2d11"
AT = 1_767_607_200_123_456  # 2026-01-05T10:00:00.123456+00:00
FIELDS = "<190>1 2026-01-05T10:00:00.123456+00:00 " + TOKEN + " shop web.1 app - "


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(60):
            return await scenario()

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def fast_backoff() -> Backoff:
    return Backoff(first=0.05, factor=2.0, cap=0.2)


# -- URLs and frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "needs a URL"),
        ("http://logs.example.com/in", "use syslog://HOST:PORT"),
        ("tcp://logs.example.com:514", "use syslog://HOST:PORT"),
        ("syslog://logs.example.com", "needs a port"),
        ("syslog+tls://:6514", "no host"),
        ("https:///path", "no host"),
        ("syslog://logs.example.com:99999", "port must be a number"),
        ("syslog://user:pw@logs.example.com:514", "no user or password"),
        ("syslog://logs.example.com:514/path", "no path"),
        ("https://logs.example.com/a b", "spaces"),
    ],
)
def test_bad_drain_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        drain_urls.parse(url)
    assert why in raised.value.message


def test_good_drain_urls_and_passwords_never_shown() -> None:
    assert drain_urls.parse("syslog://logs.example.com:514").port == 514
    assert drain_urls.parse("syslog+tls://logs.example.com:6514").tls
    https = drain_urls.parse("https://user:s3cret@logs.example.com/in?x=1")
    assert (https.host, https.port) == ("logs.example.com", 443)
    assert drain_urls.redact("https://user:s3cret@logs.example.com/in") == (
        "https://user:***@logs.example.com/in"
    )
    with pytest.raises(InvalidParams) as raised:
        drain_urls.parse("https://user:s3cret@logs.example.com/in#frag")
    assert "s3cret" not in raised.value.message
    assert drains.new_token().startswith("d.")


def test_a_frame_is_octet_counted_rfc5424() -> None:
    data = frame(Line(AT, "app", "web.1", "héllo"), token=TOKEN, app_name="shop")
    count, _, rest = data.partition(b" ")
    assert int(count) == len(rest)
    assert rest == (FIELDS + "héllo").encode()
    platform = frame(Line(AT, "dockyard", "router", "at=info"), token=TOKEN, app_name="shop")
    assert b"<189>1 " in platform
    assert b" shop router dockyard - at=info" in platform
    found, left = read_frames(data + platform + b"12 <19")
    assert found == [rest, platform.partition(b" ")[2]]
    assert left == b"12 <19"
    with pytest.raises(ValueError, match="octet count"):
        read_frames(b"abc def")
    lines = [Line(AT, "app", "web.1", "a", 5), Line(AT, "app", "web.1", "b", 9)]
    assert frame_id(TOKEN, lines) == frame_id(TOKEN, list(lines))
    assert frame_id(TOKEN, lines) != frame_id(TOKEN, lines[:1])


# -- receivers ------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One drain's connection to a :class:`SyslogReceiver`."""

    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver
        self.left = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.receiver.connections.add(transport)
        if self.receiver.stopped:  # accepted just as the receiver stopped
            transport.abort()
            return
        if not self.receiver.read:
            transport.pause_reading()  # a drain that hangs: its TCP window fills up

    def data_received(self, data: bytes) -> None:
        found, self.left = read_frames(self.left + data)
        self.receiver.messages.extend(found)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@dataclass
class SyslogReceiver:
    """An RFC 6587 syslog server on loopback (TLS with ``context``); ``read=False`` accepts
    connections and never reads them (a drain that hangs)."""

    port: int = 0
    context: ssl.SSLContext | None = None
    read: bool = True
    messages: list[bytes] = field(default_factory=list)
    connections: set[asyncio.Transport] = field(default_factory=set)  # every one it accepted
    server: asyncio.Server | None = None
    stopped: bool = False

    async def start(self) -> SyslogReceiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not self.read:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Connection(self), sock=sock, ssl=self.context
        )
        return self

    def texts(self) -> list[str]:
        return [m.decode().split(" - ", 1)[1] for m in self.messages]

    async def stop(self) -> None:
        self.stopped = True
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for transport in self.connections:
            transport.abort()
        await asyncio.sleep(0.05)  # connections still being accepted, and the aborted ones, close


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A private CA and a certificate it signed for 127.0.0.1, as a drain would present."""
    directory = tmp_path_factory.mktemp("certs")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dockyard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes


class HttpsReceiver:
    """An HTTPS server on loopback (a thread) that keeps what it is POSTed; it answers each
    request with the next of ``statuses`` (then 200)."""

    def __init__(self, certificates: Certificates, statuses: list[int] | None = None) -> None:
        self.posts: list[Post] = []
        self.statuses = list(statuses or [])
        received = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a drain that connects and says nothing does not hold a thread

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # the drain went away while sending: not received
                received.posts.append(Post(dict(self.headers.items()), body))
                status = received.statuses.pop(0) if received.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The TLS handshake in each connection's thread, not in the accepting one, which a
        # drain that goes away mid-handshake would otherwise hold up.
        self.server.socket = certificates.server_context().wrap_socket(
            self.server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self, posts: list[Post]) -> list[str]:
        found = []
        for post in posts:
            messages, left = read_frames(post.body)
            assert left == b""
            found += [m.decode().split(" - ", 1)[1] for m in messages]
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# -- workers ---------------------------------------------------------------------------------


@asynccontextmanager
async def started_hub(directory: Path, **options: Any) -> AsyncIterator[LogHub]:
    hub = LogHub(directory, **options)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


@asynccontextmanager
async def worker(
    hub: LogHub,
    url: str,
    directory: Path,
    *,
    ca_file: Path | None = None,
    buffer_lines: int = 10_000,
    timeout: float = 5.0,
    backoff: Backoff | None = None,
) -> AsyncIterator[DrainWorker]:
    spec = DrainSpec("drain-1", APP_ID, "shop", url, TOKEN)
    # The receivers listen on loopback, which drains refuse unless allowed.
    transport = transport_for(url, tls_context(ca_file), timeout=timeout, private=True)
    running = DrainWorker(
        spec,
        hub,
        transport,
        Cursors(directory / "cursors"),
        buffer_lines=buffer_lines,
        backoff=backoff or fast_backoff(),
    )
    task = asyncio.create_task(running.run())
    await until(lambda: running.cursors.load(spec.id) is not None)
    try:
        yield running
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # its aborted connection closes
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise AssertionError("the worker failed") from task.exception()


def publish(hub: LogHub, texts: list[str], process: str = "web.1") -> None:
    hub.publish(APP_ID, [Line(AT, "app", process, text) for text in texts])


def stream(hub: LogHub) -> list[str]:
    return [f"{line.tag}: {line.message}" for line in hub._stream(APP_ID).ring]


def test_syslog_drain_gets_every_line_framed_with_its_fields_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        receiver = await SyslogReceiver().start()
        async with started_hub(tmp_path / "logs") as hub:
            publish(hub, ["before"])  # a new drain gets what comes after it starts
            async with worker(hub, f"syslog://127.0.0.1:{receiver.port}", tmp_path):
                publish(hub, ["after"])
                texts = [f"line {n}" for n in range(3000)]
                for start in range(0, 3000, 250):
                    publish(hub, texts[start : start + 250])
                    await asyncio.sleep(0)
                hub.publish(APP_ID, [Line(AT, "dockyard", "router", "at=info status=200")])
                await until(lambda: len(receiver.messages) >= 3002)
        await receiver.stop()
        assert receiver.texts() == ["after", *texts, "at=info status=200"]
        assert receiver.messages[1].decode() == FIELDS + "line 0"
        assert (
            receiver.messages[-1]
            .decode()
            .startswith(
                "<189>1 2026-01-05T10:00:00.123456+00:00 " + TOKEN + " shop router dockyard - "
            )
        )
        assert len(receiver.connections) == 1

    run(scenario)


def test_a_drain_that_was_down_gets_everything_once_it_is_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_port()
        async with (
            started_hub(tmp_path / "logs") as hub,
            worker(hub, f"syslog://127.0.0.1:{port}", tmp_path) as running,
        ):
            publish(hub, [f"early {n}" for n in range(50)])
            await until(lambda: any("Error L13" in line for line in stream(hub)))
            failed = next(line for line in stream(hub) if "Error L13" in line)
            assert failed == (
                f"dockyard[logplex]: Error L13 (delivery error): drain {TOKEN} "
                f"(syslog://127.0.0.1:{port}) failed: connection refused; retrying, lines kept"
            )
            publish(hub, [f"late {n}" for n in range(50)])
            receiver = await SyslogReceiver(port).start()
            await until(lambda: any(t.startswith("Drain ") for t in receiver.texts()))
            assert running.failures == 0
        await receiver.stop()
        shown = [t for t in receiver.texts() if not t.startswith(("Error L13", "Drain "))]
        assert shown == [f"early {n}" for n in range(50)] + [f"late {n}" for n in range(50)]
        assert any(t.startswith("Drain " + TOKEN + " (syslog") for t in receiver.texts())

    run(scenario)


def test_syslog_over_tls_verifies_the_certificate(
    tmp_path: Path, certificates: Certificates
) -> None:
    async def scenario() -> None:
        receiver = await SyslogReceiver(context=certificates.server_context()).start()
        url = f"syslog+tls://127.0.0.1:{receiver.port}"
        async with started_hub(tmp_path / "logs") as hub:
            # Without the private CA, the certificate is refused, said, and retried.
            async with worker(hub, url, tmp_path / "untrusted"):
                publish(hub, ["secret line"])
                await until(lambda: any("Error L14" in line for line in stream(hub)))
            assert receiver.messages == []
            rejected = next(line for line in stream(hub) if "Error L14" in line)
            assert "certificate rejected: unable to get local issuer certificate" in rejected
            async with worker(hub, url, tmp_path / "trusted", ca_file=certificates.ca):
                publish(hub, [f"tls {n}" for n in range(100)])
                await until(lambda: len(receiver.messages) >= 100)
        await receiver.stop()
        assert receiver.texts() == [f"tls {n}" for n in range(100)]
        assert receiver.messages[0].decode().startswith("<190>1 ")

    run(scenario)


def test_https_drain_posts_logplex_batches_and_retries_the_same_frame(
    tmp_path: Path, certificates: Certificates
) -> None:
    receiver = HttpsReceiver(certificates, statuses=[500, 503])

    async def scenario() -> None:
        url = f"https://drain:s3cret@127.0.0.1:{receiver.port}/logs?app=shop"
        async with (
            started_hub(tmp_path / "logs") as hub,
            worker(hub, url, tmp_path, ca_file=certificates.ca) as running,
        ):
            publish(hub, [f"https {n}" for n in range(1200)])
            await until(lambda: "https 1199" in receiver.texts(receiver.posts))
            failures = [line for line in stream(hub) if "Error L13" in line]
            assert failures
            assert "HTTP 500" in failures[0]
            assert all("s3cret" not in line for line in stream(hub))
            # Stop once it has sent everything, not in the middle of a POST.
            await until(lambda: running.cursor == hub.last_seq(APP_ID))

    try:
        run(scenario)
    finally:
        receiver.stop()
    posts = list(receiver.posts)  # a last POST may still come in as the worker stops
    first, retried, again = posts[:3]
    assert first.headers["Logplex-Frame-Id"] == retried.headers["Logplex-Frame-Id"]
    assert again.headers["Logplex-Frame-Id"] == first.headers["Logplex-Frame-Id"]
    assert first.body == again.body
    post = posts[2]
    assert post.headers["Content-Type"] == "application/logplex-1"
    assert post.headers["Logplex-Drain-Token"] == TOKEN
    assert post.headers["Logplex-Msg-Count"] == "500"
    assert post.headers["Authorization"] == "Basic " + base64.b64encode(b"drain:s3cret").decode()
    assert [p.headers["Logplex-Msg-Count"] for p in posts[:4]] == ["500"] * 4
    delivered = receiver.texts(posts[2:])  # the two refused ones came again
    assert sum(int(p.headers["Logplex-Msg-Count"]) for p in posts[2:]) == len(delivered)
    assert [t for t in delivered if t.startswith("https ")] == [f"https {n}" for n in range(1200)]
    assert delivered[1200].startswith("Error L13 (delivery error): drain ")


def test_a_drain_too_slow_drops_the_oldest_and_says_l10(tmp_path: Path) -> None:
    async def scenario() -> None:
        receiver = await SyslogReceiver(read=False).start()
        async with (
            started_hub(tmp_path / "logs", history_bytes=64 * 1024 * 1024) as hub,
            worker(
                hub,
                f"syslog://127.0.0.1:{receiver.port}",
                tmp_path,
                buffer_lines=200,
                timeout=0.5,
            ) as running,
        ):
            big = "x" * 5000
            for batch in range(20):
                publish(hub, [f"{batch}-{n} {big}" for n in range(100)])
                await asyncio.sleep(0.01)
            await until(lambda: any("Error L10" in line for line in stream(hub)))
            l10 = next(line for line in stream(hub) if "Error L10" in line)
            assert l10.startswith("dockyard[logplex]: Error L10 (output buffer overflow): ")
            assert f"messages dropped for drain {TOKEN} (syslog://127.0.0.1:" in l10
            dropped = int(l10.split(": ")[2].split()[0])
            assert dropped > 0
            # Once the app is quiet, the drain is at most its buffer behind it.
            await until(lambda: hub.last_seq(APP_ID) - running.cursor <= 200 + 10)
        await receiver.stop()

    run(scenario)


def test_a_drain_resumes_after_a_restart_without_losing_or_repeating(tmp_path: Path) -> None:
    async def scenario() -> None:
        receiver = await SyslogReceiver().start()
        url = f"syslog://127.0.0.1:{receiver.port}"
        async with (
            started_hub(tmp_path / "logs") as hub,
            worker(hub, url, tmp_path),
        ):
            publish(hub, [f"first {n}" for n in range(100)])
            await until(lambda: len(receiver.messages) >= 100)
        # The control plane is down: lines still reach the app's history (as dyno output
        # read after the restart does).
        async with started_hub(tmp_path / "logs") as hub:
            publish(hub, [f"meanwhile {n}" for n in range(100)])
        async with (
            started_hub(tmp_path / "logs") as hub,
            worker(hub, url, tmp_path),
        ):
            publish(hub, [f"after {n}" for n in range(100)])
            await until(lambda: len(receiver.messages) >= 300)
            await asyncio.sleep(0.1)
        await receiver.stop()
        assert receiver.texts() == [
            *(f"first {n}" for n in range(100)),
            *(f"meanwhile {n}" for n in range(100)),
            *(f"after {n}" for n in range(100)),
        ]

    run(scenario)


# -- the service ----------------------------------------------------------------------------


def test_the_service_follows_the_drains_in_the_store(
    tmp_path: Path, sqlite_database: Database
) -> None:
    with sqlite_database.transaction() as session:
        user, _token = accounts.create_user(session, "owner@example.com")
        app = apps.create(session, user, "shop")
        app_id = str(app.id)

    async def scenario() -> None:
        receiver = await SyslogReceiver().start()
        url = f"syslog://127.0.0.1:{receiver.port}"
        async with started_hub(tmp_path / "logs") as hub:
            service = Drains(
                sqlite_database,
                hub,
                tmp_path / "drains",
                backoff=fast_backoff,
                private_addresses=True,
            )
            await service.start()
            try:
                assert service.workers == {}
                with sqlite_database.transaction() as session:
                    found = apps.find(session, user, "shop")
                    drain = drains.add(session, found, url, private=True)
                    drain_id, token = str(drain.id), drain.token
                service.poke()
                await until(lambda: drain_id in service.workers)
                running = service.workers[drain_id][0]
                await until(lambda: service.cursors.load(drain_id) is not None)
                hub.publish(app_id, [Line(AT, "app", "web.1", "via the service")])
                await until(lambda: len(receiver.messages) == 1)
                assert f" {token} shop web.1 app - via the service" in receiver.messages[0].decode()
                assert running.delivered == 1
                with sqlite_database.transaction() as session:
                    drains.remove(session, apps.find(session, user, "shop"), token)
                service.poke()
                await until(lambda: drain_id not in service.workers)
                assert service.cursors.load(drain_id) is None
            finally:
                await service.close()
        await receiver.stop()

    run(scenario)


def test_an_https_drain_with_a_bad_certificate_is_reported_not_fatal(
    tmp_path: Path, certificates: Certificates
) -> None:
    receiver = HttpsReceiver(certificates)

    async def scenario() -> None:
        url = f"https://drain:s3cret@127.0.0.1:{receiver.port}/logs"
        async with started_hub(tmp_path / "logs") as hub:
            # It retries at once, then waits: it is stopped while it waits, not in the middle
            # of a TLS handshake (which httpcore would leave unclosed).
            slow = Backoff(first=30.0, cap=30.0)
            async with worker(hub, url, tmp_path / "untrusted", backoff=slow) as running:
                publish(hub, ["kept for later"])
                await until(lambda: any("Error L14" in line for line in stream(hub)))
                await until(lambda: running.failures >= 2)
            rejected = next(line for line in stream(hub) if "Error L14" in line)
            assert "certificate rejected" in rejected
            assert "https://drain:***@127.0.0.1:" in rejected
            assert "s3cret" not in rejected

    try:
        run(scenario)
    finally:
        receiver.stop()
    assert receiver.posts == []


def test_a_ca_file_that_holds_no_certificate_is_a_settings_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SettingsError) as raised:
        tls_context(bad)
    assert raised.value.message.startswith(f"DOCKYARD_DRAIN_CA_FILE={str(bad)!r}: no PEM CA")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # a cloud's metadata service
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 - an address to check, not to bind
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_drains_go_to_public_addresses_only(address: str, allowed: bool) -> None:
    assert drain_urls.public(address) is allowed


def test_a_name_that_resolves_to_a_private_address_is_not_sent_to(tmp_path: Path) -> None:
    async def scenario() -> None:
        receiver = await SyslogReceiver().start()
        try:
            for url in (
                f"syslog://localhost:{receiver.port}",
                f"https://localhost:{receiver.port}/",
            ):
                transport = transport_for(url, tls_context(None), timeout=5.0)
                spec = DrainSpec("drain-1", APP_ID, "shop", url, TOKEN)
                with pytest.raises(DrainFailed) as failed:
                    await transport.send([Line(AT, "app", "web.1", "hello")], spec)
                await transport.close()
                assert "localhost (127.0.0.1) is a private, loopback or link-local address" in (
                    failed.value.reason
                )
                assert "DOCKYARD_DRAIN_PRIVATE_ADDRESSES=true" in failed.value.reason
            assert receiver.messages == []
        finally:
            await receiver.stop()

    asyncio.run(scenario())
