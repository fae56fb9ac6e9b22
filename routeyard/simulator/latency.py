"""Latency model of one simulated backend: time to first token, time per token, output length.

Kept free of HTTP concerns so that a fleet simulator can reuse it to replay traces offline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long a backend takes to answer, and how much it says."""

    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    output_tokens_mean: float = 64.0
    output_tokens_sd: float = 0.0
    output_tokens_min: int = 1
    output_tokens_max: int = 4096
    # Prefill: each prompt token the backend's prefix cache does not hold adds this much to
    # the time to first token (per 1000 tokens); one endpoint prefills one prompt at a time.
    prefill_ms_per_1k_tokens: float = 0.0

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.tpot_ms < 0 or self.prefill_ms_per_1k_tokens < 0:
            raise ValueError("ttft_ms, tpot_ms and prefill_ms_per_1k_tokens must be >= 0")
        if self.output_tokens_sd < 0:
            raise ValueError("output_tokens_sd must be >= 0")
        if not 0 <= self.output_tokens_min <= self.output_tokens_max:
            raise ValueError("need 0 <= output_tokens_min <= output_tokens_max")

    @property
    def ttft_s(self) -> float:
        return self.ttft_ms / 1000.0

    @property
    def tpot_s(self) -> float:
        return self.tpot_ms / 1000.0

    def sample_output_tokens(self, rng: random.Random) -> int:
        """Draw an output length: a normal clipped to [min, max] (sd 0 means a fixed length)."""
        if self.output_tokens_sd > 0:
            value = rng.gauss(self.output_tokens_mean, self.output_tokens_sd)
        else:
            value = self.output_tokens_mean
        return min(self.output_tokens_max, max(self.output_tokens_min, round(value)))

    def total_s(self, output_tokens: int) -> float:
        """Time until the last token: the first token costs ttft, each later one tpot."""
        if output_tokens <= 0:
            return self.ttft_s
        return self.ttft_s + (output_tokens - 1) * self.tpot_s

    def token_time_s(self, index: int) -> float:
        """Offset from request start at which token `index` (0-based) is emitted."""
        return self.ttft_s + index * self.tpot_s
