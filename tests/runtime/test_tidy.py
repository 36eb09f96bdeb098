"""Ended dynos' directories and unused unpacked slugs are removed, and only those.

Ages are given through ``tidy(now=...)``: the files are real, the clock is moved.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.runtime import Exit
from dockyard.runtime.process import DYNO_RETENTION, SLUG_IDLE, ProcessRuntime
from dockyard.runtime.slugs import SlugCache
from runtime.test_process import App, make_slug, next_exit, printed, run, runtime_on, until

HOUR = 3600.0


async def acknowledge(exits: AsyncIterator[Exit]) -> None:
    """Ask for the next exit (none comes), which acknowledges the last one; ends ``exits``."""
    with pytest.raises(TimeoutError):
        await next_exit(exits, timeout=0.2)


def ended_dyno(
    root: Path, name: str, *, acknowledged: float | None, slug: Path | None = None
) -> Path:
    """A dyno directory as an ended dyno leaves it, its exit acknowledged at that time."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "dyno.json").write_text("{}")
    (directory / "log").write_text("")
    if slug is not None:
        (directory / "slug").write_text(str(slug))
    at = acknowledged if acknowledged is not None else time.time()
    (directory / "exit.json").write_text('{"status": 0}')
    os.utime(directory / "exit.json", (at, at))
    if acknowledged is not None:
        (directory / "acknowledged").touch()
        os.utime(directory / "acknowledged", (at, at))
    return directory


def test_a_dyno_directory_goes_a_day_after_its_exit_was_taken(tmp_path: Path) -> None:
    app = App(tmp_path, "tidy-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data) as runtime:
            exits = runtime.exits()
            dyno = await runtime.start(app.spec("run.1", "echo done"))
            assert (await next_exit(exits)).dyno.id == dyno.id
            directory = dyno.log_path.parent
            (slug,) = (data / "slugs" / str(app.uid)).iterdir()
            await runtime.tidy(now=time.time() + DYNO_RETENTION - HOUR)
            assert not slug.exists(), "no dyno ran on it for 23 hours"
            # Not acknowledged: kept however old, since a next runtime reports it.
            await runtime.tidy(now=time.time() + 30 * 24 * HOUR)
            assert printed(dyno) == ["done"]
            await acknowledge(exits)
            await runtime.tidy(now=time.time() + DYNO_RETENTION - HOUR)
            assert printed(dyno) == ["done"], "the log hub may read it for a day"
            await runtime.tidy(now=time.time() + DYNO_RETENTION + HOUR)
            assert not directory.exists()
            # The release starts again: its slug is unpacked again.
            exits = runtime.exits()
            again = await runtime.start(app.spec("run.2", "cat data.txt"))
            assert (await next_exit(exits)).status == 0
            assert printed(again) == ["slug data"]
            assert slug.is_dir()

    run(scenario)


def test_a_running_dyno_keeps_its_directory_and_slug(tmp_path: Path) -> None:
    app, other = App(tmp_path, "busy-app"), App(tmp_path, "idle-app")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with runtime_on(data) as runtime:
            exits = runtime.exits()
            worker = await runtime.start(app.spec("worker.1", "python3 worker.py"))
            await until(lambda: "tick 1" in printed(worker))
            oneoff = await runtime.start(other.spec("run.1", "true"))
            assert (await next_exit(exits)).dyno.id == oneoff.id
            await acknowledge(exits)
            busy = data / "slugs" / str(app.uid) / app.sha
            idle = data / "slugs" / str(other.uid) / other.sha

            await runtime.tidy(now=time.time() + 2 * SLUG_IDLE)
            assert busy.is_dir()
            assert not idle.exists()
            assert oneoff.log_path.parent.is_dir()
            await runtime.tidy(now=time.time() + 30 * 24 * HOUR)
            assert busy.is_dir()
            assert worker.log_path.parent.is_dir()
            assert not oneoff.log_path.parent.exists()
            ticks = len(printed(worker))
            await until(lambda: len(printed(worker)) > ticks + 2)

            exits = runtime.exits()
            await runtime.stop(worker.id, grace=5)
            await next_exit(exits)
            await runtime.tidy(now=time.time() + SLUG_IDLE / 2)
            assert busy.is_dir(), "its dyno ended just now"
            await runtime.tidy(now=time.time() + 2 * SLUG_IDLE)
            assert not busy.exists()

    run(scenario)


def test_at_most_so_many_ended_dynos_are_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root = data / "dynos"
    now = time.time()
    ended = [ended_dyno(root, f"app.run.{n}", acknowledged=now - n * 60) for n in range(5)]
    unreported = ended_dyno(root, "app.run.9", acknowledged=None)
    unreported_time = now - 30 * 24 * HOUR
    os.utime(unreported / "exit.json", (unreported_time, unreported_time))

    async def scenario() -> None:
        runtime = ProcessRuntime(data, bwrap="bwrap", max_ended_dynos=3)
        await runtime.tidy(now=now)
        assert sorted(p.name for p in root.iterdir()) == [
            "app.run.0",
            "app.run.1",
            "app.run.2",
            "app.run.9",
        ]
        runtime = ProcessRuntime(data, bwrap="bwrap", dyno_retention=90)
        await runtime.tidy(now=now)
        assert sorted(p.name for p in root.iterdir()) == ["app.run.0", "app.run.1", "app.run.9"]

    run(scenario)
    assert not ended[4].exists()


def test_the_runtime_tidies_at_open_and_when_a_dyno_ends(tmp_path: Path) -> None:
    app = App(tmp_path, "end-app")
    data = tmp_path / "data"
    root = data / "dynos"
    long_ago = time.time() - DYNO_RETENTION - HOUR
    stale = ended_dyno(root, "app.run.1", acknowledged=long_ago)
    recent = ended_dyno(root, "app.run.2", acknowledged=time.time())

    async def scenario() -> None:
        async with runtime_on(data) as runtime:
            await until(lambda: not stale.exists())
            later = ended_dyno(root, "app.run.3", acknowledged=long_ago)
            exits = runtime.exits()
            await runtime.start(app.spec("run.4", "true"))
            await next_exit(exits)
            await until(lambda: not later.exists())
            assert recent.is_dir()

    run(scenario)


def test_a_running_dyno_whose_slug_is_unknown_keeps_every_slug(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slug, sha = make_slug(tmp_path)
    cache_root = data / "slugs"

    async def scenario() -> None:
        unpacked = await SlugCache(cache_root).unpacked(slug, sha, os.geteuid())
        old = ended_dyno(data / "dynos", "app.web.1", acknowledged=None)
        (old / "exit.json").unlink()  # runs, started by a version that did not record its slug
        runtime = ProcessRuntime(data, bwrap="bwrap")
        await runtime.tidy(now=time.time() + 2 * SLUG_IDLE)
        assert unpacked.is_dir()
        (old / "slug").write_text(str(tmp_path / "another"))
        await runtime.tidy(now=time.time() + 2 * SLUG_IDLE)
        assert not unpacked.exists()

    run(scenario)


def test_pruning_slugs(tmp_path: Path) -> None:
    slug, sha = make_slug(tmp_path)
    uid = os.geteuid()

    async def scenario() -> None:
        cache = SlugCache(tmp_path / "slugs")
        target = await cache.unpacked(slug, sha, uid)
        leftover = target.parent / ".unpack-cut-short"
        leftover.mkdir()
        # Last run on half an hour before: it stays for another half hour. The leftover of an
        # unpack cut short goes.
        now = time.time() + 2 * HOUR
        assert await cache.prune({target: now - 0.5 * HOUR}, idle=HOUR, now=now) == []
        assert target.is_dir()
        assert not leftover.exists()
        # A fresh cache on the same directory (a restarted control plane) knows nothing more.
        fresh = SlugCache(tmp_path / "slugs")
        assert await fresh.prune({}, idle=HOUR, now=now) == [target]
        assert list(target.parent.iterdir()) == []
        # A start while a prune has found the slug idle: the start wins, and gets it whole.
        await cache.unpacked(slug, sha, uid)
        mark = time.time()
        pruned, started = await asyncio.gather(
            fresh.prune({}, idle=0, now=mark), fresh.unpacked(slug, sha, uid)
        )
        assert pruned == []
        assert (started / "data.txt").read_text() == "slug data\n"

    run(scenario)
