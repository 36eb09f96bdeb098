"""Log hub throughput: lines per second from 10 dynos to one ``dockyard logs --tail``, with
nothing lost, and the delay from a dyno writing a line to the tail printing it.

Starts a ``dockyard server`` on a scratch data directory and deploys, with ``git push``, an
app whose ``flood`` process writes numbered lines at a set rate for a set time, each holding
the time it was written. For each rate it starts ``dockyard logs --tail -s app``, scales
``flood`` to 10 dynos, and reads the tail until every dyno has said it is done. The whole
path is the real one: the dynos' supervisors capture their output, the hub ingests it from
their log files, numbers and stores it, and the tail reads it as an event stream over HTTP.

For each rate it prints the lines offered and received per second, what was lost (a line
missing from a dyno's count, or an L10 note) or repeated, and the p50 and p99 delay from
write to tail. Everything it starts is stopped at the end.

    .venv/bin/python bench/logs_throughput.py [--dynos 10] [--rates 200,500,1000] [--duration 10]

``--rates`` are lines per second per dyno.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ACCEPT = "application/vnd.heroku+json; version=3"
APP = "flood"
FLOOD = """\
#!/usr/bin/python3
# Writes FLOOD_RATE numbered lines a second for FLOOD_SECONDS, then says it is done.
import os, sys, time

rate = int(os.environ["FLOOD_RATE"])
seconds = float(os.environ["FLOOD_SECONDS"])
run, dyno = os.environ["FLOOD_RUN"], os.environ["DYNO"]
out = sys.stdout
start, n = time.monotonic(), 0
while (elapsed := time.monotonic() - start) < seconds:
    due = min(int(rate * elapsed) + 1, int(rate * seconds))
    while n < due:
        n += 1
        out.write(f"flood {run} {dyno} {n} {time.time_ns()}\\n")
    out.flush()
    time.sleep(0.005)
out.write(f"flood {run} {dyno} done {n}\\n")
out.flush()
while True:
    time.sleep(3600)
"""
LINE = re.compile(r" app\[(flood\.\d+)\]: flood (\d+) \S+ (\d+|done) (\d+)$")


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
        time.sleep(0.05)
    raise SystemExit(f"{what} did not happen within {timeout:g}s")


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dockyard Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Dockyard Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"git {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@dataclass
class Tail:
    """``dockyard logs --tail`` and what it printed, parsed, with when each line came."""

    process: subprocess.Popen[str]
    run: str
    counts: dict[str, list[int]] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    delays: list[int] = field(default_factory=list)  # nanoseconds
    arrivals: dict[str, list[int]] = field(default_factory=dict)  # time.time_ns()
    notes: int = 0
    seen: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            now = time.time_ns()
            found = LINE.search(text.rstrip("\n"))
            if found is None:
                if "Error L10" in text:
                    self.notes += 1
                if len(self.seen) < 100:
                    self.seen.append(text.rstrip("\n"))
                continue
            dyno, run, n, value = found.groups()
            if run != self.run:
                continue
            if n == "done":
                self.done[dyno] = int(value)
                continue
            self.counts.setdefault(dyno, []).append(int(n))
            self.delays.append(now - int(value))
            self.arrivals.setdefault(dyno, []).append(now)

    def sustained(self) -> float:
        """Lines per second received while every dyno was writing (they start one by one)."""
        if not self.arrivals:
            return 0.0
        start = max(times[0] for times in self.arrivals.values())
        end = min(times[-1] for times in self.arrivals.values())
        if end <= start:  # they never all wrote at once: over the whole run instead
            start = min(times[0] for times in self.arrivals.values())
            end = max(times[-1] for times in self.arrivals.values())
        inside = sum(start <= t <= end for times in self.arrivals.values() for t in times)
        return inside / max((end - start) / 1e9, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dynos", type=int, default=10, help="flood dynos (default 10)")
    parser.add_argument(
        "--rates", default="200,500,1000,2000", help="lines/s per dyno, comma-separated"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each run writes")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    try:
        run_all(scratch, args.dynos, rates, args.duration)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_all(scratch: Path, dynos: int, rates: list[int], duration: float) -> None:
    data_dir = scratch / "data"
    api_port = free_port()
    env = {
        **os.environ,
        "DOCKYARD_DATA_DIR": str(data_dir),
        "DOCKYARD_API_LISTEN": f"127.0.0.1:{api_port}",
        "DOCKYARD_SSH_PORT": str(free_port()),
        "DOCKYARD_HTTP_PORT": str(free_port()),
    }
    url = f"http://127.0.0.1:{api_port}"
    with (scratch / "server.log").open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "server"], env=env, stdout=output, stderr=output
        )
    try:
        token = deploy(scratch, env, url)
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
        cli_env = {**env, "DOCKYARD_API_URL": url, "DOCKYARD_API_KEY": token}
        print(
            f"{dynos} dynos -> one `dockyard logs --tail`, {duration:g}s per rate; "
            f"{len(os.sched_getaffinity(0))} CPUs",
            flush=True,
        )
        print(
            f"{'offered/s':>10} {'received/s':>11} {'lost':>6} {'twice':>6} "
            f"{'p50 ms':>8} {'p99 ms':>8}",
            flush=True,
        )
        with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
            for number, rate in enumerate(rates, 1):
                measure(api, cli_env, str(number), dynos=dynos, rate=rate, duration=duration)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stop_dynos_and_router(data_dir)


def deploy(scratch: Path, env: dict[str, str], url: str) -> str:
    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 60, "dockyard server answering")
    token = subprocess.run(
        [sys.executable, "-m", "dockyard", "admin:create-user", "bench@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
        api.post("/apps", json={"name": APP}).raise_for_status()
    repo = scratch / "repo"
    (repo / "bin").mkdir(parents=True)
    (repo / "Procfile").write_text("flood: bin/flood\n")
    (repo / "bin" / "flood").write_text(FLOOD)
    (repo / "bin" / "flood").chmod(0o755)
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--message", "Flood", cwd=repo)
    git("push", "--quiet", url.replace("//", f"//bench:{token}@") + f"/{APP}.git", "main", cwd=repo)
    return token


def measure(
    api: httpx.Client, cli_env: dict[str, str], run: str, *, dynos: int, rate: int, duration: float
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "logs", "--tail", "-n", "0", "-s", "app", "-a", APP],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    tail = Tail(process, run)
    reader = threading.Thread(target=tail.read, daemon=True)
    reader.start()
    try:
        config = {"FLOOD_RATE": str(rate), "FLOOD_SECONDS": str(duration), "FLOOD_RUN": run}
        # The tail reads once it shows a config change; until then, change it again.
        deadline = time.monotonic() + 30
        while not any("config vars by" in s for s in tail.seen):
            if time.monotonic() > deadline:
                raise SystemExit("the tail did not start reading within 30s")
            config["FLOOD_SYNC"] = str(time.monotonic_ns())
            api.patch(f"/apps/{APP}/config-vars", json=config).raise_for_status()
            time.sleep(0.5)
        scale(api, dynos)
        started = time.monotonic()

        def finished() -> bool:
            if len(tail.done) == dynos:
                return True
            # A `done` line may be lost too: then, when nothing more comes for a while.
            quiet = time.time_ns() - max((t[-1] for t in tail.arrivals.values()), default=0)
            return time.monotonic() - started > duration and quiet > 10e9

        wait_for(finished, duration + 300, "the end of the flood")
        scale(api, 0)
    finally:
        process.terminate()
        process.wait(timeout=15)
        reader.join(timeout=15)
        assert process.stdout is not None
        process.stdout.close()
    # What each dyno wrote: its `done` line says, or else (that line was lost too) about
    # rate * duration.
    ran = set(tail.counts) | set(tail.done)
    written = sum(tail.done.get(dyno, int(rate * duration)) for dyno in ran)
    received = sum(len(counts) for counts in tail.counts.values())
    distinct = sum(len(set(counts)) for counts in tail.counts.values())
    lost = written - distinct + tail.notes
    twice = received - distinct
    delays = sorted(tail.delays)
    p50 = delays[len(delays) // 2] / 1e6
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] / 1e6
    print(
        f"{rate * dynos:>10,} {tail.sustained():>11,.0f} {lost:>6} {twice:>6} "
        f"{p50:>8.1f} {p99:>8.1f}" + (f"  (only {len(ran)} dynos ran)" if len(ran) < dynos else ""),
        flush=True,
    )


def scale(api: httpx.Client, quantity: int) -> None:
    api.patch(f"/apps/{APP}/formation/flood", json={"quantity": quantity}).raise_for_status()

    def settled() -> bool:
        running = [d for d in api.get(f"/apps/{APP}/dynos").json() if d["type"] == "flood"]
        return len(running) == quantity

    wait_for(settled, 60, f"flood scaled to {quantity}")


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
