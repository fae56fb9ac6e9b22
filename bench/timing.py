"""Timing helpers shared by the micro-benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def p50_ms(call: Callable[[], Any], repeats: int, *, warmup: int = 20) -> float:
    """Median wall time of `call()` in milliseconds, after a few untimed warm-up calls."""
    for _ in range(min(warmup, repeats)):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
