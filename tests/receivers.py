"""A real syslog receiver for drain tests: RFC 6587 octet-counted frames over TCP on loopback,
served by a thread (for tests that drive a real ``dockyard server``)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.logs.drain_frames import read_frames


class SyslogReceiver(socketserver.ThreadingTCPServer):
    """Keeps each message it receives, decoded, in order of arrival."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"syslog://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    server: SyslogReceiver

    def handle(self) -> None:
        left = b""
        while chunk := self.request.recv(65536):
            found, left = read_frames(left + chunk)
            self.server.messages.extend(m.decode() for m in found)


@contextmanager
def syslog_receiver() -> Iterator[SyslogReceiver]:
    running = SyslogReceiver()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(timeout=10)
