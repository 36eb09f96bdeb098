"""The default certificate ``*.<DOCKYARD_DOMAIN>`` from an ACME CA by DNS-01, end to end: the
operator's hook publishes the TXT record in Pebble's DNS (pebble-challtestsrv), Pebble
validates it, and the router presents the wildcard for every default hostname; ``curl
--cacert <Pebble's root>`` reaches the API at ``api.<domain>`` over HTTPS."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from acm.https import curl, served_certificate
from acm.pebble import Pebble, installed
from conftest import Server, free_port, start_server, stop_server, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not installed(), reason="Debian's pebble package is not installed"),
]

DOMAIN = "apps.example.org"

# The operator's hook, as an operator would write one for their DNS provider's API: here the
# provider is pebble-challtestsrv's management API. It also notes each call, for the test.
HOOK = """#!{python}
import json, sys, urllib.request
verb, name, value = sys.argv[1:4]
with open({log!r}, "a") as log:
    log.write(f"{{verb}} {{name}} {{value}}\\n")
body = {{"host": name + "."}}
if verb == "set":
    body["value"] = value
request = urllib.request.Request(
    "http://127.0.0.1:{port}/" + ("set-txt" if verb == "set" else "clear-txt"),
    data=json.dumps(body).encode(),
    method="POST",
)
urllib.request.urlopen(request, timeout=10).read()
"""


@dataclass
class Plane:
    server: Server
    pebble: Pebble
    hook_log: Path


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    root = Path("/var/tmp") / f"dockyard-wildcard-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    http_port = free_port()
    pebble = Pebble(root / "pebble", http_port)
    pebble.start()
    hook = root / "dns-hook"
    hook_log = root / "dns-hook.log"
    hook.write_text(
        HOOK.format(python=sys.executable, log=str(hook_log), port=pebble.dns_management_port)
    )
    hook.chmod(0o700)
    env = {
        "DOCKYARD_DOMAIN": DOMAIN,
        "DOCKYARD_HTTP_PORT": str(http_port),
        "DOCKYARD_HTTPS_PORT": str(free_port()),
        "DOCKYARD_ACME_DIRECTORY": pebble.directory,
        "DOCKYARD_ACME_CA_FILE": str(pebble.tls_cert),
        "DOCKYARD_ACME_DNS_HOOK": str(hook),
    }
    try:
        server = start_server(root / "data", env)
    except BaseException:
        pebble.stop()
        raise
    try:
        yield Plane(server, pebble, hook_log)
    finally:
        stop_server(server)
        pebble.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_default_certificate_is_the_cas_wildcard(plane: Plane, tmp_path: Path) -> None:
    port = plane.server.https_port
    api = f"api.{DOMAIN}"

    def from_pebble() -> bool:
        return "Pebble" in served_certificate(port, api).issuer.rfc4514_string()

    wait_until(from_pebble, timeout=60, interval=0.2)
    leaf = served_certificate(port, f"any-app.{DOMAIN}")
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [f"*.{DOMAIN}"]
    root = tmp_path / "pebble-root.pem"
    root.write_text(plane.pebble.root())
    done = curl(port, api, root, path="/healthz")
    assert done.returncode == 0, done.stderr
    assert '"status":"ok"' in done.stdout.replace(" ", "")
    # The hook was asked to publish the record, then to remove it.
    calls = [line.split() for line in plane.hook_log.read_text().splitlines()]
    assert [call[:2] for call in calls] == [
        ["set", f"_acme-challenge.{DOMAIN}"],
        ["unset", f"_acme-challenge.{DOMAIN}"],
    ]
    assert calls[0][2] == calls[1][2]
