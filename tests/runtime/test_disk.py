"""A dyno cannot fill the host's disk: its writable places are in memory, bounded, its own.

``/app``'s writable layer and ``/tmp`` are tmpfs inside the sandbox: what a dyno writes there
counts against its size's memory (an R15 when it goes over) and ``/tmp`` holds at most half
of it (ENOSPC beyond). The data directory does not grow, whatever a dyno writes, and the
dynos next to it run on. Filling needs root and cgroups; the bounds of ``/tmp`` do not.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from dockyard.formation import SIZES
from dockyard.runtime.cgroups import platform_layout
from runtime.test_process import App, printed, run, run_to_end, runtime_on, until

needs_cgroups = pytest.mark.skipif(
    os.geteuid() != 0 or platform_layout() is None, reason="dyno limits need root and cgroups"
)
MB = 1024 * 1024
# Writes 1 MB at a time to the file named first, up to the megabytes named second; says how far
# it got and why it stopped, then stays up when it is told to (a third argument).
FILL = """\
import errno, sys, time
path, wanted, stay = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3
chunk, written = b"x" * (1 << 20), 0
with open(path, "wb", buffering=0) as out:
    try:
        while written < wanted:
            out.write(chunk)
            written += 1
    except OSError as exc:
        print("stopped after", written, errno.errorcode.get(exc.errno), flush=True)
    else:
        print("wrote", written, flush=True)
print("still here", flush=True)
while stay:
    time.sleep(1)
"""


def used_bytes(path: Path) -> int:
    """What the files under ``path`` take on disk."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:  # a dyno's JSON record being replaced
                continue
    return total


@asynccontextmanager
async def watching_disk(data: Path) -> AsyncIterator[list[int]]:
    """The data directory's size on disk, sampled until the block ends: [before, peak]."""
    sizes = [used_bytes(data)] * 2

    async def sample() -> None:
        while True:
            sizes[1] = max(sizes[1], await asyncio.to_thread(used_bytes, data))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        yield sizes
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        sizes[1] = max(sizes[1], used_bytes(data))


def fill(path: str, megabytes: int, *, stay: bool = False) -> str:
    return f"python3 -c '{FILL}' {path} {megabytes}" + (" stay" if stay else "")


@needs_cgroups
def test_filling_app_ends_the_dyno_for_its_memory_and_not_the_disk(tmp_path: Path) -> None:
    app, neighbour = App(tmp_path, "filler-app"), App(tmp_path, "neighbour-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data) as runtime:
            other = await runtime.start(neighbour.spec("worker.1", "python3 worker.py"))
            await until(lambda: "tick 1" in printed(other))
            async with watching_disk(data) as sizes:
                spec = app.spec("run.1", fill("/app/fill", 2048), size="standard-1x")
                dyno, ended = await run_to_end(runtime, spec)
            assert not any(line.startswith("wrote") for line in printed(dyno)), printed(dyno)
            assert ended.status == 137  # killed by the kernel, for its memory (R15)
            assert ended.reason == "memory"
            assert sizes[1] - sizes[0] < 16 * MB, "the writes went to the data directory"
            # The dyno next to it runs on.
            assert [d.id for d in await runtime.list()] == [other.id]
            ticks = len(printed(other))
            await until(lambda: len(printed(other)) > ticks + 2)

    run(scenario)


def test_filling_tmp_fails_with_enospc_at_half_the_dyno_memory(tmp_path: Path) -> None:
    app = App(tmp_path, "tmp-filler-app")
    data = tmp_path / "data"
    bound = SIZES["standard-1x"].memory_bytes // 2

    async def scenario() -> None:
        async with runtime_on(data) as runtime, watching_disk(data) as sizes:
            command = "df -B1 --output=size /tmp | tail -n 1; " + fill("/tmp/fill", 2048)
            spec = app.spec("run.1", command, size="standard-1x")
            dyno, ended = await run_to_end(runtime, spec)
            lines = printed(dyno)
            assert (ended.status, ended.reason) == (0, None), lines
            assert int(lines[0]) == bound
            words = lines[1].split()
            assert (words[0], words[3]) == ("stopped", "ENOSPC")
            assert int(words[2]) * MB <= bound
            assert lines[2] == "still here"  # a failed write, not a killed dyno
        assert sizes[1] - sizes[0] < 16 * MB

    run(scenario)


def test_app_writes_stay_off_the_data_directory_and_count_as_the_dyno_memory(
    tmp_path: Path,
) -> None:
    app = App(tmp_path, "layer-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data) as runtime, watching_disk(data) as sizes:
            dyno = await runtime.start(app.spec("worker.1", fill("/app/fill", 128, stay=True)))
            await until(lambda: "still here" in printed(dyno))
            assert printed(dyno)[0] == "wrote 128"
            assert used_bytes(data) - sizes[0] < 16 * MB
            if platform_layout() is not None:
                assert (await runtime.usage(dyno.id)).memory_bytes >= 128 * MB
            await runtime.stop(dyno.id, grace=5)
        assert sizes[1] - sizes[0] < 16 * MB
        assert not any(path.name == "fill" for path in data.rglob("*"))

    run(scenario)


def test_the_dyno_directory_holds_no_layer(tmp_path: Path) -> None:
    app = App(tmp_path, "plain-app")

    async def scenario() -> None:
        async with runtime_on(tmp_path / "data") as runtime:
            dyno = await runtime.start(app.spec("worker.1", "echo hi > /app/hi && exec sleep 600"))
            names = {path.name for path in dyno.log_path.parent.iterdir()}
            assert not names & {"upper", "work"}

    run(scenario)
