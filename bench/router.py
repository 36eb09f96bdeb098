"""Requests per second and p99 latency: a fast web dyno direct, through Dockyard's router,
and through nginx ``proxy_pass`` with upstream keep-alive (what Dokku and Piku put in front).

Starts a ``dockyard server`` on a scratch data directory (with its HAProxy on a free port),
deploys a Node.js "hello world" web dyno with ``git push``, then runs ``wrk`` on loopback
against (a) the dyno's own port, (b) the router with the app's Host header and (c) an nginx
started here with ``proxy_pass`` to the dyno and ``keepalive`` upstream connections. The
runs take turns (a b c a b c ...), so that other load on the machine weighs on all three
alike. Prints each one's median req/s and p99, the CPU time its proxy (HAProxy's worker, or
nginx's processes), the control plane (which reads a router log record per request) and the
dyno spent per request, then the ratios b/a and b/c. Everything it started is stopped at
the end.

    .venv/bin/python bench/router.py [--duration 10] [--connections 64] [--threads 2] [--runs 3]

Needs ``wrk``, ``nginx``, ``haproxy`` and ``node`` (scripts/test installs them all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ACCEPT = "application/vnd.heroku+json; version=3"
APP = "bench"
SERVER_JS = """\
const http = require("http");
const body = "Hello, world\\n";
http.createServer((request, response) => {
  response.writeHead(200, {"Content-Type": "text/plain", "Content-Length": body.length});
  response.end(body);
}).listen(process.env.PORT);
"""
NGINX_CONF = """\
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log {root}/access.log;
    upstream dyno {{
        server 127.0.0.1:{dyno};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dyno;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dockyard Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Dockyard Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass
class Result:
    requests_per_second: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not happen within {timeout:g}s")


def answers(url: str, host: str | None = None) -> bool:
    try:
        reply = httpx.get(url, headers={"Host": host} if host else {}, timeout=2)
    except httpx.TransportError:
        return False
    return reply.status_code == 200


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {args[0]} failed:\n{done.stdout}")
    return done.stdout


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, args: argparse.Namespace, host: str | None = None) -> Result:
    command = [
        "wrk",
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={args.duration}s",
        "--latency",
        *(["--header", f"Host: {host}"] if host else []),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if rate is None or p99 is None:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(n) for n in sockets.groups()) if sockets else 0
    return Result(float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], failed)


@dataclass
class Target:
    """One of (a), (b), (c): where wrk sends requests, and whose CPU time is counted."""

    name: str
    url: str
    host: str | None
    proxy: Callable[[], list[int]]  # the proxy's processes
    plane: list[int] = field(default_factory=list)  # the control plane, reading router logs
    results: list[Result] = field(default_factory=list)
    proxy_cpu: float = 0.0  # seconds, over every run
    plane_cpu: float = 0.0
    dyno_cpu: float = 0.0
    requests: float = 0.0


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of ``pids`` (every thread), so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (nginx's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                found.append(int(entry.name))
    return found


def listening(port: int) -> list[int]:
    """The processes that have the socket listening on ``port`` open (the web dyno)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    found.append(int(entry.name))
    return found


def measure(targets: list[Target], dyno: list[int], args: argparse.Namespace) -> None:
    """Runs of each target in turn (a b c a b c ...), so that other load on the machine
    weighs on all three alike; the CPU time the proxy and the dyno spend, per request."""
    warm = argparse.Namespace(**{**vars(args), "duration": 2})
    for target in targets:
        wrk(target.url, warm, target.host)
    for _ in range(args.runs):
        for target in targets:
            pids = target.proxy()
            before = cpu_seconds(pids), cpu_seconds(dyno), cpu_seconds(target.plane)
            result = wrk(target.url, args, target.host)
            target.proxy_cpu += cpu_seconds(pids) - before[0]
            target.dyno_cpu += cpu_seconds(dyno) - before[1]
            target.plane_cpu += cpu_seconds(target.plane) - before[2]
            target.requests += result.requests_per_second * args.duration
            target.results.append(result)


def median(target: Target) -> Result:
    return Result(
        statistics.median(r.requests_per_second for r in target.results),
        statistics.median(r.p99_ms for r in target.results),
        sum(r.errors for r in target.results),
    )


def report(target: Target) -> Result:
    found = median(target)
    runs = ", ".join(f"{r.requests_per_second:.0f}" for r in target.results)
    per_request = 1e6 / max(target.requests, 1)
    proxy = f"proxy {target.proxy_cpu * per_request:5.1f} us, " if target.proxy_cpu else ""
    if target.plane:
        proxy += f"control plane {target.plane_cpu * per_request:5.1f} us, "
    print(
        f"  {target.name:34} {found.requests_per_second:8.0f} req/s   p99 {found.p99_ms:7.2f} ms"
        f"   CPU per request: {proxy}dyno {target.dyno_cpu * per_request:5.1f} us   ({runs})"
        + (f"   {found.errors} errors" if found.errors else ""),
        flush=True,
    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, median (3)")
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "node", "git"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    scratch = Path(tempfile.mkdtemp(prefix="dockyard-bench-router-"))
    try:
        run(scratch, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path, args: argparse.Namespace) -> None:
    data_dir = scratch / "data"
    api_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DOCKYARD_DATA_DIR": str(data_dir),
        "DOCKYARD_API_LISTEN": f"127.0.0.1:{api_port}",
        "DOCKYARD_SSH_PORT": str(free_port()),
        "DOCKYARD_HTTP_PORT": str(http_port),
    }
    log = scratch / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "server"], env=env, stdout=output, stderr=output
        )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        port = deploy(scratch, env, f"http://127.0.0.1:{api_port}")
        host = f"{APP}.localhost"
        router = f"http://127.0.0.1:{http_port}/"
        wait_for(lambda: answers(router, host), 30, "the router serving the app")
        nginx, nginx_url = start_nginx(scratch / "nginx", port)
        print(
            f"wrk, {args.threads} threads, {args.connections} connections, {args.duration}s, "
            f"median of {args.runs} runs; {len(os.sched_getaffinity(0))} CPUs",
            flush=True,
        )
        workers = haproxy_workers(data_dir)
        nginx_pids = [nginx.pid, *children(nginx.pid)]
        targets = [
            Target("(a) dyno, direct", f"http://127.0.0.1:{port}/", None, list),
            Target("(b) Dockyard router (HAProxy)", router, host, lambda: workers, [server.pid]),
            Target("(c) nginx proxy_pass, keep-alive", nginx_url, None, lambda: nginx_pids),
        ]
        measure(targets, listening(port), args)
        direct, routed, proxied = (report(target) for target in targets)
        print()
        print(f"  b/a = {routed.requests_per_second / direct.requests_per_second:.2f} (req/s)")
        print(f"  b/c = {routed.requests_per_second / proxied.requests_per_second:.2f} (req/s)")
        print(
            f"  p99: a {direct.p99_ms:.2f} ms, b {routed.p99_ms:.2f} ms, c {proxied.p99_ms:.2f} ms"
        )
        print("  (the control plane reads HAProxy's record of each request: a router log line)")
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=15)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stop_dynos_and_router(data_dir)


def deploy(scratch: Path, env: dict[str, str], api_url: str) -> int:
    """A user, the app, a git push of the hello-world dyno; the web dyno's port once it is up."""
    wait_for(lambda: answers(f"{api_url}/healthz"), 60, "dockyard server answering")
    token = subprocess.run(
        [sys.executable, "-m", "dockyard", "admin:create-user", "bench@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as api:
        api.post("/apps", json={"name": APP}).raise_for_status()
        repo = scratch / "repo"
        repo.mkdir()
        (repo / "Procfile").write_text("web: node server.js\n")
        (repo / "server.js").write_text(SERVER_JS)
        git("init", "--quiet", "--initial-branch=main", cwd=repo)
        git("add", "--all", cwd=repo)
        git("commit", "--quiet", "--message", "Hello", cwd=repo)
        remote = api_url.replace("//", f"//bench:{token}@") + f"/{APP}.git"
        git("push", "--quiet", remote, "main", cwd=repo)
        found: list[int] = []

        def booted() -> bool:
            for dyno in api.get(f"/apps/{APP}/dynos").json():
                if dyno["state"] == "up" and dyno.get("port"):
                    found.append(int(dyno["port"]))
                    return True
            return False

        wait_for(booted, 60, "the web dyno booting")
    return found[0]


def start_nginx(root: Path, dyno: int) -> tuple[subprocess.Popen[bytes], str]:
    root.mkdir()
    port = free_port()
    config = NGINX_CONF.format(
        root=root, dyno=dyno, port=port, workers=len(os.sched_getaffinity(0))
    )
    (root / "nginx.conf").write_text(config)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: answers(url), 10, "nginx answering")
    return nginx, url


def haproxy_workers(data_dir: Path) -> list[int]:
    from dockyard.router import haproxy

    paths = haproxy.Paths(data_dir / "router")
    worker = haproxy.parse_proc(haproxy.query(paths, "show proc")).worker
    return [worker] if worker is not None else []


def stop_dynos_and_router(data_dir: Path) -> None:
    """Dynos and HAProxy outlive the server by design; the bench stops what it started."""
    from dockyard.router import haproxy
    from dockyard.runtime.process import ProcessRuntime

    async def stop_dynos() -> None:
        runtime = await ProcessRuntime.open(data_dir)
        try:
            for dyno in await runtime.list():
                await runtime.stop(dyno.id, grace=5)
        finally:
            await runtime.close()

    if (data_dir / "dynos").exists():
        asyncio.run(stop_dynos())
    haproxy.stop(haproxy.Paths(data_dir / "router"))


if __name__ == "__main__":
    main()
