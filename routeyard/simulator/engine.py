"""Run-time state of a simulator: per-model profiles, seeded RNGs, stats, and request plans."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from routeyard.simulator.logprobs import answer_logprobs
from routeyard.simulator.prefix_cache import Block, PrefixCache
from routeyard.simulator.profiles import FAULT_ORDER, ModelProfile, SimulatorConfig
from routeyard.simulator.replay import ReplayIndex
from routeyard.simulator.text import (
    continue_after,
    encode_piece,
    filler_pieces,
    filler_pieces_json,
    filler_text,
    split_pieces,
    stepped_text,
)

# Values accepted in the `x-sim-fault` request header.
FAULT_OVERRIDES = frozenset(
    {"400", "422", "500", "503", "429", "hang", "disconnect", "disconnect_first"}
)
OUTCOMES = (
    "ok", "4xx", "5xx", "429", "hang", "disconnect", "disconnect_first", "client_disconnect"
)


class ModelState:
    """One served model: its current profile, its own RNGs and its counters."""

    __slots__ = ("active", "cache", "cached_tokens", "fault_rng", "length_rng", "outcomes",
                 "prefill_free_at", "prefilled_tokens", "profile", "rates", "requests")

    def __init__(self, name: str, profile: ModelProfile, seed: int) -> None:
        # Seeded per model so one model's draws do not depend on another model's traffic.
        self.fault_rng = random.Random(f"{seed}:{name}:fault")
        self.length_rng = random.Random(f"{seed}:{name}:length")
        self.requests = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.cache: PrefixCache | None = None
        self.prefill_free_at = 0.0  # when this endpoint's prefill is free again (clock time)
        self.cached_tokens = 0  # prompt tokens served from the prefix cache, in all
        self.prefilled_tokens = 0  # prompt tokens prefilled, in all
        # The requests being answered now, by id (the /metrics queue model: load_metrics.py).
        self.active: dict[int, Plan] = {}
        self.set_profile(profile)

    def set_profile(self, profile: ModelProfile) -> None:
        self.profile = profile
        self.rates = profile.fault_rates if any(profile.fault_rates) else None
        capacity = profile.prefix_cache_tokens
        if not capacity:
            self.cache = None
        elif self.cache is None:
            self.cache = PrefixCache(capacity)
        else:
            self.cache.resize(capacity)

    def prefill(self, blocks: list[Block], prompt_tokens: int, now: float
                ) -> tuple[float, int, float]:
        """Prefill a prompt arriving at `now`: its time to first token (the base, the wait
        for this endpoint's earlier prefills, its uncached tokens' prefill), its cached
        tokens, and when its prefill starts (until then it waits in the queue). Afterwards
        the cache holds the whole prompt."""
        cached = 0
        if self.cache is not None:
            cached = min(prompt_tokens, self.cache.cached_tokens(blocks))
            self.cache.admit(blocks)
        uncached = prompt_tokens - cached
        self.cached_tokens += cached
        self.prefilled_tokens += uncached
        latency = self.profile.latency
        prefill_s = uncached * latency.prefill_ms_per_1k_tokens / 1_000_000
        start = max(now, self.prefill_free_at)
        if prefill_s:
            self.prefill_free_at = start + prefill_s
        return latency.ttft_s + (start - now) + prefill_s, cached, start

    def cache_stats(self) -> dict[str, int]:
        found = self.cache.stats() if self.cache is not None else {}
        return {**found, "cached_tokens": self.cached_tokens,
                "prefilled_tokens": self.prefilled_tokens}

    def draw_fault(self) -> str | None:
        if self.rates is None:
            return None
        draw, edge = self.fault_rng.random(), 0.0
        for kind, rate in zip(FAULT_ORDER, self.rates, strict=True):
            edge += rate
            if draw < edge:
                return kind
        return None


@dataclass(frozen=True, slots=True)
class Sampling:
    """What a chat request asks of the answer besides its length (OpenAI surface)."""

    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    top_logprobs: int | None = None  # None: no logprobs asked; else this many alternatives


NO_SAMPLING = Sampling()


@dataclass(slots=True)
class Plan:
    """What the simulator will answer to one request, before timing and wire encoding."""

    model: str
    state: ModelState
    profile: ModelProfile  # snapshot, so a PUT mid-request does not change this answer
    fault: str | None
    prompt_tokens: int
    completion_tokens: int
    finish: str  # "stop" or "length"
    # The answer's text unless it is filler (None): a replayed one, or the rest of an answer
    # being continued.
    answer: str | None
    replay: bytes | None  # value of the x-sim-replay header, None outside replay mode
    # vLLM's `stop_reason`, given when the request set `stop`: the stop string matched, or
    # None when the answer ended by itself. Unset (False) when no `stop` was asked.
    stop_reason: str | bool | None = False
    top_logprobs: int | None = None  # logprobs to give, with this many alternatives
    prefix: str = ""  # the answer's start this plan continues
    prompt: str = ""  # the last user message (seeds the step entropies)
    ttft_s: float | None = None  # with a prefill model: this request's (None: the profile's)
    cached_tokens: int | None = None  # with a prefill model: prompt tokens from the cache
    # With a prefill model: when its prefill starts (engine clock); before that it is queued.
    prefill_start: float | None = None

    @property
    def first_token_s(self) -> float:
        return self.ttft_s if self.ttft_s is not None else self.profile.latency.ttft_s

    @property
    def total_s(self) -> float:
        """Time until the last token: the first costs ttft, each later one tpot."""
        return self.first_token_s + max(0, self.completion_tokens - 1) * \
            self.profile.latency.tpot_s

    def text(self) -> str:
        if self.answer is None:
            return filler_text(self.completion_tokens)
        if self.finish == "length":
            return "".join(split_pieces(self.answer)[: self.completion_tokens])
        return self.answer

    def pieces_json(self) -> list[bytes]:
        """The output as JSON-encoded stream pieces (filler ones are precomputed)."""
        if self.answer is None:
            return filler_pieces_json(self.completion_tokens)
        return [encode_piece(p) for p in split_pieces(self.answer)[: self.completion_tokens]]

    def pieces(self) -> list[str]:
        if self.answer is None:
            return filler_pieces(self.completion_tokens)
        return split_pieces(self.answer)[: self.completion_tokens]

    def logprobs(self) -> list[dict[str, Any]] | None:
        """`choices[].logprobs.content` of the answer, or None when none are to be given."""
        if self.top_logprobs is None or not self.profile.logprobs:
            return None
        return answer_logprobs(self.pieces(), self.prefix, self.prompt,
                               self.profile.step_entropy, self.top_logprobs)


def _stopped(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the first stop string found, and that string (None: none found)."""
    found = [(text.find(stop), stop) for stop in stops if stop in text]
    if not found:
        return text, None
    at, stop = min(found)
    return text[:at], stop


class SimulatorEngine:
    """Holds the mutable state behind one simulator app."""

    def __init__(self, config: SimulatorConfig, replay: ReplayIndex | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock` times prefills (the event loop's clock is monotonic too)."""
        self.config = config
        self.clock = clock
        self.replay = replay
        self.states: dict[str, ModelState] = {}
        for name in replay.models if replay else ():
            self.states[name] = ModelState(name, config.default, config.seed)
        for name, profile in config.models.items():
            self.states[name] = ModelState(name, profile, config.seed)
        self.served = list(self.states)

    def state_for(self, model: str) -> ModelState | None:
        state = self.states.get(model)
        if state is None and self.config.accept_any_model:
            state = self.states[model] = ModelState(model, self.config.default, self.config.seed)
        return state

    def plan(
        self,
        model: str,
        state: ModelState,
        prompt_tokens: int,
        last_user: str,
        max_tokens: int | None,
        fault: str | None,
        prefix: str | None = None,
        sampling: Sampling = NO_SAMPLING,
        blocks: list[Block] | None = None,
    ) -> Plan:
        """`prefix`: the start of the answer, given back to be continued (None: answer anew);
        the plan is then for the rest, and `max_tokens` caps the rest. `sampling`: stop
        strings and logprobs. `blocks`: the prompt's prefix blocks, for a profile that
        models prefill (`ModelProfile.models_prefill`)."""
        state.requests += 1
        if fault is None:
            fault = state.draw_fault()
        answer, replay = None, None
        if self.replay is not None:
            answers = self.replay.lookup(last_user)
            answer = answers.get(model) if answers else None
            replay = b"miss" if answer is None else b"hit"
        profile = state.profile
        if answer is None:
            n = profile.latency.sample_output_tokens(state.length_rng)
            if profile.step_tokens:
                answer = stepped_text(n, profile.step_tokens)
        else:
            n = len(split_pieces(answer))
        if prefix is not None:
            answer = continue_after(prefix, answer, n)
            n = len(split_pieces(answer))
        stop_reason: str | bool | None = False
        if sampling.stop:
            answer, stop_reason = _stopped(answer if answer is not None else filler_text(n),
                                           sampling.stop)
            n = len(split_pieces(answer))
        finish = "stop"
        if max_tokens is not None and n > max_tokens:
            n, finish = max_tokens, "length"
            stop_reason = None if stop_reason is not False else False
        ttft_s = cached = prefill_start = None
        if blocks is not None and fault is None and profile.models_prefill:
            ttft_s, cached, prefill_start = state.prefill(blocks, prompt_tokens, self.clock())
        return Plan(model, state, profile, fault, prompt_tokens, n, finish, answer, replay,
                    stop_reason, sampling.top_logprobs, prefix or "", last_user, ttft_s,
                    cached, prefill_start)

    def set_profile(self, model: str, updates: Mapping[str, Any]) -> ModelProfile:
        """Merge `updates` into a model's profile; an unknown model starts being served."""
        state = self.states.get(model)
        base = state.profile if state else self.config.default
        profile = base.merged(updates)
        if state is None:
            self.states[model] = ModelState(model, profile, self.config.seed)
            self.served.append(model)
        else:
            state.set_profile(profile)
        return profile

    def stats(self) -> dict[str, Any]:
        return {
            "requests": {name: s.requests for name, s in self.states.items()},
            "outcomes": {name: dict(s.outcomes) for name, s in self.states.items()},
            "prefix_cache": {name: s.cache_stats() for name, s in self.states.items()
                             if s.profile.models_prefill},
        }

    def reset(self) -> None:
        for state in self.states.values():
            state.requests = 0
            state.outcomes = dict.fromkeys(OUTCOMES, 0)
            state.cached_tokens = state.prefilled_tokens = 0
            state.prefill_free_at = 0.0
            if state.cache is not None:  # a reset backend starts cold
                state.cache = PrefixCache(state.profile.prefix_cache_tokens)
