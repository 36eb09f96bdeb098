"""Certificates made in the tests with ``cryptography``: a CA (with an intermediate) that issues
site certificates for any hostnames and validity, and the PEM files a user would upload."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption
    ).decode()


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Issued:
    """A site certificate: its chain (site first, then the intermediate) and key, as PEM."""

    certificate: x509.Certificate
    chain: str
    key: str
    intermediate: str

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class TestCA:
    """A root and an intermediate; ``root_pem`` is what clients trust."""

    __test__ = False  # not a test class

    def __init__(self, name: str = "Test Root") -> None:
        self.root_key = new_key()
        self.root = self._ca(_name(name), _name(name), self.root_key, self.root_key)
        self.intermediate_key = new_key()
        self.intermediate = self._ca(
            _name(f"{name} Intermediate"), self.root.subject, self.intermediate_key, self.root_key
        )

    @property
    def root_pem(self) -> str:
        return pem(self.root)

    @staticmethod
    def _ca(
        subject: x509.Name, issuer: x509.Name, key: PrivateKey, signer: PrivateKey
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(days=1))
            .not_valid_after(now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    def issue(
        self,
        hostnames: list[str],
        *,
        days: float = 90,
        starts: datetime.timedelta = datetime.timedelta(days=-1),
        key: PrivateKey | None = None,
    ) -> Issued:
        key = key or new_key()
        begin = now() + starts
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(hostnames[0]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(begin)
            .not_valid_after(begin + datetime.timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False
            )
            .sign(self.intermediate_key, hashes.SHA256())
        )
        return Issued(
            certificate,
            pem(certificate) + pem(self.intermediate),
            key_pem(key),
            pem(self.intermediate),
        )
