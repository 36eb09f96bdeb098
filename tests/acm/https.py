"""HTTPS to the router on loopback by SNI, for names no DNS resolves: ``curl --cacert`` (what
the issue asks of a user) and the certificate the router presents."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

from cryptography import x509


def curl(
    port: int, hostname: str, ca: Path, *extra: str, path: str = "/"
) -> subprocess.CompletedProcess[str]:
    """``curl --cacert`` to https://hostname/path on the router's HTTPS port, by SNI."""
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "20",
            "--cacert",
            str(ca),
            "--resolve",
            f"{hostname}:{port}:127.0.0.1",
            *extra,
            f"https://{hostname}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def served_certificate(port: int, hostname: str) -> x509.Certificate:
    """The certificate the router presents for ``hostname`` (not verified)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
