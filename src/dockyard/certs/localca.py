"""The platform's own certificate authority, for hostnames no public CA will certify.

On first start ``dockyard server`` makes a CA under ``<data dir>/tls/`` (``ca.pem``, and
``ca-key.pem`` readable by the platform only) and issues with it the default certificate for
``*.<DOCKYARD_DOMAIN>`` and ``<DOCKYARD_DOMAIN>``. Clients that trust ``ca.pem``
(``curl --cacert``, a browser's or system's trust store) then reach every app over HTTPS.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
# Apple's clients refuse server certificates valid for longer than 825 days; a year is enough
# since the server issues a new one when it starts with less than RENEW_DAYS left.
CERTIFICATE_DAYS = 365
RENEW_DAYS = 30
ISSUER_NAME = "Dockyard local CA"


class LocalCA:
    """The CA in ``directory``: made on first use, then loaded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def certificate_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "ca-key.pem"

    def certificate_pem(self) -> str:
        self.ensure()
        return self.certificate_path.read_text()

    def ensure(self) -> bool:
        """Make the CA if there is none; True when it was made now."""
        if self.certificate_path.exists() and self.key_path.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dockyard"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{ISSUER_NAME} {_now():%Y-%m-%d}"),
            ]
        )
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _key_pem(key))
        _write_private(self.certificate_path, _certificate_pem(certificate), mode=0o644)
        return True

    def issue(self, hostnames: list[str], days: int = CERTIFICATE_DAYS) -> tuple[str, str]:
        """A certificate for ``hostnames`` signed by the CA: (chain PEM, key PEM)."""
        self.ensure()
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        return _certificate_pem(certificate) + _certificate_pem(ca), _key_pem(key)

    def issued(self, chain_pem: str) -> bool:
        """Whether the chain's first certificate was signed by this CA."""
        if not self.certificate_path.exists():
            return False
        ca = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
        if leaf.issuer != ca.subject:
            return False
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` atomically to ``path``, with ``mode`` from the first byte on."""
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
