"""The Router: config → decision → selection → pool, usable in-process or behind HTTP.

    async with Router.from_file("routeyard.yaml") as router:
        reply = await router.chat({"model": "auto", "messages": [...]})
        plan = await router.route("Prove that sqrt(2) is irrational")
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from routeyard.budget import build_ledger
from routeyard.chat_request import validate_chat_request
from routeyard.config import RouteyardConfig, load_config
from routeyard.errors import RouteyardError
from routeyard.feedback import FeedbackService, parse_feedback
from routeyard.metrics import Metrics
from routeyard.planner import Planner, RoutePlan
from routeyard.pool import Pool, PoolExhausted
from routeyard.pool.executor import Served
from routeyard.selection import OnlineAlgorithm
from routeyard.state import DecisionRecord, Store, StoreUnavailable, make_store
from routeyard.streaming import DONE, StreamRelay
from routeyard.tokens import count_text_tokens, message_text
from routeyard.upstream_errors import exhausted_to_error

log = logging.getLogger("routeyard")

LEARNER_REFRESH_S = 5.0  # how often learned state is reloaded from the (shared) store


@dataclass(slots=True)
class ChatResult:
    plan: RoutePlan
    served: Served | None  # None: a plugin answered without a backend
    response: dict[str, Any]


class Router:
    def __init__(self, config: RouteyardConfig, *, store: Store | None = None,
                 metrics: Metrics | None = None, base_dir: Path | None = None) -> None:
        """`store` and `metrics` may be shared with the Router this one replaces on reload."""
        self.config = config
        self.metrics = metrics or Metrics()
        self.pool = Pool(config, self.metrics)
        self.planner = Planner(config, self.pool, base_dir)
        self.aliases = self.planner.aliases
        self.store = store if store is not None else _store_from_config(config)
        self.feedback = FeedbackService(self.store, {
            name: algorithm for name, algorithm in self.planner.algorithms.items()
            if isinstance(algorithm, OnlineAlgorithm)})
        self._background: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self.cascades = _cascades(self.pool, self.planner)
        self.plugins = _plugins(self.planner)  # decision name → its plugins ({} when none)
        self.budget_ledger = build_ledger(self.store, self.planner.algorithms.values(),
                                          self._spawn)
        self.in_flight = 0  # requests being served; a replaced Router closes at zero
        # On reload the store passes to the new Router, which then starts and closes it.
        self.owns_store = True
        self._started = False

    @classmethod
    def from_file(cls, path: str | Path, *, store: Store | None = None) -> Router:
        return cls(load_config(path), store=store, base_dir=Path(path).resolve().parent)

    async def start(self) -> None:
        if not self._started:
            await self.pool.start()
            await self.store.start()  # idempotent: a store shared on reload is already running
            await self.planner.engine.signals.warm_up()
            try:
                await self.feedback.load_states()
            except StoreUnavailable:
                log.warning("learned online state could not be loaded: the store is down")
            if self.feedback.learners:
                self._refresher = asyncio.get_running_loop().create_task(
                    self._refresh_learners())
            self._started = True

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._background:  # context writes still under way
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._started:
            await self.pool.close()
            if self.owns_store:
                await self.store.close()
            self._started = False

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- routing -----------------------------------------------------------------------------

    async def plan(self, body: dict[str, Any], headers: dict[str, str] | None = None, *,
                   explain: bool = False) -> RoutePlan:
        """Decide where a validated request goes, without calling any backend."""
        return await self.planner.plan(body, headers, explain=explain)

    async def route(self, request: str | dict[str, Any],
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Dry run: every computed signal, every decision considered, the model and why."""
        body = request if isinstance(request, dict) else {
            "model": next(iter(sorted(self.aliases)), "auto"),
            "messages": [{"role": "user", "content": request}],
        }
        body = validate_chat_request(body)
        plan = await self.plan(body, headers, explain=True)
        return {
            "signals": plan.signals.explain() if plan.signals else {},
            "matched_signals": plan.matched_signals(),
            "prompt_tokens": plan.context.prompt_tokens,
            "decision": plan.decision,
            "model": plan.model,
            "fallback": [m.name for m in plan.models[1:]],
            "reason": plan.reason,
            **plan.explanation,
        }

    # -- calling -----------------------------------------------------------------------------

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Library call: a validated non-streaming chat completion (an OpenAI dict)."""
        return (await self.complete(validate_chat_request({**body, "stream": False}))).response

    async def complete(self, body: dict[str, Any], plan: RoutePlan | None = None) -> ChatResult:
        plan = plan or await self.plan(body)
        if self.plugins and (chain := self.plugins.get(plan.decision)):
            from routeyard.plugins.runner import complete_with_plugins

            return await complete_with_plugins(self, chain, plan, body)
        return await self.complete_plain(body, plan)

    async def complete_plain(self, body: dict[str, Any], plan: RoutePlan) -> ChatResult:
        """`complete` without the decision's plugins (they call it with the edited body)."""
        if (cascade := self.cascades.get(plan.decision)) is not None:
            from routeyard.cascade import complete_cascade  # only cascading configs load it

            return await complete_cascade(self, cascade, plan, body)
        try:
            served = await self.pool.executor.complete(plan.models, plan.request_body(body))
        except PoolExhausted as exhausted:
            self.finish(plan, None, 0, 0, status="upstream_failed", stream=False)
            raise exhausted_to_error(exhausted) from None
        response: dict[str, Any] = served.result
        usage = response.get("usage")
        if not isinstance(usage, dict) or "completion_tokens" not in usage:
            usage = self.compute_usage(plan, _completion_text(response))
            response["usage"] = usage
        self.finish(plan, served, usage.get("prompt_tokens", 0),
                    usage.get("completion_tokens", 0), status="ok", stream=False)
        return ChatResult(plan, served, response)

    async def open_stream(self, body: dict[str, Any], plan: RoutePlan | None = None) -> StreamRelay:
        """Open a stream with failover; the relay's frames() must be consumed to the end."""
        plan = plan or await self.plan(body)
        if self.plugins and (chain := self.plugins.get(plan.decision)):
            from routeyard.plugins.runner import open_stream_with_plugins

            return await open_stream_with_plugins(self, chain, plan, body)
        return await self.open_stream_plain(body, plan)

    async def open_stream_plain(self, body: dict[str, Any], plan: RoutePlan) -> StreamRelay:
        """`open_stream` without the decision's plugins."""
        if (cascade := self.cascades.get(plan.decision)) is not None:
            # Probes run first; the chosen answer is then replayed as a stream.
            from routeyard.cascade import open_cascade_stream

            return await open_cascade_stream(self, cascade, plan, body)
        try:
            served = await self.pool.executor.open_stream(plan.models, plan.request_body(body))
        except PoolExhausted as exhausted:
            self.finish(plan, None, 0, 0, status="upstream_failed", stream=True)
            raise exhausted_to_error(exhausted) from None
        return StreamRelay(self, plan, served, body)

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Library call: stream chat.completion.chunk dicts (an `error` dict if it breaks)."""
        relay = await self.open_stream(validate_chat_request({**body, "stream": True}))
        async for frame in relay.frames():
            if frame != DONE:
                yield orjson.loads(frame[6:])

    def compute_usage(self, plan: RoutePlan, completion_text: str) -> dict[str, int]:
        prompt = plan.context.prompt_tokens
        completion = count_text_tokens(completion_text)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def finish(self, plan: RoutePlan, served: Served | None, prompt_tokens: int,
               completion_tokens: int, *, status: str, stream: bool,
               cost_usd: float | None = None) -> None:
        """Account for one finished request: metrics and the decision log. `cost_usd`
        overrides the price of the tokens at the answering model's rate (a cascade paid
        several models)."""
        latency = time.monotonic() - plan.started
        model = served.model if served else None
        cost = cost_usd if cost_usd is not None else (
            model.config.pricing.cost(prompt_tokens, completion_tokens) if model else 0.0)
        model_label = model.name if model else "none"
        self.feedback.served(plan, model.name if model else None)
        if model is not None and plan.decision in self.feedback.learners:
            self._remember_context(plan)
        m = self.metrics
        m.child(m.requests, model_label, plan.decision, status).inc()
        if model is not None:
            m.child(m.request_latency, model_label, "true" if stream else "false").observe(
                latency)
            m.child(m.tokens, model_label, "prompt").inc(prompt_tokens)
            m.child(m.tokens, model_label, "completion").inc(completion_tokens)
            m.child(m.cost, model_label).inc(cost)
        if self.budget_ledger is not None:  # count the cost against its budgets
            self.budget_ledger.record_request(plan.context, cost)
        self.store.record_decision(DecisionRecord(
            request_id=plan.request_id, time=time.time() - latency, decision=plan.decision,
            model=model_label if model else None,
            endpoint=served.endpoint.name if served else None,
            latency_ms=latency * 1000, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost_usd=cost, status=status, stream=stream,
        ))

    async def submit_feedback(self, data: Any) -> dict[str, Any]:
        result = await self.feedback.submit(parse_feedback(data))
        self.metrics.feedback.labels(result["decision"] or "none").inc()
        return result

    def _remember_context(self, plan: RoutePlan) -> None:
        """Keep the prompt's embedding for a contextual learner's later feedback, off the
        request path."""
        async def write() -> None:
            try:
                await self.feedback.remember_context(plan)
            except StoreUnavailable:
                log.warning("context for %s not kept: the store is down", plan.request_id)

        self._spawn(write())

    async def _refresh_learners(self) -> None:
        """Pick up what other replicas learned, every few seconds."""
        while True:
            await asyncio.sleep(LEARNER_REFRESH_S)
            try:
                await self.feedback.load_states()
            except StoreUnavailable:
                continue

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def record_rejection(self, error: RouteyardError) -> None:
        self.metrics.errors.labels(f"client_{error.code or error.status}").inc()


def _cascades(pool: Pool, planner: Planner) -> dict[str, Any]:
    """Decision name → its cascade options, for decisions with `algorithm_options.cascade`."""
    decisions = [c.decision for c in planner.engine.decisions()] + [planner.engine.default]
    if not any("cascade" in d.options for d in decisions):
        return {}
    from routeyard.cascade import build_cascades  # imports this module: only when used

    return build_cascades(pool, decisions)


def _plugins(planner: Planner) -> dict[str, Any]:
    """Decision name → its built plugins, for decisions with `plugins:`."""
    decisions = [c.decision for c in planner.engine.decisions()] + [planner.engine.default]
    if not any(d.plugins for d in decisions):
        return {}
    from routeyard.plugins.runner import build_chains  # imports this module: only when used

    return build_chains(decisions)


def _store_from_config(config: RouteyardConfig) -> Store:
    state = config.state
    path = state.path or str(_default_state_dir() / "routeyard.db")
    return make_store(state.backend, path=path, redis_url=state.redis_url,
                      key_prefix=state.key_prefix, max_records=state.max_records)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "routeyard"


def _completion_text(response: dict[str, Any]) -> str:
    texts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            texts.append(message_text(message))
    return " ".join(texts)
