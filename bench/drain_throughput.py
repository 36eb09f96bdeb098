"""Log drain throughput: lines per second from the log hub to one drain, and the delay.

Runs the real parts in this process: a :class:`~dockyard.logs.hub.LogHub` on a scratch directory
(its on-disk history included) and a drain's :class:`~dockyard.logs.drain_delivery.DrainWorker`
with its real transport; the receiver is another process on loopback (so that it does not
share this one's CPU time): an RFC 6587 syslog server over TCP, or an HTTPS server taking
``application/logplex-1`` POSTs (its certificate made here, trusted through a CA file).

For each kind it publishes ``--lines`` lines into the app's stream at ``--rate`` lines per
second (in batches of 100, as the ingest of ten busy dynos would), each holding the time it
was published, and waits until the receiver has them all. It prints the lines per second the
receiver got while the hub was being fed, the lines lost or repeated, and the p50 and p99
delay from publishing a line to the receiver reading it.

    .venv/bin/python bench/drain_throughput.py [--lines 200000] [--rate 50000] \
        [--kinds syslog,https]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dockyard.backoff import Backoff
from dockyard.logs.drain_delivery import Cursors, DrainSpec, DrainWorker, tls_context, transport_for
from dockyard.logs.hub import LogHub
from dockyard.logs.lines import Line

APP_ID = "0b6f1f0e-7a1c-4c1e-9d4e-2f3a4b5c6d7e"
TOKEN = "d.6a0f2a51-37a4-4c8e-9f0e-6b1f8f7c2d11"  # noqa: S105 - a drain's name, not a secret

# The receiver: prints its port; once it has every line, one row per line received:
# "<number> <delay from publishing, ns> <arrival, ns since the epoch>".
RECEIVER = r"""
import asyncio, http.server, ssl, sys, threading, time

kind, cert, key, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = []  # (number, delay in ns)
done = threading.Event()

def take(message):
    text = message.split(b" - ", 1)[1].split()
    if text[0] == b"bench":
        arrived = time.time_ns()
        seen.append((int(text[1]), arrived - int(text[2]), arrived))
        if len(seen) >= expected:
            done.set()

def frames(data):
    at, found = 0, []
    while True:
        space = data.find(b" ", at)
        if space < 0:
            return found, data[at:]
        end = space + 1 + int(data[at:space])
        if end > len(data):
            return found, data[at:]
        found.append(data[space + 1:end])
        at = end

if kind == "syslog":
    async def handle(reader, writer):
        left = b""
        try:
            while chunk := await reader.read(1 << 20):
                found, left = frames(left + chunk)
                for message in found:
                    take(message)
        except asyncio.CancelledError:
            pass

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.to_thread(done.wait)

    asyncio.run(main())
else:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            for message in frames(body)[0]:
                take(message)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    done.wait()
for row in seen:
    print(*row)
"""


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


async def measure(kind: str, lines: int, rate: int, directory: Path) -> None:
    ca, cert, key = certificates(directory)
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, kind, str(cert), str(key), str(lines)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    url = f"syslog://127.0.0.1:{port}" if kind == "syslog" else f"https://127.0.0.1:{port}/logs"
    hub = LogHub(directory / f"logs-{kind}", history_bytes=200 * 1024 * 1024)
    await hub.start()
    worker = DrainWorker(
        DrainSpec("bench", APP_ID, "bench", url, TOKEN),
        hub,
        transport_for(url, tls_context(ca)),
        Cursors(directory / f"cursors-{kind}"),
        buffer_lines=lines,  # the bench counts what is delivered: nothing may be dropped
        backoff=Backoff(first=0.05, cap=0.5),
    )
    task = asyncio.create_task(worker.run())
    while worker.cursors.load("bench") is None:
        await asyncio.sleep(0.01)
    start = time.monotonic()
    started = time.time_ns()
    sent = 0
    while sent < lines:
        due = min(lines, int((time.monotonic() - start) * rate) + 100)
        batch = []
        while sent < due:
            sent += 1
            batch.append(
                Line(time.time_ns() // 1000, "app", "web.1", f"bench {sent} {time.time_ns()}")
            )
        if batch:
            hub.publish(APP_ID, batch)
        await asyncio.sleep(0.002)
    fed = time.monotonic() - start
    output = await asyncio.to_thread(receiver.communicate, timeout=600)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await hub.close()
    seen = [tuple(map(int, row.split())) for row in output[0].splitlines() if row]
    numbers = [n for n, _, _ in seen]
    delays = [d for _, d, _ in seen]
    took = (max(a for _, _, a in seen) - started) / 1e9  # until the last line arrived
    lost = len(set(range(1, lines + 1)) - set(numbers))
    twice = len(numbers) - len(set(numbers))
    in_order = numbers == sorted(numbers)
    print(
        f"{kind:7} offered {lines / fed:9,.0f} lines/s  received {len(set(numbers)) / took:9,.0f} "
        f"lines/s  lost {lost}  twice {twice}  in order {in_order}  "
        f"p50 {percentile(delays, 0.5):7.1f} ms  p99 {percentile(delays, 0.99):7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=50_000, help="lines per second offered")
    parser.add_argument("--kinds", default="syslog,https")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-drain-bench-") as scratch:
        for kind in options.kinds.split(","):
            asyncio.run(measure(kind, options.lines, options.rate, Path(scratch)))


if __name__ == "__main__":
    main()
