"""``certs``, ``certs:add``, ``certs:update``, ``certs:info``, ``certs:remove``, ``certs:ca`` and
``https-only`` against a real server, each bad certificate refused with its reason; the
router's side of them is in tests/router/test_tls.py and tests/e2e/test_tls.py."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from certs.making import Issued, TestCA, key_pem, new_key
from cli.runner import Cli


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def files(directory: Path, issued: Issued, name: str = "site") -> tuple[str, str]:
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_text(issued.chain)
    key.write_text(issued.key)
    return str(crt), str(key)


def test_certificates_are_added_listed_updated_and_removed(
    alice: Cli, app: str, ca: TestCA, tmp_path: Path
) -> None:
    alice.run("domains:add", f"www.{app}.example", "-a", app)
    assert "has no SSL certificates" in alice.run("certs", "-a", app).stderr

    crt, key = files(tmp_path, ca.issue([f"www.{app}.example"]))
    added = alice.run("certs:add", crt, key, "-a", app)
    assert f"Adding SSL certificate to ⬢ {app}... done" in added.stderr
    assert f"Common Name(s): www.{app}.example" in added.stdout
    assert "SSL certificate is verified by a root authority." in added.stdout
    (endpoint,) = json.loads(alice.out("certs", "--json", "-a", app))
    name = endpoint["name"]
    assert f"Name:           {name}" in added.stdout

    listed = alice.out("certs", "-a", app).splitlines()
    assert listed[0].split() == [
        "Name",
        "Common",
        "Name(s)",
        "Expires",
        "Trusted",
        "Type",
        "Domains",
    ]
    assert listed[1].split()[:2] == [name, f"www.{app}.example"]
    assert listed[1].split()[-3:] == ["True", "SNI", "1"]
    assert f"Subject:        CN=www.{app}.example" in alice.out("certs:info", "-a", app)

    renewed = ca.issue([f"www.{app}.example"], days=300)
    crt2, key2 = files(tmp_path, renewed, "renewed")
    updated = alice.run("certs:update", crt2, key2, "-a", app)
    assert f"Updating SSL certificate {name} for ⬢ {app}... done" in updated.stderr
    expires = renewed.certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"Expires At:     {expires}" in updated.stdout

    # Two certificates: the commands that act on one ask which.
    crt3, key3 = files(tmp_path, ca.issue([f"{app}.localhost"]), "default-host")
    alice.run("certs:add", crt3, key3, "-a", app)
    assert "choose one with --name" in alice.fails("certs:info", "-a", app)
    assert f"Name:           {name}" in alice.out("certs:info", "--name", name, "-a", app)

    assert f"re-run with --confirm {app}" in alice.fails("certs:remove", "--name", name, "-a", app)
    removed = alice.run("certs:remove", "--name", name, "--confirm", app, "-a", app)
    assert f"Removing SSL certificate {name} from ⬢ {app}... done" in removed.stderr
    assert [e["name"] for e in json.loads(alice.out("certs", "--json", "-a", app))] != [name]
    assert "Couldn't find that SSL certificate" in alice.fails(
        "certs:info", "--name", name, "-a", app
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatched key", "the private key does not match the certificate"),
        ("expired", "expired on"),
        ("other hostnames", "none of which"),
        ("malformed PEM", "the certificate chain is not PEM"),
    ],
)
def test_each_bad_certificate_is_refused_with_its_reason(
    alice: Cli, app: str, ca: TestCA, *, tmp_path: Path, case: str, message: str
) -> None:
    alice.run("domains:add", f"www.{app}.example", "-a", app)
    issued = ca.issue([f"www.{app}.example"])
    if case == "expired":
        issued = ca.issue([f"www.{app}.example"], days=1, starts=datetime.timedelta(days=-4))
    elif case == "other hostnames":
        issued = ca.issue(["www.somewhere-else.example"])
    crt, key = files(tmp_path, issued)
    if case == "mismatched key":
        Path(key).write_text(key_pem(new_key()))
    elif case == "malformed PEM":
        Path(crt).write_text("this is not a certificate\n")
    assert message in alice.fails("certs:add", crt, key, "-a", app)
    assert json.loads(alice.out("certs", "--json", "-a", app)) == [], "nothing was stored"


def test_the_local_ca_and_https_only(alice: Cli, app: str, tmp_path: Path) -> None:
    target = tmp_path / "ca.pem"
    assert "Wrote the local CA certificate" in alice.run("certs:ca", str(target)).stderr
    assert target.read_text() == (alice.server.data_dir / "tls" / "ca.pem").read_text()
    assert alice.out("certs:ca") == target.read_text()

    assert alice.out("https-only", "-a", app) == "off\n"
    result = alice.run("https-only:on", "-a", app)
    assert f"Enabling HTTPS-only for ⬢ {app}... done" in result.stderr
    assert alice.out("https-only", "-a", app) == "on\n"
    alice.run("https-only:off", "-a", app)
    assert alice.out("https-only", "-a", app) == "off\n"


def test_domains_are_associated_with_a_certificate(
    alice: Cli, app: str, ca: TestCA, tmp_path: Path
) -> None:
    alice.run("domains:add", f"www.{app}.example", "-a", app)
    crt, key = files(tmp_path, ca.issue([f"*.{app}.example"]))
    alice.run("certs:add", crt, key, "-a", app)
    (endpoint,) = json.loads(alice.out("certs", "--json", "-a", app))
    name = endpoint["name"]
    # No association yet: no SNI Endpoint column.
    assert "SNI Endpoint" not in alice.out("domains", "-a", app)

    updated = alice.run("domains:update", f"www.{app}.example", "--cert", name, "-a", app)
    assert f"Updating www.{app}.example to use {name} certificate... done" in updated.stderr
    alice.run("domains:add", f"api.{app}.example", "--cert", name, "-a", app)
    alice.run("domains:add", f"other.{app}.example", "-a", app)
    lines = alice.out("domains", "-a", app).splitlines()
    assert lines[4].split()[-2:] == ["SNI", "Endpoint"]
    rows = {line.split()[0]: line.split() for line in lines[5:]}
    assert rows[f"www.{app}.example"][-1] == name
    assert rows[f"api.{app}.example"][-1] == name
    assert rows[f"other.{app}.example"][-1] == f"{app}.localhost"  # the DNS target: no endpoint

    assert "does not cover" in alice.fails(
        "domains:add", f"{app}.example", "--cert", name, "-a", app
    )
    assert "is not an SNI endpoint" in alice.fails(
        "domains:update", f"www.{app}.example", "--cert", "nosuch-1", "-a", app
    )
    assert "give --cert NAME, or --no-cert" in alice.fails(
        "domains:update", f"www.{app}.example", "-a", app
    )
    undone = json.loads(
        alice.out("domains:update", f"www.{app}.example", "--no-cert", "--json", "-a", app)
    )
    assert undone["sni_endpoint"] is None
