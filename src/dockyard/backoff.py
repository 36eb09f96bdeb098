"""Crash back-off: when a crashed formation dyno may start again.

Heroku's rule: the first crash is restarted at once; each further crash waits longer
(1 s, 2 s, 4 s, ... up to a cap of a few minutes). A new release, a restart or a scale
forgets the count (:meth:`Backoff.reset`). The policy is pure: it only reads the clock it is
given, so it is tested on a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Crashes:
    """How often a dyno crashed in a row, and when it may start again (clock time)."""

    count: int
    retry_at: float


class Backoff:
    """Crash counts per key (an app's dyno name) and the wait each count brings."""

    def __init__(
        self,
        *,
        first: float = 1.0,
        factor: float = 2.0,
        cap: float = 300.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if first < 0 or factor < 1 or cap < first:
            raise ValueError("back-off needs first >= 0, factor >= 1 and cap >= first")
        self.first = first
        self.factor = factor
        self.cap = cap
        self.clock = clock
        self._crashes: dict[Hashable, Crashes] = {}

    def wait_after(self, count: int) -> float:
        """The wait after the ``count``-th crash in a row: 0, then first, first*factor, ..."""
        if count <= 1:
            return 0.0
        # Capped exponent: a dyno that crashed a thousand times must not overflow a float.
        exponent = min(count - 2, 64)
        return float(min(self.cap, self.first * self.factor**exponent))

    def crashed(self, key: Hashable) -> Crashes:
        """Count a crash of ``key``; return its count and when it may start again."""
        previous = self._crashes.get(key)
        count = 1 if previous is None else previous.count + 1
        crashes = Crashes(count, self.clock() + self.wait_after(count))
        self._crashes[key] = crashes
        return crashes

    def get(self, key: Hashable) -> Crashes | None:
        return self._crashes.get(key)

    def ready(self, key: Hashable) -> bool:
        """Whether ``key`` may start now: it never crashed, or its wait is over."""
        crashes = self._crashes.get(key)
        return crashes is None or self.clock() >= crashes.retry_at

    def remaining(self, key: Hashable) -> float:
        """Seconds until ``key`` may start again; 0 when it may start now."""
        crashes = self._crashes.get(key)
        return 0.0 if crashes is None else max(0.0, crashes.retry_at - self.clock())

    def reset(self, match: Callable[[Hashable], bool] | None = None) -> None:
        """Forget the crashes of every key (or of those ``match`` accepts)."""
        if match is None:
            self._crashes.clear()
            return
        for key in [key for key in self._crashes if match(key)]:
            del self._crashes[key]
