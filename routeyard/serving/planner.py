"""Planning: from a validated request to the ordered list of models to try, and why.

Aliases (`auto`, ...) go through signals and decisions, then the decision's selection
algorithm; a concrete model name goes straight to that model. Either way no model that cannot
serve the request is ever planned: what the request needs (images, tools, a JSON schema, a
reasoning effort, room for its prompt and answer) is read once, as `Needs`, and every
candidate and failover target is checked against its model's capabilities and context window.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from routeyard import tracing
from routeyard.config import RouteyardConfig
from routeyard.decisions import DecisionEngine
from routeyard.errors import (
    Forbidden,
    InvalidRequest,
    ModelNotFound,
)
from routeyard.gateway import Caller, SoftBudgetSteer, Ticket
from routeyard.gateway.session_budget import SessionSteer
from routeyard.pool import Pool, PooledModel
from routeyard.selection import AlgorithmBuild, make_algorithm
from routeyard.selection.exploration import Explorer, make_explorer
from routeyard.serving.capabilities import Needs, Skips
from routeyard.signals import RequestContext, SignalReport
from routeyard.state import Store
from routeyard.tokens import prompt_size_upper_bound

DIRECT = "direct"  # the decision name shown when a concrete model was asked for


@dataclass(slots=True)
class RoutePlan:
    request_id: str
    started: float
    decision: str
    models: list[PooledModel]  # the chosen model first, then the others to fail over to
    reason: str
    context: RequestContext
    signals: SignalReport | None = None
    explanation: dict[str, Any] = field(default_factory=dict)
    reasoning_effort: str | None = None  # the chosen candidate's, if its decision sets one
    # Candidates and failover targets that cannot serve this request: [{"model", "reason"}].
    skipped: list[dict[str, str]] = field(default_factory=list)
    caller: Caller | None = None  # whose key (the gateway's)
    ticket: Ticket | None = None  # its admission, settled by the accounting
    session: str | None = None  # its agent session, when sessions are tracked (gateway)
    # -- for the decision log (filled as the request goes; see accounting.py) --
    surface: str = "chat"  # the API surface it came in on
    candidates: list[PooledModel] = field(default_factory=list)  # the decision's candidates
    # How the model was chosen: algorithm, λ, rule confidence, scores, the choice's probability.
    selection: dict[str, Any] | None = None
    plugins: list[str] | None = None  # the plugins whose request hooks ran
    # What a multi-model handler did ({"ensemble": ...}, {"collaborate": ...}): its calls.
    handled: dict[str, Any] | None = None
    cache: str | None = None  # the semantic cache's status, when one ran
    sent: Any = None  # the messages sent upstream (after redaction), with log_content only
    answer_text: str | None = None  # the answer before plugins restored it (log_content)
    trace: Any = None  # the request's OpenTelemetry span (tracing on), annotated when it ends

    def request_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body to send: with the decision's reasoning effort unless the client set one."""
        if self.reasoning_effort is None or "reasoning_effort" in body:
            return body
        return {**body, "reasoning_effort": self.reasoning_effort}

    @property
    def model(self) -> str:
        return self.models[0].name

    def matched_signals(self) -> list[str]:
        """Matched leaves, without the `@decision` sets that `when:` shorthand creates."""
        if self.signals is None:
            return []
        return [leaf for leaf in self.signals.matched() if ":@" not in leaf]


# -- planning ------------------------------------------------------------------------------


class Planner:
    def __init__(self, config: RouteyardConfig, pool: Pool, build: AlgorithmBuild,
                 store: Store | None = None) -> None:
        """`build` carries what the decisions' algorithms are built with (the Router's);
        `store` is for signal families that keep state (the Router's)."""
        self.pool = pool
        self.aliases = frozenset(config.aliases)
        self.model_routes = [(r.match, r.decision) for r in config.model_routes]
        self._routed_names: dict[str, tuple[bool, str | None]] = {}  # name → (routed, forced)
        self.allow_direct = config.allow_direct_models
        self.engine = DecisionEngine(config, build.base_dir, pool=pool, store=store)
        self.decisions = [c.decision for c in self.engine.decisions()] + [self.engine.default]
        self.algorithms = {d.name: make_algorithm(d.algorithm, d.options, build)
                           for d in self.decisions}
        # Decisions with an `exploration:` block; their draws are seeded like the algorithms'.
        self.explorers: dict[str, Explorer] = {
            d.name: make_explorer(d.exploration, d.name, random.Random(
                f"{build.entropy}:{d.name}"), build.ledger)
            for d in self.decisions if d.exploration is not None}

    async def plan(self, body: dict[str, Any], headers: dict[str, str] | None = None, *,
                   explain: bool = False, prefer: str | None = None,
                   steer: SoftBudgetSteer | None = None,
                   session_steer: SessionSteer | None = None) -> RoutePlan:
        """`prefer`: the model a conversation was on (a stored Responses chain): kept when the
        decision still lists it and it can take the request. `steer`: the caller's soft
        budget, which may shift the selection to a cheaper candidate; `session_steer` the
        session's draining budget, after it (cheaper candidates, lower effort)."""
        started = time.monotonic()
        ctx = self.engine.context(body, headers)
        name = body["model"]
        if name in self.aliases:
            return await self._plan_routed(ctx, started, explain, prefer=prefer, steer=steer,
                                           session_steer=session_steer)
        # A configured model's own name wins over a pattern that would also match it.
        routed, forced = (False, None) if name in self.pool.models else self.route_of(name)
        if routed:
            return await self._plan_routed(ctx, started, explain, forced, prefer=prefer,
                                           steer=steer, session_steer=session_steer)
        if not self.allow_direct:
            raise Forbidden(
                f"This router routes every request: use an alias "
                f"({', '.join(sorted(self.aliases))}) instead of the model name '{name}'.",
                param="model",
            )
        model = self.pool.models.get(name)
        if model is None:
            raise ModelNotFound(
                f"The model '{name}' does not exist. Use an alias "
                f"({', '.join(sorted(self.aliases))}) or one of GET /v1/models.",
                param="model",
            )
        if model.config.kind != "chat":
            raise InvalidRequest(f"'{name}' is an {model.config.kind} model; it serves "
                                 "/v1/embeddings, not chat.", param="model",
                                 code="model_not_supported")
        needs = Needs.of(body)
        tokens = _prompt_tokens(ctx, [model], needs.output_tokens)
        missing = needs.missing(model, tokens)
        if missing:
            raise Skips(needs, tokens).direct_error(model, missing)
        return RoutePlan(_new_request_id(), started, DIRECT, [model],
                         "the request named this model", ctx, candidates=[model])

    def route_of(self, name: str) -> tuple[bool, str | None]:
        """Whether a model name that is not an alias is routed by `model_routes`, and to which
        decision (None: through the decisions)."""
        found = self._routed_names.get(name)
        if found is None:
            found = next(((True, decision) for pattern, decision in self.model_routes
                          if fnmatchcase(name, pattern)), (False, None))
            if len(self._routed_names) < 10_000:  # names come from clients: keep it bounded
                self._routed_names[name] = found
        return found

    async def _plan_routed(self, ctx: RequestContext, started: float, explain: bool,
                           forced: str | None = None, *, prefer: str | None = None,
                           steer: SoftBudgetSteer | None = None,
                           session_steer: SessionSteer | None = None) -> RoutePlan:
        outcome = await self.engine.decide(ctx, explain=explain, force=forced)
        decision = outcome.decision
        needs = Needs.of(ctx.body)
        candidates = [self.pool.models[n] for n in decision.candidates]
        fallbacks = [self.pool.models[n] for n in decision.fallback]
        tokens = _prompt_tokens(ctx, candidates + fallbacks, needs.output_tokens)
        skips = Skips(needs, tokens)
        # Selection only ever sees the candidates that can serve the request.
        servable = skips.servable(candidates)
        exploration = None
        with tracing.span("routeyard.selection") as span:
            selection = (self.algorithms[decision.name].select(servable, tokens, ctx)
                         if servable else None)
            if steer is not None and selection is not None:
                steered = steer.adjust(selection, servable, tokens, ctx)
                # A caller short of budget is never explored away from the cheaper choice.
                steer_kept = steered is selection
                selection = steered
            else:
                steer_kept = True
            if session_steer is not None and selection is not None:
                steered = session_steer.adjust(selection, servable, tokens, ctx)
                if steered is not selection:  # neither explored nor kept on `prefer`
                    selection, steer_kept, prefer = steered, False, None
            explorer = self.explorers.get(decision.name) if self.explorers else None
            if explorer is not None and selection is not None and steer_kept:
                drawn = explorer.apply(selection, servable)
                selection, exploration = drawn.selection, drawn.record
            if span is not None:
                tracing.set_attributes(span, {
                    "routeyard.decision": decision.name,
                    "routeyard.algorithm": decision.algorithm,
                    "routeyard.model": selection.model if selection else None,
                    "routeyard.choice_probability": selection.probability
                    if selection else None,
                    "routeyard.candidates": [m.name for m in servable]})
        kept = self.pool.models.get(prefer) if prefer in decision.candidates else None
        probability, scores = 1.0, None
        kept_on_conversation = kept is not None and kept in servable and kept.is_available()
        if kept_on_conversation:
            chosen, why = kept, "kept on the model this conversation was on"
        elif selection is not None:
            chosen, why = self.pool.models[selection.model], selection.reason
            probability, scores = selection.probability, selection.scores
        else:
            chosen = next(iter(skips.servable(fallbacks)), None)
            why = "no candidate can serve the request; the first fallback that can"
            if chosen is None:
                raise skips.error(decision.name)
        effort = decision.efforts.get(chosen.name)
        if session_steer is not None:
            effort = session_steer.effort(effort)
        # Failover order: the chosen model, the other candidates, then the fallbacks; each
        # gets the same body, so the chosen candidate's reasoning effort too.
        failover_needs, why_failover = needs, ""
        if effort is not None and not needs.reasoning and "reasoning_effort" not in ctx.body:
            failover_needs = replace(needs, reasoning=True)
            why_failover = (f" (as a failover target it would get the reasoning_effort "
                            f"'{effort}' set for {chosen.name})")
        others = [m for m in servable + fallbacks if m is not chosen]
        models = [chosen]
        for model in skips.servable(others, failover_needs, why_failover):
            if model not in models:
                models.append(model)
        reason = f"decision '{decision.name}' {outcome.reason}: {why}"
        plan = RoutePlan(_new_request_id(), started, decision.name, models, reason, ctx,
                         outcome.report, reasoning_effort=effort, candidates=candidates)
        plan.selection = {"algorithm": decision.algorithm,
                          "lambda": decision.options.get("lambda"),
                          "rule": outcome.reason, "confidence": outcome.confidence,
                          "why": why, "probability": probability, "scores": scores}
        # A conversation kept on its model was not drawn: its record keeps no exploration (and
        # its cost never counts as explored spend).
        if exploration is not None and not kept_on_conversation:
            plan.selection["exploration"] = exploration
        if skips.found:
            plan.skipped = skips.records()
        if explain:
            plan.explanation = {"considered": outcome.considered,
                                "algorithm": decision.algorithm,
                                "candidates": decision.candidates,
                                "fallback": [m.name for m in models[1:]],
                                "reasoning_effort": plan.reasoning_effort,
                                "skipped": plan.skipped}
        return plan


def _prompt_tokens(ctx: RequestContext, models: list[PooledModel], output_tokens: int) -> int:
    if ctx.tokens_counted is not None:
        return ctx.prompt_tokens
    # Exact counting costs ~0.1 ms per 500 words; skip it when no window can be exceeded.
    bound = prompt_size_upper_bound(ctx.messages)
    if models and bound + output_tokens <= min(m.config.context_window for m in models):
        return bound
    return ctx.prompt_tokens


def _new_request_id() -> str:
    """`req_` + the time in microseconds (13 hex digits) + 48 random bits: ids sort by time,
    so the decision log's primary-key index grows at its end instead of splitting pages at
    random (a third of the SQLite writer's CPU), and stay unguessable."""
    return f"req_{time.time_ns() // 1000:013x}{secrets.token_hex(6)}"
