"""Accounting: usage, cost, metrics, spend and the decision record of every finished request.

The one place a request is accounted for. `Accounted` (the outermost handler of every decision)
calls it for each answer and each failure; a stream calls it once, when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from routeyard import tracing
from routeyard.errors import RouteyardError
from routeyard.metrics import Metrics
from routeyard.pool import AttemptLog, Served
from routeyard.pool.energy import model_energy
from routeyard.selection.ledger import BudgetLedger
from routeyard.serving.feedback import FeedbackService
from routeyard.serving.planner import RoutePlan
from routeyard.state import DecisionRecord, Store, StoreUnavailable
from routeyard.tokens import count_text_tokens
from routeyard.wire import completion_text, usage

log = logging.getLogger("routeyard")

Spawn = Callable[[Coroutine[Any, Any, None]], None]
# Told of every finished request, after its record is written: exploration's spend, shadow
# traffic, implicit feedback. Called on the event loop, so they must only schedule work.
# The answer's text is given when some observer asked for it (`wants_text`), else None.
Observer = Callable[[RoutePlan, DecisionRecord, "str | None"], None]


class Accountant:
    def __init__(self, metrics: Metrics, store: Store, feedback: FeedbackService,
                 ledger: BudgetLedger, spawn: Spawn, *, log_content: bool = False) -> None:
        """`spawn` runs background writes (a learner's context) off the request path;
        `log_content` keeps the prompt and the answer in the decision record."""
        self.log_content = log_content
        self.metrics = metrics
        self.store = store
        self.feedback = feedback
        self.ledger = ledger
        self.spawn = spawn
        self.observers: list[Observer] = []
        self.keeps_text = log_content  # whether handlers pass the answer's text to record()

    def observe(self, observer: Observer, *, wants_text: bool = False) -> None:
        """Tell `observer` of every finished request (see `Observer`)."""
        self.observers.append(observer)
        self.keeps_text = self.keeps_text or wants_text

    # -- usage -----------------------------------------------------------------------------

    def usage(self, plan: RoutePlan, response: Mapping[str, Any]) -> dict[str, int]:
        """The answer's usage, or one counted from its text when the backend sent none."""
        found = response.get("usage")
        if isinstance(found, dict) and "completion_tokens" in found:
            return found
        return self.counted(plan, completion_text(response))

    def counted(self, plan: RoutePlan, text: str) -> dict[str, int]:
        """Usage counted by Routeyard: the prompt's tokens and those of `text`."""
        return usage(plan.context.prompt_tokens, count_text_tokens(text))

    # -- records ---------------------------------------------------------------------------

    def record(self, plan: RoutePlan, *, served: Served | None,
               usage_: Mapping[str, Any] | None, status: str, stream: bool,
               cost_usd: float | None = None, detail: Mapping[str, Any] | None = None,
               attempts: list[AttemptLog] | None = None, ttft_s: float | None = None,
               answer_text: str | None = None) -> None:
        """Metrics, spend, feedback bookkeeping and the decision record of one request.
        `cost_usd` overrides the price of the tokens at the answering model's rate (a
        cascade paid several models). Without a served model nothing was spent. `detail`
        adds to the record's detail (a stream continued on another model, say); `attempts`
        are those of a request no backend answered; `ttft_s` a stream's first byte, since the
        request arrived; `answer_text` is kept with `log_content`."""
        latency = time.monotonic() - plan.started
        model = served.model if served is not None else None
        prompt = int((usage_ or {}).get("prompt_tokens") or 0) if model else 0
        completion = int((usage_ or {}).get("completion_tokens") or 0) if model else 0
        cost = cost_usd if cost_usd is not None else (
            model.config.pricing.cost(prompt, completion) if model else 0.0)
        label = model.name if model else "none"
        energy = None
        if served is not None:  # one cached lookup; None unless energy figures are configured
            found = model_energy(served.model.config)
            rates = found.served(served.endpoint.name) if found is not None else None
            if rates is not None:
                energy = rates.joules(prompt, completion)
        self.feedback.served(plan, model.name if model else None)
        if model is not None and self.feedback.needs_context(plan.decision):
            self.spawn(self._remember_context(plan))
        m = self.metrics
        m.child(m.requests, label, plan.decision, status).inc()
        if model is not None:
            m.child(m.request_latency, label, "true" if stream else "false").observe(latency)
            m.child(m.tokens, label, "prompt").inc(prompt)
            m.child(m.tokens, label, "completion").inc(completion)
            m.child(m.cost, label).inc(cost)
            if energy is not None:
                m.child(m.energy, label).inc(energy)
            if ttft_s is not None and completion > 1:
                m.child(m.time_per_output_token, label).observe(
                    max(0.0, latency - ttft_s) / (completion - 1))
        if plan.signals is not None:
            for family, result in plan.signals.results.items():
                m.child(m.signal_latency, family).observe(result.latency_ms / 1000)
        if self.ledger.scopes:  # some decision has a budget: count the cost against it
            self.ledger.record_request(plan.context, cost)
        if plan.ticket is not None:  # the caller's limits: free its slot, count what it used
            plan.ticket.settle(prompt, completion, cost)
        caller = plan.caller
        # Cheap on purpose: references to what the request already built, serialized later
        # by the store's writer (off the event loop for SQLite).
        found: dict[str, Any] = {
            "signals": plan.signals.leaves if plan.signals is not None else None,
            "reason": plan.reason,
            "selection": plan.selection,
            "candidates": [m.name for m in plan.candidates],
            "attempts": served.attempts if served is not None else attempts,
        }
        if plan.skipped:
            found["skipped"] = plan.skipped
        if plan.plugins:
            found["plugins"] = plan.plugins
        if plan.handled:
            found.update(plan.handled)
        if detail:
            found.update(detail)
        if self.log_content:
            found["content"] = {"prompt": plan.sent if plan.sent is not None
                                else plan.context.body.get("messages"),
                                "answer": plan.answer_text if plan.answer_text is not None
                                else answer_text}
        if plan.trace is not None:
            _annotate(plan, model.name if model else None, prompt, completion, cost, status,
                      ttft_s)
        dearest = None
        if model is not None:
            dearest = max([m.config.pricing.cost(prompt, completion) for m in plan.candidates]
                          or [cost])
        record = DecisionRecord(
            request_id=plan.request_id, time=time.time() - latency, decision=plan.decision,
            model=model.name if model else None,
            endpoint=served.endpoint.name if served is not None else None,
            latency_ms=latency * 1000, prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=cost, status=status, stream=stream, detail=found, surface=plan.surface,
            key_id=caller.key_id if caller is not None else None,
            tenant=caller.tenant if caller is not None else None,
            ttft_ms=ttft_s * 1000 if ttft_s is not None else None, cache=plan.cache,
            dearest_cost_usd=dearest, session=plan.session, energy_j=energy,
        )
        self.store.record_decision(record)
        for observer in self.observers:
            observer(plan, record, answer_text)

    def rejected(self, error: RouteyardError) -> None:
        """A request refused before it was planned (bad input, auth): a metric only."""
        self.metrics.errors.labels(f"client_{error.code or error.status}").inc()

    async def _remember_context(self, plan: RoutePlan) -> None:
        try:
            await self.feedback.remember_context(plan)
        except StoreUnavailable:
            log.warning("context for %s not kept: the store is down", plan.request_id)


# Statuses of a request that got no (whole) answer; its span is marked an error.
_FAILED_STATUSES = frozenset({"upstream_failed", "stream_broken", "shutdown"})


def _annotate(plan: RoutePlan, model: str | None, prompt: int, completion: int, cost: float,
              status: str, ttft_s: float | None) -> None:
    """The request's span gets what its decision record holds: GenAI usage, and the route."""
    selection = plan.selection or {}
    tracing.set_attributes(plan.trace, {
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": prompt,
        "gen_ai.usage.output_tokens": completion,
        "routeyard.decision": plan.decision,
        "routeyard.signals": plan.matched_signals(),
        "routeyard.cache": plan.cache or "none",
        "routeyard.algorithm": selection.get("algorithm"),
        "routeyard.choice_probability": selection.get("probability"),
        "routeyard.plugins": plan.plugins,
        "routeyard.cost_usd": cost,
        "routeyard.status": status,
        "routeyard.ttft_ms": ttft_s * 1000 if ttft_s is not None else None,
    })
    if status in _FAILED_STATUSES:
        tracing.mark_error(plan.trace, status)
