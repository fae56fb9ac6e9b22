"""Observed latency per model, for latency-aware selection: an EWMA of time to first token
(TTFT) and of time per output token (TPOT).

The Router makes one tracker and gives it, at construction, to the pool's executor (which
records) and to latency-aware selection (which reads); a reload hands it to the new Router. It
is keyed by the `PooledModel` object itself (identity), so two pools in one process never mix
their numbers. It is bounded: the least recently updated models are dropped beyond
`max_models`. Estimates older than `stale_s` are forgotten, so a model that was slow once is
tried again later (and its next observation starts a fresh average).

What is observed (see `record_attempt`, called by the executor on each successful attempt):
- a stream: the executor's attempt ends when the first chunk has arrived (the provider
  prefetches it), so its duration is the true TTFT;
- a plain completion: only the total upstream time T is known. With `usage.completion_tokens`
  n > 0 it is recorded as a TPOT of T / n (the whole time spread over the tokens, an upper bound);
  without usage, as a TTFT of T.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Stats:
    ttft_s: float | None
    tpot_s: float | None
    updated: float


class LatencyTracker:
    def __init__(self, *, alpha: float = 0.3, stale_s: float = 300.0, max_models: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.stale_s = stale_s
        self.max_models = max_models
        self.clock = clock
        self._stats: OrderedDict[Hashable, _Stats] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stats)

    def observe(self, model: Hashable, ttft_s: float | None = None,
                tpot_s: float | None = None) -> None:
        """Blend one observation in; either part may be None (not observed). O(1)."""
        now = self.clock()
        stats = self._stats.get(model)
        if stats is None or now - stats.updated > self.stale_s:
            self._stats[model] = _Stats(ttft_s, tpot_s, now)
        else:
            stats.ttft_s = self._blend(stats.ttft_s, ttft_s)
            stats.tpot_s = self._blend(stats.tpot_s, tpot_s)
            stats.updated = now
        self._stats.move_to_end(model)
        if len(self._stats) > self.max_models:
            self._stats.popitem(last=False)

    def estimate(self, model: Hashable) -> tuple[float, float] | None:
        """(ttft_s, tpot_s), a part never observed counting as 0; None if unknown or stale."""
        stats = self._stats.get(model)
        if stats is None or self.clock() - stats.updated > self.stale_s:
            return None
        return stats.ttft_s or 0.0, stats.tpot_s or 0.0

    def _blend(self, old: float | None, new: float | None) -> float | None:
        if new is None:
            return old
        if old is None:
            return new
        return old + self.alpha * (new - old)

    def record_attempt(self, model: Hashable, upstream_s: float, result: Any, *,
                       stream: bool) -> None:
        """Record one successful attempt (see the module docstring for what is measured)."""
        if stream:
            self.observe(model, ttft_s=upstream_s)
            return
        usage = result.get("usage") if isinstance(result, dict) else None
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(completion, int) and completion > 0:
            self.observe(model, tpot_s=upstream_s / completion)
        else:
            self.observe(model, ttft_s=upstream_s)
