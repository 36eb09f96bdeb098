"""Router log lines: one per request, in Heroku's format, for the app's log stream.

HAProxy writes one record per request (:data:`LOG_FORMAT`) into a ring buffer of its own, and
forwards the ring, records framed by their length, to a Unix stream socket that the control
plane reads (:class:`LogReceiver`): one read takes hundreds of records, where a datagram each
cost a system call (and a turn of Python's GIL) per request. :func:`parse` reads a record and
:meth:`Request.line` writes Heroku's line::

    at=info method=GET path="/" host=app.example.com request_id=… fwd="1.2.3.4" dyno=web.1
    connect=1ms service=18ms status=200 bytes=13 protocol=http

and, for a request the app did not answer, ``at=error code=H12 desc="Request timeout" …``.
Requests never wait for their log line: while nobody reads (the control plane is down, or
behind), the ring keeps the newest records it has room for and HAProxy drops the others; the
kept ones arrive once the control plane is back, each with the time HAProxy logged it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.router.pages import PAGES

log = logging.getLogger("dockyard.router")

TAG = "dockyard-router"
# Space-separated; free text is quoted, and HAProxy writes '"' and non-printable bytes as #XX.
# Ten plain fields, then five quoted ones in which HAProxy escapes '"' and '\\' (+E), then
# when it was logged (microseconds since the epoch). The ninth is the protocol: https when the
# request came over TLS.
LOG_FORMAT = (
    f"{TAG} %b %s %sp %ST %B %Tc %Ta %tsc %[ssl_fc,iif(https,http)] %HM %{{+Q}}HPO "
    "%{+Q,+E}[var(txn.host)] %{+Q,+E}[var(txn.rid)] %{+Q,+E}[var(txn.fwd)] %{+Q}[var(txn.code)] "
    "%[date(0,us)]"
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPED = re.compile(r"#([0-9A-Fa-f]{2})|\\(.)")


@dataclass(slots=True)
class Request:
    """One request as HAProxy logged it (not frozen: a frozen dataclass is slower to make)."""

    backend: str
    server: str
    server_port: int | None
    status: int
    bytes: int
    connect_ms: int  # -1: never connected to a dyno
    active_ms: int
    termination: str  # HAProxy's termination state, like ---- or sH--
    frontend: str
    method: str
    path: str
    host: str
    request_id: str
    fwd: str
    code: str  # set by the router's own answers: H10, H14, H80, 404
    at: int | None = None  # when HAProxy logged it, in microseconds since the epoch

    def error(self) -> str | None:
        """Heroku's error code for this request, or None when the app answered it."""
        if self.code:
            return self.code
        if self.status == 504 or self.termination[:2] in ("sH", "sQ"):
            return "H12"
        if self.status == 502 or self.termination[:2] in ("SH", "SD"):
            return "H13"
        if self.status == 503:
            return "H10"
        if self.status == 500 and self.server in ("<NOSRV>", "-"):
            return "H99"
        return None

    def line(self, dyno: str) -> str:
        """Heroku's router line; ``dyno`` is the name of the web dyno that served it."""
        code = self.error()
        page = PAGES.get(code) if code is not None else None
        if page is None:
            head = "at=info"
            status = self.status
        else:
            head = f'at=error code={code} desc="{page.description}"'
            # The client got the router's page, which is a 503 for every code but the 404.
            status = page.status
        if self.connect_ms >= 0:
            connect = self.connect_ms
            service = max(0, self.active_ms - connect)
        else:
            connect = service = 0
            dyno = ""
        return (
            f'{head} method={self.method} path="{self.path}" host={self.host} '
            f'request_id={self.request_id} fwd="{self.fwd}" dyno={dyno} connect={connect}ms '
            f"service={service}ms status={status} bytes={max(self.bytes, 0)} "
            f"protocol={self.frontend}"
        )


def _unescape(text: str) -> str:
    if "#" not in text and "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), text)


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def parse(record: bytes | str) -> Request | None:
    """A record of :data:`LOG_FORMAT`, or None for anything else HAProxy logs."""
    text = record.decode("utf-8", "replace") if isinstance(record, bytes) else record
    if not text.startswith(TAG + " "):
        return None
    fields = text[len(TAG) + 1 :].rstrip("\n").split(" ", 10)
    if len(fields) != 11:
        return None
    tail = fields[-1]
    at = None
    if not tail.endswith('"'):
        tail, _, stamp = tail.rpartition(" ")
        at = int(stamp) if stamp.isdigit() else None
    if "\\" in tail:
        quoted = _QUOTED.findall(tail)
    else:
        # Nothing escaped (nearly every record): a split is several times cheaper.
        quoted = tail[1:-1].split('" "') if tail[:1] == '"' and tail[-1:] == '"' else []
    if len(quoted) != 5:
        return None
    backend, server, port, status, size, connect, active, termination, frontend, method = fields[
        :10
    ]
    if "#" in tail or "\\" in tail:
        quoted = [_unescape(q) for q in quoted]
    path, host, request_id, fwd, code = quoted
    try:  # nearly always numbers; HAProxy writes - for what it did not measure
        numbers = int(status), int(size), int(connect), int(active)
    except ValueError:
        numbers = _number(status), _number(size), _number(connect), _number(active)
    # Positional, in the fields' order: a record per request, thousands a second.
    return Request(
        backend,
        server,
        int(port) if port.isdigit() else None,
        *numbers,
        termination,
        frontend,
        method,
        path,
        host,
        request_id,
        fwd,
        code,
        at,
    )


class LogReceiver:
    """Reads HAProxy's records from a Unix stream socket and hands each to ``sink``.

    HAProxy connects to it to forward its log ring (each of its workers on a connection of its
    own, during a reload two), records framed as ``<length> <record>`` (syslog's octet
    counting). A thread of its own reads them, in large chunks, and hands ``sink`` the
    requests of each chunk as one list. ``sink`` must be thread-safe.
    """

    CHUNK = 1024 * 1024
    # After a read, the thread waits this long before the next: under load the records of
    # those milliseconds arrive as one read and one batch (a batch costs a wake-up of the
    # event loop), at the price of a line showing up to that much later.
    PAUSE = 0.02

    def __init__(
        self, path: Path, sink: Callable[[list[Request]], None], *, pause: float = PAUSE
    ) -> None:
        self.path = path
        self.sink = sink
        self.pause = pause
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            self.path.chmod(0o600)
            listener.listen(16)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(listener,), name="router-log", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _serve(self, listener: socket.socket) -> None:
        pending: dict[socket.socket, bytes] = {}  # each connection's unfinished frame
        with selectors.DefaultSelector() as selector, listener:
            selector.register(listener, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    # A short wait, to see the stop flag; records wake it at once.
                    read = False
                    for key, _ in selector.select(timeout=0.5):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if sock is listener:
                            with contextlib.suppress(BlockingIOError):
                                connection, _ = listener.accept()
                                with contextlib.suppress(OSError):
                                    connection.setsockopt(
                                        socket.SOL_SOCKET, socket.SO_RCVBUF, self.CHUNK
                                    )
                                selector.register(connection, selectors.EVENT_READ)
                                pending[connection] = b""
                        elif self._read(sock, pending):
                            read = True
                        else:
                            selector.unregister(sock)
                            sock.close()
                            pending.pop(sock, None)
                    if read:
                        self._stop.wait(self.pause)
            except OSError:
                log.exception("the router's log socket failed; router lines stop")
            finally:
                for connection in pending:
                    connection.close()

    def _read(self, sock: socket.socket, pending: dict[socket.socket, bytes]) -> bool:
        """Read what ``sock`` has, hand on its whole records; False once it is closed."""
        try:
            data = sock.recv(self.CHUNK)
        except OSError:
            return False
        if not data:
            return False
        buffer = pending[sock] + data if pending[sock] else data
        records, rest = frames(buffer)
        if records:
            self.received(records)
        if rest is None:
            log.warning("the router's log stream is not framed; dropping its connection")
            return False
        pending[sock] = rest
        return True

    def received(self, records: list[bytes]) -> None:
        """Hand ``records`` (one read's worth) to the sink at once: a call per read, not per
        request, is what keeps the router's log cheap under load."""
        requests = []
        for data in records:
            request = parse(data)
            if request is not None:
                requests.append(request)
                continue
            text = data.decode("utf-8", "replace").strip()
            if text:
                log.info("haproxy: %s", text)
        if not requests:
            return
        try:
            self.sink(requests)
        except Exception:
            # A bad batch must not stop the router's log.
            log.exception("could not log %d router records", len(requests))


def frames(buffer: bytes) -> tuple[list[bytes], bytes | None]:
    """The whole ``<length> <record>`` frames at the start of ``buffer``, and what is left of
    it (the start of the next frame); None for the rest when ``buffer`` is not framed."""
    records: list[bytes] = []
    start = 0
    end = len(buffer)
    while start < end:
        space = buffer.find(b" ", start, start + 12)
        if space < 0:
            # The length is at most 10 digits: more without a space is not a frame.
            return records, (buffer[start:] if end - start < 12 else None)
        length = buffer[start:space]
        if not length.isdigit():
            return records, None
        stop = space + 1 + int(length)
        if stop > end:
            break
        records.append(buffer[space + 1 : stop])
        start = stop
    return records, buffer[start:]
