"""Dyno sizes as cgroup limits, with real processes: memory (R15), CPU share, process count.

Most need root and a writable cgroup hierarchy (v1 or v2) and are skipped elsewhere; without
them dynos still run, without limits, after one warning.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from dockyard.formation import SIZES
from dockyard.runtime import Dyno, cgroups
from dockyard.runtime.cgroups import Group, Layout, platform_layout
from runtime.test_process import App, printed, run, run_to_end, runtime_on, until

needs_cgroups = pytest.mark.skipif(
    os.geteuid() != 0 or platform_layout() is None, reason="dyno limits need root and cgroups"
)

# Touches every page it allocates, 16 MB at a time, up to 1.5 GB.
HOG = """\
print("allocating", flush=True)
chunks = [b"x" * (16 << 20) for _ in range(96)]
print("survived", flush=True)
"""

FORK_BOMB = """\
import errno, os

r, w = os.pipe()
children, failure = 0, None
while children < 1000:
    try:
        pid = os.fork()
    except OSError as exc:
        failure = errno.errorcode.get(exc.errno, str(exc.errno))
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # until the parent closes its end
        os._exit(0)
    children += 1
print("forked", children, "then", failure, flush=True)
os.close(w)
for _ in range(children):
    os.wait()
print("all reaped", flush=True)
"""


def group_of(dyno: Dyno) -> Group:
    record = json.loads((dyno.log_path.parent / "cgroup.json").read_text())
    return Group.from_json(record)


def read(directory: Path, name: str) -> str:
    return (directory / name).read_text().strip()


@needs_cgroups
def test_a_dyno_over_its_memory_is_killed_for_it(tmp_path: Path) -> None:
    app = App(tmp_path, "hog-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            spec = app.spec("run.1", f"python3 -c '{HOG}'", size="standard-1x")
            dyno, ended = await run_to_end(runtime, spec)
            assert printed(dyno)[0] == "allocating"
            assert "survived" not in printed(dyno)
            assert ended.status == 137  # SIGKILL, from the kernel
            assert ended.reason == "memory"
            assert ended.stopped is None
            for directory in group_of(dyno).directories:
                assert not directory.exists(), "the cgroup goes with the dyno"

    run(scenario)


@needs_cgroups
def test_an_exit_within_the_limits_has_no_reason(tmp_path: Path) -> None:
    app = App(tmp_path, "small-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            spec = app.spec("run.1", "python3 -c 'x = b\"x\" * (64 << 20)'; exit 3")
            dyno, ended = await run_to_end(runtime, spec)
            assert (ended.status, ended.reason) == (3, None)
            for directory in group_of(dyno).directories:
                assert not directory.exists()

    run(scenario)


@needs_cgroups
def test_the_limits_files_hold_the_sizes_values(tmp_path: Path) -> None:
    app = App(tmp_path, "sized-app")
    size = SIZES["standard-2x"]

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            dyno = await runtime.start(app.spec("worker.1", "python3 worker.py", size=size.name))
            await until(lambda: "tick 1" in printed(dyno))
            group = group_of(dyno)
            assert set(group.paths) == {"memory", "cpu", "pids"}
            memory, cpu, pids = group.paths["memory"], group.paths["cpu"], group.paths["pids"]
            for directory in group.directories:
                assert directory.name == dyno.id
                assert directory.parent.name == "dockyard"
                # The sandbox and everything in it, from before the app's command ran.
                members = {int(p) for p in read(directory, "cgroup.procs").split()}
                assert dyno.pid in members
                assert len(members) >= 3  # bwrap, the namespace's init, python
            assert read(pids, "pids.max") == str(size.max_processes)
            if group.version == 1:
                assert read(memory, "memory.limit_in_bytes") == str(size.memory_bytes)
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    assert read(memory, "memory.memsw.limit_in_bytes") == str(size.memory_bytes)
                assert read(cpu, "cpu.shares") == str(size.cpu_shares)
            else:
                assert read(memory, "memory.max") == str(size.memory_bytes)
                assert read(memory, "memory.swap.max") == "0"
                assert read(cpu, "cpu.weight") == str(size.cpu_weight)
            usage = await runtime.usage(dyno.id)
            assert 2**20 < usage.memory_bytes < 2**30
            assert usage.processes == 1

            await runtime.stop(dyno.id, grace=5)
            for directory in group.directories:
                assert not directory.exists(), "the cgroup goes with the dyno"

    run(scenario)


@needs_cgroups
def test_a_fork_bomb_is_contained(tmp_path: Path) -> None:
    app = App(tmp_path, "forky-app")
    limit = SIZES["standard-1x"].max_processes

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            spec = app.spec("run.1", f"python3 -c '{FORK_BOMB}'", size="standard-1x")
            dyno, ended = await run_to_end(runtime, spec)
            lines = printed(dyno)
            assert ended.status == 0, lines
            assert ended.reason is None
            # fork failed in the dyno, short of the thousand, and the dyno coped.
            words = lines[0].split()
            assert words[0] == "forked"
            assert 0 < int(words[1]) < limit
            assert words[3] == "EAGAIN"
            assert lines[1] == "all reaped"
            for directory in group_of(dyno).directories:
                assert not directory.exists()
        # The host is not: processes start here as before.
        assert subprocess.run(["true"], check=False).returncode == 0

    run(scenario)


def test_without_cgroups_dynos_run_unlimited_after_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(tmp_path, "unlimited-app")
    monkeypatch.setattr(cgroups, "_WARNED", set())

    def read_only(self: Layout, name: str, limits: cgroups.Limits) -> Group:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Layout, "create", read_only)
    monkeypatch.setattr(cgroups, "platform_layout", lambda: Layout(1, {}))

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            for number in (1, 2):
                spec = app.spec(f"run.{number}", "echo still running")
                dyno, ended = await run_to_end(runtime, spec)
                assert (ended.status, ended.reason) == (0, None)
                assert printed(dyno) == ["still running"]
                assert not (dyno.log_path.parent / "cgroup.json").exists()

    with caplog.at_level(logging.WARNING, logger="dockyard.runtime"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records] == [
        "dynos run without memory, CPU and process limits: [Errno 30] Read-only file system"
    ]
