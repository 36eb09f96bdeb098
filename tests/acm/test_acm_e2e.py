"""Automated certificates end to end: a real server, a real HAProxy and a real ACME CA
(Debian's Pebble) on loopback, whose HTTP-01 validation comes through the router.

``domains:add`` + ``certs:auto:enable`` gets a certificate from Pebble, which ``curl
--cacert <Pebble's root>`` accepts over HTTPS by SNI, with HTTP/2; a domain whose DNS does not
point here fails with the CA's reason while the others keep working; a CA that is down
fails with a reason, and the domain gets its certificate once it is back; and renewal
replaces a certificate near expiry (Pebble's short validity) with no request failing under
steady load.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from acm.https import curl, served_certificate
from acm.pebble import Pebble, installed
from conftest import (
    APPS,
    DOCKYARD,
    Server,
    free_port,
    make_repo,
    start_server,
    stop_server,
    wait_until,
)
from dockyard.router import haproxy
from e2e.deploy import Deployer, deployer_for, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not installed(), reason="Debian's pebble package is not installed"),
]

RENEW_AFTER = 20  # seconds: Pebble's validity in the renewal test is 30 days and this


@dataclass
class Plane:
    server: Server
    pebble: Pebble
    root: Path


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    # Under /var/tmp: dynos have a /tmp of their own (see test_dyno_contract.py).
    root = Path("/var/tmp") / f"dockyard-acm-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    http_port = free_port()
    pebble = Pebble(root / "pebble", http_port)
    pebble.start()
    env = {
        "DOCKYARD_HTTP_PORT": str(http_port),
        "DOCKYARD_HTTPS_PORT": str(free_port()),
        "DOCKYARD_ACME_DIRECTORY": pebble.directory,
        "DOCKYARD_ACME_CA_FILE": str(pebble.tls_cert),
        "DOCKYARD_ACME_EMAIL": "ops@example.org",
        "DOCKYARD_BOOT_TIMEOUT": "20",
    }
    try:
        server = start_server(root / "data", env)
    except BaseException:
        pebble.stop()
        raise
    try:
        yield Plane(server, pebble, root)
    finally:
        stop_server(server)
        pebble.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployer(plane: Plane) -> Iterator[Deployer]:
    with deployer_for(plane.server, "acm@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def app(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dyno-probe app, deployed, with its web dyno up."""
    name = deployer.create("secure")
    repo = make_repo(APPS / "dyno-probe", tmp_path_factory.mktemp("secure") / "repo")
    pushed = deployer.push(repo, name)
    assert pushed.status == 0, pushed.output
    settle(deployer, name, {"web.1": deployer.current(name)["version"]})
    return name


def cli(deployer: Deployer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOCKYARD_API_URL": deployer.server.url,
        "DOCKYARD_API_KEY": deployer.token,
    }
    return subprocess.run(
        [*DOCKYARD, *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


def domain(deployer: Deployer, app: str, hostname: str) -> dict[str, Any]:
    reply = deployer.client.get(f"/apps/{app}/domains/{hostname}")
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def wait_status(
    deployer: Deployer, app: str, hostname: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal seen
        seen = domain(deployer, app, hostname)
        return seen["acm_status"] == status

    try:
        wait_until(reached, timeout=timeout, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{hostname} did not reach {status!r}: {seen}") from exc
    return seen


def with_acm(plane: Plane, deployer: Deployer, app: str, hostname: str) -> None:
    """``hostname`` pointed here, a domain of ``app``, with ACM on (each test can run alone)."""
    plane.pebble.point(hostname)
    if deployer.client.get(f"/apps/{app}/domains/{hostname}").status_code == 404:
        assert cli(deployer, "domains:add", hostname, "-a", app).returncode == 0
    assert deployer.client.post(f"/apps/{app}/acm").status_code == 200


def haproxy_worker(plane: Plane) -> int | None:
    paths = haproxy.Paths(plane.server.data_dir / "router")
    return haproxy.parse_proc(haproxy.query(paths, "show proc")).worker


def pebble_root(plane: Plane, tmp_path: Path) -> Path:
    path = tmp_path / f"pebble-root-{uuid.uuid4().hex[:6]}.pem"
    path.write_text(plane.pebble.root())
    return path


def test_enable_gets_a_certificate_served_by_sni_with_http2(
    plane: Plane, deployer: Deployer, app: str, tmp_path: Path
) -> None:
    hostname = "www.secure-shop.example.org"
    plane.pebble.point(hostname)
    added = cli(deployer, "domains:add", hostname, "-a", app)
    assert added.returncode == 0, added.stderr
    assert domain(deployer, app, hostname)["acm_status"] is None, "ACM is off"
    enabled = cli(deployer, "certs:auto:enable", "-a", app)
    assert enabled.returncode == 0, enabled.stderr
    assert "Enabling Automatic Certificate Management... done, starting" in enabled.stderr
    assert deployer.client.get(f"/apps/{app}").json()["acm"] is True
    wait_status(deployer, app, hostname, "cert issued")

    ca = pebble_root(plane, tmp_path)
    port = plane.server.https_port
    done = curl(port, hostname, ca, "--http2", "--write-out", "\n%{http_version}")
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2", "HTTP/2 negotiated by ALPN"
    assert body, "the app answered"
    # The certificate is Pebble's, for this hostname, and the key is the platform's only.
    leaf = served_certificate(plane.server.https_port, hostname)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [hostname]
    assert "Pebble" in leaf.issuer.rfc4514_string()
    keys = plane.server.data_dir / "acme"
    for path in [keys, *keys.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    shown = cli(deployer, "certs:auto", "-a", app)
    assert shown.returncode == 0, shown.stderr
    assert "Automatic Certificate Management is enabled" in shown.stdout
    assert any(
        line.split()[:3] == [hostname, "Cert", "issued"] for line in shown.stdout.splitlines()
    ), shown.stdout
    listed = cli(deployer, "domains", "-a", app)
    assert "ACM Status" in listed.stdout
    assert any(
        line.split()[0] == hostname and line.endswith("cert issued")
        for line in listed.stdout.splitlines()
        if line.strip()
    ), listed.stdout


def test_a_domain_whose_dns_does_not_point_here_fails_with_the_reason(
    plane: Plane, deployer: Deployer, app: str, tmp_path: Path
) -> None:
    good = "www.secure-shop.example.org"
    with_acm(plane, deployer, app, good)
    wait_status(deployer, app, good, "cert issued")
    bad = "elsewhere.example.org"  # Pebble's DNS has no address for it
    assert cli(deployer, "domains:add", bad, "-a", app).returncode == 0
    failed = wait_status(deployer, app, bad, "failed")
    reason = failed["acm_status_reason"]
    assert bad in reason
    assert "resolve" in reason.lower() or "dns" in reason.lower(), reason
    # Shown with its reason; the other domain keeps its certificate, served.
    shown = cli(deployer, "certs:auto", "-a", app)
    assert "Reason" in shown.stdout
    assert reason[:40] in " ".join(shown.stdout.split()), shown.stdout
    assert "Failed" in shown.stdout
    assert "certs:auto:refresh" in shown.stderr
    assert domain(deployer, app, good)["acm_status"] == "cert issued"
    done = curl(plane.server.https_port, good, pebble_root(plane, tmp_path))
    assert done.returncode == 0, done.stderr
    # A deploy is not held up by it.
    reply = deployer.client.patch(f"/apps/{app}/config-vars", json={"AFTER_FAILURE": "1"})
    assert reply.status_code == 200
    settle(deployer, app, {"web.1": deployer.current(app)["version"]})
    assert cli(deployer, "domains:remove", bad, "-a", app).returncode == 0


def test_a_ca_that_is_down_fails_the_order_then_it_is_issued_once_back(
    plane: Plane, deployer: Deployer, app: str, tmp_path: Path
) -> None:
    hostname = "later.secure-shop.example.org"
    assert deployer.client.post(f"/apps/{app}/acm").status_code == 200
    plane.pebble.stop()
    try:
        assert cli(deployer, "domains:add", hostname, "-a", app).returncode == 0
        failed = wait_status(deployer, app, hostname, "failed")
        assert "could not be reached" in failed["acm_status_reason"]
        assert plane.pebble.directory in failed["acm_status_reason"]
    finally:
        # A new Pebble: a new root, and no account (the platform registers again).
        plane.pebble.start()
    plane.pebble.point(hostname)
    refreshed = cli(deployer, "certs:auto:refresh", "-a", app)
    assert refreshed.returncode == 0, refreshed.stderr
    issued = wait_status(deployer, app, hostname, "cert issued")
    assert issued["acm_status_reason"] is None
    # The new Pebble did not know the platform's account: it registered again, in the order.
    log = "".join(p.read_text(errors="replace") for p in plane.root.glob("server-*.log"))
    assert "does not know our account; registering again" in log
    done = curl(plane.server.https_port, hostname, pebble_root(plane, tmp_path))
    assert done.returncode == 0, done.stderr


def test_challenges_pass_maintenance_and_https_only_redirects(
    plane: Plane, deployer: Deployer, app: str, tmp_path: Path
) -> None:
    switched = deployer.client.patch(f"/apps/{app}", json={"maintenance": True, "https_only": True})
    assert switched.status_code == 200, switched.text
    try:
        hostname = "locked.secure-shop.example.org"
        with_acm(plane, deployer, app, hostname)
        # What the app's visitors get over HTTP: the redirect to HTTPS.
        plain = subprocess.run(
            ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}",
             "--header", f"Host: {hostname}",
             f"http://127.0.0.1:{plane.server.http_port}/"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert plain.stdout == "301"
        # ... and yet the CA's request got its answer.
        wait_status(deployer, app, hostname, "cert issued")
        over_tls = curl(plane.server.https_port, hostname, pebble_root(plane, tmp_path))
        assert over_tls.returncode != 0, "in maintenance: the H80 page (503)"
        assert "503" in over_tls.stderr
    finally:
        switched = deployer.client.patch(
            f"/apps/{app}", json={"maintenance": False, "https_only": False}
        )
        assert switched.status_code == 200, switched.text


@dataclass
class HttpsLoad:
    """Steady GETs over HTTPS by SNI, verified against Pebble's root: one thread opens a new
    TLS connection for each (so each sees the current certificate), one keeps a connection
    alive throughout (opened on the old certificate, it must go on)."""

    port: int
    hostname: str
    ca: Path
    ok: int = 0
    kept_alive: int = 0  # requests on the long-lived connection
    serials: set[int] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> HttpsLoad:
        for keep_alive in (False, True):
            thread = threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, keep_alive: bool) -> None:
        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + 300  # bounded, whatever the test does
        connection: _Loopback | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            if connection is None:
                connection = _Loopback(self.hostname, self.port, context)
            try:
                connection.request("GET", "/")
                assert connection.sock is not None
                der = connection.sock.getpeercert(binary_form=True)
                if der is not None:
                    self.serials.add(x509.load_der_x509_certificate(der).serial_number)
                reply = connection.getresponse()
                reply.read()
                if reply.status == 200:
                    self.ok += 1
                    self.kept_alive += keep_alive
                else:
                    self.failures.append(f"{time.time():.3f} {reply.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{time.time():.3f} keep-alive={keep_alive} {exc!r}")
                connection.close()
                connection = None
            if not keep_alive and connection is not None:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


class _Loopback(http.client.HTTPSConnection):
    """HTTPS to the router on loopback, with the domain as SNI and Host (no DNS needed)."""

    def __init__(self, hostname: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(hostname, port, timeout=20, context=context)
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def test_renewal_replaces_a_certificate_near_expiry_without_failing_a_request(
    plane: Plane, deployer: Deployer, app: str, tmp_path: Path
) -> None:
    # Certificates valid for 30 days and RENEW_AFTER seconds: due for renewal (30 days
    # before expiry) RENEW_AFTER seconds after they are issued.
    plane.pebble.restart(validity=30 * 86400 + RENEW_AFTER)
    hostname = "renew.secure-shop.example.org"
    with_acm(plane, deployer, app, hostname)
    wait_status(deployer, app, hostname, "cert issued")
    first = served_certificate(plane.server.https_port, hostname)
    worker = haproxy_worker(plane)
    ca = pebble_root(plane, tmp_path)
    with HttpsLoad(plane.server.https_port, hostname, ca) as load:
        wait_until(lambda: len(load.serials) >= 2, timeout=RENEW_AFTER + 60, interval=0.2)
        before = load.ok
        wait_until(lambda: load.ok > before + 20, timeout=30)
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:10]}"
    assert load.kept_alive > 20, "the connection opened before the renewal went on"
    assert first.serial_number in load.serials
    renewed = served_certificate(plane.server.https_port, hostname)
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert haproxy_worker(plane) == worker, "replaced through the runtime API, no reload"
    assert domain(deployer, app, hostname)["acm_status"] == "cert issued"
    print(
        f"{load.ok} HTTPS requests ({load.kept_alive} on one kept-alive connection) over "
        f"{len(load.serials)} certificates, none failed"
    )


def test_disable_removes_the_automated_certificates(
    plane: Plane, deployer: Deployer, app: str
) -> None:
    hostname = "www.secure-shop.example.org"
    with_acm(plane, deployer, app, hostname)
    wait_status(deployer, app, hostname, "cert issued")
    refused = cli(deployer, "certs:auto:disable", "-a", app)
    assert refused.returncode != 0
    assert "--confirm" in refused.stderr
    done = cli(deployer, "certs:auto:disable", "-a", app, "--confirm", app)
    assert done.returncode == 0, done.stderr
    assert deployer.client.get(f"/apps/{app}").json()["acm"] is False
    assert domain(deployer, app, hostname)["acm_status"] is None
    port = plane.server.https_port
    wait_until(
        lambda: "Pebble" not in served_certificate(port, hostname).issuer.rfc4514_string(),
        timeout=20,
    )
    shown = cli(deployer, "certs:auto", "-a", app)
    assert "Automatic Certificate Management is disabled" in shown.stdout
