"""An app's log lines on disk, bounded and rotated: what ``logs -n 5000`` reads after a restart.

Each app has a directory of segments, one JSON object per line::

    {"n": 42, "t": 1767607200123456, "s": "app", "p": "web.1", "m": "message", "d": …, "o": …}

``n`` is the line's sequence number in the app's stream, ``t`` its time in microseconds,
``s``/``p``/``m`` its source, process and message, and ``d``/``o`` (dyno lines only) the
dyno's output log and the offset just past the line in it (:mod:`dockyard.logs.ingest`
recovers its offsets from them). A segment is named by the sequence number of its first
line (``00000000000000000042.log``), so a reader finds where any number is without an index.
New lines go to the newest segment; past its size (an eighth of the budget) a new one
starts, and the oldest segments go while all of them take more than the budget.

One writer (the hub, on the event loop) appends; readers (:meth:`History.read`) may run in
other threads at the same time, and skip a segment removed under them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from dockyard.logs.lines import Line, Match, Origin

SEGMENTS = 8  # segments per budget: the most that rotation removes at once is an eighth
MIN_SEGMENT = 64 * 1024
SUFFIX = ".log"
BATCH = 1000
_string = json.encoder.encode_basestring  # a str as a JSON string


def encode(line: Line) -> bytes:
    """One record: a JSON object on a line (json.dumps would write the same, more slowly)."""
    text = (
        f'{{"n":{line.seq},"t":{line.at},"s":{_string(line.source)},'
        f'"p":{_string(line.process)},"m":{_string(line.message)}'
    )
    if line.origin is not None:
        text += f',"d":{_string(line.origin.log)},"o":{line.origin.offset}'
    return text.encode("utf-8", "replace") + b"}\n"


def decode(raw: bytes) -> Line | None:
    """The line of one record; None for a record that is cut short or not ours."""
    try:
        record = json.loads(raw)
        origin = Origin(str(record["d"]), int(record["o"])) if "d" in record else None
        return Line(
            int(record["t"]),
            str(record["s"]),
            str(record["p"]),
            str(record["m"]),
            int(record["n"]),
            origin,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _segment_name(first: int) -> str:
    return f"{first:020d}{SUFFIX}"


class History:
    """The segments of one app under ``directory``, holding at most about ``budget`` bytes."""

    def __init__(self, directory: Path, budget: int) -> None:
        self.directory = directory
        self.budget = budget
        self.segment_bytes = max(MIN_SEGMENT, budget // SEGMENTS)
        self.last_seq = 0
        self._segments: list[list[int]] = []  # [first seq, size], oldest first
        self._fd: int | None = None

    # -- the writer ---------------------------------------------------------------------------

    def open(self) -> None:
        """Read what is on disk: the last sequence number; and cut a line that a crash left
        half written (the control plane was killed in the middle of an append)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._segments = [[first, path.stat().st_size] for first, path in self.segments()]
        if not self._segments:
            return
        first, _size = self._segments[-1]
        path = self._path()
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            os.truncate(path, end)
            self._segments[-1][1] = end
        self.last_seq = first - 1
        for raw in reversed(data[:end].split(b"\n")):
            line = decode(raw) if raw else None
            if line is not None and line.seq is not None:
                self.last_seq = max(self.last_seq, line.seq)
                break
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def _path(self) -> Path:
        return self.directory / _segment_name(self._segments[-1][0])

    def append(self, lines: Sequence[Line]) -> None:
        """Write ``lines`` (numbered, in order) at the end, in one write when it can."""
        if not lines:
            return
        data = b"".join(encode(line) for line in lines)
        first = lines[0].seq
        assert first is not None
        if not self._segments or (
            self._segments[-1][1] and self._segments[-1][1] + len(data) > self.segment_bytes
        ):
            self._rotate(first)
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._segments[-1][1] += len(data)
        last = lines[-1].seq
        assert last is not None
        self.last_seq = last

    def _rotate(self, first: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._segments.append([first, 0])
        self._fd = os.open(self._path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        total = sum(size for _, size in self._segments)
        while len(self._segments) > 1 and total > self.budget:
            oldest, size = self._segments.pop(0)
            (self.directory / _segment_name(oldest)).unlink(missing_ok=True)
            total -= size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- readers (any thread) -----------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        """The segments on disk now, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            stem = name.removesuffix(SUFFIX)
            if name.endswith(SUFFIX) and stem.isdigit():
                found.append((int(stem), self.directory / name))
        return sorted(found)

    def first_seq(self) -> int | None:
        """The number of the oldest line kept; None when nothing is."""
        found = self.segments()
        return found[0][0] if found else None

    def read(
        self, after: int, until: int | None = None, match: Match | None = None
    ) -> Iterator[list[Line]]:
        """The lines numbered after ``after`` up to ``until``, oldest first, in batches."""
        found = self.segments()
        start = 0
        for index, (first, _path) in enumerate(found):
            if first <= after + 1:
                start = index
        batch: list[Line] = []
        for _first, path in found[start:]:
            for line in _lines(path):
                seq = line.seq
                assert seq is not None
                if seq <= after:
                    continue
                if until is not None and seq > until:
                    if batch:
                        yield batch
                    return
                if match is None or match(line):
                    batch.append(line)
                    if len(batch) >= BATCH:
                        yield batch
                        batch = []
        if batch:
            yield batch

    def start_of_last(self, count: int, match: Match | None, until: int) -> int:
        """The ``after`` from which :meth:`read` gives the last ``count`` matching lines up to
        ``until`` (all of them when fewer are kept)."""
        need = count
        if need <= 0:
            return until
        for _first, path in reversed(self.segments()):
            seqs = [
                line.seq
                for line in _lines(path)
                if line.seq is not None and line.seq <= until and (match is None or match(line))
            ]
            if len(seqs) >= need:
                return seqs[-need] - 1
            need -= len(seqs)
        return 0


def _lines(path: Path) -> Iterator[Line]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # rotated away while we read
        return
    for raw in data.split(b"\n"):
        if raw:
            line = decode(raw)
            if line is not None and line.seq is not None:
                yield line
