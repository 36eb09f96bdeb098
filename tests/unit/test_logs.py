"""The log hub: lines made safe and rendered, the ring and the history, cursors, back-pressure
(L10), platform events and router lines from any thread, and dyno output read exactly once
across restarts of the control plane (real files; a fake runtime lists them)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from dockyard.events import APP, Events
from dockyard.logs.history import History, encode
from dockyard.logs.hub import LogHub, Subscription
from dockyard.logs.ingest import DynoIngest
from dockyard.logs.lines import (
    Filter,
    Line,
    make,
    parse_rendered,
    parse_time,
    sanitise,
    split,
    timestamp,
)
from dockyard.runtime import Dyno, DynoOutput

T = TypeVar("T")
APP_ID = "0b6f1f0e-7a1c-4c1e-9d4e-2f3a4b5c6d7e"
OTHER_APP = "5e1d2c3b-4a59-4876-8a9b-0c1d2e3f4a5b"


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await scenario()

    return asyncio.run(bounded())


def line(message: str, process: str = "web.1", source: str = "app", at: int = 0) -> Line:
    return Line(at or 1_767_607_200_000_000, source, process, message)


def messages(lines: Sequence[Line]) -> list[str]:
    return [x.message for x in lines]


async def drain(subscription: Subscription, timeout: float = 0.2) -> list[Line]:
    """What the subscription gives until it ends, or stays quiet for ``timeout`` seconds."""
    got: list[Line] = []
    quiet = 0
    while True:
        batch = await subscription.next_batch(timeout)
        if batch is None:
            return got
        if batch:
            got += batch
            continue
        quiet += 1  # [] once when caught up, then for each quiet timeout
        if quiet >= 2:
            return got


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# -- lines ----------------------------------------------------------------------------------


def test_lines_render_the_heroku_way_with_microseconds() -> None:
    at = parse_time("2026-01-05T10:00:00.123456Z")
    assert at is not None
    shown = Line(at, "app", "web.1", "hello").render()
    assert shown == "2026-01-05T10:00:00.123456+00:00 app[web.1]: hello"
    assert at == parse_time("2026-01-05T10:00:00.123456+00:00")
    assert parse_time("2026-13-05T10:00:00.123456Z") is None
    assert parse_time("yesterday") is None
    whole = parse_time("2026-01-05T10:00:00+00:00")
    assert whole is not None
    assert timestamp(whole) == "2026-01-05T10:00:00.000000+00:00"
    back = parse_rendered(shown)
    assert back is not None
    assert (back.at, back.source, back.process, back.message) == (at, "app", "web.1", "hello")
    assert parse_rendered("not a log line") is None
    assert Line(at, "dockyard", "router", "at=info").tag == "dockyard[router]"


def test_long_lines_are_cut_at_10000_bytes_never_inside_a_character() -> None:
    parts = split("x" * 25_000)
    assert [len(p) for p in parts] == [10_000, 10_000, 5_000]
    wide = "é" * 6_000 + "€" * 4_000  # 12,000 + 12,000 bytes
    parts = split(wide)
    assert all(len(p.encode()) <= 10_000 for p in parts)
    assert "".join(parts) == wide
    made = make(1, "app", "web.1", "y" * 20_001)
    assert [len(x.message) for x in made] == [10_000, 10_000, 1]


def test_binary_and_control_characters_are_made_safe() -> None:
    assert sanitise("plain text") == "plain text"
    assert sanitise("tab\tkept") == "tab\tkept"
    assert sanitise("nul\x00bell\x07") == "nul\ufffdbell\ufffd"
    # Colours stay; other escape sequences (a window title here) do not reach a terminal.
    assert sanitise("\x1b[31mred\x1b[0m") == "\x1b[31mred\x1b[0m"
    assert sanitise("\x1b]0;title\x07") == "\ufffd]0;title\ufffd"
    assert sanitise("half \ud800 surrogate") == "half \ufffd surrogate"
    assert sanitise("c1 \x9b control") == "c1 \ufffd control"
    assert messages(make(1, "app", "web.1", "one\ntwo\r\nthree\rfour")) == [
        "one",
        "two",
        "three",
        "four",
    ]
    # Whatever an app writes, a record of the history is one line of valid UTF-8 JSON.
    for text in ("\x00\xff\ufffe", "a\u2028b", "\ud83d"):
        (made,) = make(1, "app", "web.1", text)
        record = encode(Line(1, "app", "web.1", made.message, 1))
        assert record.count(b"\n") == 1
        json.loads(record.decode("utf-8"))


def test_filters_by_dyno_process_type_and_source() -> None:
    web1, web2 = line("a", "web.1"), line("b", "web.2")
    worker, api = line("c", "worker.1"), line("d", "api")
    router = line("e", "router", "dockyard")
    state = line("f", "web.1", "dockyard")
    lines = [web1, web2, worker, api, router, state]
    assert [x for x in lines if Filter("web")(x)] == [web1, web2, state]
    assert [x for x in lines if Filter("web.1")(x)] == [web1, state]
    assert [x for x in lines if Filter("web", "app")(x)] == [web1, web2]
    assert [x for x in lines if Filter(None, "heroku")(x)] == [router, state]
    assert [x for x in lines if Filter("router")(x)] == [router]
    assert [x for x in lines if Filter("we")(x)] == []
    with pytest.raises(ValueError, match="not a log source"):
        Filter(None, "system")


# -- the history ----------------------------------------------------------------------------


def numbered(first: int, count: int, size: int = 80) -> list[Line]:
    return [
        Line(n, "app", "web.1", f"{n:08d}" + "x" * size, n) for n in range(first, first + count)
    ]


def test_history_rotates_within_its_budget_and_reads_by_number(tmp_path: Path) -> None:
    history = History(tmp_path / "app", budget=1024 * 1024)
    history.open()
    for first in range(1, 40_001, 1000):
        history.append(numbered(first, 1000))
    history.close()
    segments = history.segments()
    assert 2 < len(segments) <= 9
    assert sum(path.stat().st_size for _, path in segments) <= 1024 * 1024 + 128 * 1024
    oldest = history.first_seq()
    assert oldest is not None
    assert oldest > 1  # the oldest lines went
    assert segments[0][0] == oldest
    read = [x for batch in history.read(39_000, 39_010) for x in batch]
    assert [x.seq for x in read] == list(range(39_001, 39_011))
    everything = [x.seq for batch in history.read(0) for x in batch]
    assert everything == list(range(oldest, 40_001))
    after = history.start_of_last(25, Filter(None, "app"), 40_000)
    assert after == 39_975
    assert history.start_of_last(10**9, None, 40_000) == 0


def test_history_survives_a_write_cut_short(tmp_path: Path) -> None:
    history = History(tmp_path / "app", budget=1024 * 1024)
    history.open()
    history.append(numbered(1, 10))
    history.close()
    (_, path), *_ = history.segments()
    with path.open("ab") as handle:  # a crash in the middle of the next append
        handle.write(encode(numbered(11, 1)[0])[:20])
    again = History(tmp_path / "app", budget=1024 * 1024)
    again.open()
    assert again.last_seq == 10
    again.append(numbered(11, 2))
    again.close()
    assert [x.seq for batch in again.read(0) for x in batch] == list(range(1, 13))


# -- the hub --------------------------------------------------------------------------------


def test_the_hub_numbers_keeps_and_serves_lines_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = LogHub(tmp_path, ring_lines=50, history_bytes=1024 * 1024)
        await hub.start()
        published = hub.publish(APP_ID, [line(f"line {n}") for n in range(1, 201)])
        assert [x.seq for x in published] == list(range(1, 201))
        hub.publish(OTHER_APP, [line("elsewhere")])
        assert hub.last_seq(OTHER_APP) == 1
        # The last 20 from memory, the last 120 from memory and disk.
        last20 = await drain(hub.subscribe(APP_ID, lines=20, tail=False))
        assert messages(last20) == [f"line {n}" for n in range(181, 201)]
        last120 = await drain(hub.subscribe(APP_ID, lines=120, tail=False))
        assert messages(last120) == [f"line {n}" for n in range(81, 201)]
        await hub.close()

        # A new hub on the same directory: numbers go on, the past is there.
        hub = LogHub(tmp_path, ring_lines=50, history_bytes=1024 * 1024)
        await hub.start({APP_ID})  # OTHER_APP was deleted meanwhile
        assert hub.apps() == [APP_ID]
        assert not (tmp_path / OTHER_APP).exists()
        assert hub.last_seq(APP_ID) == 200
        (more,) = hub.publish(APP_ID, [line("after the restart")])
        assert more.seq == 201
        since = await drain(hub.subscribe(APP_ID, since=190, tail=False))
        assert [x.seq for x in since] == list(range(191, 202))
        web = await drain(hub.subscribe(APP_ID, lines=5, match=Filter("web", "app"), tail=False))
        assert messages(web) == [*(f"line {n}" for n in range(197, 201)), "after the restart"]
        await hub.close()

    run(scenario)


def test_a_tail_gets_the_past_then_new_lines_and_a_cursor_to_resume_from(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = LogHub(tmp_path)
        await hub.start()
        hub.publish(APP_ID, [line("old 1"), line("old 2"), line("router", "router", "dockyard")])
        tail = hub.subscribe(APP_ID, lines=10, match=Filter(None, "app"))
        assert messages(await tail.next_batch() or []) == ["old 1", "old 2"]
        assert await tail.next_batch() == []  # caught up: the reader may note its cursor
        assert tail.cursor == 3  # the router line was looked at, and filtered out
        hub.publish(APP_ID, [line("new 4")])
        assert messages(await tail.next_batch() or []) == ["new 4"]
        assert tail.cursor == 4
        assert await tail.next_batch(timeout=0.05) == []
        # The reader goes (a server restart); lines come meanwhile; it resumes from its cursor.
        cursor = tail.cursor
        tail.close()
        hub.publish(APP_ID, [line("new 5"), line("new 6")])
        again = hub.subscribe(APP_ID, since=cursor, match=Filter(None, "app"))
        assert messages(await again.next_batch() or []) == ["new 5", "new 6"]
        hub.end_streams()
        assert await again.next_batch() is None
        await hub.close()

    run(scenario)


def test_a_slow_reader_loses_lines_with_an_l10_and_slows_nobody(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = LogHub(tmp_path, queue_lines=10)
        await hub.start()
        slow = hub.subscribe(APP_ID)
        fast = hub.subscribe(APP_ID, queue_lines=1000)
        assert await slow.next_batch() == []
        assert await fast.next_batch() == []
        for n in range(1, 26):  # the slow reader reads nothing meanwhile: publish never waits
            hub.publish(APP_ID, [line(f"line {n}")])
        hub.publish(OTHER_APP, [line("another app")])
        got = messages(await drain(slow))
        assert got[:10] == [f"line {n}" for n in range(1, 11)]
        assert got[10].startswith("Error L10 (output buffer overflow): 15 messages dropped")
        assert slow.dropped == 15
        # Then it goes on with what comes next.
        hub.publish(APP_ID, [line("line 26")])
        assert messages(await drain(slow)) == ["line 26"]
        assert messages(await drain(fast)) == [f"line {n}" for n in range(1, 27)]
        assert fast.dropped == 0
        await hub.close()

    run(scenario)


def test_a_cursor_older_than_the_history_is_told_as_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = LogHub(tmp_path, ring_lines=10, history_bytes=64 * 1024)
        await hub.start()
        for first in range(1, 5001, 500):
            hub.publish(APP_ID, [line(f"{n:05d} " + "z" * 100) for n in range(first, first + 500)])
        kept = hub.history(APP_ID).first_seq()
        assert kept is not None
        assert kept > 2
        got = await drain(hub.subscribe(APP_ID, since=1, tail=False))
        assert got[0].process == "logplex"
        assert got[0].message == (
            f"Error L10 (output buffer overflow): {kept - 2} messages dropped "
            "(no longer kept in the log history)"
        )
        assert [x.seq for x in got[1:]] == list(range(kept, 5001))
        await hub.close()

    run(scenario)


def test_events_and_router_lines_come_from_any_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = LogHub(tmp_path)
        events = Events()
        events.emit(APP_ID, "shop", "web.1", "before the hub started")  # not listened to
        await hub.start()
        events.listen(hub.event)
        tail = hub.subscribe(APP_ID)
        assert await tail.next_batch() == []

        def from_threads() -> None:
            events.emit(APP_ID, "shop", "web.1", "State changed from starting to up")
            events.emit(APP_ID, "shop", "api", "Set FOO config vars by a@b.c", source=APP)
            hub.router_lines(APP_ID, [("at=info method=GET path=/ status=200", None)])
            events.emit(APP_ID, "shop", "web.1", "two\nlines")

        thread = threading.Thread(target=from_threads)
        thread.start()
        await asyncio.to_thread(thread.join)
        got = await drain(tail)
        assert [x.render().split(" ", 1)[1] for x in got] == [
            "dockyard[web.1]: State changed from starting to up",
            "app[api]: Set FOO config vars by a@b.c",
            "dockyard[router]: at=info method=GET path=/ status=200",
            "dockyard[web.1]: two",
            "dockyard[web.1]: lines",
        ]
        assert [x.seq for x in got] == [1, 2, 3, 4, 5]
        await hub.close()

    run(scenario)


# -- dyno output ----------------------------------------------------------------------------


class FakeRuntime:
    """Lists dyno output logs as the process runtime does; the test writes the files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, Dyno] = {}
        self.ended: dict[str, DynoOutput] = {}

    def start(self, name: str) -> Path:
        dyno_id = f"{APP_ID}.{name}.{len(self.running) + len(self.ended):012x}"
        path = self.root / dyno_id / "log"
        path.parent.mkdir(parents=True)
        path.touch()
        self.running[dyno_id] = Dyno(
            id=dyno_id,
            name=name,
            app_id=APP_ID,
            app_name="shop",
            release_version=1,
            process_type=name.split(".", maxsplit=1)[0],
            size="standard-1x",
            command="bin/run",
            port=None,
            pid=1,
            started_at=0.0,
            log_path=path,
        )
        return path

    def end(self, path: Path) -> None:
        dyno = self.running.pop(path.parent.name)
        self.ended[dyno.id] = DynoOutput(dyno.id, APP_ID, "shop", dyno.name, path)

    async def list(self) -> list[Dyno]:
        return list(self.running.values())

    async def outputs(self) -> list[DynoOutput]:
        found = [
            DynoOutput(d.id, APP_ID, "shop", d.name, d.log_path) for d in self.running.values()
        ]
        return found + list(self.ended.values())


def write(path: Path, *texts: str, raw: bytes = b"") -> None:
    with path.open("ab") as handle:
        for text in texts:
            stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            record = {"time": stamp, "stream": "stdout", "line": text}
            handle.write((json.dumps(record) + "\n").encode())
        handle.write(raw)


def test_dyno_output_is_read_once_across_restarts_and_crashes(tmp_path: Path) -> None:
    """Lines written while the control plane is down, by dynos that ended meanwhile too, come
    once each: after a clean stop (offsets saved) and after a SIGKILL (offsets saved before
    the last lines: the rest is recovered from the history)."""
    logs = tmp_path / "logs"
    runtime = FakeRuntime(tmp_path / "dynos")
    web = runtime.start("web.1")
    worker = runtime.start("worker.1")
    saved = logs / "offsets.json"
    stale: list[bytes] = []

    async def control_plane(expected: int, *, killed: bool = False) -> list[str]:
        hub = LogHub(logs)
        await hub.start()
        ingest = DynoIngest(hub, runtime, logs, interval=0.01, rescan=0.0)
        await ingest.start()
        await until(lambda: hub.last_seq(APP_ID) >= expected)
        if killed:  # no saving at the end: the last offsets saved are older than the history
            assert ingest._task is not None
            ingest._task.cancel()
            saved.write_bytes(stale[0])
        else:
            await ingest.close()
        # Nothing more to read: nothing was left, and nothing is read twice.
        await ingest.run_once()
        assert hub.last_seq(APP_ID) == expected
        got = await drain(hub.subscribe(APP_ID, lines=1000, tail=False))
        await hub.close()
        return [x.render().split(" ", 1)[1] for x in got]

    async def scenario() -> None:
        write(web, "web 1", "web 2")
        write(worker, "worker 1", raw=b'{"time": "2026-01-05T10:00:00Z", "stream"')  # half a record
        first = await control_plane(3)
        assert first == ["app[web.1]: web 1", "app[web.1]: web 2", "app[worker.1]: worker 1"]
        stale.append(saved.read_bytes())

        # Down: the dynos go on writing; the worker finishes its record, and ends.
        write(web, "web 3", "bad \x00 byte")
        with worker.open("ab") as handle:
            handle.write(b': "stdout", "line": "worker 2"}\n')
        write(worker, "worker 3")
        with worker.open("ab") as handle:
            handle.write(b"not json, and no newline at the end")
        runtime.end(worker)
        second = await control_plane(8, killed=True)
        assert second == [
            *first,
            "app[web.1]: web 3",
            "app[web.1]: bad \ufffd byte",
            "app[worker.1]: worker 2",
            "app[worker.1]: worker 3",
            "app[worker.1]: not json, and no newline at the end",
        ]

        write(web, "web 4")
        third = await control_plane(9)
        assert third == [*second, "app[web.1]: web 4"]

    run(scenario)
