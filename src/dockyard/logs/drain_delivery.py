"""Sending apps' log streams to their drains: one task per drain, in order, resumable.

:class:`Drains` runs in the server. It keeps one :class:`DrainWorker` task per drain in the
state store (and follows changes to them: :meth:`Drains.poke` after a commit). A worker
reads its app's stream from the log hub after its **cursor** (the number of the last line
it delivered), sends the lines, and then saves the cursor to ``<data dir>/drains/<id>``. So:

- **in order**: one worker per drain sends one batch at a time, oldest first;
- **nothing lost on a restart**: what was not delivered is still in the app's on-disk history
  (:mod:`dockyard.logs.history`), and the next server's worker resumes after the cursor. A
  line may be sent twice (it was sent, then the server died before saving the cursor), never
  skipped. (Syslog over TCP acknowledges nothing: what is written as the receiver closes the
  connection goes with it. An HTTPS batch counts as delivered only on a ``2xx``.);
- **retries**: a failed send (refused, reset, timed out, HTTP 5xx, bad certificate) is retried
  after a growing wait (:class:`~dockyard.backoff.Backoff`: at once, then 1 s, 2 s, … up to a
  minute), and said in the app's stream as a ``dockyard[logplex]`` line (``Error L13`` for
  delivery, ``Error L14`` for a certificate), at most once a minute while it keeps failing;
- **bounded**: a drain is at most ``buffer_lines`` lines behind its app. When it falls further
  behind (a drain that is down, or slower than the app), the oldest lines are dropped for it
  and the app's stream says so: ``Error L10 (output buffer overflow): N messages dropped for
  drain d.…``. Nothing else waits for a drain: not the dynos, nor the other drains or readers.

A drain URL's password never reaches a log line or an event
(:func:`~dockyard.logs.drain_urls.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select

from dockyard.backoff import Backoff
from dockyard.errors import InvalidParams, SettingsError
from dockyard.logs import drain_frames
from dockyard.logs.drain_urls import HTTPS, SYSLOG_TLS, Target, not_public, parse, public, redact
from dockyard.logs.hub import NOTES, LogHub, Subscription
from dockyard.logs.lines import PLATFORM, Line, make, now
from dockyard.store import App, Database, LogDrain

log = logging.getLogger("dockyard.drains")

BUFFER_LINES = 10_000  # how far behind its app a drain may fall before the oldest go
TIMEOUT = 30.0  # seconds to connect, or to send one batch
RELOAD = 30.0  # seconds between looks at the state store, besides pokes
IDLE = 10.0  # seconds a worker waits for lines before it looks around
REPORT_EVERY = 60.0  # seconds between two reports of the same failure
HTTPS_BATCH = 500  # lines in one POST at most
HTTPS_BATCH_BYTES = 1024 * 1024
SYSLOG_BATCH = 1000


class DrainFailed(Exception):
    """A batch could not be delivered; ``reason`` says why, with no secret in it."""

    def __init__(self, reason: str, *, certificate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.certificate = certificate


@dataclass(frozen=True)
class DrainSpec:
    """A drain as a worker needs it."""

    id: str
    app_id: str
    app_name: str
    url: str
    token: str

    @property
    def shown(self) -> str:
        """How logs and events name the drain: token and URL, without a password."""
        return f"{self.token} ({redact(self.url)})"


class Transport(Protocol):
    """How a worker sends: a batch of lines at a time, raising :class:`DrainFailed`."""

    batch: int

    async def send(self, lines: Sequence[Line], spec: DrainSpec) -> None: ...

    async def close(self) -> None: ...


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, and ``ca_file``'s too (a private CA) when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"DOCKYARD_DRAIN_CA_FILE={str(ca_file)!r}: no PEM CA certificates could be read "
                f"from it ({exc.strerror or exc})"
            ) from exc
    return context


def _reason(exc: BaseException, timeout: float = TIMEOUT) -> DrainFailed:
    """A foreign error of a send, as a DrainFailed that a user can read."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DrainFailed(f"certificate rejected: {exc.verify_message}", certificate=True)
    if isinstance(exc, ssl.SSLError):
        reason = f"TLS failed: {exc.reason or exc}"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, socket.gaierror):
        reason = f"cannot resolve the host: {exc.strerror}"
    elif isinstance(exc, TimeoutError):
        reason = f"timed out after {timeout:g}s"
    elif isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
    else:
        reason = type(exc).__name__
    return DrainFailed(reason)


class SyslogTransport:
    """RFC 5424 over one TCP (``syslog://``) or TLS (``syslog+tls://``) connection."""

    batch = SYSLOG_BATCH

    def __init__(
        self,
        target: Target,
        context: ssl.SSLContext | None,
        *,
        timeout: float = TIMEOUT,
        private: bool = False,
    ) -> None:
        self.target = target
        self.context = context if target.scheme == SYSLOG_TLS else None
        self.timeout = timeout
        self.private = private
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        writer = self._writer
        if writer is not None and not writer.is_closing():
            assert self._reader is not None
            if not self._reader.at_eof():  # the receiver has not closed it
                return writer
        await self.close()
        async with asyncio.timeout(self.timeout):
            # The address checked is the one connected to: no second lookup to rebind.
            address = await resolve(self.target.host, self.target.port, private=self.private)
            self._reader, self._writer = await asyncio.open_connection(
                address,
                self.target.port,
                ssl=self.context,
                server_hostname=self.target.host if self.context else None,
            )
        return self._writer

    async def send(self, lines: Sequence[Line], spec: DrainSpec) -> None:
        data = drain_frames.frames(lines, token=spec.token, app_name=spec.app_name)
        try:
            writer = await self._connect()
            writer.write(data)
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            # A frame may have been cut: the next batch goes on a new connection.
            await self.close()
            raise _reason(exc, self.timeout) from exc

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()


class HttpsTransport:
    """Batches POSTed as ``application/logplex-1`` (Heroku's HTTPS drains)."""

    batch = HTTPS_BATCH

    def __init__(
        self,
        target: Target,
        context: ssl.SSLContext,
        *,
        timeout: float = TIMEOUT,
        private: bool = False,
    ) -> None:
        parts = urlsplit(target.url)
        self._secret = parts.password or ""
        self.target = target
        self.timeout = timeout
        self.private = private
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = httpx.BasicAuth(parts.username or "", parts.password or "")
        host = parts.netloc.rpartition("@")[2]
        self.url = urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))
        self._client = httpx.AsyncClient(
            verify=context, auth=auth, timeout=timeout, follow_redirects=False
        )

    async def send(self, lines: Sequence[Line], spec: DrainSpec) -> None:
        body = drain_frames.frames(lines, token=spec.token, app_name=spec.app_name)
        headers = {
            "Content-Type": drain_frames.CONTENT_TYPE,
            "Logplex-Msg-Count": str(len(lines)),
            "Logplex-Frame-Id": drain_frames.frame_id(spec.token, lines),
            "Logplex-Drain-Token": spec.token,
            "User-Agent": "Dockyard-Logplex/1",
        }
        if not self.private:
            # Checked before each batch; the certificate must name the host, so a name that
            # turns to another address afterwards still reaches no service of ours.
            async with asyncio.timeout(self.timeout):
                await resolve(self.target.host, self.target.port, private=False)
        try:
            reply = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__cause__ or cause.__context__
            failed = (
                _reason(cause, self.timeout)
                if cause is not None
                else DrainFailed(type(exc).__name__)
            )
            if isinstance(exc, httpx.TimeoutException):
                failed = DrainFailed(f"timed out after {self.timeout:g}s")
            elif "CERTIFICATE_VERIFY_FAILED" in str(exc) and not failed.certificate:
                failed = DrainFailed(f"certificate rejected: {exc}", certificate=True)
            raise self._hide(failed) from exc
        if not 200 <= reply.status_code < 300:
            raise DrainFailed(f"the drain answered HTTP {reply.status_code}")

    def _hide(self, failed: DrainFailed) -> DrainFailed:
        if self._secret and self._secret in failed.reason:
            hidden = failed.reason.replace(self._secret, "***")
            return DrainFailed(hidden, certificate=failed.certificate)
        return failed

    async def close(self) -> None:
        await self._client.aclose()


def transport_for(
    url: str, context: ssl.SSLContext, *, timeout: float = TIMEOUT, private: bool = False
) -> Transport:
    """The transport of a drain URL; with ``private``, it may send to any address."""
    target = parse(url)
    if target.scheme == HTTPS:
        return HttpsTransport(target, context, timeout=timeout, private=private)
    return SyslogTransport(target, context, timeout=timeout, private=private)


async def resolve(host: str, port: int, *, private: bool) -> str:
    """The address to connect to for ``host``; DrainFailed when it has none or, unless
    ``private``, when any of its addresses is not public (see drain_urls.public)."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DrainFailed(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise DrainFailed(f"cannot resolve {host}: no address")
    if not private:
        for address in addresses:
            if not public(address):
                raise DrainFailed(not_public(host, address))
    return addresses[0]


class Cursors:
    """Each drain's cursor (the number of the last line it delivered), one file per drain."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, drain_id: str) -> Path:
        return self.directory / drain_id

    def load(self, drain_id: str) -> int | None:
        try:
            text = self._path(drain_id).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def save(self, drain_id: str, cursor: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(drain_id)
        partial = path.with_name(f".{drain_id}.new")
        partial.write_text(f"{cursor}\n")
        os.replace(partial, path)

    def remove(self, drain_id: str) -> None:
        self._path(drain_id).unlink(missing_ok=True)

    def known(self) -> list[str]:
        try:
            return [p.name for p in self.directory.iterdir() if not p.name.startswith(".")]
        except FileNotFoundError:
            return []


class DrainWorker:
    """Delivers one drain's lines, oldest first, until cancelled (see the module's docstring)."""

    def __init__(
        self,
        spec: DrainSpec,
        hub: LogHub,
        transport: Transport,
        cursors: Cursors,
        *,
        buffer_lines: int = BUFFER_LINES,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.hub = hub
        self.transport = transport
        self.cursors = cursors
        self.buffer_lines = buffer_lines
        self.backoff = backoff or Backoff(first=1.0, factor=2.0, cap=60.0)
        self.clock = clock
        self.cursor = 0
        self.delivered = 0  # lines, since it started
        self.failures = 0  # failed sends in a row
        self._reported: tuple[str, float] | None = None

    async def run(self) -> None:
        saved = self.cursors.load(self.spec.id)
        if saved is None:  # a new drain: it gets what comes from now on
            saved = self.hub.last_seq(self.spec.app_id)
            self.cursors.save(self.spec.id, saved)
        self.cursor = saved
        try:
            while True:
                self._drop_oldest()
                subscription = self.hub.subscribe(
                    self.spec.app_id,
                    since=self.cursor,
                    tail=True,
                    queue_lines=self.buffer_lines,
                )
                try:
                    outcome = await self._pump(subscription)
                finally:
                    subscription.close()
                if outcome == "end":
                    return
                if outcome == "failed":
                    await asyncio.sleep(self.backoff.remaining(self.spec.id))
        finally:
            await self.transport.close()

    def _drop_oldest(self) -> None:
        """Skip what the drain can no longer get (too far behind, or gone from the history)."""
        app_id = self.spec.app_id
        last = self.hub.last_seq(app_id)
        if self.cursor > last:  # the app's history was lost or reset: follow it from here
            self.cursor = last
            self.cursors.save(self.spec.id, last)
        first = self.hub.history(app_id).first_seq()
        oldest_kept = 0 if first is None else first
        start = max(self.cursor, last - self.buffer_lines, oldest_kept - 1)
        start = min(start, last)
        if start <= self.cursor:
            return
        dropped = start - self.cursor
        self.cursor = start
        self.cursors.save(self.spec.id, start)
        message = (
            f"Error L10 (output buffer overflow): {dropped} messages dropped for drain "
            f"{self.spec.shown}"
        )
        log.warning(
            "drain fell behind: oldest lines dropped", extra={**self._fields, "dropped": dropped}
        )
        self._say(message)

    async def _pump(self, subscription: Subscription) -> str:
        """Deliver what the subscription gives: ``end`` (the hub stopped), ``failed``, or
        ``behind`` (its queue overflowed: read on from the history)."""
        while True:
            batch = await subscription.next_batch(IDLE)
            if batch is None:
                return "end"
            kept = []
            for line in batch:
                if line.seq is None:  # the subscription's own L10: lines it could not queue
                    break
                kept.append(line)
            pending = kept
            while pending:
                part = _fit(pending[: self.transport.batch])
                try:
                    await self.transport.send(part, self.spec)
                except DrainFailed as exc:
                    self._failed(exc)
                    return "failed"
                self._sent(part)
                pending = pending[len(part) :]
            if len(kept) < len(batch):
                return "behind"

    def _sent(self, lines: Sequence[Line]) -> None:
        last = lines[-1].seq
        assert last is not None
        self.cursor = last
        self.delivered += len(lines)
        self.cursors.save(self.spec.id, last)
        if self.failures:
            self._say(
                f"Drain {self.spec.shown} delivering again after {self.failures} failed "
                f"attempt{'s' if self.failures != 1 else ''}"
            )
            log.info("drain delivering again", extra=self._fields)
            self.failures = 0
            self._reported = None
            self.backoff.reset()

    def _failed(self, exc: DrainFailed) -> None:
        self.failures += 1
        wait = self.backoff.wait_after(self.backoff.crashed(self.spec.id).count)
        at = self.clock()
        reported = self._reported
        if reported is not None and reported[0] == exc.reason and at - reported[1] < REPORT_EVERY:
            return
        self._reported = (exc.reason, at)
        code = "L14 (certificate validation error)" if exc.certificate else "L13 (delivery error)"
        self._say(
            f"Error {code}: drain {self.spec.shown} failed: {exc.reason}; "
            f"retrying{f' in {wait:g}s' if wait else ''}, lines kept"
        )
        log.warning(
            "drain delivery failed",
            extra={**self._fields, "reason": exc.reason, "attempts": self.failures},
        )

    @property
    def _fields(self) -> dict[str, object]:
        """What the server's log says of this drain (its URL without a password)."""
        return {"drain": self.spec.token, "app": self.spec.app_name, "url": redact(self.spec.url)}

    def _say(self, message: str) -> None:
        """A ``dockyard[logplex]`` line in the app's stream (on the event loop)."""
        self.hub.publish(self.spec.app_id, make(now(), PLATFORM, NOTES, message))


def _fit(lines: list[Line]) -> list[Line]:
    """The first lines of ``lines`` that fit in one POST's byte budget (at least one)."""
    size = 0
    for index, line in enumerate(lines):
        size += len(line.message) + 100
        if size > HTTPS_BATCH_BYTES and index:
            return lines[:index]
    return lines


class Drains:
    """Every drain's worker, following the drains in the state store."""

    def __init__(
        self,
        database: Database,
        hub: LogHub,
        directory: Path,
        *,
        ca_file: Path | None = None,
        buffer_lines: int = BUFFER_LINES,
        timeout: float = TIMEOUT,
        backoff: Callable[[], Backoff] | None = None,
        private_addresses: bool = False,
    ) -> None:
        self.database = database
        self.hub = hub
        self.cursors = Cursors(directory)
        self.private_addresses = private_addresses
        self.context = tls_context(ca_file)
        self.buffer_lines = buffer_lines
        self.timeout = timeout
        self._backoff = backoff or (lambda: Backoff(first=1.0, factor=2.0, cap=60.0))
        self.workers: dict[str, tuple[DrainWorker, asyncio.Task[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start a worker for each drain; returns once they run."""
        self._loop = asyncio.get_running_loop()
        await self._reload()
        self._task = asyncio.create_task(self._follow(), name="drains")

    def poke(self) -> None:
        """The drains changed (any thread): look again now."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._poked.set)

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELOAD):
                    await self._poked.wait()
            self._poked.clear()
            try:
                await self._reload()
            except Exception:
                # The store may be down for a while: the workers go on, and the next look retries.
                log.exception("could not read the log drains")

    def _specs(self) -> dict[str, DrainSpec]:
        with self.database.transaction() as session:
            rows = session.execute(
                select(LogDrain.id, LogDrain.app_id, App.name, LogDrain.url, LogDrain.token).join(
                    App, App.id == LogDrain.app_id
                )
            ).all()
        return {
            str(row[0]): DrainSpec(str(row[0]), str(row[1]), row[2], row[3], row[4]) for row in rows
        }

    async def _reload(self) -> None:
        specs = await asyncio.to_thread(self._specs)
        for drain_id in list(self.workers):
            worker, task = self.workers[drain_id]
            spec = specs.get(drain_id)
            if spec is None or task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)  # its failure was logged
                if spec is None:
                    self.cursors.remove(drain_id)
                del self.workers[drain_id]
            elif spec != worker.spec:
                worker.spec = spec  # the app was renamed
        for drain_id, spec in specs.items():
            if drain_id not in self.workers:
                self._start(spec)
        for drain_id in self.cursors.known():  # drains removed while the server was down
            if drain_id not in specs:
                self.cursors.remove(drain_id)

    def _start(self, spec: DrainSpec) -> None:
        try:
            transport = transport_for(
                spec.url, self.context, timeout=self.timeout, private=self.private_addresses
            )
        except InvalidParams as exc:  # stored by an older version that allowed more
            log.error("drain not started: %s", exc.message, extra={"drain": spec.token})
            return
        worker = DrainWorker(
            spec,
            self.hub,
            transport,
            self.cursors,
            buffer_lines=self.buffer_lines,
            backoff=self._backoff(),
        )
        task = asyncio.create_task(worker.run(), name=f"drain {spec.token}")
        task.add_done_callback(self._ended)
        self.workers[spec.id] = (worker, task)
        log.info(
            "drain started",
            extra={"drain": spec.token, "app": spec.app_name, "url": redact(spec.url)},
        )

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("a drain's worker failed", exc_info=exc, extra={"task": task.get_name()})
            self._poked.set()  # restarted at the next look

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        tasks = [task for _worker, task in self.workers.values()]
        self.workers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
