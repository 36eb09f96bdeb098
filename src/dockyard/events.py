"""Platform events: what the platform says about an app, for the app's log stream.

Heroku shows two kinds in an app's logs: ``app[api]`` lines for what users did (``Release v7
created by user@example.com``, ``Set FOO config vars by …``, ``Scaled to web@2:Basic by …``)
and ``heroku[web.1]`` lines for what happened to dynos (``State changed from starting to
up``, ``Process exited with status 143``, ``Error R10 (Boot timeout) …``). Dockyard says
``app[api]`` and ``dockyard[web.1]``.

Every part of the platform emits events through one :class:`Events`; the log hub listens.
Each event also goes to the server's own log, so nothing is lost when no hub listens.
:meth:`Events.emit` may be called from any thread; listeners must be quick and thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("dockyard.events")

APP = "app"  # what users and their apps did: app[api], app[web.1]
PLATFORM = "dockyard"  # what the platform did: dockyard[web.1], dockyard[router]


@dataclass(frozen=True)
class Event:
    app_id: str
    app_name: str
    source: str  # APP or PLATFORM
    process: str  # api, web.1, router, build, release.4821
    message: str
    at: float = field(default_factory=time.time)  # seconds since the epoch

    @property
    def tag(self) -> str:
        """``dockyard[web.1]``, as the event shows in the app's log stream."""
        return f"{self.source}[{self.process}]"


Listener = Callable[[Event], None]


class Events:
    """Where platform events go: the server's log, and every listener (the log hub)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(
        self,
        app_id: str,
        app_name: str,
        process: str,
        message: str,
        *,
        source: str = PLATFORM,
        level: int = logging.INFO,
    ) -> Event:
        """Record ``message`` about ``app_name``'s ``process`` (``web.1``, ``api``, ``router``)."""
        event = Event(str(app_id), app_name, source, process, message)
        log.log(level, "%s %s: %s", app_name, event.tag, message)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                # A broken listener must not stop a deploy or a scale; it is reported here.
                log.exception("an event listener failed on %s", event)
        return event
