"""Dyno output into the hub: every line of every dyno's output log, once, across restarts.

The runtime captures each dyno's stdout and stderr as ``{"time", "stream", "line"}`` JSON
lines in a file of its own (:attr:`~dockyard.runtime.Dyno.log_path`), and keeps writing it
while the control plane is down. :class:`DynoIngest` reads the new part of each file every
``interval`` seconds and publishes it as ``app[web.1]`` lines, with the time the line was
written.

Exactly once: the offset reached in each file is saved to ``offsets.json`` (about every
second, atomically) together with each app's last sequence number then; and every dyno line
in the history carries its file and the offset past it. After a restart, the offsets are
those saved, moved on by the lines the history got after the save: nothing is read twice,
and nothing is skipped, including what dynos wrote, or dynos that ended, while the control
plane was down (:meth:`~dockyard.runtime.Runtime.outputs` lists every output log still on
the node). A log whose dyno has ended is read to its end, then left alone until the runtime
tidies it away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.logs.history import History
from dockyard.logs.hub import LogHub
from dockyard.logs.lines import APP, Line, Origin, make, now, parse_time
from dockyard.runtime import Dyno, DynoOutput, Runtime

log = logging.getLogger("dockyard.logs")

POLL = 0.05  # seconds between looks at the dynos' logs
RESCAN = 2.0  # seconds between listings of every output log on the node
CHECKPOINT_EVERY = 1.0
CHUNK = 1024 * 1024  # bytes read from one log at a time
CHECKPOINT = "offsets.json"


@dataclass
class _Log:
    output: DynoOutput
    offset: int
    done: bool = False  # its dyno ended and all of it was read


def _output_of(dyno: Dyno) -> DynoOutput:
    return DynoOutput(dyno.id, dyno.app_id, dyno.app_name, dyno.name, dyno.log_path)


def _lines(output: DynoOutput, raw: bytes, offset: int) -> list[Line]:
    """The lines of one record of a dyno's log; ``offset`` is just past it."""
    at: int | None = None
    try:
        record = json.loads(raw)
        text = str(record["line"])
        at = parse_time(str(record["time"]))
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace")  # not the runtime's record: keep it as it is
    return make(now() if at is None else at, APP, output.name, text, Origin(output.dyno_id, offset))


def parse(output: DynoOutput, data: bytes, start: int, *, final: bool) -> tuple[list[Line], int]:
    """The lines of the whole records in ``data`` (read at ``start``) and the offset past them.

    With ``final`` (the dyno has ended and this is the end of its log), or when ``data`` is a
    full chunk without a newline, the rest counts as a record too.
    """
    lines: list[Line] = []
    position = 0
    while True:
        end = data.find(b"\n", position)
        if end == -1:
            break
        if end > position:
            lines += _lines(output, data[position:end], start + end + 1)
        position = end + 1
    if position < len(data) and (final or (position == 0 and len(data) >= CHUNK)):
        lines += _lines(output, data[position:], start + len(data))
        position = len(data)
    return lines, start + position


class DynoIngest:
    """Follows the output logs of the dynos of ``runtime`` into ``hub``."""

    def __init__(
        self,
        hub: LogHub,
        runtime: Runtime,
        directory: Path,
        *,
        interval: float = POLL,
        rescan: float = RESCAN,
    ) -> None:
        self.hub = hub
        self.runtime = runtime
        self.path = directory / CHECKPOINT
        self.interval = interval
        self.rescan = rescan
        self._logs: dict[str, _Log] = {}
        self._offsets: dict[str, int] = {}  # recovered, for logs not followed yet
        self._listed_at = -float("inf")
        self._saved_at = -float("inf")
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Recover the offsets, then follow the logs in a task. The hub has started."""
        apps = {app_id: self.hub.history(app_id) for app_id in self.hub.apps()}
        self._offsets = await asyncio.to_thread(self._recover, apps)
        self._task = asyncio.create_task(self._follow())
        self._task.add_done_callback(_report_end)

    def _recover(self, histories: dict[str, History]) -> dict[str, int]:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            saved = {}
        except (OSError, ValueError) as exc:
            log.warning("could not read %s (%s): reading the history for offsets", self.path, exc)
            saved = {}
        offsets = {str(k): int(v) for k, v in dict(saved.get("offsets", {})).items()}
        seqs = {str(k): int(v) for k, v in dict(saved.get("seqs", {})).items()}
        for app_id, history in histories.items():
            # Lines published after the save: their offsets are further on.
            for batch in history.read(seqs.get(app_id, 0)):
                for line in batch:
                    if line.origin is not None:
                        known = offsets.get(line.origin.log, 0)
                        offsets[line.origin.log] = max(known, line.origin.offset)
        return offsets

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._dirty:
            await self._save()

    async def _follow(self) -> None:
        while True:
            try:
                more = await self.run_once()
            except (OSError, DockyardError) as exc:
                log.warning("reading the dynos' output failed (will retry): %s", exc)
                more = False
            if time.monotonic() - self._saved_at >= CHECKPOINT_EVERY and self._dirty:
                try:
                    await self._save()
                except OSError as exc:
                    log.warning("could not save the log offsets: %s", exc)
            if not more:
                await asyncio.sleep(self.interval)

    async def run_once(self) -> bool:
        """Read what the dynos wrote since the last time; True when more is waiting."""
        running = {dyno.id: dyno for dyno in await self.runtime.list()}
        for dyno in running.values():
            if dyno.id not in self._logs:
                self._add(_output_of(dyno))
        if time.monotonic() - self._listed_at >= self.rescan:
            outputs = await self.runtime.outputs()
            self._listed_at = time.monotonic()
            self._follow_outputs(outputs, running)
        ended = {key for key in self._logs if key not in running}
        reading = [item for item in self._logs.values() if not item.done]
        if not reading:
            return False
        results = await asyncio.to_thread(self._read, reading, ended)
        more = False
        for item, lines, offset, at_end in results:
            if lines:
                self.hub.publish(item.output.app_id, lines)
            if offset != item.offset:
                item.offset = offset
                self._dirty = True
            if at_end and item.output.dyno_id in ended:
                item.done = True
            more = more or not at_end
        return more

    def _add(self, output: DynoOutput) -> None:
        offset = self._offsets.pop(output.dyno_id, 0)
        self._logs[output.dyno_id] = _Log(output, offset)

    def _follow_outputs(self, outputs: Sequence[DynoOutput], running: dict[str, Dyno]) -> None:
        listed = {output.dyno_id for output in outputs}
        for output in outputs:
            if output.dyno_id not in self._logs:
                self._add(output)
        for key in [k for k in self._logs if k not in listed and k not in running]:
            del self._logs[key]  # tidied away by the runtime
            self._dirty = True
        # Offsets of logs no longer on the node are of no more use.
        self._offsets.clear()

    @staticmethod
    def _read(reading: list[_Log], ended: set[str]) -> list[tuple[_Log, list[Line], int, bool]]:
        results: list[tuple[_Log, list[Line], int, bool]] = []
        for item in reading:
            try:
                size = os.stat(item.output.path).st_size
                if size <= item.offset:
                    results.append((item, [], item.offset, True))
                    continue
                with open(item.output.path, "rb") as handle:
                    handle.seek(item.offset)
                    data = handle.read(CHUNK)
            except FileNotFoundError:
                results.append((item, [], item.offset, True))
                continue
            at_end = item.offset + len(data) >= size
            final = at_end and item.output.dyno_id in ended
            lines, offset = parse(item.output, data, item.offset, final=final)
            results.append((item, lines, offset, at_end))
        return results

    async def _save(self) -> None:
        # A snapshot on the loop, consistent with the hub: every line up to these offsets
        # has a number up to these ones.
        record = {
            "offsets": {key: item.offset for key, item in self._logs.items()} | dict(self._offsets),
            "seqs": self.hub.last_seqs(),
        }
        self._dirty = False
        self._saved_at = time.monotonic()
        await asyncio.to_thread(_write_json, self.path, record)


def _report_end(task: asyncio.Task[None]) -> None:
    """A bug that ends the task is said in the server's log: no more dyno lines come."""
    if not task.cancelled() and task.exception() is not None:
        log.error("reading the dynos' output stopped", exc_info=task.exception())


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(value))
    temp.rename(path)
