"""Accounting: usage, cost, metrics, spend and the decision record of every finished request.

The one place a request is accounted for. `Accounted` (the outermost handler of every decision)
calls it for each answer and each failure; a stream calls it once, when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from routeyard.errors import RouteyardError
from routeyard.metrics import Metrics
from routeyard.pool import Served
from routeyard.selection.ledger import BudgetLedger
from routeyard.serving.feedback import FeedbackService
from routeyard.serving.planner import RoutePlan
from routeyard.state import DecisionRecord, Store, StoreUnavailable
from routeyard.tokens import count_text_tokens
from routeyard.wire import completion_text, usage

log = logging.getLogger("routeyard")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Accountant:
    def __init__(self, metrics: Metrics, store: Store, feedback: FeedbackService,
                 ledger: BudgetLedger, spawn: Spawn) -> None:
        """`spawn` runs background writes (a learner's context) off the request path."""
        self.metrics = metrics
        self.store = store
        self.feedback = feedback
        self.ledger = ledger
        self.spawn = spawn

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
               cost_usd: float | None = None, detail: Mapping[str, Any] | None = None
               ) -> None:
        """Metrics, spend, feedback bookkeeping and the decision record of one request.
        `cost_usd` overrides the price of the tokens at the answering model's rate (a
        cascade paid several models). Without a served model nothing was spent. `detail`
        adds to the record's detail (a stream continued on another model, say)."""
        latency = time.monotonic() - plan.started
        model = served.model if served is not None else None
        prompt = int((usage_ or {}).get("prompt_tokens") or 0) if model else 0
        completion = int((usage_ or {}).get("completion_tokens") or 0) if model else 0
        cost = cost_usd if cost_usd is not None else (
            model.config.pricing.cost(prompt, completion) if model else 0.0)
        label = model.name if model else "none"
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
        if self.ledger.scopes:  # some decision has a budget: count the cost against it
            self.ledger.record_request(plan.context, cost)
        if plan.ticket is not None:  # the caller's limits: free its slot, count what it used
            plan.ticket.settle(prompt, completion, cost)
        self.store.record_decision(DecisionRecord(
            request_id=plan.request_id, time=time.time() - latency, decision=plan.decision,
            model=model.name if model else None,
            endpoint=served.endpoint.name if served is not None else None,
            latency_ms=latency * 1000, prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=cost, status=status, stream=stream,
            detail=_detail(plan, detail),
        ))

    def rejected(self, error: RouteyardError) -> None:
        """A request refused before it was planned (bad input, auth): a metric only."""
        self.metrics.errors.labels(f"client_{error.code or error.status}").inc()

    async def _remember_context(self, plan: RoutePlan) -> None:
        try:
            await self.feedback.remember_context(plan)
        except StoreUnavailable:
            log.warning("context for %s not kept: the store is down", plan.request_id)


def _detail(plan: RoutePlan, extra: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The record's detail: what the plan skipped, and what the handlers add."""
    if not plan.skipped and not extra:
        return None
    found: dict[str, Any] = {"skipped": plan.skipped} if plan.skipped else {}
    if extra:
        found.update(extra)
    return found
