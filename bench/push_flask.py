"""Cold and warm push-to-release times for the Flask sample (tests/apps/flask-pip).

Starts a ``dockyard server`` on a scratch data directory, makes a user and an app, and
times ``git push`` (the real client, over HTTP) from the start of the push to the end of
its output, which is when the release exists. A cold run empties the app's build cache
first (``DELETE /apps/{app}/build-cache``), so pip downloads every package; a warm run
pushes an empty commit onto a full cache. Prints every run, then the median of each kind.

    .venv/bin/python bench/push_flask.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "apps" / "flask-pip"
ACCEPT = "application/vnd.heroku+json; version=3"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dockyard Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Dockyard Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args[:1])} failed:\n{done.stdout}")
    return done.stdout


def start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    port = free_port()
    env = {
        **os.environ,
        "DOCKYARD_DATA_DIR": str(data_dir),
        "DOCKYARD_API_LISTEN": f"127.0.0.1:{port}",
        "DOCKYARD_SSH_PORT": str(free_port()),
        "DOCKYARD_HTTP_PORT": str(free_port()),  # its router's, not the shared port 80
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "server"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dockyard server exited with {server.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url, env
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"dockyard server did not answer within 60s; see {log}")


def push(repo: Path, remote: str) -> tuple[float, str]:
    git("commit", "--quiet", "--allow-empty", "--message", "Bench", cwd=repo)
    started = time.monotonic()
    output = git("push", "--quiet", remote, "main", cwd=repo)
    elapsed = time.monotonic() - started
    if "Released v" not in output:
        raise SystemExit(f"the push did not make a release:\n{output}")
    return elapsed, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    scratch = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    try:
        run_all(scratch, args.runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_all(scratch: Path, runs: int) -> None:
    server, url, env = start_server(scratch / "data", scratch / "server.log")
    try:
        token = subprocess.run(
            [sys.executable, "-m", "dockyard", "admin:create-user", "bench@example.com"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
            api.post("/apps", json={"name": "flask-bench"}).raise_for_status()
            repo = scratch / "repo"
            shutil.copytree(SAMPLE, repo)
            git("init", "--quiet", "--initial-branch=main", cwd=repo)
            git("add", "--all", cwd=repo)
            git("commit", "--quiet", "--message", "Flask sample", cwd=repo)
            remote = url.replace("http://", f"http://bench:{token}@") + "/flask-bench.git"

            times: dict[str, list[float]] = {"cold": [], "warm": []}
            for kind in ("cold", "warm"):
                for run in range(1, runs + 1):
                    if kind == "cold":
                        api.delete("/apps/flask-bench/build-cache").raise_for_status()
                    elapsed, output = push(repo, remote)
                    cached = "Using the cached virtualenv" in output
                    if cached != (kind == "warm"):
                        verb = "used" if cached else "missed"
                        raise SystemExit(f"a {kind} push {verb} the cache:\n{output}")
                    times[kind].append(elapsed)
                    print(f"{kind} {run}: {elapsed:6.2f}s", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        # The server's HAProxy outlives it by design; the bench stops the one it started.
        from dockyard.router import haproxy

        haproxy.stop(haproxy.Paths(scratch / "data" / "router"))

    print()
    print(f"Flask sample, push to release, median of {runs} runs each:")
    for kind, label in (("cold", "cold (empty build cache)"), ("warm", "warm (unchanged deps)")):
        print(f"  {label:26} {statistics.median(times[kind]):6.2f}s")


if __name__ == "__main__":
    main()
