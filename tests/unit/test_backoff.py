"""The crash back-off policy on a fake clock."""

from __future__ import annotations

import pytest

from dockyard.backoff import Backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_first_crash_restarts_at_once_then_waits_grow(clock: FakeClock) -> None:
    backoff = Backoff(first=1.0, factor=2.0, cap=300.0, clock=clock)
    key = ("app", "web.1")
    assert backoff.ready(key)
    assert backoff.crashed(key).count == 1
    assert backoff.ready(key), "the first crash is restarted at once"
    assert backoff.remaining(key) == 0.0

    waits = []
    for _ in range(5):
        crashes = backoff.crashed(key)
        waits.append(crashes.retry_at - clock.now)
        assert not backoff.ready(key)
        clock.advance(waits[-1] - 0.001)
        assert not backoff.ready(key), "not a millisecond early"
        clock.advance(0.001)
        assert backoff.ready(key)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_waits_are_capped_and_never_overflow(clock: FakeClock) -> None:
    backoff = Backoff(first=1.0, factor=2.0, cap=300.0, clock=clock)
    for _ in range(2000):
        crashes = backoff.crashed("web.1")
    assert crashes.count == 2000
    assert crashes.retry_at - clock.now == 300.0
    assert backoff.wait_after(10**9) == 300.0


def test_keys_are_independent_and_reset_forgets(clock: FakeClock) -> None:
    backoff = Backoff(clock=clock)
    for _ in range(3):
        backoff.crashed(("a", "web.1"))
    backoff.crashed(("a", "worker.1"))
    backoff.crashed(("b", "web.1"))
    backoff.crashed(("b", "web.1"))
    assert backoff.remaining(("a", "web.1")) == 2.0
    assert backoff.ready(("a", "worker.1"))
    assert backoff.remaining(("b", "web.1")) == 1.0

    backoff.reset(lambda key: isinstance(key, tuple) and key[0] == "a")
    assert backoff.get(("a", "web.1")) is None
    assert backoff.ready(("a", "web.1"))
    assert backoff.crashed(("a", "web.1")).count == 1, "a reset starts the count again"
    assert backoff.get(("b", "web.1")) is not None

    backoff.reset()
    assert backoff.get(("b", "web.1")) is None


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(first=10, cap=1)
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(factor=0.5)
