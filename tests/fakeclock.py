"""A clock for tests that only moves when told, so TTLs and cooldowns need no sleeping."""

from __future__ import annotations


class FakeClock:
    """Pass it where a component takes `clock=`: `clock()` reads it, `advance(s)` moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now  # wall-clock-like, so it also stands in for time.time

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
