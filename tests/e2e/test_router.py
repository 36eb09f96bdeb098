"""The router end to end: a real server drives a real HAProxy in front of apps deployed with
git push.

Apps are reached by hostname (default, custom, wildcard, the most specific winning), the API
and git over HTTP through ``api.<domain>``, forwarded headers and WebSockets reach the app,
every error page shows in its situation, deploys and scales change HAProxy without reloading
it, HAProxy killed from outside comes back, and steady load sees no failed request through
deploys, config changes, scales, restarts, a killed dyno, and a SIGKILL of the control plane.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import APPS, DOCKYARD, Server, git, make_repo, start_server, stop_server, wait_until
from docker_support import dyno_records
from dockyard.router import haproxy
from e2e.deploy import Deployer, deployer_for, dynos, scale, settle

pytestmark = pytest.mark.e2e

ROUTER_TIMEOUT = 2  # seconds to first byte: short, for H12
ENV = {"DOCKYARD_ROUTER_TIMEOUT": str(ROUTER_TIMEOUT), "DOCKYARD_BOOT_TIMEOUT": "20"}


@dataclass
class Plane:
    """The module's control plane; the last test replaces its server with a new one."""

    server: Server
    root: Path

    @property
    def paths(self) -> haproxy.Paths:
        return haproxy.Paths(self.server.data_dir / "router")


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    # Under /var/tmp: dynos have a /tmp of their own (see test_dyno_contract.py).
    root = Path("/var/tmp") / f"dockyard-router-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    running = Plane(start_server(root / "data", ENV), root)
    try:
        yield running
    finally:
        stop_server(running.server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployer(plane: Plane) -> Iterator[Deployer]:
    with deployer_for(plane.server, "router@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def routed(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dyno-probe app, deployed, with its web dyno up and routed."""
    app = deployer.create("routed")
    repo = make_repo(APPS / "dyno-probe", tmp_path_factory.mktemp("routed") / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    version = deployer.current(app)["version"]
    settle(deployer, app, {"web.1": version})
    wait_until(lambda: via(deployer.server, f"{app}.localhost").status_code == 200, 30)
    return app


def via(server: Server, host: str, path: str = "/", **headers: str) -> httpx.Response:
    """A GET through the router, for ``host``."""
    return httpx.get(
        f"http://127.0.0.1:{server.http_port}{path}",
        headers={"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}},
        timeout=30,
    )


def page(reply: httpx.Response, status: int, code: str) -> str:
    """Check one of the router's error pages; its HTML."""
    assert reply.status_code == status, (reply.status_code, reply.text[:300])
    assert reply.headers["dockyard-error"] == code
    assert reply.headers["content-type"].startswith("text/html")
    assert f"<code>{code}</code>" in reply.text
    return reply.text


def worker_pid(plane: Plane) -> int | None:
    """HAProxy's current worker; None while a reload re-executes the master."""
    try:
        return haproxy.parse_proc(haproxy.query(plane.paths, "show proc")).worker
    except OSError:
        return None


def router_lines(deployer: Deployer, app: str) -> list[str]:
    """The app's router lines, as ``dockyard logs`` shows them."""
    env = {
        **os.environ,
        "DOCKYARD_API_URL": deployer.server.url,
        "DOCKYARD_API_KEY": deployer.token,
    }
    done = subprocess.run(
        [*DOCKYARD, "logs", "-a", app, "-n", "1500"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if " dockyard[router]: " in line]


def deploy_repo(deployer: Deployer, name: str, source: Path, repo: Path) -> str:
    app = deployer.create(name)
    pushed = deployer.push(make_repo(source, repo), app)
    assert pushed.status == 0, pushed.output
    return app


def test_apps_are_reached_by_their_hostnames(
    deployer: Deployer, plane: Plane, routed: str, tmp_path: Path
) -> None:
    server = plane.server
    assert via(server, f"{routed}.localhost").json()["dyno"] == "web.1"
    assert via(server, f"{routed.upper()}.LOCALHOST:{server.http_port}").status_code == 200

    # Custom and wildcard domains, at once.
    for hostname in ("www.routed.test", "*.routed.test"):
        reply = deployer.client.post(f"/apps/{routed}/domains", json={"hostname": hostname})
        assert reply.status_code == 201, reply.text
    assert via(server, "www.routed.test").json()["dyno"] == "web.1"
    assert via(server, "a.b.routed.test").json()["dyno"] == "web.1"

    # The API and git over HTTP through api.<domain>: another app is pushed that way.
    assert via(server, "api.localhost", "/healthz").json()["status"] == "ok"
    other = deployer.create("other")
    repo = make_repo(APPS / "web-shell", tmp_path / "other")
    url = f"http://user:{deployer.token}@api.localhost:{server.http_port}/{other}.git"
    pushed = git("push", url, "main", cwd=repo, check=False)
    assert pushed.returncode == 0, pushed.stdout
    assert f"http://{other}.localhost:{server.http_port}/ deployed" in pushed.stdout

    # The most specific hostname wins over a wildcard.
    reply = deployer.client.post(f"/apps/{other}/domains", json={"hostname": "x.routed.test"})
    assert reply.status_code == 201, reply.text
    wait_until(lambda: via(server, "x.routed.test").status_code == 200, 30)
    assert "greeting" in via(server, "x.routed.test").json(), "web-shell's answer"
    assert "release" in via(server, "y.routed.test").json(), "dyno-probe's answer"
    removed = deployer.client.delete(f"/apps/{routed}/domains/www.routed.test")
    assert removed.status_code == 200
    assert "release" in via(server, "www.routed.test").json(), "the wildcard serves it now"

    # No app: a 404 page naming the host, which cannot inject HTML.
    text = page(via(server, "nothing.example.org"), 404, "404")
    assert "nothing.example.org" in text
    text = page(via(server, "<script>alert(1)</script>"), 404, "404")
    assert "<script>" not in text


def test_forwarded_headers_websockets_and_router_logs(
    deployer: Deployer, plane: Plane, routed: str
) -> None:
    server = plane.server
    given = "abcdefghij0123456789-request"
    started = time.time() * 1000
    reply = via(
        server,
        f"{routed}.localhost",
        "/headers",
        X_Forwarded_For="203.0.113.9",
        X_Request_Id=given,
        X_Forwarded_Proto="https",
        Via="1.0 upstream",
    )
    assert reply.status_code == 200
    headers: dict[str, list[str]] = {}
    for name, value in reply.json()["headers"]:
        headers.setdefault(name, []).append(value)
    assert headers["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-port"] == [str(server.http_port)]
    assert headers["x-request-id"] == [given]
    assert headers["via"] == ["1.0 upstream", "1.1 dockyard"]
    assert started - 5000 <= int(headers["x-request-start"][0]) <= time.time() * 1000

    # An invalid request id (too short) is replaced by a new one.
    reply = via(server, f"{routed}.localhost", "/headers", X_Request_Id="short")
    (generated,) = [v for k, v in reply.json()["headers"] if k == "x-request-id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", generated)

    assert websocket_echo(server, f"{routed}.localhost", "hello").endswith(": hello")

    # Every request becomes a router line in the app's logs, Heroku's way.
    def logged() -> list[str]:
        return [line for line in router_lines(deployer, routed) if f"request_id={given} " in line]

    wait_until(lambda: bool(logged()), 10)
    (line,) = logged()
    assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+\+00:00 dockyard\[router\]: ", line), line
    assert ' dockyard[router]: at=info method=GET path="/headers" ' in line
    assert f'host={routed}.localhost request_id={given} fwd="203.0.113.9, 127.0.0.1" ' in line
    assert re.search(r" dyno=web\.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ ", line)
    assert line.endswith(" protocol=http")


def websocket_echo(server: Server, host: str, text: str) -> str:
    """Open a WebSocket through the router, send ``text``, return the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        reader = sock.makefile("rb")
        status = reader.readline()
        assert b" 101 " in status, status
        while reader.readline() not in (b"\r\n", b""):
            pass
        mask = os.urandom(4)
        data = text.encode()
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)
        head = reader.read(2)
        answer = reader.read(head[1] & 0x7F).decode()
        sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        return answer


def test_error_pages(deployer: Deployer, plane: Plane, routed: str, tmp_path: Path) -> None:
    server = plane.server
    host = f"{routed}.localhost"
    before = {d["name"]: d["id"] for d in dynos(deployer, routed)}

    # Maintenance: at once, without restarting dynos.
    reply = deployer.client.patch(f"/apps/{routed}", json={"maintenance": True})
    assert reply.status_code == 200
    wait_until(lambda: via(server, host).status_code == 503, 10)
    assert "maintenance" in page(via(server, host), 503, "H80").lower()
    deployer.client.patch(f"/apps/{routed}", json={"maintenance": False})
    wait_until(lambda: via(server, host).status_code == 200, 10)
    assert {d["name"]: d["id"] for d in dynos(deployer, routed)} == before

    # H12: no response within the router's timeout; H13: closed without a response.
    started = time.monotonic()
    page(via(server, host, f"/sleep?seconds={ROUTER_TIMEOUT + 3}"), 503, "H12")
    assert time.monotonic() - started < ROUTER_TIMEOUT + 2.5
    page(via(server, host, "/hangup"), 503, "H13")

    # H14: an app with no web dynos (nothing deployed yet, or scaled to 0).
    empty = deployer.create("empty")
    wait_until(lambda: via(server, f"{empty}.localhost").status_code == 503, 10)
    page(via(server, f"{empty}.localhost"), 503, "H14")

    # H10: every web dyno crashed.
    source = tmp_path / "crashy-source"
    shutil.copytree(APPS / "web-shell", source)
    (source / "Procfile").write_text("web: bin/crash\n")
    crashy = deploy_repo(deployer, "crashy", source, tmp_path / "crashy")
    wait_until(lambda: via(server, f"{crashy}.localhost").status_code == 503, 10)
    page(via(server, f"{crashy}.localhost"), 503, "H10")
    scale(deployer, crashy, "web", 0)
    wait_until(lambda: via(server, f"{crashy}.localhost").headers["dockyard-error"] == "H14", 10)

    def lines(app: str, code: str) -> list[str]:
        return [
            line
            for line in router_lines(deployer, app)
            if "dockyard[router]: at=error" in line and f"code={code} " in line
        ]

    wanted = [(routed, "H80"), (routed, "H12"), (routed, "H13"), (empty, "H14")]
    wanted += [(crashy, "H10"), (crashy, "H14")]
    missing = wanted
    deadline = time.monotonic() + 10
    while missing and time.monotonic() < deadline:
        missing = [(app, code) for app, code in missing if not lines(app, code)]
    assert not missing, f"no router line for {missing}"
    assert 'desc="Request timeout"' in lines(routed, "H12")[0]
    assert " status=503 " in lines(crashy, "H10")[0]


def test_deploys_and_scales_do_not_reload_haproxy(
    deployer: Deployer, plane: Plane, routed: str, tmp_path: Path
) -> None:
    server = plane.server
    worker = worker_pid(plane)
    assert worker is not None
    repo = make_repo(APPS / "dyno-probe", tmp_path / "repo")
    git("commit", "--allow-empty", "--quiet", "--message", "again", cwd=repo)
    pushed = deployer.push(repo, routed, "main", "--force")
    assert pushed.status == 0, pushed.output
    version = deployer.current(routed)["version"]
    settle(deployer, routed, {"web.1": version})
    scale(deployer, routed, "web", 3)
    settle(deployer, routed, {"web.1": version, "web.2": version, "web.3": version})
    seen = {via(server, f"{routed}.localhost").json()["dyno"] for _ in range(12)}
    assert seen == {"web.1", "web.2", "web.3"}, "requests spread over the web dynos"
    scale(deployer, routed, "web", 2)
    settle(deployer, routed, {"web.1": version, "web.2": version})
    reply = deployer.client.post(f"/apps/{routed}/domains", json={"hostname": "new.example.net"})
    assert reply.status_code == 201
    wait_until(lambda: via(server, "new.example.net").status_code == 200, 10)
    assert worker_pid(plane) == worker, "the same HAProxy worker: no reload"

    # Creating an app is structural: a seamless reload, and the others keep serving.
    deployer.create("structural")
    wait_until(lambda: worker_pid(plane) not in (None, worker), 10)
    assert via(server, f"{routed}.localhost").status_code == 200


def test_haproxy_killed_from_outside_is_started_again(plane: Plane, routed: str) -> None:
    server = plane.server
    master = haproxy.master_pid(plane.paths)
    assert master is not None
    worker = worker_pid(plane)
    os.kill(master, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: haproxy.master_pid(plane.paths) not in (None, master), 30, 0.1)

    def serving() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return via(server, f"{routed}.localhost").status_code == 200
        return False

    wait_until(serving, 30, 0.1)


@dataclass
class Load:
    """Steady GETs through the router: one keep-alive connection, one new connection each."""

    port: int
    host: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for keep_alive in (True, False):
            thread = threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, keep_alive: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                connection.request("GET", "/", headers={"Host": self.host})
                reply = connection.getresponse()
                body = reply.read()
                if reply.status == 200:
                    self.ok += 1
                else:
                    error = reply.getheader("dockyard-error")
                    self.failures.append(f"{time.time():.3f} {reply.status} {error} {body[:80]!r}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{time.time():.3f} {exc!r}")
                connection.close()
                connection = None
            if not keep_alive and connection is not None:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def check(self, least: int) -> None:
        assert self.failures == [], (
            f"{len(self.failures)} failed of {self.ok}: {self.failures[:20]}"
        )
        assert self.ok >= least, self.ok


def dyno_pid(server: Server, app_name: str, name: str) -> int:
    for record in dyno_records(server.data_dir):  # either runtime's
        dyno = json.loads(record.read_text())
        ended = any((record.parent / n).exists() for n in ("exit.json", "acknowledged"))
        if dyno["app_name"] == app_name and dyno["name"] == name and not ended:
            return int(dyno["pid"])
    raise AssertionError(f"no running {name} of {app_name}")


def test_no_request_fails_through_deploys_config_changes_scales_and_restarts(
    deployer: Deployer, plane: Plane, routed: str, tmp_path: Path
) -> None:
    """The issue's load test: 10 deploys, 5 config changes, 3→1→3, a restart, a killed dyno."""
    server = plane.server
    scale(deployer, routed, "web", 3)
    three = ("web.1", "web.2", "web.3")
    version = deployer.current(routed)["version"]
    settle(deployer, routed, dict.fromkeys(three, version))
    repo = make_repo(APPS / "dyno-probe", tmp_path / "repo")
    started = time.monotonic()
    with Load(server.http_port, f"{routed}.localhost") as load:
        for round in range(10):
            git("commit", "--allow-empty", "--quiet", "--message", f"deploy {round}", cwd=repo)
            pushed = deployer.push(repo, routed, "main", "--force")
            assert pushed.status == 0, pushed.output
            version = deployer.current(routed)["version"]
            settle(deployer, routed, dict.fromkeys(three, version))
        for round in range(5):
            reply = deployer.client.patch(f"/apps/{routed}/config-vars", json={"ROUND": str(round)})
            assert reply.status_code == 200
            version = deployer.current(routed)["version"]
            settle(deployer, routed, dict.fromkeys(three, version))
        scale(deployer, routed, "web", 1)
        settle(deployer, routed, {"web.1": version})
        scale(deployer, routed, "web", 3)
        settle(deployer, routed, dict.fromkeys(three, version))
        restarted = deployer.client.delete(f"/apps/{routed}/dynos/web.1")
        assert restarted.status_code == 202
        wait_until(lambda: len([d for d in dynos(deployer, routed) if d["state"] == "up"]) == 3)
        settle(deployer, routed, dict.fromkeys(three, version))
        # A dyno killed from outside: requests in flight there are retried on another one.
        os.kill(dyno_pid(server, routed, "web.2"), signal.SIGKILL)
        wait_until(lambda: any(d["state"] != "up" for d in dynos(deployer, routed)), 10, 0.02)
        settle(deployer, routed, dict.fromkeys(three, version))
    elapsed = time.monotonic() - started
    load.check(least=int(elapsed * 50))
    print(f"{load.ok} requests in {elapsed:.1f}s ({load.ok / elapsed:.0f}/s), none failed")


def test_a_sigkill_of_the_control_plane_fails_no_request(
    deployer: Deployer, plane: Plane, routed: str
) -> None:
    first = plane.server
    master = haproxy.master_pid(plane.paths)
    version = deployer.current(routed)["version"]
    settle(deployer, routed, {"web.1": version, "web.2": version, "web.3": version})
    with Load(first.http_port, f"{routed}.localhost") as load:
        wait_until(lambda: load.ok > 100, 10)
        first.process.kill()
        first.process.wait()
        before = load.ok
        wait_until(lambda: load.ok > before + 200, 10)  # served while no control plane runs
        port = int(first.url.rsplit(":", 1)[1])
        # The same ports: a new one would change HAProxy's configuration (a reload, which
        # closes idle keep-alive connections under the load's feet).
        env = {
            **ENV,
            "DOCKYARD_HTTP_PORT": str(first.http_port),
            "DOCKYARD_HTTPS_PORT": first.env["DOCKYARD_HTTPS_PORT"],
        }
        plane.server = start_server(first.data_dir, env, port=port)
        with deployer_for(plane.server, "after@example.com") as again:
            assert again.client.get("/healthz").status_code == 200
        after = load.ok
        wait_until(lambda: load.ok > after + 200, 10)
    load.check(least=500)
    assert haproxy.master_pid(plane.paths) == master, "the same HAProxy, adopted"
    with deployer_for(plane.server, "scaler@example.com"):
        pass
    # The new control plane drives it: a scale is routed.
    scale(Deployer(plane.server, deployer.token, deployer.client), routed, "web", 1)
