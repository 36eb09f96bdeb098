"""Reading and checking a certificate chain and its private key (PEM), with ``cryptography``.

:func:`parse` turns what a user uploads into a :class:`Bundle` or raises
:class:`CertificateError` saying what is wrong: not PEM, an encrypted or unsupported key, a key
that belongs to no certificate of the chain, a chain whose certificates do not issue one
another, a certificate expired or not yet valid, a certificate naming no hostname. The chain
may come in any order; the bundle has the site's certificate first, then each issuer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from dockyard.errors import InvalidParams

MIN_RSA_BITS = 2048
_BEGIN_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


class CertificateError(InvalidParams):
    """A certificate chain or private key that cannot be served, and why."""


@dataclass(frozen=True)
class Bundle:
    """A checked certificate chain (the site's certificate first) and its private key."""

    chain_pem: str
    key_pem: str = field(repr=False)
    hostnames: tuple[str, ...]  # the DNS names the certificate is for (lowercase)
    subject: str
    issuer: str
    starts_at: datetime
    expires_at: datetime
    self_signed: bool
    fingerprint: str  # SHA-256 of the site certificate, hex

    @property
    def pem(self) -> str:
        """Chain and key in one PEM, as HAProxy loads a certificate."""
        return self.chain_pem + self.key_pem

    def covers(self, hostname: str) -> bool:
        return any(name_covers(name, hostname) for name in self.hostnames)


def name_covers(name: str, hostname: str) -> bool:
    """Whether a certificate for ``name`` is valid for ``hostname`` (RFC 6125's rules).

    ``*.example.com`` covers ``a.example.com`` only, not ``example.com`` or ``a.b.example.com``;
    a wildcard ``hostname`` (an app's ``*.example.com`` domain) only by that same wildcard.
    """
    name, hostname = name.lower().rstrip("."), hostname.lower().rstrip(".")
    if name == hostname:
        return True
    if not name.startswith("*.") or hostname.startswith("*."):
        return False
    head, _, rest = hostname.partition(".")
    return bool(head) and rest == name[2:]


def parse(chain_pem: str, key_pem: str, *, now: datetime | None = None) -> Bundle:
    """Check ``chain_pem`` and ``key_pem``; the :class:`Bundle`, or :class:`CertificateError`."""
    now = now or datetime.now(UTC)
    certificates = _certificates(chain_pem)
    key = _private_key(key_pem)
    public = _public_der(key.public_key())
    leaf = next((c for c in certificates if _public_der(c.public_key()) == public), None)
    if leaf is None:
        raise CertificateError(
            f"the private key does not match the certificate ({_name(certificates[0].subject)}): "
            "give the key the certificate was issued for"
        )
    chain = _ordered(leaf, certificates)
    for certificate in chain:
        _check_dates(certificate, leaf, now)
    hostnames = _hostnames(leaf)
    if not hostnames:
        raise CertificateError(
            f"the certificate ({_name(leaf.subject)}) names no DNS hostname: it needs a subject "
            "alternative name such as www.example.com"
        )
    return Bundle(
        chain_pem="".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in chain
        ),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        hostnames=hostnames,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        starts_at=leaf.not_valid_before_utc,
        expires_at=leaf.not_valid_after_utc,
        self_signed=leaf.subject == leaf.issuer and _issued_by(leaf, leaf),
        fingerprint=fingerprint(leaf),
    )


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def leaf_of(chain_pem: str) -> x509.Certificate:
    """The first certificate of a chain this module wrote (a stored one)."""
    return x509.load_pem_x509_certificates(chain_pem.encode())[0]


def _certificates(text: str) -> list[x509.Certificate]:
    if not text.strip():
        raise CertificateError("the certificate chain is empty: give the PEM file (.crt, .pem)")
    if "PRIVATE KEY-----" in text:
        raise CertificateError(
            "the certificate chain holds a private key: give the certificates (CRT) and the "
            "key (KEY) as two files"
        )
    if _BEGIN_CERTIFICATE not in text:
        raise CertificateError(
            "the certificate chain is not PEM: expected '-----BEGIN CERTIFICATE-----' blocks "
            "(convert a DER file with `openssl x509 -inform der -in CRT -out CRT.pem`)"
        )
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise CertificateError(f"the certificate chain is not valid PEM: {exc}") from exc


def _private_key(text: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if not text.strip():
        raise CertificateError("the private key is empty: give the PEM key file (.key)")
    if "PRIVATE KEY-----" not in text:
        raise CertificateError(
            "the private key is not PEM: expected a '-----BEGIN PRIVATE KEY-----' block"
            + (" (this looks like a certificate)" if _BEGIN_CERTIFICATE in text else "")
        )
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError as exc:  # cryptography's word for "encrypted, and no password given"
        raise CertificateError(
            "the private key is encrypted: give it without a passphrase "
            "(`openssl pkey -in KEY -out KEY.plain`)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"the private key is not a valid PEM key: {exc}") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(
                f"the private key is RSA of {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    raise CertificateError(
        f"the private key is of a kind HTTPS clients do not all accept "
        f"({type(key).__name__}); use RSA or ECDSA"
    )


def _public_der(key: object) -> bytes:
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return b""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ordered(leaf: x509.Certificate, given: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """The chain from ``leaf`` up, each issued by the next; every given one must be in it."""
    rest = [c for c in given if c != leaf]
    chain = [leaf]
    while rest:
        current = chain[-1]
        if current.subject == current.issuer and _issued_by(current, current):
            break  # a root: nothing above it
        parent = next((c for c in rest if _issued_by(current, c)), None)
        if parent is None:
            break
        chain.append(parent)
        rest.remove(parent)
    if rest:
        stray = rest[0]
        raise CertificateError(
            f"the chain holds a certificate ({_name(stray.subject)}) that is not an issuer of "
            f"the site's certificate ({_name(leaf.subject)}) or of its issuers; give the "
            "site's certificate and its intermediates only"
        )
    return chain


def _check_dates(certificate: x509.Certificate, leaf: x509.Certificate, now: datetime) -> None:
    which = "the certificate" if certificate == leaf else "an intermediate certificate"
    name = _name(certificate.subject)
    if certificate.not_valid_after_utc <= now:
        raise CertificateError(
            f"{which} ({name}) expired on {_date(certificate.not_valid_after_utc)}; "
            "renew it and upload the new one"
        )
    if certificate.not_valid_before_utc > now:
        raise CertificateError(
            f"{which} ({name}) is not valid until {_date(certificate.not_valid_before_utc)}"
        )


def _hostnames(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        )
    except x509.ExtensionNotFound:
        names = [
            str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    else:
        assert isinstance(extension.value, x509.SubjectAlternativeName)
        names = extension.value.get_values_for_type(x509.DNSName)
    found: list[str] = []
    for given in names:
        name = given.strip().lower().rstrip(".")
        if name and name not in found:
            found.append(name)
    return tuple(found)


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={common[0].value!s}" if common else name.rfc4514_string() or "no subject"


def _date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
