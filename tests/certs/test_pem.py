"""Checking uploaded certificates: what is accepted (any chain order, RSA or ECDSA), and each
bad chain or key refused with a message that says what is wrong."""

from __future__ import annotations

import datetime
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from certs.making import TestCA, key_pem, new_key, now
from dockyard.certs import CertificateError, LocalCA, name_covers, parse


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.mark.parametrize(
    ("name", "hostname", "covers"),
    [
        ("www.example.com", "www.example.com", True),
        ("WWW.example.com.", "www.EXAMPLE.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "*.example.com", True),
        ("a.example.com", "*.example.com", False),
        ("www.example.com", "example.com", False),
    ],
)
def test_which_names_a_certificate_covers(name: str, hostname: str, covers: bool) -> None:
    assert name_covers(name, hostname) is covers


def test_a_chain_is_accepted_in_any_order_and_stored_site_first(ca: TestCA) -> None:
    issued = ca.issue(["www.example.com", "example.com"])
    bundle = parse(issued.intermediate + issued.chain.split(issued.intermediate)[0], issued.key)
    assert bundle.chain_pem == issued.chain
    assert bundle.hostnames == ("www.example.com", "example.com")
    assert bundle.covers("example.com")
    assert not bundle.covers("shop.example.com")
    assert bundle.subject == "CN=www.example.com"
    assert "Intermediate" in bundle.issuer
    assert not bundle.self_signed
    assert bundle.key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in repr(bundle), "the key stays out of reprs (and so out of logs)"


def test_rsa_keys_and_local_ca_certificates_are_accepted(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issued = TestCA().issue(["rsa.example.com"], key=key)
    assert parse(issued.chain, issued.key).hostnames == ("rsa.example.com",)
    local = LocalCA(tmp_path / "tls")
    chain, key_text = local.issue(["*.example.net", "example.net"])
    bundle = parse(chain, key_text)
    assert bundle.hostnames == ("*.example.net", "example.net")
    assert local.issued(chain)
    assert not local.issued(TestCA().issue(["example.net"]).chain)
    assert stat.S_IMODE(local.key_path.stat().st_mode) == 0o600
    assert not local.ensure(), "made once, then kept"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatched key", "the private key does not match the certificate (CN=www.example.com)"),
        ("expired", "the certificate (CN=www.example.com) expired on"),
        ("not yet valid", "the certificate (CN=www.example.com) is not valid until"),
        ("malformed chain", "the certificate chain is not valid PEM"),
        ("not pem", "the certificate chain is not PEM"),
        ("empty chain", "the certificate chain is empty"),
        ("key in chain", "the certificate chain holds a private key"),
        ("malformed key", "the private key is not a valid PEM key"),
        ("certificate as key", "the private key is not PEM"),
        ("encrypted key", "the private key is encrypted"),
        ("small rsa key", "the private key is RSA of 1024 bits"),
        ("stray certificate", "is not an issuer of the site's certificate"),
        ("expired intermediate", "an intermediate certificate"),
    ],
)
def test_bad_certificates_are_refused_with_their_reason(
    ca: TestCA, case: str, message: str
) -> None:
    chain, key = BAD[case](ca)
    with pytest.raises(CertificateError) as raised:
        parse(chain, key)
    assert message in raised.value.message, raised.value.message
    assert raised.value.status == 422


def _pair(ca: TestCA, **kwargs: Any) -> tuple[str, str]:
    issued = ca.issue(["www.example.com"], **kwargs)
    return issued.chain, issued.key


def _stray(pair: tuple[str, str]) -> tuple[str, str]:
    return pair[0] + TestCA("Other Root").root_pem, pair[1]


def _with_expired_intermediate(_ca: TestCA) -> tuple[str, str]:
    other = TestCA("Old")
    other.intermediate = _expired_intermediate(other)
    return _pair(other)


BAD: dict[str, Callable[[TestCA], tuple[str, str]]] = {
    "mismatched key": lambda ca: (_pair(ca)[0], key_pem(new_key())),
    "expired": lambda ca: _pair(ca, days=1, starts=datetime.timedelta(days=-3)),
    "not yet valid": lambda ca: _pair(ca, starts=datetime.timedelta(days=2)),
    "malformed chain": lambda ca: (
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        _pair(ca)[1],
    ),
    "not pem": lambda ca: ("hello", _pair(ca)[1]),
    "empty chain": lambda ca: (" \n", _pair(ca)[1]),
    "key in chain": lambda ca: ("".join(_pair(ca)), key_pem(new_key())),
    "malformed key": lambda ca: (
        _pair(ca)[0],
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    ),
    "certificate as key": lambda ca: (_pair(ca)[0], _pair(ca)[0]),
    "encrypted key": lambda ca: (_pair(ca)[0], key_pem(new_key(), password=b"secret")),
    "small rsa key": lambda ca: _pair(
        # A key too small to accept, made only to see it refused.
        ca,
        key=rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    ),
    "stray certificate": lambda ca: _stray(_pair(ca)),
    "expired intermediate": _with_expired_intermediate,
}


def _expired_intermediate(ca: TestCA) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(ca.intermediate.subject)
        .issuer_name(ca.root.subject)
        .public_key(ca.intermediate_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - datetime.timedelta(days=30))
        .not_valid_after(now() - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca.root_key, hashes.SHA256())
    )
