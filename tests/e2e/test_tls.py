"""HTTPS end to end: a real server, its local CA and a real HAProxy in front of an app deployed
with git push.

``curl --cacert <the local CA>`` reaches the app at ``https://<app>.localhost:<port>`` (HTTP/2
by ALPN), the app is told ``X-Forwarded-Proto: https`` and its router lines say
``protocol=https``; HTTPS-only redirects HTTP with a 301; a certificate uploaded with the CLI
is served by SNI for a custom domain, replaced and removed without reloading HAProxy.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.making import TestCA
from conftest import APPS, DOCKYARD, Server, make_repo, start_server, stop_server, wait_until
from dockyard.router import haproxy
from e2e.deploy import Deployer, deployer_for, settle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Under /var/tmp: dynos have a /tmp of their own (see test_dyno_contract.py).
    root = Path("/var/tmp") / f"dockyard-tls-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    running = start_server(root / "data")
    try:
        yield running
    finally:
        stop_server(running)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployer(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "tls@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def secure(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dyno-probe app, deployed, its web dyno up."""
    app = deployer.create("secure")
    repo = make_repo(APPS / "dyno-probe", tmp_path_factory.mktemp("secure") / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    settle(deployer, app, {"web.1": deployer.current(app)["version"]})
    return app


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def ca_file(server: Server) -> str:
    return str(server.data_dir / "tls" / "ca.pem")


def worker(server: Server) -> int | None:
    paths = haproxy.Paths(server.data_dir / "router")
    return haproxy.parse_proc(haproxy.query(paths, "show proc")).worker


def presented(server: Server, sni: str) -> bytes:
    """The certificate (DER) the router presents for ``sni``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_an_app_is_reached_over_https_with_the_local_ca(
    server: Server, deployer: Deployer, secure: str
) -> None:
    url = f"https://{secure}.localhost:{server.https_port}/headers"

    # The new app's name joins the local CA's certificate within moments of its creation.
    wait_until(lambda: curl("--cacert", ca_file(server), "-o", "/dev/null", url).returncode == 0)
    done = curl("--cacert", ca_file(server), "--http2", "-w", "\n%{http_version}", url)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2", "HTTP/2, negotiated by ALPN"
    headers = {name: value for name, value in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(server.https_port)

    # Without the CA, curl refuses the certificate: it is the local CA's, not a public one.
    assert curl(url).returncode != 0

    # The router line says the request came over HTTPS.
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": deployer.token}

    def https_line() -> bool:
        done = subprocess.run(
            [*DOCKYARD, "logs", "-a", secure, "-p", "router", "-n", "200"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return any(
            'path="/headers"' in line and line.endswith(" protocol=https")
            for line in done.stdout.splitlines()
        )

    wait_until(https_line, 15)

    # HTTPS-only: HTTP gets a 301 to the same URL over HTTPS, which curl follows.
    reply = deployer.client.patch(f"/apps/{secure}", json={"https_only": True})
    assert reply.status_code == 200, reply.text
    plain = f"http://{secure}.localhost:{server.http_port}/headers?x=1"

    def redirected() -> bool:
        return "301" in curl("-o", "/dev/null", "-w", "%{http_code}", plain).stdout

    wait_until(redirected, 15)
    location = curl("-o", "/dev/null", "-w", "%{redirect_url}", plain).stdout
    assert location == f"https://{secure}.localhost:{server.https_port}/headers?x=1"
    followed = curl("-L", "--cacert", ca_file(server), plain)
    assert followed.returncode == 0, followed.stderr
    assert "x-forwarded-proto" in followed.stdout
    deployer.client.patch(f"/apps/{secure}", json={"https_only": False})


def test_an_uploaded_certificate_is_served_replaced_and_removed_without_reloads(
    server: Server, deployer: Deployer, secure: str, tmp_path: Path
) -> None:
    host = "www.secure.example"
    reply = deployer.client.post(f"/apps/{secure}/domains", json={"hostname": host})
    assert reply.status_code == 201, reply.text
    ca = TestCA()
    (tmp_path / "root.pem").write_text(ca.root_pem)
    before = worker(server)
    env = {**os.environ, "DOCKYARD_API_URL": server.url, "DOCKYARD_API_KEY": deployer.token}

    def dockyard(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*DOCKYARD, *args, "-a", secure], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done

    issued = ca.issue([host])
    (tmp_path / "site.crt").write_text(issued.chain)
    (tmp_path / "site.key").write_text(issued.key)
    dockyard("certs:add", str(tmp_path / "site.crt"), str(tmp_path / "site.key"))
    wait_until(lambda: presented(server, host) == issued.der, 15)
    url = f"https://{host}:{server.https_port}/"
    resolve = f"{host}:{server.https_port}:127.0.0.1"
    done = curl("--cacert", str(tmp_path / "root.pem"), "--resolve", resolve, url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dyno"] == "web.1"

    renewed = ca.issue([host], days=200)
    (tmp_path / "site.crt").write_text(renewed.chain)
    (tmp_path / "site.key").write_text(renewed.key)
    dockyard("certs:update", str(tmp_path / "site.crt"), str(tmp_path / "site.key"))
    wait_until(lambda: presented(server, host) == renewed.der, 15)

    # A wildcard that covers it too: the exact one is served, until the domain is associated
    # with the wildcard (heroku certs:add's question, or domains:update --cert).
    wildcard = ca.issue(["*." + host.partition(".")[2]], days=300)
    (tmp_path / "wild.crt").write_text(wildcard.chain)
    (tmp_path / "wild.key").write_text(wildcard.key)
    dockyard("certs:add", str(tmp_path / "wild.crt"), str(tmp_path / "wild.key"))
    endpoints = deployer.client.get(f"/apps/{secure}/sni-endpoints").json()
    (wild_name,) = [e["name"] for e in endpoints if e["ssl_cert"]["cert_domains"][0][0] == "*"]
    assert presented(server, host) == renewed.der
    dockyard("domains:update", host, "--cert", wild_name)
    wait_until(lambda: presented(server, host) == wildcard.der, 15)
    dockyard("domains:update", host, "--no-cert")
    wait_until(lambda: presented(server, host) == renewed.der, 15)
    dockyard("certs:remove", "--name", wild_name, "--confirm", secure)

    dockyard("certs:remove", "--confirm", secure)
    wait_until(lambda: presented(server, host) != renewed.der, 15)
    # The default certificate now: the local CA's, which does not name this host.
    assert curl("--cacert", ca_file(server), "--resolve", resolve, url).returncode != 0
    assert worker(server) == before, "the same HAProxy worker: no reload"
