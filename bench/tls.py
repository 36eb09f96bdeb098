"""How long a certificate change takes through HAProxy's runtime API, against a reload.

Starts an HAProxy (the router's driver alone, no control plane) serving one app with
``--certs`` certificates besides the default, then times, ``--runs`` times each:

- (a) replacing one certificate (``set ssl cert`` + ``commit ssl cert``) until a new TLS
  handshake gets it;
- (b) adding one (``new``/``set``/``commit ssl cert`` + ``add ssl crt-list``) until served;
- (c) a seamless reload of the same HAProxy (what a change would cost without the runtime API),
  until the new worker answers.

Prints the medians and the ratios a/c and b/c. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from dockyard.certs import LocalCA, Served
from dockyard.certs.pem import leaf_of
from dockyard.router import haproxy as hp
from dockyard.router.table import AppRoute, RouteTable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def presented(port: int, sni: str) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(pem: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return leaf_of(pem).public_bytes(serialization.Encoding.DER)


async def measure(count: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dy-bench-tls-") as root:
        ca = LocalCA(Path(root) / "ca")
        port = free_port()
        driver = hp.HAProxy(
            hp.Paths(Path(root) / "router"), hp.Options(http_port=free_port(), https_port=port)
        )

        def served(name: str, host: str) -> Served:
            chain, key = ca.issue([host])
            return Served(name, chain + key, (host,))

        hosts = [f"h{i}.bench.test" for i in range(count)]
        app = AppRoute("bench", "bench", frozenset(hosts), frozenset())
        default = served("default", "*.localhost")
        certificates = [default, *(served(f"c{i}", h) for i, h in enumerate(hosts))]
        table = RouteTable((app,), None, None, tuple(certificates))
        try:
            await driver.start(table)
            await driver.apply(table)
            replace, add, reload = [], [], []
            for run in range(runs):
                new = served("c0", hosts[0])
                certificates[1] = new
                table = RouteTable((app,), None, None, tuple(certificates))
                started = time.perf_counter()
                await driver.apply(table)
                while presented(port, hosts[0]) != der_of(new.pem):
                    await asyncio.sleep(0.001)
                replace.append(time.perf_counter() - started)

                extra = served(f"x{run}", f"x{run}.bench.test")
                app = AppRoute(
                    "bench", "bench", app.hostnames | {f"x{run}.bench.test"}, frozenset()
                )
                certificates.append(extra)
                table = RouteTable((app,), None, None, tuple(certificates))
                started = time.perf_counter()
                await driver.apply(table)
                while presented(port, f"x{run}.bench.test") != der_of(extra.pem):
                    await asyncio.sleep(0.001)
                add.append(time.perf_counter() - started)

                before = await driver.worker_pid()
                started = time.perf_counter()
                # The driver's own reload: the cost the runtime API avoids.
                await driver._reload(table, driver.paths.config.read_text())
                while await driver.worker_pid() == before:
                    await asyncio.sleep(0.001)
                presented(port, hosts[0])
                reload.append(time.perf_counter() - started)
            assert driver.reloads == runs, "only the timed reloads"
        finally:
            hp.stop(driver.paths)
    a, b, c = (statistics.median(x) * 1000 for x in (replace, add, reload))
    print(f"certificates served: {count + 1}, runs: {runs}")
    print(f"(a) replace one through the runtime API: {a:8.1f} ms")
    print(f"(b) add one through the runtime API:     {b:8.1f} ms")
    print(f"(c) seamless reload:                      {c:8.1f} ms")
    print(f"a/c = {a / c:.3f}  b/c = {b / c:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(measure(options.certs, options.runs))


if __name__ == "__main__":
    main()
