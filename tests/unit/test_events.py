"""Platform events reach every listener, and one broken listener stops nobody."""

from __future__ import annotations

import logging
import threading

import pytest

from dockyard.events import APP, Event, Events


def test_events_reach_listeners_and_the_server_log(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    seen: list[Event] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("a listener that fails")

    events.listen(broken)
    events.listen(seen.append)
    with caplog.at_level(logging.INFO, logger="dockyard.events"):
        emitted = events.emit("id-1", "shop", "web.1", "State changed from starting to up")
        events.emit("id-1", "shop", "api", "Set FOO config vars by a@example.com", source=APP)
    assert seen[0] == emitted
    assert [e.tag for e in seen] == ["dockyard[web.1]", "app[api]"]
    assert "shop dockyard[web.1]: State changed from starting to up" in caplog.text
    assert "an event listener failed" in caplog.text


def test_events_may_come_from_any_thread() -> None:
    events = Events()
    seen: list[Event] = []
    events.listen(seen.append)
    threads = [
        threading.Thread(target=events.emit, args=("id", "shop", f"web.{n}", "hello"))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.process for e in seen) == sorted(f"web.{n}" for n in range(8))
