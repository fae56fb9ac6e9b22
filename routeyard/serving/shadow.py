"""Shadow traffic: a sample of a decision's requests mirrored to a candidate model.

    decisions:
      - name: general
        candidates: [mid]
        shadow: {model: challenger, sample: 0.05, max_daily_usd: 5, scorer: judge, judge: large}

The mirror is an accounting observer (`Accountant.observe`): it hears of a request only after
its answer was sent and its decision record written, so it can never delay or change what the
client got. For a sampled request that a backend answered (`ok`; not a block, a cache hit or a
failure) it schedules, off the request path, one non-streamed call to the shadow model with the
request as the decision's plugins sent it, then scores the two answers (`shadow_scoring.py`)
and writes one record to the store's key-value space (`shadow:<time>:<request id>`, 30 days),
which `routeyard shadow-report` reads.

What the mirror spends (the shadow's answer and the judge's verdict) is real money: it counts
against the decision's `max_daily_usd` (per UTC day, per replica) and is kept in each record,
but never against the caller's key budget or the decision's spend ledger.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from routeyard.config.schema import ShadowConfig
from routeyard.decisions import Decision
from routeyard.metrics import Metrics
from routeyard.plugins.base import PluginContext
from routeyard.pool import Pool, PooledModel, PoolExhausted
from routeyard.pool.providers.base import upstream_header_edits
from routeyard.serving.accounting import Spawn
from routeyard.serving.planner import RoutePlan
from routeyard.serving.plugin_chain import Chain
from routeyard.serving.shadow_scoring import (
    JudgeFailed,
    Pair,
    Scorer,
    ScorerBuild,
    make_scorer,
    reference_of,
)
from routeyard.state import DecisionRecord, Store, StoreUnavailable
from routeyard.tokens import count_prompt_tokens, count_text_tokens
from routeyard.wire import completion_text

log = logging.getLogger("routeyard.shadow")

SHADOW_PREFIX = "shadow:"
RECORD_TTL_S = 30 * 86400.0
# Mirrors in flight per Router: past it a sampled request is not mirrored, so that a slow shadow
# model cannot pile up calls that hold the pool's connections.
MAX_IN_FLIGHT = 32
WARN_EVERY_S = 60.0  # one warning a minute per decision and kind, not one per request
# What a judge's verdict is assumed to cost before it is known (its prompt wraps both answers).
_JUDGE_OVERHEAD_TOKENS = 120
_JUDGE_REPLY_TOKENS = 8


def shadow_key(time_s: float, request_id: str) -> str:
    """Keys sort by the request's arrival (13 hex digits of microseconds), so that a report can
    page through them and skip what is older than its window."""
    return f"{SHADOW_PREFIX}{max(0, int(time_s * 1_000_000)):013x}:{request_id}"


class _Failed(Exception):
    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass(slots=True)
class DailySpend:
    """One decision's shadow spend on this replica today: settled, and reserved by mirrors in
    flight (their estimate), so that concurrent mirrors cannot all pass the cap at once."""

    day: int = -1
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    capped: bool = False  # the cap was hit today (warned once)


@dataclass(slots=True)
class DecisionShadow:
    decision: str
    config: ShadowConfig
    model: PooledModel
    judge: PooledModel | None
    scorer: Scorer
    chain: Chain
    spend: DailySpend


class ShadowMirror:
    """The accounting observer that mirrors sampled requests (see the module's doc)."""

    def __init__(self, decisions: Iterable[Decision], pool: Pool, store: Store,
                 chains: Mapping[str, Chain], spawn: Spawn, *, rng: random.Random,
                 keep_answers: bool = False, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        """`rng`: the Router's own draws (samples, the judge's answer order); `keep_answers`:
        keep both answers' text in the records (as `state.log_content` does for the log);
        `metrics`: the Router's, which count each mirror and its spend."""
        self.metrics = metrics
        self.pool = pool
        self.store = store
        self.spawn = spawn
        self.rng = rng
        self.keep_answers = keep_answers
        self.clock = clock
        self.in_flight = 0
        self._warned: dict[tuple[str, str], float] = {}
        self.shadows: dict[str, DecisionShadow] = {}
        for decision in decisions:
            if decision.shadow is not None:
                self.shadows[decision.name] = self._build(decision, decision.shadow,
                                                          chains.get(decision.name, ()))

    @classmethod
    def build(cls, decisions: Iterable[Decision], pool: Pool, store: Store,
              chains: Mapping[str, Chain], spawn: Spawn, *, rng: random.Random,
              keep_answers: bool = False, metrics: Metrics | None = None
              ) -> ShadowMirror | None:
        """The mirror, or None when no decision has `shadow` (nothing to observe)."""
        decisions = list(decisions)
        if not any(d.shadow is not None for d in decisions):
            return None
        return cls(decisions, pool, store, chains, spawn, rng=rng, keep_answers=keep_answers,
                   metrics=metrics)

    def _build(self, decision: Decision, config: ShadowConfig, chain: Chain) -> DecisionShadow:
        def model_named(name: str, part: str) -> PooledModel:
            model = self.pool.models.get(name)
            if model is None or model.config.kind != "chat":
                raise ValueError(f"decision '{decision.name}': shadow.{part}: unknown chat "
                                 f"model '{name}'")
            return model

        shadow_model = model_named(config.model, "model")
        judge = model_named(config.judge, "judge") if config.scorer == "judge" and \
            config.judge else None
        ask = (lambda body: self._ask_judge(judge, body, config.timeout_s)) \
            if judge is not None else None
        scorer = make_scorer(config.scorer, ScorerBuild(ask, self.rng))
        return DecisionShadow(decision.name, config, shadow_model, judge, scorer, chain,
                              DailySpend())

    # -- the observer (on the event loop, after the record is written) -------------------------

    def __call__(self, plan: RoutePlan, record: DecisionRecord, answer_text: str | None) -> None:
        shadow = self.shadows.get(plan.decision)
        if shadow is None or record.status != "ok" or not answer_text:
            return  # failed, blocked, a cache hit, or no text to compare (a tool call)
        if record.model == shadow.model.name:
            return  # the candidate answered itself: nothing to compare
        if self.rng.random() >= shadow.config.sample:
            return
        if self.in_flight >= MAX_IN_FLIGHT:
            self._warn(shadow.decision, "busy", "shadow traffic: %d mirrors in flight, request "
                       "not mirrored", MAX_IN_FLIGHT)
            return
        estimate = self._estimate(shadow, record)
        day = self._reserve(shadow, estimate)
        if day is None:
            return
        self.in_flight += 1
        self.spawn(self._mirror(shadow, plan, record, answer_text, estimate, day))

    def _body(self, shadow: DecisionShadow, plan: RoutePlan
              ) -> tuple[dict[str, Any], PluginContext] | None:
        """The request as the decision's plugins sent it upstream: their request hooks replayed
        (a redaction, a system prompt, headers). The semantic cache is a lookup, not an edit:
        it is left out, so that the shadow's answer is never cached."""
        body = {k: v for k, v in plan.context.body.items() if k != "stream_options"}
        body["stream"] = False
        ctx = PluginContext(plan.request_id, plan.decision, shadow.model.name, plan.context,
                            plan.signals, body, {}, False)
        for plugin in _editors(shadow.chain):
            if plugin.on_request(ctx) is not None:
                return None
        return ctx.body, ctx

    # -- the daily cap ---------------------------------------------------------------------------

    def _estimate(self, shadow: DecisionShadow, record: DecisionRecord) -> float:
        """What the mirror should cost: the served answer's tokens at the shadow's prices, and
        a judge's prompt that holds both answers."""
        estimate = shadow.model.config.pricing.cost(record.prompt_tokens,
                                                    record.completion_tokens)
        if shadow.judge is not None:
            estimate += shadow.judge.config.pricing.cost(
                record.prompt_tokens + 2 * record.completion_tokens + _JUDGE_OVERHEAD_TOKENS,
                _JUDGE_REPLY_TOKENS)
        return estimate

    def _today(self, spend: DailySpend) -> int:
        day = int(self.clock() // 86400)
        if spend.day != day:  # a new UTC day: the cap starts again
            spend.day, spend.spent_usd, spend.reserved_usd, spend.capped = day, 0.0, 0.0, False
        return day

    def _reserve(self, shadow: DecisionShadow, estimate: float) -> int | None:
        """Reserve `estimate` under the decision's cap: today's day number, or None (capped)."""
        spend = shadow.spend
        day = self._today(spend)
        cap = shadow.config.max_daily_usd
        if cap is not None and spend.spent_usd + spend.reserved_usd + estimate > cap:
            if not spend.capped:
                spend.capped = True
                log.warning("shadow traffic of decision '%s' stopped for today: max_daily_usd "
                            "%.4g reached (%.4g spent)", shadow.decision, cap, spend.spent_usd)
            return None
        spend.reserved_usd += estimate
        return day

    def _settle(self, shadow: DecisionShadow, estimate: float, day: int, spent: float) -> None:
        spend = shadow.spend
        if self._today(spend) == day:
            spend.reserved_usd = max(0.0, spend.reserved_usd - estimate)
        spend.spent_usd += spent

    def spent_today(self, decision: str) -> float:
        """The decision's settled shadow spend today on this replica (USD)."""
        shadow = self.shadows[decision]
        self._today(shadow.spend)
        return shadow.spend.spent_usd

    # -- the mirror, off the request path -----------------------------------------------------

    async def _mirror(self, shadow: DecisionShadow, plan: RoutePlan, record: DecisionRecord,
                      answer_text: str, estimate: float, day: int) -> None:
        """One mirror, a background task: the call, the verdict, the record. Everything runs
        here, the plugins' request hooks too, so nothing of it comes before the answer."""
        found: dict[str, Any] = {
            "request_id": record.request_id, "decision": record.decision, "time": record.time,
            "stream": record.stream, "served_model": record.model,
            "served_cost_usd": record.cost_usd, "served_latency_ms": record.latency_ms,
            "shadow_model": shadow.model.name, "shadow_cost_usd": 0.0,
            "shadow_latency_ms": None, "status": "ok", "error": None,
            "scorer": shadow.config.scorer, "judge_model": shadow.judge.name
            if shadow.judge is not None else None, "judge_cost_usd": 0.0,
            "outcome": None, "agree": None,
        }
        try:
            sent = self._body(shadow, plan)
            if sent is None:
                return  # a plugin blocks it for the shadow (a rule that reads the model)
            await self._compare(shadow, plan, answer_text, *sent, found)
        except Exception as error:
            # A background task's boundary: a bug here must not end as an unretrieved task
            # exception; it is recorded as a failure.
            found["status"], found["error"] = "error", f"{type(error).__name__}: {error}"
            self._warn(shadow.decision, "error", "shadow traffic of decision '%s' failed: %s",
                       shadow.decision, found["error"])
        finally:
            self.in_flight -= 1
            self._settle(shadow, estimate, day,
                         found["shadow_cost_usd"] + found["judge_cost_usd"])
            self._count(shadow, found)
        await self._write(shadow.decision, found)

    def _count(self, shadow: DecisionShadow, found: dict[str, Any]) -> None:
        m = self.metrics
        if m is None:
            return
        m.child(m.shadow_requests, shadow.decision, shadow.model.name, found["status"],
                found["outcome"] or "none").inc()
        m.child(m.shadow_cost, shadow.decision, "shadow").inc(found["shadow_cost_usd"])
        if found["judge_cost_usd"]:
            m.child(m.shadow_cost, shadow.decision, "judge").inc(found["judge_cost_usd"])

    async def _compare(self, shadow: DecisionShadow, plan: RoutePlan, answer_text: str,
                       body: dict[str, Any], ctx: PluginContext, found: dict[str, Any]) -> None:
        """Ask the shadow, score the two answers; `found` (the record) gets the results."""
        started = time.monotonic()
        try:
            with upstream_header_edits(ctx.upstream_headers):
                response, cost = await self._call(shadow.model, body, shadow.config.timeout_s)
        except _Failed as failure:
            found["shadow_latency_ms"] = (time.monotonic() - started) * 1000
            found["status"], found["error"] = failure.status, failure.error
            self._warn(shadow.decision, failure.status, "shadow model %s of decision '%s' %s: "
                       "%s", shadow.model.name, shadow.decision, failure.status, failure.error)
            return
        found["shadow_latency_ms"] = (time.monotonic() - started) * 1000
        found["shadow_cost_usd"] = cost
        for plugin in reversed(_editors(shadow.chain)):  # restore what they masked
            plugin.on_response(ctx, response)
        shadow_text = completion_text(response)
        pair = Pair(plan.context.last_user_text, answer_text, shadow_text,
                    reference_of(plan.context.body))
        verdict = await shadow.scorer.score(pair)
        found.update(outcome=verdict.outcome, agree=verdict.agree,
                     judge_cost_usd=verdict.judge_cost_usd,
                     has_reference=pair.reference is not None, **verdict.detail)
        if self.keep_answers:
            found["served_answer"], found["shadow_answer"] = answer_text, shadow_text

    async def _write(self, decision: str, found: dict[str, Any]) -> None:
        try:
            await self.store.set_value(shadow_key(found["time"], found["request_id"]),
                                       orjson.dumps(found), ttl_s=RECORD_TTL_S)
        except StoreUnavailable as error:
            self._warn(decision, "store", "shadow record not kept: %s", error)

    async def _call(self, model: PooledModel, body: dict[str, Any], timeout_s: float
                    ) -> tuple[dict[str, Any], float]:
        """One non-streamed answer from `model` (the pool's retries, on its endpoints only),
        within `timeout_s`; its cost at the model's prices. Raises `_Failed`."""
        try:
            async with asyncio.timeout(timeout_s):
                served = await self.pool.executor.complete([model], body)
        except TimeoutError:
            raise _Failed("timeout", f"no answer within {timeout_s:g} s") from None
        except PoolExhausted as error:
            raise _Failed("failed", error.message) from None
        response: dict[str, Any] = served.result
        found = response.get("usage")
        if isinstance(found, dict) and "completion_tokens" in found:
            prompt = int(found.get("prompt_tokens") or 0)
            completion = int(found.get("completion_tokens") or 0)
        else:  # the backend sent no usage: count it, as the accounting does
            prompt = count_prompt_tokens(body.get("messages") or [])
            completion = count_text_tokens(completion_text(response))
        return response, model.config.pricing.cost(prompt, completion)

    async def _ask_judge(self, judge: PooledModel, body: dict[str, Any], timeout_s: float
                         ) -> tuple[str, float]:
        try:
            response, cost = await self._call(judge, {**body, "stream": False}, timeout_s)
        except _Failed as failure:
            raise JudgeFailed(failure.status) from None
        return completion_text(response), cost

    def _warn(self, decision: str, kind: str, message: str, *args: Any) -> None:
        """A warning, at most one a minute per decision and kind."""
        now = time.monotonic()
        last = self._warned.get((decision, kind))
        if last is None or now - last >= WARN_EVERY_S:
            self._warned[(decision, kind)] = now
            log.warning(message, *args)


def _editors(chain: Chain) -> Chain:
    """The plugins whose request hooks only edit the request (no lookups)."""
    return tuple(p for p in chain if not p.has_async_request)
