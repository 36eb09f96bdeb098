"""An attached dyno's stdio under the ``docker`` driver: the engine's hijacked connection.

On a terminal the connection carries raw bytes both ways; without one the output comes as
the engine's multiplexed frames (stdout and stderr apart) and ending the input half-closes
the connection, which closes the container's stdin (it was created ``StdinOnce``). The exit
status is the one the runtime records when the container stops. Closing the attachment
before the dyno ended hangs it up: the runtime stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from dockyard.runtime import DynoError, Exit, Output
from dockyard.runtime.docker_engine import split_frames


class ContainerAttachment:
    """:class:`~dockyard.runtime.Attachment` through the engine's attach connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tty: bool,
        ended: asyncio.Future[Exit],
        resize: Callable[[int, int], Awaitable[None]],
        hang_up: Callable[[], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._tty = tty
        self._ended = ended
        self._resize = resize
        self._hang_up = hang_up
        self._buffer = bytearray()
        self._pending: list[Output] = []
        self._done = False
        self._closed = False
        self._status: int | None = None

    @property
    def status(self) -> int | None:
        return self._status

    async def read(self) -> Output | None:
        while not self._pending and not self._done:
            try:
                chunk = await self._reader.read(65536)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                self._done = True
                break
            if self._tty:
                self._pending.append(Output("stdout", chunk))
            else:
                self._buffer += chunk
                self._pending += [Output(s, data) for s, data in split_frames(self._buffer)]
        if self._pending:
            return self._pending.pop(0)
        # The engine closes the connection once the container stopped and its output went.
        ended = await asyncio.shield(self._ended)
        self._status = ended.status
        self._writer.close()
        return None

    async def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):
            self._writer.write(data)
            await self._writer.drain()

    async def close_input(self) -> None:
        if self._tty or self._writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()
            self._writer.write_eof()

    async def resize(self, rows: int, columns: int) -> None:
        rows, columns = (max(1, min(n, 0xFFFF)) for n in (rows, columns))
        with contextlib.suppress(DynoError):  # the dyno ended meanwhile
            await self._resize(rows, columns)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        if not self._ended.done():
            self._hang_up()
