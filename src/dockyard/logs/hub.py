"""The log hub: every app's stream, numbered, kept, and handed to its readers.

:meth:`LogHub.publish` (on the event loop) numbers lines with the app's next sequence
numbers, appends them to its on-disk :class:`~dockyard.logs.history.History`, keeps the last
``ring_lines`` in memory, and offers them to the app's subscribers. :meth:`LogHub.emit`,
:meth:`LogHub.router_lines` and :meth:`LogHub.event` do the same from any thread.

A :class:`Subscription` is one reader: first the lines it asked for from the past (the last
N, or everything after a sequence number), from memory or from disk, then, with ``tail``,
each new line. Its queue is bounded: when the reader is slower than the app, new lines are
dropped for it alone, counted, and it reads ``Error L10 (output buffer overflow): N messages
dropped`` where they were. Publishing never waits for a reader.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

from dockyard.events import Event
from dockyard.logs.history import History
from dockyard.logs.lines import PLATFORM, Line, Match, make, now

log = logging.getLogger("dockyard.logs")

RING_LINES = 1500
HISTORY_BYTES = 10 * 1024 * 1024
QUEUE_LINES = 20_000  # a subscriber's queue
BATCH = 1000  # lines a reader gets at most at once
INBOX_LIMIT = 100_000  # lines emitted from other threads, waiting for the loop
NOTES = "logplex"  # dockyard[logplex]: notes to one reader, as Heroku's heroku[logplex]
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def l10(count: int, why: str = "") -> Line:
    """The note a reader gets in place of ``count`` lines it could not be given."""
    message = f"Error L10 (output buffer overflow): {count} messages dropped"
    return Line(now(), PLATFORM, NOTES, message + (f" ({why})" if why else ""))


class _Gap:
    """Lines dropped at this point of a subscriber's queue."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _Stream:
    """One app's stream: its history, its last lines in memory and its subscribers."""

    def __init__(self, history: History, ring_lines: int) -> None:
        self.history = history
        self.ring: deque[Line] = deque(maxlen=ring_lines)
        self.subscribers: set[Subscription] = set()
        self.last_seq = history.last_seq
        self.write_failed = False

    def load(self) -> None:
        self.history.open()
        self.last_seq = self.history.last_seq
        size = self.ring.maxlen or 0
        after = self.history.start_of_last(size, None, self.last_seq)
        for batch in self.history.read(after, self.last_seq):
            self.ring.extend(batch)


class LogHub:
    """The log streams of every app on this control plane, kept under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        ring_lines: int = RING_LINES,
        history_bytes: int = HISTORY_BYTES,
        queue_lines: int = QUEUE_LINES,
    ) -> None:
        self.directory = directory
        self.ring_lines = ring_lines
        self.history_bytes = history_bytes
        self.queue_lines = queue_lines
        self._streams: dict[str, _Stream] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._inbox: deque[tuple[str, list[Line]]] = deque()
        self._scheduled = False
        self._inbox_lines = 0  # in the inbox
        self._inbox_dropped = 0

    # -- life ---------------------------------------------------------------------------------

    async def start(self, apps: Collection[str] | None = None) -> None:
        """Load every app's stream from disk; lines emitted from other threads flow from now.

        With ``apps`` (the ids of the apps that exist), the streams of other apps (deleted
        ones) are removed from disk.
        """
        self._loop = asyncio.get_running_loop()
        streams = await asyncio.to_thread(self._load_all, apps)
        for app_id, stream in streams.items():
            if app_id in self._streams:  # published to before the start: that one stays
                stream.history.close()
            else:
                self._streams[app_id] = stream
        with self._lock:
            pending = bool(self._inbox)
            self._scheduled = pending
        if pending:
            self._drain_inbox()

    def _load_all(self, apps: Collection[str] | None) -> dict[str, _Stream]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        streams = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_dir() or not _APP_ID.match(path.name):
                continue
            if apps is not None and path.name not in apps:
                log.info("removing the logs of deleted app %s", path.name)
                shutil.rmtree(path, ignore_errors=True)
                continue
            stream = _Stream(History(path, self.history_bytes), self.ring_lines)
            stream.load()
            streams[path.name] = stream
        return streams

    def end_streams(self) -> None:
        """End every subscription (once it has given what it holds): the server is stopping."""
        for stream in self._streams.values():
            for subscription in list(stream.subscribers):
                subscription.close()

    async def close(self) -> None:
        self.end_streams()
        with self._lock:
            self._loop = None
        for stream in self._streams.values():
            stream.history.close()

    # -- what the hub holds -------------------------------------------------------------------

    def _stream(self, app_id: str) -> _Stream:
        stream = self._streams.get(app_id)
        if stream is None:
            if not _APP_ID.match(app_id):
                raise ValueError(f"{app_id!r} is not an app id")
            stream = _Stream(History(self.directory / app_id, self.history_bytes), self.ring_lines)
            stream.load()
            self._streams[app_id] = stream
        return stream

    def apps(self) -> list[str]:
        return list(self._streams)

    def last_seq(self, app_id: str) -> int:
        """The number of the app's newest line (0: none yet)."""
        return self._stream(app_id).last_seq

    def last_seqs(self) -> dict[str, int]:
        return {app_id: stream.last_seq for app_id, stream in self._streams.items()}

    def history(self, app_id: str) -> History:
        return self._stream(app_id).history

    def forget(self, app_id: str) -> None:
        """Remove an app's stream (the app is deleted); its readers end."""
        stream = self._streams.pop(app_id, None)
        if stream is None:
            return
        for subscription in list(stream.subscribers):
            subscription.close()
        stream.history.close()
        shutil.rmtree(stream.history.directory, ignore_errors=True)

    # -- in -----------------------------------------------------------------------------------

    def publish(self, app_id: str, lines: Iterable[Line]) -> list[Line]:
        """Add ``lines`` to the app's stream; on the event loop's thread. Returns them numbered."""
        stream = self._stream(app_id)
        seq = stream.last_seq
        numbered = []
        for line in lines:
            seq += 1
            numbered.append(
                Line(line.at, line.source, line.process, line.message, seq, line.origin)
            )
        if not numbered:
            return numbered
        stream.last_seq = seq
        try:
            stream.history.append(numbered)
            stream.write_failed = False
        except OSError as exc:
            # Memory and readers still get the lines; the history has a hole, said once.
            if not stream.write_failed:
                log.error("could not write the log history of app %s: %s", app_id, exc)
            stream.write_failed = True
        stream.ring.extend(numbered)
        for subscription in stream.subscribers:
            subscription.offer(numbered)
        return numbered

    def emit(
        self,
        app_id: str,
        source: str,
        process: str,
        message: str,
        *,
        at: int | None = None,
    ) -> None:
        """Add a message (split at its newlines) to the app's stream, from any thread."""
        self._post(app_id, make(now() if at is None else at, source, process, message))

    def router_lines(self, app_id: str, lines: Sequence[tuple[str, int | None]]) -> None:
        """Router log lines (``dockyard[router]``) of the app ``app_id``, each with when it
        was logged (None: now); from any thread. The router's sink."""
        made: list[Line] = []
        stamp = now()
        for message, at in lines:
            made.extend(make(stamp if at is None else at, PLATFORM, "router", message))
        self._post(app_id, made)

    def _post(self, app_id: str, lines: list[Line]) -> None:
        """Queue ``lines`` for the event loop's thread, which numbers and stores them."""
        with self._lock:
            if self._inbox_lines + len(lines) > INBOX_LIMIT:
                self._inbox_dropped += len(lines)
                return
            self._inbox.append((app_id, lines))
            self._inbox_lines += len(lines)
            loop = self._loop
            if self._scheduled or loop is None:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain_inbox)
        except RuntimeError:  # the loop has closed: the server is gone
            with self._lock:
                self._scheduled = False

    def event(self, event: Event) -> None:
        """A platform event (a listener of :class:`~dockyard.events.Events`); any thread."""
        self.emit(event.app_id, event.source, event.process, event.message, at=_micros(event.at))

    def _drain_inbox(self) -> None:
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
            self._inbox_lines = 0
            self._scheduled = False
            dropped, self._inbox_dropped = self._inbox_dropped, 0
        if dropped:
            log.error("dropped %d platform log lines: the hub could not keep up", dropped)
        by_app: dict[str, list[Line]] = {}
        for app_id, lines in items:
            by_app.setdefault(app_id, []).extend(lines)
        for app_id, lines in by_app.items():
            try:
                self.publish(app_id, lines)
            except ValueError as exc:
                log.error("log lines for no app: %s", exc)

    # -- out ----------------------------------------------------------------------------------

    def subscribe(
        self,
        app_id: str,
        *,
        lines: int | None = None,
        since: int | None = None,
        match: Match | None = None,
        tail: bool = True,
        queue_lines: int | None = None,
    ) -> Subscription:
        """A reader of the app's stream; on the event loop's thread.

        It first gets the lines numbered after ``since`` or else the last ``lines`` (none
        when neither is given), then, with ``tail``, each new line. Only lines ``match``
        accepts are given. See :class:`Subscription`.
        """
        stream = self._stream(app_id)
        subscription = Subscription(
            stream,
            app_id,
            lines=lines,
            since=since,
            match=match,
            tail=tail,
            limit=queue_lines or self.queue_lines,
        )
        if tail:
            stream.subscribers.add(subscription)
        return subscription


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class Subscription:
    """One reader of an app's stream: the past it asked for, then (with ``tail``) what comes.

    Read it with ``async for batch in subscription`` or :meth:`next_batch`; both give lists
    of lines, oldest first. :attr:`cursor` is the number of the last line of the stream
    read so far (given or, when filtered out, passed over): a reader that stops and comes
    back (a drain after a restart, ``logs --tail`` after the server's) subscribes again with
    ``since=cursor`` and misses nothing, and gets nothing twice, as long as the history
    still holds those lines. Lines dropped because the reader fell behind (its queue
    holds ``limit`` lines), or because the history no longer has them, are counted in
    :attr:`dropped` and given as one L10 note line (numbered None) where they were.
    """

    def __init__(
        self,
        stream: _Stream,
        app_id: str,
        *,
        lines: int | None,
        since: int | None,
        match: Match | None,
        tail: bool,
        limit: int,
    ) -> None:
        self.app_id = app_id
        self.tail = tail
        self.dropped = 0
        self._stream = stream
        self._match = match
        self._limit = limit
        self._queue: deque[Line | _Gap] = deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._caught_up = False
        until = stream.last_seq
        self._until = until
        self.cursor = until
        # The past, planned now against the ring as it is: a consistent snapshot, since the
        # hub publishes on this same thread. What comes later goes to the queue.
        self._past: list[list[Line]] = []
        self._from_disk: Iterator[list[Line]] | None = None
        self._disk_plan: tuple[int | None, int | None] | None = None
        if since is not None:
            since = max(0, min(since, until))
            self.cursor = since
            self._plan_since(since)
        elif lines:
            self.cursor = until
            self._plan_last(lines)

    # -- planning the past --------------------------------------------------------------------

    def _ring(self) -> list[Line]:
        return list(self._stream.ring)

    def _plan_since(self, after: int) -> None:
        if after >= self._until:
            return
        ring = self._ring()
        if ring and ring[0].seq is not None and ring[0].seq <= after + 1:
            start = after + 1 - ring[0].seq
            self._past = _batches(ring[start:], self._match)
        else:
            self._disk_plan = (after, None)

    def _plan_last(self, count: int) -> None:
        ring = self._ring()
        matched = ring if self._match is None else [x for x in ring if self._match(x)]
        whole = not ring or ring[0].seq == 1
        if len(matched) >= count or whole:
            self._past = _batches(matched[-count:], None)
            return
        self._disk_plan = (None, count)

    async def _next_past(self) -> list[Line] | None:
        """The next batch of the past; None once it is all given."""
        if self._past:
            batch = self._past.pop(0)
            self._advance(batch)
            return batch
        if self._disk_plan is not None:
            after, count = self._disk_plan
            self._disk_plan = None
            self._from_disk = await asyncio.to_thread(self._open_disk, after, count)
            if self._past:  # a note about lines no longer kept
                return self._past.pop(0)
        if self._from_disk is not None:
            read = await asyncio.to_thread(_next_batch, self._from_disk)
            if read is not None:
                self._advance(read)
                return read
            self._from_disk = None
        return None

    def _open_disk(self, after: int | None, count: int | None) -> Iterator[list[Line]]:
        history = self._stream.history
        if after is None:
            assert count is not None
            after = history.start_of_last(count, self._match, self._until)
        else:
            first = history.first_seq()
            kept = self._until + 1 if first is None else first
            if kept > after + 1:
                lost = kept - after - 1
                self.dropped += lost
                self._past.append([l10(lost, "no longer kept in the log history")])
                after = kept - 1
        return history.read(after, self._until, self._match)

    def _advance(self, batch: list[Line]) -> None:
        for line in reversed(batch):
            if line.seq is not None:
                self.cursor = max(self.cursor, line.seq)
                break

    # -- the live part ------------------------------------------------------------------------

    def offer(self, lines: list[Line]) -> None:
        """New lines of the stream (numbered); the hub calls this, on the event loop."""
        if self._closed:
            return
        queue = self._queue
        if self._match is None and len(queue) + len(lines) <= self._limit:
            queue.extend(lines)
        else:
            for line in lines:
                if self._match is not None and not self._match(line):
                    continue
                if len(queue) < self._limit:
                    queue.append(line)
                    continue
                last = queue[-1] if queue else None
                if not isinstance(last, _Gap):
                    last = _Gap()
                    queue.append(last)
                last.count += 1
                self.dropped += 1
        self._wake.set()

    async def next_batch(self, timeout: float | None = None) -> list[Line] | None:
        """The next lines, oldest first; None at the end (the past is given and there is no
        ``tail``, or it was closed). ``[]`` when ``timeout`` seconds passed without any, and
        once when the past has all been given (so that a reader can tell its cursor)."""
        if not self._closed:
            past = await self._next_past()
            if past is not None:
                return past
            # All of the past was looked at, even what the filter left out.
            self.cursor = max(self.cursor, self._until)
        if not self.tail:
            self._closed = True
            return None
        queue = self._queue
        if not self._caught_up and not self._closed:
            self._caught_up = True
            if not queue:
                return []  # once, at once: the reader may tell its cursor
        while not queue:
            if self._closed:
                return None
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return []
        batch: list[Line] = []
        while queue and len(batch) < BATCH:
            item = queue.popleft()
            if isinstance(item, _Gap):
                log.warning(
                    "a reader of app %s's logs fell behind: %d lines dropped for it",
                    self.app_id,
                    item.count,
                )
                batch.append(l10(item.count))
                continue
            batch.append(item)
            if item.seq is not None:
                self.cursor = item.seq
        return batch

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Line]:
        while True:
            batch = await self.next_batch()
            if batch is None:
                raise StopAsyncIteration
            if batch:
                return batch

    def close(self) -> None:
        """Stop reading; what is queued is still given, then the end."""
        self._closed = True
        self._stream.subscribers.discard(self)
        self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed


def _next_batch(batches: Iterator[list[Line]]) -> list[Line] | None:
    return next(batches, None)


def _batches(lines: list[Line], match: Match | None) -> list[list[Line]]:
    chosen = lines if match is None else [line for line in lines if match(line)]
    return [chosen[i : i + BATCH] for i in range(0, len(chosen), BATCH)]
