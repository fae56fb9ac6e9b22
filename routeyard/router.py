"""The Router, the composition root: it builds every part from the config, wires each part's
dependencies in at construction, and builds each decision's handler stack. Nothing below it
imports it.

    async with Router.from_file("routeyard.yaml") as router:
        reply = await router.chat({"model": "auto", "messages": [...]})
        plan = await router.route("Prove that sqrt(2) is irrational")

A request enters it twice: `plan` (signals, decision, selection) and `complete` or
`open_stream`, which hand the plan to its decision's stack:

    Accounted(PluginChain(plugins, CascadeHandler | DirectHandler))
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from routeyard import tracing
from routeyard.catalog import load_config
from routeyard.config import RouteyardConfig
from routeyard.decisions import Decision
from routeyard.gateway import Gateway
from routeyard.gateway.sessions import SessionTracker
from routeyard.metrics import Metrics
from routeyard.plugins import PluginBuild
from routeyard.pool import Pool
from routeyard.pool.latency import LatencyTracker
from routeyard.selection import AlgorithmBuild, OnlineAlgorithm
from routeyard.selection.exploration import spend_recorder
from routeyard.selection.ledger import BudgetLedger
from routeyard.serving.accounting import Accountant
from routeyard.serving.affinity import EndpointAffinity
from routeyard.serving.cascade import CascadeHandler, cascade_options
from routeyard.serving.collaborate import collaborate_handlers
from routeyard.serving.continuation import any_can_continue
from routeyard.serving.direct import DirectHandler
from routeyard.serving.embeddings import Embeddings
from routeyard.serving.ensemble import ensemble_handlers
from routeyard.serving.feedback import FeedbackService, parse_feedback
from routeyard.serving.handler import Accounted, Answer, Handler
from routeyard.serving.implicit import ImplicitFeedback
from routeyard.serving.planner import DIRECT, Planner, RoutePlan
from routeyard.serving.plugin_chain import Chain, PluginChain, build_plugins
from routeyard.serving.relay import StreamRelay
from routeyard.serving.request import validate_chat_request
from routeyard.serving.shadow import ShadowMirror
from routeyard.state import Store, StoreUnavailable, make_store
from routeyard.tasks import TaskSet
from routeyard.tokens import load_tokenizer
from routeyard.wire import DONE

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("routeyard")

LEARNER_REFRESH_S = 5.0  # how often learned state is reloaded from the (shared) store


class Router:
    def __init__(self, config: RouteyardConfig, *, store: Store | None = None,
                 metrics: Metrics | None = None, tracker: LatencyTracker | None = None,
                 base_dir: Path | None = None,
                 span_exporter: SpanExporter | None = None) -> None:
        """`store`, `metrics` and `tracker` may be shared with the Router this one replaces
        on reload. `span_exporter` replaces the OTLP exporter of `tracing:` (a test's)."""
        self.config = config
        self.tracing = _tracing_from_config(config, span_exporter)
        self.metrics = metrics or Metrics()
        self.tracker = tracker if tracker is not None else LatencyTracker()
        self.store = store if store is not None else _store_from_config(config)
        self.background = TaskSet()  # writes off the request path; awaited on close
        self.gateway = Gateway(config, self.store, self.metrics)  # keys, limits, budgets
        self.budget_ledger = BudgetLedger(self.store, spawn=self.background.spawn)
        self.pool = Pool(config, self.metrics, self.tracker)
        # The entropy is random per Router: replicas sharing learned state must not share
        # random draws.
        self.planner = Planner(config, self.pool, AlgorithmBuild(
            base_dir, entropy=secrets.randbits(64), ledger=self.budget_ledger,
            tracker=self.tracker), store=self.store)
        self.aliases = self.planner.aliases
        self.feedback = FeedbackService(self.store, {
            name: algorithm for name, algorithm in self.planner.algorithms.items()
            if isinstance(algorithm, OnlineAlgorithm)})
        self.accountant = Accountant(self.metrics, self.store, self.feedback,
                                     self.budget_ledger, self.background.spawn,
                                     log_content=config.state.log_content)
        if self.planner.explorers:  # explored spend counts against each decision's daily cap
            self.accountant.observe(spend_recorder(self.budget_ledger))
        implicit = config.feedback.implicit
        if ImplicitFeedback.wanted(implicit):  # off: nothing built, no embedder loaded
            self.accountant.observe(ImplicitFeedback.build(
                implicit, config.signals.embedding_model.model, self.feedback, self.store,
                self.metrics, self.background.spawn).observe)
        # Agent sessions' state and budgets (off: nothing built, nothing read).
        self.sessions = SessionTracker(config.sessions, self.store, self.background.spawn) \
            if SessionTracker.wanted(config.sessions) else None
        if self.sessions is not None:
            self.accountant.observe(self.sessions.observe)
        decisions = self.planner.decisions
        self.plugins: dict[str, Chain] = build_plugins(decisions, PluginBuild(
            self.store, reasoning_models=frozenset(
                m.name for m in config.models if m.capabilities.reasoning)))
        self.stacks: dict[str, Handler] = self._stacks(decisions)
        # Session affinity (off: nothing built): each stack prefers the session's endpoint.
        self.affinity = EndpointAffinity.build(config.sessions, self.store,
                                               self.background.spawn)
        if self.affinity is not None:
            self.stacks = {name: self.affinity.wrap(stack) for name, stack in self.stacks.items()}
            self.accountant.observe(self.affinity.observe)
        # Shadow traffic: mirrors sampled requests once they are answered; with its own draws,
        # and its own tasks, which closing cancels (a hanging shadow never holds up a reload).
        self.shadow_tasks = TaskSet()
        self.shadow = ShadowMirror.build(decisions, self.pool, self.store, self.plugins,
                                         self.shadow_tasks.spawn,
                                         rng=random.Random(secrets.randbits(64)),
                                         keep_answers=config.state.log_content,
                                         metrics=self.metrics)
        if self.shadow is not None:
            self.accountant.observe(self.shadow, wants_text=True)
        self.embeddings = GatedEmbeddings(self.planner, self.pool, self.accountant,
                                          self.gateway)
        self.in_flight = 0  # requests being served; a replaced Router closes at zero
        # On reload the store passes to the new Router, which then starts and closes it.
        self.owns_store = True
        self._refresher: asyncio.Task[None] | None = None
        self._started = False

    def _stacks(self, decisions: list[Decision]) -> dict[str, Handler]:
        """Each decision's handler stack, and the one for requests that name a model."""
        direct = DirectHandler(self.pool.executor, self.accountant)
        cascades = cascade_options(self.pool, decisions)
        ensembles = ensemble_handlers(self.pool, decisions, self.accountant,
                                      self.config.signals.embedding_model.model)
        collaborations = collaborate_handlers(self.pool, decisions, self.accountant, direct)
        stacks: dict[str, Handler] = {DIRECT: Accounted(direct, self.accountant)}
        for decision in decisions:
            options = cascades.get(decision.name)
            handler: Handler = direct if options is None else CascadeHandler(
                options, self.pool, self.accountant)
            handler = ensembles.get(decision.name, handler)
            handler = collaborations.get(decision.name, handler)
            if decision.name in self.plugins:
                handler = PluginChain(self.plugins[decision.name], handler, self.accountant)
            stacks[decision.name] = Accounted(handler, self.accountant)
        return stacks

    @classmethod
    def from_file(cls, path: str | Path, *, store: Store | None = None) -> Router:
        return cls(load_config(path), store=store, base_dir=Path(path).resolve().parent)

    async def start(self) -> None:
        if not self._started:
            if self.tracing is not None:
                tracing.activate(self.tracing)
            await self.pool.start()
            await self.store.start()  # idempotent: a store shared on reload is already running
            await self.gateway.start()
            await self.planner.engine.signals.warm_up()
            if any_can_continue(self.pool.models.values()):
                self.background.spawn(load_tokenizer())  # in a thread; the loop serves on
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
        await self.shadow_tasks.cancel()  # mirrors still under way are dropped, not awaited
        await self.background.drain()  # context writes and ledger flushes still under way
        if self._started:
            await self.gateway.close()  # settlements still queued
            await self.pool.close()
            if self.owns_store:
                await self.store.close()
            self._started = False
        if self.tracing is not None:
            tracing.retire(self.tracing)
            # Flushing blocks on the exporter: off the loop, which serves the new Router.
            await asyncio.to_thread(self.tracing.shutdown)

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- routing -----------------------------------------------------------------------------

    async def plan(self, body: dict[str, Any], headers: dict[str, str] | None = None, *,
                   explain: bool = False, prefer: str | None = None) -> RoutePlan:
        """Decide where a validated request goes, without calling any backend. `prefer`: the
        model a conversation is on, kept while its decision still lists it. The caller's key
        (from `headers`) must allow the model asked for and the decision that routes it."""
        caller = await self.gateway.caller(headers, body["model"])
        session, session_steer = None, None
        if self.sessions is not None:  # its id (400 if bad), its budgets (429 if spent)
            session, session_steer = await self.sessions.begin(body, headers or {}, caller)
        plan = await self.planner.plan(body, headers, explain=explain, prefer=prefer,
                                       steer=self.gateway.steer(caller),
                                       session_steer=session_steer)
        caller.check_decision(plan.decision)
        plan.caller = caller
        plan.session = session
        return plan

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

    async def complete(self, body: dict[str, Any], plan: RoutePlan | None = None) -> Answer:
        """A whole answer, through the plan's decision stack."""
        plan = plan or await self.plan(body)
        await self.gateway.admit(plan)
        try:
            return await self.stacks[plan.decision].complete(plan, body)
        finally:
            self.gateway.release(plan)  # a no-op once the accounting settled it

    async def open_stream(self, body: dict[str, Any], plan: RoutePlan | None = None
                          ) -> StreamRelay:
        """Open a stream with failover; the relay's frames() must be consumed to the end."""
        plan = plan or await self.plan(body)
        await self.gateway.admit(plan)
        try:
            return await self.stacks[plan.decision].open_stream(plan, body)
        except BaseException:
            self.gateway.release(plan)  # the stream settles itself when it ends
            raise

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Library call: a validated non-streaming chat completion (an OpenAI dict)."""
        return (await self.complete(validate_chat_request({**body, "stream": False}))).response

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Library call: stream chat.completion.chunk dicts (an `error` dict if it breaks)."""
        relay = await self.open_stream(validate_chat_request({**body, "stream": True}))
        async for frame in relay.frames():
            if frame != DONE:
                yield orjson.loads(frame[6:])

    async def embed(self, body: Any, headers: dict[str, str] | None = None) -> Answer:
        """An OpenAI embeddings request over the pool's embedding models (an `Answer` whose
        `.response` is the OpenAI `list` of embeddings)."""
        return await self.embeddings.embed(body, headers)

    async def submit_feedback(self, data: Any) -> dict[str, Any]:
        result = await self.feedback.submit(parse_feedback(data))
        self.metrics.feedback.labels(result["decision"] or "none").inc()
        return result

    async def _refresh_learners(self) -> None:
        """Pick up what other replicas learned, every few seconds."""
        while True:
            await asyncio.sleep(LEARNER_REFRESH_S)
            try:
                await self.feedback.load_states()
            except StoreUnavailable:
                continue


class GatedEmbeddings(Embeddings):
    """Embeddings behind the gateway: the caller's limits and spend, as for chat."""

    def __init__(self, planner: Planner, pool: Pool, accountant: Accountant,
                 gateway: Gateway) -> None:
        super().__init__(planner, pool, accountant)
        self.gateway = gateway

    async def run(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        await self.gateway.admit(plan)
        try:
            return await super().run(plan, body)
        finally:
            self.gateway.release(plan)


def _tracing_from_config(config: RouteyardConfig, exporter: SpanExporter | None
                         ) -> tracing.Tracing | None:
    settings = config.tracing
    if not settings.enabled:
        return None
    return tracing.Tracing.build(
        endpoint=settings.endpoint,
        headers={k: v.get_secret_value() for k, v in settings.headers.items()},
        sample_ratio=settings.sample_ratio, service_name=settings.service_name,
        resource_attributes=settings.resource_attributes,
        timeout_s=settings.export_timeout_s, exporter=exporter)


def _store_from_config(config: RouteyardConfig) -> Store:
    state = config.state
    path = state.path or str(_default_state_dir() / "routeyard.db")
    postgres = state.postgres_url.get_secret_value() if state.postgres_url else None
    return make_store(state.backend, path=path, redis_url=state.redis_url,
                      postgres_url=postgres, key_prefix=state.key_prefix,
                      max_records=state.max_records, retention_days=state.retention_days)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "routeyard"
