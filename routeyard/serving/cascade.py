"""Self-consistency cascades: a handler that asks several models in turn.

    decisions:
      - name: cheap-first
        cascade: {models: [cheap, mid, large], probes: 2, agreement: 1.0}

(`algorithm_options.cascade`, where earlier versions read it, is still read.)

Each model but the last is asked `probes` times (concurrently; with `use_n: true` once with
`n=probes`, topped up if the backend returns fewer choices) at the request's temperature, or
`temperature` (0.7) when it sets none. The answers are normalised (stripped, lower-cased; a
multiple-choice letter A-E stands for the whole answer) and, when the majority answer's share
of the probes is at least `agreement`, that answer is returned. Otherwise the next model is
tried; the last one answers without probes (failing over to the plan's other models).
A probe that fails counts as a dissenting vote. Usage is the sum over every call made.

Streaming: a cascade must decide before it can stream. With `stream: true` the probes run
non-streamed, then the chosen completion is replayed as OpenAI SSE chunks through the one
stream relay, so the time to first byte is the cascade's decision time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from routeyard.answers import normalise_answer, vote
from routeyard.decisions import Decision
from routeyard.pool import Pool, PooledModel, PoolExhausted
from routeyard.pool.executor import Executor, Served
from routeyard.serving.accounting import Accountant
from routeyard.serving.capabilities import Needs
from routeyard.serving.handler import Answer, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, ReplayStream, StreamHooks, StreamRelay
from routeyard.serving.request import wants_usage
from routeyard.wire import completion_chunks, completion_text, split_choices, usage

log = logging.getLogger("routeyard.cascade")

PATH_HEADER = "x-routeyard-cascade"  # the models asked, in order: "cheap>large"


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


def cascade_options(pool: Pool, decisions: Iterable[Decision]) -> dict[str, CascadeOptions]:
    """The cascade of each decision that has one, checked once when a Router is built: a bad
    one is a config error, reported with its decision."""
    table: dict[str, CascadeOptions] = {}
    for decision in decisions:
        if decision.cascade is None:
            continue
        try:
            options = CascadeOptions.parse(decision.cascade)
        except ValueError as error:
            raise ValueError(f"decision '{decision.name}': {error}") from None
        missing = [m for m in options.models if m not in pool.models]
        if missing:
            raise ValueError(f"decision '{decision.name}': cascade.models: unknown model(s) "
                             f"{', '.join(missing)}")
        table[decision.name] = options
    return table


@dataclass(slots=True)
class _Tally:
    """Every call a cascade made: tokens and dollars summed, the path of models asked."""

    prompt: int = 0
    completion: int = 0
    cost_usd: float = 0.0
    path: list[str] = field(default_factory=list)

    def add(self, accountant: Accountant, plan: RoutePlan, served: Served) -> None:
        spent = accountant.usage(plan, served.result)
        prompt = int(spent.get("prompt_tokens") or 0)
        completion = int(spent.get("completion_tokens") or 0)
        self.prompt += prompt
        self.completion += completion
        self.cost_usd += served.model.config.pricing.cost(prompt, completion)

    def answer(self, plan: RoutePlan, served: Served, response: dict[str, Any]) -> Answer:
        summed = usage(self.prompt, self.completion)
        return Answer(plan, served, {**response, "usage": summed}, summed,
                      cost_usd=self.cost_usd, headers={PATH_HEADER: ">".join(self.path)})


class CascadeHandler(Handler):
    def __init__(self, options: CascadeOptions, pool: Pool, accountant: Accountant) -> None:
        self.options = options
        self.models = [pool.models[n] for n in options.models]
        self.executor: Executor = pool.executor
        self.accountant = accountant

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        """Probe, vote, escalate; raises PoolExhausted only when the final model fails too."""
        options = self.options
        tokens = plan.context.prompt_tokens
        needs = Needs.of(body)  # the cascade's own models are held to what the request needs
        models = [m for m in self.models if not needs.missing(m, tokens)] or list(plan.models)
        base = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        tally = _Tally()
        for model in models[:-1]:
            tally.path.append(model.name)
            probes = await self._probe(model, base)
            for served in {id(s.result): s for s, _ in probes}.values():
                tally.add(self.accountant, plan, served)
            answers = [normalise_answer(completion_text(choice)) for _, choice in probes]
            winner, share = vote(list(answers), options.probes)
            if winner is not None and share >= options.agreement:
                served, choice = probes[winner]
                return tally.answer(plan, served, choice)
        rest = [m for m in plan.models if m not in models]  # failover for the final answer
        served = await self.executor.complete([models[-1], *rest], base)
        tally.path.append(served.model.name)
        tally.add(self.accountant, plan, served)
        return tally.answer(plan, served, served.result)

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        """The cascade runs whole, then its answer is replayed as a stream."""
        answer = await self.complete(plan, body)
        return StreamRelay(plan, ReplayStream(completion_chunks(answer.response)),
                           self.accountant, served=answer.served,
                           client_wants_usage=wants_usage(body), hooks=hooks,
                           cost_usd=answer.cost_usd, headers=answer.headers)

    async def _probe(self, model: PooledModel, base: dict[str, Any]
                     ) -> list[tuple[Served, dict[str, Any]]]:
        """(call, single-choice completion) per answer obtained; failed calls are left out."""
        options = self.options
        body = {k: v for k, v in base.items() if k != "n"}
        body.setdefault("temperature", options.temperature)
        answers: list[tuple[Served, dict[str, Any]]] = []
        if options.use_n and options.probes > 1:
            try:
                served = await self.executor.complete([model], {**body, "n": options.probes})
                answers += [(served, choice) for choice in split_choices(served.result)]
            except PoolExhausted:
                pass
        missing = options.probes - len(answers)
        calls = await asyncio.gather(
            *(self.executor.complete([model], body) for _ in range(missing)),
            return_exceptions=True)
        for served in calls:
            if isinstance(served, Served):
                answers.append((served, split_choices(served.result)[0]))
            elif not isinstance(served, PoolExhausted):
                raise served
        return answers[:options.probes]
