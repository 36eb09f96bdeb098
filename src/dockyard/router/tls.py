"""HTTPS on HAProxy: the route table's certificates served by SNI, changed without reloads.

HAProxy listens for TLS with ``bind … ssl crt-list <data dir>/router/certs.list alpn
h2,http/1.1 ssl-min-ver TLSv1.2``. Each certificate of the table is a file
``certs/<name>.pem`` (chain and key, mode 0600) and a line of the crt-list naming the
hostnames it is presented for; the first line is the default certificate, which clients
without SNI and hostnames without a certificate of their own get. HAProxy prefers a
hostname's exact entry to a wildcard one, and the table names each hostname once, so the most
specific certificate wins.

:class:`Certificates` keeps the files and the running HAProxy in step: a new certificate is
``new ssl cert`` + ``set ssl cert`` + ``commit ssl cert`` + ``add ssl crt-list``; a renewed
one ``set`` + ``commit`` on the same file; one that serves other hostnames gets its new line
before its old one goes; a removed one ``del ssl crt-list`` + ``del ssl cert``. Files are
written first, so a restarted or reloaded HAProxy reads what the running one serves.

Apps that are HTTPS-only are listed in ``https.map`` (backend → 1): their HTTP requests get a
301 to HTTPS, except ACME's HTTP-01 challenges.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dockyard.certs import DEFAULT_NAME, Served
from dockyard.router.driver import RouterError
from dockyard.router.table import RouteTable

ALPN = "h2,http/1.1"
MIN_VERSION = "TLSv1.2"
CHALLENGES = "/.well-known/acme-challenge/"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9.-]{1,253}$")

Run = Callable[[str], Awaitable[str]]  # one command to the current worker, its reply


@dataclass(frozen=True)
class Line:
    """One crt-list line as HAProxy serves it."""

    path: str
    number: int
    hostnames: tuple[str, ...]


def crt_list(root: Path) -> Path:
    return root / "certs.list"


def certs_dir(root: Path) -> Path:
    return root / "certs"


def https_map(root: Path) -> Path:
    return root / "https.map"


def cert_path(root: Path, certificate: Served) -> Path:
    if not _NAME.match(certificate.name):
        raise RouterError(f"not a certificate name HAProxy's files can have: {certificate.name!r}")
    return certs_dir(root) / f"{certificate.name}.pem"


def enabled(table: RouteTable, https_port: int | None) -> bool:
    """Whether HAProxy listens for HTTPS: a port, and a default certificate to present."""
    return https_port is not None and bool(table.certificates)


def bind_line(root: Path, address: str, port: int) -> str:
    return (
        f"    bind {address}:{port} ssl crt-list {crt_list(root)} alpn {ALPN} "
        f"ssl-min-ver {MIN_VERSION}"
    )


def forwarded_proto() -> str:
    return "    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]"


def redirect_rules(root: Path, https_port: int) -> list[str]:
    """HTTP requests for an HTTPS-only app's backend (``txn.be``) get a 301 to HTTPS."""
    port = "" if https_port == 443 else f":{https_port}"
    return [
        f"    http-request redirect location https://%[var(txn.host)]{port}%[capture.req.uri] "
        f"code 301 if !{{ ssl_fc }} {{ var(txn.be),map_str({https_map(root)}) -m found }} "
        f"!{{ path_beg {CHALLENGES} }}"
    ]


def crt_list_text(root: Path, table: RouteTable) -> str:
    lines = []
    for index, certificate in enumerate(table.certificates):
        names = _hostnames(certificate)
        if index == 0 and certificate.name == DEFAULT_NAME:
            names = ()  # the default: HAProxy takes its names from the certificate itself
        lines.append(" ".join((str(cert_path(root, certificate)), *names)))
    return "".join(f"{line}\n" for line in lines)


def https_backends(table: RouteTable) -> dict[str, str]:
    return {route.backend: "1" for route in table.apps if route.https_only}


def leaf_sha1(pem: str) -> str:
    """HAProxy's ``SHA1 FingerPrint`` of a PEM's first certificate."""
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    return hashlib.sha1(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324 - HAProxy's fingerprint


def parse_crt_list(text: str) -> list[Line]:
    """``show ssl crt-list -n <list>``: ``<path>:<line> [hostnames…]`` per line."""
    found = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        path, _, number = fields[0].rpartition(":")
        if not path or not number.isdigit():
            continue
        names = tuple(f for f in fields[1:] if not f.startswith(("[", "]", "!")))
        found.append(Line(path, int(number), names))
    return found


def parse_fingerprint(text: str) -> str | None:
    match = re.search(r"SHA1 FingerPrint:\s*([0-9A-Fa-f]+)", text)
    return match.group(1).upper() if match else None


def _hostnames(certificate: Served) -> tuple[str, ...]:
    for name in certificate.hostnames:
        if not _HOSTNAME.match(name):
            raise RouterError(f"not a hostname for a crt-list: {name!r}")
    return tuple(certificate.hostnames)


def _write_private(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically, mode 0600 from the start; False if it held it."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return True


@dataclass(frozen=True)
class _Want:
    path: str
    sha1: str
    hostnames: tuple[str, ...]
    pem: str


class Certificates:
    """The certificate files and the HTTPS-only map of one HAProxy, and their runtime changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # What the running worker serves: path → (leaf SHA-1, hostnames); None: find out.
        self.served: dict[str, tuple[str, tuple[str, ...]]] | None = None
        self.https: dict[str, str] | None = None

    def write(self, table: RouteTable) -> None:
        """The files a (re)started HAProxy reads: certificates, crt-list, https map."""
        certs_dir(self.root).mkdir(parents=True, exist_ok=True, mode=0o700)
        for certificate in table.certificates:
            _write_private(cert_path(self.root, certificate), certificate.pem)
        _write_private(crt_list(self.root), crt_list_text(self.root, table))
        _write_private(
            https_map(self.root),
            "".join(f"{k} {v}\n" for k, v in sorted(https_backends(table).items())),
        )

    def loaded(self, table: RouteTable) -> None:
        """HAProxy (re)started from the files :meth:`write` wrote for ``table``."""
        self.served = {w.path: (w.sha1, w.hostnames) for w in self._wanted(table)}
        self.https = https_backends(table)

    def forget(self) -> None:
        """Not known what HAProxy serves (adopted, or a command failed): ask it next time."""
        self.served = None
        self.https = None

    def tidy(self, table: RouteTable) -> None:
        """Remove the files of certificates no longer in the table (HAProxy no longer has them)."""
        keep = {cert_path(self.root, c).name for c in table.certificates}
        with contextlib.suppress(FileNotFoundError):
            for path in certs_dir(self.root).iterdir():
                if path.suffix == ".pem" and path.name not in keep:
                    path.unlink()

    async def apply(self, table: RouteTable, run: Run, *, listening: bool) -> int:
        """Make the running worker serve ``table``'s certificates; the commands it took."""
        self.write(table)
        count = 0
        try:
            count += await self._apply_https(table, run)
            if listening:
                count += await self._apply_certificates(table, run)
        except RouterError:
            self.forget()
            raise
        self.tidy(table)
        return count

    def _wanted(self, table: RouteTable) -> list[_Want]:
        found = []
        for index, certificate in enumerate(table.certificates):
            names = () if index == 0 and certificate.name == DEFAULT_NAME else certificate.hostnames
            found.append(
                _Want(
                    str(cert_path(self.root, certificate)),
                    leaf_sha1(certificate.pem),
                    tuple(names),
                    certificate.pem,
                )
            )
        return found

    async def _observe(self, run: Run) -> dict[str, tuple[str, tuple[str, ...]]]:
        lines = parse_crt_list(await run(f"show ssl crt-list -n {crt_list(self.root)}"))
        served = {}
        for line in lines:
            sha1 = parse_fingerprint(await run(f"show ssl cert {line.path}")) or ""
            served[line.path] = (sha1, line.hostnames)
        return served

    async def _apply_https(self, table: RouteTable, run: Run) -> int:
        path = https_map(self.root)
        if self.https is None:
            reply = await run(f"show map {path}")
            if reply.startswith("Unknown map"):
                return 0  # a configuration without it: the next reload brings it
            self.https = {}
            for line in reply.splitlines():
                fields = line.split()
                if len(fields) == 3:
                    self.https[fields[1]] = fields[2]
        wanted = https_backends(table)
        commands = [f"del map {path} {k}" for k in sorted(set(self.https) - set(wanted))]
        commands += [
            f"add map {path} {k} {v}" for k, v in sorted(wanted.items()) if k not in self.https
        ]
        for command in commands:
            reply = await run(command)
            if reply.strip():  # these answer nothing when they succeed
                raise RouterError(f"HAProxy refused {command!r}: {reply.strip()[:300]}")
        self.https = wanted
        return len(commands)

    async def _apply_certificates(self, table: RouteTable, run: Run) -> int:
        if self.served is None:
            self.served = await self._observe(run)
        served = self.served
        listing = crt_list(self.root)
        count = 0
        wanted = self._wanted(table)
        for want in wanted:
            have = served.get(want.path)
            if have is None:
                await _checked(
                    run, f"new ssl cert {want.path}", ("New empty certificate", "already exists")
                )
                await self._load(run, want)
                await self._add_line(run, listing, want)
                count += 4
            else:
                if have[0] != want.sha1:
                    await self._load(run, want)
                    count += 2
                if have[1] != want.hostnames and want.hostnames:
                    # The new line first: no moment in which these hostnames lack it.
                    old = [
                        line
                        for line in parse_crt_list(await run(f"show ssl crt-list -n {listing}"))
                        if line.path == want.path
                    ]
                    await self._add_line(run, listing, want)
                    for line in old:
                        await _checked(
                            run,
                            f"del ssl crt-list {listing} {line.path}:{line.number}",
                            ("deleted",),
                        )
                    count += 1 + len(old)
            served[want.path] = (want.sha1, want.hostnames)
        paths = {w.path for w in wanted}
        for path in sorted(set(served) - paths):
            await _checked(run, f"del ssl crt-list {listing} {path}", ("deleted",))
            await _checked(run, f"del ssl cert {path}", ("deleted",))
            del served[path]
            count += 2
        return count

    async def _load(self, run: Run, want: _Want) -> None:
        # The payload ends at the first empty line, which the PEM never holds.
        pem = "\n".join(line for line in want.pem.splitlines() if line.strip()) + "\n"
        try:
            await _checked(run, f"set ssl cert {want.path} <<\n{pem}", ("Transaction created",))
            await _checked(run, f"commit ssl cert {want.path}", ("Success!",))
        except RouterError:
            await run(f"abort ssl cert {want.path}")  # no transaction left open
            raise

    async def _add_line(self, run: Run, listing: Path, want: _Want) -> None:
        line = " ".join((want.path, *want.hostnames))
        await _checked(run, f"add ssl crt-list {listing} <<\n{line}\n", ("Success!",))


async def _checked(run: Run, command: str, success: tuple[str, ...]) -> str:
    """Run ``command``; a RouterError unless the reply holds one of ``success``."""
    reply = await run(command)
    if not any(marker in reply for marker in success):
        shown = command.split(" <<", 1)[0]  # never a key in an error message
        raise RouterError(f"HAProxy refused {shown!r}: {reply.strip()[:300]}")
    return reply
