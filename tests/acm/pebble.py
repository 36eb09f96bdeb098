"""A real ACME CA on loopback for the tests: Debian's ``pebble``, with ``pebble-challtestsrv``
as its DNS.

Everything listens on free ports the test chose; the configuration is written here. Pebble
validates HTTP-01 challenges on ``http_port`` (the router's), at the address the mock DNS
gives: 127.0.0.1 for the names the test points (:meth:`Pebble.point`), nothing at all for
the others (their DNS does not point here). Pebble's root changes at every start: read it
with :meth:`Pebble.root` after each.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import free_port, wait_until


def installed() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


@dataclass
class Pebble:
    root_dir: Path
    http_port: int  # where Pebble connects for HTTP-01: the router's HTTP port
    validity: int | None = None  # seconds; Pebble's default is 5 years
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    dns_management_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def tls_cert(self) -> Path:
        """The certificate of Pebble's own HTTPS (DOCKYARD_ACME_CA_FILE trusts it)."""
        return self.root_dir / "pebble-cert.pem"

    def start(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        if not self.tls_cert.exists():
            _self_signed(self.tls_cert, self.root_dir / "pebble-key.pem")
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.tls_cert),
                "privateKey": str(self.root_dir / "pebble-key.pem"),
                "httpPort": self.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                **({"certificateValidityPeriod": self.validity} if self.validity else {}),
            }
        }
        (self.root_dir / "pebble.json").write_text(json.dumps(config))
        with (self.root_dir / "challtestsrv.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [
                        "pebble-challtestsrv",
                        "-dns01",
                        f"127.0.0.1:{self.dns_port}",
                        "-management",
                        f"127.0.0.1:{self.dns_management_port}",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                        # No address for names the test did not point: their DNS is elsewhere.
                        "-defaultIPv4",
                        "",
                        "-defaultIPv6",
                        "",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",  # validate at once (real validation: no ALWAYS_VALID)
            "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce: the tests must not flake
        }
        with (self.root_dir / "pebble.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [
                        "pebble",
                        "-config",
                        str(self.root_dir / "pebble.json"),
                        "-dnsserver",
                        f"127.0.0.1:{self.dns_port}",
                        "-strict=false",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        try:
            wait_until(self._ready, timeout=20)
        except BaseException:
            self.stop()
            raise

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls_cert))

    def _ready(self) -> bool:
        for process in self.processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args[0]} exited: {self.logs()}")
        try:
            httpx.get(self.directory, verify=self._trust(), timeout=2).raise_for_status()
            httpx.get(f"http://127.0.0.1:{self.dns_management_port}/", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def restart(self, *, validity: int | None = None) -> None:
        """Stop, and start again on the same ports (a new root, and no accounts)."""
        self.stop()
        self.validity = validity
        self.start()

    def point(self, hostname: str) -> None:
        """Make ``hostname`` resolve to 127.0.0.1 (where the router listens) for Pebble."""
        reply = httpx.post(
            f"http://127.0.0.1:{self.dns_management_port}/add-a",
            json={"host": hostname, "addresses": ["127.0.0.1"]},
            timeout=5,
        )
        reply.raise_for_status()

    def root(self) -> str:
        """The PEM of Pebble's current root CA (``curl --cacert``)."""
        reply = httpx.get(
            f"https://127.0.0.1:{self.management_port}/roots/0",
            verify=self._trust(),
            timeout=5,
        )
        reply.raise_for_status()
        return reply.text

    def logs(self) -> str:
        return "\n".join(
            (self.root_dir / name).read_text(errors="replace")[-3000:]
            for name in ("pebble.log", "challtestsrv.log")
            if (self.root_dir / name).exists()
        )


def _self_signed(cert: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble on loopback")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
