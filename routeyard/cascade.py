"""Self-consistency cascades: a decision option, not a selection algorithm.

    decisions:
      - name: cheap-first
        algorithm_options:
          cascade: {models: [cheap, mid, large], probes: 2, agreement: 1.0}

Each model but the last is asked `probes` times (concurrently; with `use_n: true` once with
`n=probes`, topped up if the backend returns fewer choices) at the request's temperature, or
`temperature` (0.7) when it sets none. The answers are normalised (stripped, lower-cased; a
multiple-choice letter A-E stands for the whole answer) and, when the majority answer's share
of the probes is at least `agreement`, that answer is returned. Otherwise the next model is
tried; the last one answers without probes (failing over to the plan's other models).
A probe that fails counts as a dissenting vote. Usage is the sum over every call made.

Streaming: a cascade must decide before it can stream. With `stream: true` the probes run
non-streamed, then the chosen completion is replayed as OpenAI SSE chunks through the normal
stream relay, so the time to first byte is the cascade's decision time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard.decisions import Decision
from routeyard.planner import RoutePlan
from routeyard.pool import Pool, PooledModel, PoolExhausted
from routeyard.pool.executor import Served
from routeyard.pool.providers.base import ChatStream
from routeyard.router import ChatResult, Router
from routeyard.streaming import StreamRelay
from routeyard.tokens import message_text
from routeyard.upstream_errors import exhausted_to_error

log = logging.getLogger("routeyard.cascade")

PATH_HEADER = "x-routeyard-cascade"


@dataclass(frozen=True, slots=True)
class CascadeOptions:
    models: tuple[str, ...]
    probes: int = 2
    agreement: float = 1.0
    temperature: float = 0.7
    use_n: bool = False

    @classmethod
    def parse(cls, raw: Any) -> CascadeOptions:
        if not isinstance(raw, dict):
            raise ValueError("cascade must be a mapping with `models`")
        unknown = set(raw) - {"models", "probes", "agreement", "temperature", "use_n"}
        if unknown:
            raise ValueError(f"cascade: unknown option(s) {', '.join(sorted(unknown))}")
        models = raw.get("models")
        if not isinstance(models, list) or not models or \
                not all(isinstance(m, str) for m in models):
            raise ValueError("cascade.models must be a non-empty list of model names")
        probes = raw.get("probes", 2)
        agreement = raw.get("agreement", 1.0)
        if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
            raise ValueError("cascade.probes must be an integer >= 1")
        if isinstance(agreement, bool) or not isinstance(agreement, int | float) \
                or not 0 < agreement <= 1:
            raise ValueError("cascade.agreement must be in (0, 1]")
        return cls(tuple(models), probes, float(agreement),
                   float(raw.get("temperature", 0.7)), bool(raw.get("use_n", False)))


# -- answers and votes ---------------------------------------------------------------------

_LETTER = re.compile(r"^(?:answer\s*(?:is)?\s*:?\s*)?[\[\(\"'\s]*([a-e])\s*(?:[.):\]\"',]|$)")


def normalise_answer(text: str) -> str:
    """Stripped and lower-cased; a multiple-choice answer ("B", "(b)", "['B']") is its letter."""
    cleaned = text.replace("\\n", "\n").strip().lower()
    match = _LETTER.match(cleaned)
    return match.group(1) if match else cleaned


def vote(answers: list[str | None], voters: int) -> tuple[int | None, float]:
    """The index of the first majority answer and its share of `voters` (None votes dissent)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    top, n = counts.most_common(1)[0]
    return answers.index(top), n / max(voters, 1)


# -- the live cascade ------------------------------------------------------------------------

def build_cascades(pool: Pool, decisions: Iterable[Decision]) -> dict[str, CascadeOptions]:
    """The cascade of each decision that has one (`algorithm_options.cascade`), checked once
    when a Router is built: a bad one is a config error, reported with its decision."""
    table: dict[str, CascadeOptions] = {}
    for decision in decisions:
        raw = decision.options.get("cascade")
        if raw is None:
            continue
        try:
            options = CascadeOptions.parse(raw)
        except ValueError as error:
            raise ValueError(f"decision '{decision.name}': {error}") from None
        missing = [m for m in options.models if m not in pool.models]
        if missing:
            raise ValueError(f"decision '{decision.name}': cascade.models: unknown model(s) "
                             f"{', '.join(missing)}")
        table[decision.name] = options
    return table


@dataclass(slots=True)
class CascadeRun:
    served: Served  # the call whose answer is returned
    response: dict[str, Any]  # that answer, with the summed usage
    path: list[str]
    usage: dict[str, int]
    calls: int = 0
    cost_usd: float = 0.0  # every call, each at its own model's price


@dataclass(slots=True)
class _Tally:
    prompt: int = 0
    completion: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    path: list[str] = field(default_factory=list)

    def add(self, router: Router, plan: RoutePlan, served: Served) -> None:
        result = served.result
        usage = result.get("usage")
        if not isinstance(usage, dict) or "completion_tokens" not in usage:
            usage = router.compute_usage(plan, _text(result))
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        self.prompt += prompt
        self.completion += completion
        self.cost_usd += served.model.config.pricing.cost(prompt, completion)
        self.calls += 1

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "total_tokens": self.prompt + self.completion}


async def run_cascade(router: Router, options: CascadeOptions, plan: RoutePlan,
                      body: dict[str, Any]) -> CascadeRun:
    """Probe, vote, escalate; raises PoolExhausted only when the final model fails too."""
    tokens = plan.context.prompt_tokens
    models = [router.pool.models[n] for n in options.models]
    models = [m for m in models if m.fits(tokens)] or list(plan.models)
    base = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    tally = _Tally()
    for model in models[:-1]:
        tally.path.append(model.name)
        probes = await _probe(router, model, base, options)
        for served in {id(s.result): s for s, _ in probes}.values():
            tally.add(router, plan, served)
        answers = [normalise_answer(_text(choice)) for _, choice in probes]
        winner, share = vote(list(answers), options.probes)
        if winner is not None and share >= options.agreement:
            served, choice = probes[winner]
            return _done(served, choice, tally)
    rest = [m for m in plan.models if m not in models]  # failover for the final answer
    served = await router.pool.executor.complete([models[-1], *rest], base)
    tally.path.append(served.model.name)
    tally.add(router, plan, served)
    return _done(served, served.result, tally)


def _done(served: Served, response: dict[str, Any], tally: _Tally) -> CascadeRun:
    usage = tally.usage()
    return CascadeRun(served, {**response, "usage": usage}, tally.path, usage, tally.calls,
                      tally.cost_usd)


async def _probe(router: Router, model: PooledModel, base: dict[str, Any],
                 options: CascadeOptions) -> list[tuple[Served, dict[str, Any]]]:
    """(call, single-choice completion) per answer obtained; failed calls are left out."""
    body = {k: v for k, v in base.items() if k != "n"}
    body.setdefault("temperature", options.temperature)
    executor = router.pool.executor
    answers: list[tuple[Served, dict[str, Any]]] = []
    if options.use_n and options.probes > 1:
        try:
            served = await executor.complete([model], {**body, "n": options.probes})
            answers += [(served, choice) for choice in _split_choices(served.result)]
        except PoolExhausted:
            pass
    missing = options.probes - len(answers)
    calls = await asyncio.gather(*(executor.complete([model], body) for _ in range(missing)),
                                 return_exceptions=True)
    for served in calls:
        if isinstance(served, Served):
            answers.append((served, _split_choices(served.result)[0]))
        elif not isinstance(served, PoolExhausted):
            raise served
    return answers[:options.probes]


def _split_choices(result: dict[str, Any]) -> list[dict[str, Any]]:
    choices = result.get("choices") or [{}]
    return [{**result, "choices": [{**c, "index": 0}]} for c in choices]


def _text(result: dict[str, Any]) -> str:
    choices = result.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return message_text(message) if isinstance(message, dict) else ""


# -- router hooks ----------------------------------------------------------------------------

@dataclass(slots=True)
class CascadeResult(ChatResult):
    path: list[str] = field(default_factory=list)

    @property
    def path_header(self) -> str:
        return ">".join(self.path)


class CascadeRelay(StreamRelay):
    """The stream relay, carrying the path the cascade took."""

    path: list[str]

    @property
    def path_header(self) -> str:
        return ">".join(self.path)


async def complete_cascade(router: Router, options: CascadeOptions, plan: RoutePlan,
                           body: dict[str, Any]) -> CascadeResult:
    run = await _run_or_fail(router, options, plan, body, stream=False)
    router.finish(plan, run.served, run.usage["prompt_tokens"], run.usage["completion_tokens"],
                  status="ok", stream=False, cost_usd=run.cost_usd)
    return CascadeResult(plan, run.served, run.response, run.path)


async def open_cascade_stream(router: Router, options: CascadeOptions, plan: RoutePlan,
                              body: dict[str, Any]) -> CascadeRelay:
    run = await _run_or_fail(router, options, plan, body, stream=True)
    served = run.served
    served.endpoint.outstanding += 1  # the relay releases it when the replay ends
    replay = Served(served.model, served.endpoint, ReplayStream(completion_chunks(run.response)),
                    served.attempts, served.upstream_s)
    relay = CascadeRelay(router, plan, replay, body)
    relay.path = run.path
    relay.cost_usd = run.cost_usd
    return relay


async def _run_or_fail(router: Router, options: CascadeOptions, plan: RoutePlan,
                       body: dict[str, Any], *, stream: bool) -> CascadeRun:
    try:
        return await run_cascade(router, options, plan, body)
    except PoolExhausted as exhausted:
        router.finish(plan, None, 0, 0, status="upstream_failed", stream=stream)
        raise exhausted_to_error(exhausted) from None


# -- replaying a completion as a stream --------------------------------------------------------

class ReplayStream(ChatStream):
    """A ChatStream over pre-built chunk payloads."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        return None


_PIECES = re.compile(r"\S+\s*|\s+")


def completion_chunks(response: dict[str, Any]) -> list[bytes]:
    """An OpenAI chat.completion as the chat.completion.chunk payloads that stream it."""
    base: dict[str, Any] = {"id": response.get("id") or "chatcmpl-cascade",
                            "object": "chat.completion.chunk",
                            "created": response.get("created") or int(time.time()),
                            "model": response.get("model") or ""}
    chunks: list[dict[str, Any]] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        chunks.append({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}]})

    for position, choice in enumerate(response.get("choices") or []):
        index = int(choice.get("index", position))
        message = choice.get("message") or {}
        chunk(index, {"role": message.get("role") or "assistant", "content": ""})
        content = message.get("content")
        for piece in _PIECES.findall(content) if isinstance(content, str) else ():
            chunk(index, {"content": piece})
        calls = message.get("tool_calls") or []
        if calls:
            chunk(index, {"tool_calls": [{**call, "index": i} for i, call in enumerate(calls)]})
        chunk(index, {}, choice.get("finish_reason") or "stop")
    if response.get("usage"):
        chunks.append({**base, "choices": [], "usage": response["usage"]})
    return [orjson.dumps(c) for c in chunks]
