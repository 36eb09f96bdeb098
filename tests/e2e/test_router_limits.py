"""The router's limits end to end: a real server, its HAProxy, an app deployed with git push.

An app's own router timeouts set with the CLI and applied without reloading HAProxy, bodies
over DOCKYARD_ROUTER_MAX_BODY_MB refused with the 413 page, huge headers and malformed
requests refused with 400 while the app keeps serving, an open WebSocket that a deploy does
not cut before its dyno's grace period, and the H99 page while the control plane is down.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, DOCKYARD, Server, git, make_repo, start_server, stop_server, wait_until
from dockyard.router import haproxy
from e2e.deploy import Deployer, deployer_for, dynos, settle
from e2e.test_router import page, router_lines, via

pytestmark = pytest.mark.e2e

MAX_BODY_MB = 1
ENV = {"DOCKYARD_ROUTER_MAX_BODY_MB": str(MAX_BODY_MB), "DOCKYARD_BOOT_TIMEOUT": "20"}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Under /var/tmp: dynos have a /tmp of their own (see test_dyno_contract.py).
    root = Path("/var/tmp") / f"dockyard-limits-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    running = start_server(root / "data", ENV)
    try:
        yield running
    finally:
        stop_server(running)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployer(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "limits@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def probe(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dyno-probe app, deployed, its web dyno up and routed."""
    app = deployer.create("limits")
    repo = make_repo(APPS / "dyno-probe", tmp_path_factory.mktemp("limits") / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    settle(deployer, app, {"web.1": deployer.current(app)["version"]})
    wait_until(lambda: via(deployer.server, f"{app}.localhost").status_code == 200, 30)
    return app


def cli(deployer: Deployer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOCKYARD_API_URL": deployer.server.url,
        "DOCKYARD_API_KEY": deployer.token,
    }
    return subprocess.run(
        [*DOCKYARD, *args], env=env, capture_output=True, text=True, check=False, timeout=60
    )


def worker_pid(server: Server) -> int | None:
    paths = haproxy.Paths(server.data_dir / "router")
    return haproxy.parse_proc(haproxy.query(paths, "show proc")).worker


def test_an_apps_own_router_timeouts(deployer: Deployer, server: Server, probe: str) -> None:
    host = f"{probe}.localhost"
    worker = worker_pid(server)
    shown = cli(deployer, "router:timeouts", "-a", probe)
    assert shown.returncode == 0, shown.stderr
    assert "the platform's (DOCKYARD_ROUTER_TIMEOUT)" in shown.stdout

    done = cli(deployer, "router:timeouts", "--timeout", "2", "--idle", "120", "-a", probe)
    assert done.returncode == 0, done.stderr
    assert "2s" in done.stdout
    assert "120s" in done.stdout
    found = deployer.client.get(f"/apps/{probe}").json()
    assert (found["router_timeout"], found["router_idle_timeout"]) == (2, 120)

    # H12 after the app's 2 s, not the platform's 30 s; applied without a reload.
    def cut_short() -> bool:
        started = time.monotonic()
        reply = via(server, host, "/sleep?seconds=5")
        return reply.status_code == 503 and time.monotonic() - started < 4

    wait_until(cut_short, 20, 0.2)
    page(via(server, host, "/sleep?seconds=5"), 503, "H12")
    assert worker_pid(server) == worker

    # Back to the platform's: the same request is answered.
    done = cli(deployer, "router:timeouts", "--reset", "-a", probe)
    assert done.returncode == 0, done.stderr
    assert deployer.client.get(f"/apps/{probe}").json()["router_timeout"] is None
    wait_until(lambda: via(server, host, "/sleep?seconds=3").status_code == 200, 20, 0.2)
    assert worker_pid(server) == worker

    # Bad input: refused with the reason, nothing changed.
    bad = cli(deployer, "router:timeouts", "--timeout", "0", "-a", probe)
    assert bad.returncode != 0
    assert "0 is not in the range 1<=x<=3600" in bad.stderr
    reply = deployer.client.patch(f"/apps/{probe}", json={"router_timeout": 100000})
    assert reply.status_code == 422, reply.text
    assert "3600" in reply.text
    assert deployer.client.get(f"/apps/{probe}").json()["router_timeout"] is None

    lines = [line for line in router_lines(deployer, probe) if " code=H12 " in line]
    assert lines, "the H12 is in the app's router lines"


def test_bodies_over_the_limit_huge_headers_and_malformed_requests(
    deployer: Deployer, server: Server, probe: str
) -> None:
    host = f"{probe}.localhost"
    url = f"http://127.0.0.1:{server.http_port}/"
    big = b"x" * (MAX_BODY_MB * 1024 * 1024 + 1)
    reply = httpx.post(url, headers={"Host": host}, content=big, timeout=30)
    page(reply, 413, "413")
    # The API is not an app: a git push's pack may be larger.
    reply = httpx.post(
        f"{url}nothing.git/git-receive-pack",
        headers={"Host": "api.localhost"},
        content=big,
        timeout=30,
    )
    assert reply.status_code != 413

    for request in (
        b"GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n" % (host.encode(), b"a" * 20000),
        b"GET / HTTP/1.1\r\nHost: %s\r\nNot a header\r\n\r\n" % host.encode(),
        b"NONSENSE\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
            sock.sendall(request)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert via(server, host).status_code == 200, "the app keeps serving"

    def logged() -> bool:
        return any(
            " code=413 " in line and " status=413 " in line
            for line in router_lines(deployer, probe)
        )

    wait_until(logged, 10)


class WebSocket:
    """A WebSocket to the dyno-probe app's /ws echo, through the router."""

    def __init__(self, server: Server, host: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.reader = self.sock.makefile("rb")
        status = self.reader.readline()
        assert b" 101 " in status, status
        while self.reader.readline() not in (b"\r\n", b""):
            pass

    def echo(self, text: str) -> str | None:
        """The answer to ``text``; None once the connection is closed."""
        mask = os.urandom(4)
        data = text.encode()
        try:
            self.sock.sendall(
                bytes([0x81, 0x80 | len(data)])
                + mask
                + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            )
            head = self.reader.read(2)
        except OSError:
            return None
        if len(head) < 2:
            return None
        return self.reader.read(head[1] & 0x7F).decode()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def test_a_deploy_does_not_cut_an_open_websocket_before_the_grace_period(
    deployer: Deployer, server: Server, probe: str, tmp_path: Path
) -> None:
    host = f"{probe}.localhost"
    before = deployer.current(probe)["version"]
    (old,) = [d for d in dynos(deployer, probe) if d["state"] == "up"]
    ws = WebSocket(server, host)
    try:
        assert ws.echo("before") == "web.1: before"
        repo = make_repo(APPS / "dyno-probe", tmp_path / "repo")
        git("commit", "--allow-empty", "--quiet", "--message", "again", cwd=repo)
        pushed = deployer.push(repo, probe, "main", "--force")
        assert pushed.status == 0, pushed.output
        after = deployer.current(probe)["version"]
        assert after != before

        # The new dyno serves new requests; the old one is draining, its WebSocket open.
        def new_serves() -> bool:
            return any(
                d["id"] != old["id"] and d["state"] == "up" and d["release"]["version"] == after
                for d in dynos(deployer, probe)
            ) and via(server, host).json()["port"] != str(old["port"])

        wait_until(new_serves, 60, 0.2)
        switched = time.monotonic()
        alive_until = switched
        answer: str | None = "web.1: before"
        # Echo once a second until the old dyno's grace (30 s) ends and it is stopped.
        while answer is not None and time.monotonic() < switched + 60:
            answer = ws.echo("still there")
            if answer is not None:
                assert answer == "web.1: still there"
                alive_until = time.monotonic()
                time.sleep(1)
        lasted = alive_until - switched
        assert lasted > 20, f"the WebSocket was cut {lasted:.1f}s after the new dyno took over"
        assert answer is None, "the old dyno was stopped once its grace period ended"
    finally:
        ws.close()
    settle(deployer, probe, {"web.1": after}, timeout=30)


def test_the_control_plane_down_is_h99_and_apps_keep_serving(server: Server, probe: str) -> None:
    server.process.kill()
    server.process.wait()
    text = page(via(server, "api.localhost", "/healthz"), 503, "H99")
    assert "platform" in text.lower()
    assert via(server, f"{probe}.localhost").status_code == 200
