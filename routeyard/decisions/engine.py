"""Decisions: which rule matches a request, and so which candidates and algorithm apply.

A decision's rule is a tree over signal leaves (`rules:`), ANDed with the shorthand `when:`
conditions, which are desugared here into a keyword set and a context_length band named
`@<decision>`. With the `priority` strategy the matching decision with the highest priority wins
(ties: the one declared first); with `confidence`, the one whose rule holds most confidently.
When none matches, the default decision applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routeyard import tracing
from routeyard.config.schema import (
    CollaborateConfig,
    DecisionConfig,
    DefaultDecisionConfig,
    EnsembleConfig,
    ExplorationConfig,
    RouteyardConfig,
    ShadowConfig,
)
from routeyard.config.signals import (
    ContextLengthFamily,
    KeywordFamily,
    KeywordSignal,
    RuleTree,
    SignalsConfig,
    TokenBand,
)
from routeyard.decisions.rules import RuleFunction, compile_rule, explain_rule, holding_leaves
from routeyard.selection import SELECTION_ALGORITHMS
from routeyard.signals import RequestContext, SignalEngine, SignalReport

if TYPE_CHECKING:
    from routeyard.pool import Pool
    from routeyard.state import Store


@dataclass(slots=True, frozen=True)
class Decision:
    name: str
    candidates: list[str]
    algorithm: str
    fallback: list[str]
    priority: int = 0
    efforts: dict[str, str] = field(default_factory=dict)  # candidate → reasoning effort
    options: dict[str, Any] = field(default_factory=dict)  # the algorithm's options
    plugins: tuple[dict[str, Any], ...] = ()  # {type, ...options}, built by the Router
    cascade: dict[str, Any] | None = None  # its cascade's options, built by the Router
    exploration: ExplorationConfig | None = None  # see selection/exploration.py
    shadow: ShadowConfig | None = None  # see serving/shadow.py
    ensemble: EnsembleConfig | None = None  # see serving/ensemble.py
    collaborate: CollaborateConfig | None = None  # see serving/collaborate.py


@dataclass(slots=True)
class DecisionOutcome:
    decision: Decision
    confidence: float
    report: SignalReport
    reason: str
    considered: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _CompiledDecision:
    decision: Decision
    rule: RuleTree | None  # None: always matches
    function: RuleFunction | None


class DecisionEngine:
    def __init__(self, config: RouteyardConfig, base_dir: Path | None = None, *,
                 pool: Pool | None = None, store: Store | None = None) -> None:
        """`pool`: for signal families that call a model (guard); `store`: for those that keep
        state (session_risk)."""
        signals, rules = desugar(config)
        ordered = sorted(range(len(config.decisions)),
                         key=lambda i: (-config.decisions[i].priority, i))
        self._decisions = [
            _CompiledDecision(_decision(config.decisions[i]), rules[i],
                              compile_rule(rules[i]) if rules[i] is not None else None)
            for i in ordered
        ]
        self.by_confidence = config.decision_strategy == "confidence"
        chat_models = [m.name for m in config.models if m.kind == "chat"] or [config.models[0].name]
        default = config.default or DefaultDecisionConfig(candidates=[chat_models[0]])
        self.default = _decision(default)
        self._by_name = {c.decision.name: c.decision for c in self._decisions}
        self._by_name[self.default.name] = self.default
        needs_embedding = any(
            SELECTION_ALGORITHMS[d.algorithm].needs_embedding
            for d in [*(c.decision for c in self._decisions), self.default])
        referenced = referenced_leaves(rules)
        for decision in [*(c.decision for c in self._decisions), self.default]:
            for plugin in decision.plugins:  # a plugin's `when: family:name` needs its signal
                when = plugin.get("when")
                if isinstance(when, str) and ":" in when:
                    family, name = when.split(":", 1)
                    referenced.setdefault(family, set()).add(name)
        self.signals = SignalEngine(signals, referenced, base_dir,
                                    embedder_needed=needs_embedding, pool=pool, store=store)

    def decisions(self) -> list[_CompiledDecision]:
        return list(self._decisions)

    def context(self, body: dict[str, Any], headers: dict[str, str] | None = None
                ) -> RequestContext:
        return self.signals.context(body, headers)

    async def decide(self, ctx: RequestContext, *, explain: bool = False,
                     force: str | None = None) -> DecisionOutcome:
        """The winning decision; with `force`, that decision (the signals still run, for its
        plugins and the log)."""
        report = await self.signals.evaluate(ctx)
        with tracing.span("routeyard.decision") as span:
            outcome = self._choose(report, explain, force)
            if span is not None:
                tracing.set_attributes(span, {"routeyard.decision": outcome.decision.name,
                                              "routeyard.rule": outcome.reason})
        return outcome

    def _choose(self, report: SignalReport, explain: bool, force: str | None
                ) -> DecisionOutcome:
        if force is not None:
            return DecisionOutcome(self._by_name[force], 1.0, report,
                                   "(named by model_routes for the requested model)")
        leaves = report.leaves
        best: tuple[float, _CompiledDecision] | None = None
        considered: list[dict[str, Any]] = []
        for compiled in self._decisions:
            confidence = compiled.function(leaves) if compiled.function else 1.0
            if explain:
                considered.append(self._explain(compiled, confidence, leaves))
            if confidence <= 0.0:
                continue
            # Priority: the first match (in priority order) wins; confidence: the highest.
            if best is None or (self.by_confidence and confidence > best[0]):
                best = (confidence, compiled)
                if not self.by_confidence and not explain:
                    break
        if best is None:
            return DecisionOutcome(self.default, 1.0, report, "(no other decision matched)",
                                   considered)
        confidence, compiled = best
        matched = holding_leaves(compiled.rule, leaves) if compiled.rule else []
        why = ", ".join(_describe(leaf, report) for leaf in matched) or "no conditions"
        return DecisionOutcome(compiled.decision, confidence, report,
                               f"matched ({why}; confidence {confidence:.2f})", considered)

    @staticmethod
    def _explain(compiled: _CompiledDecision, confidence: float, leaves: dict[str, float]
                 ) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": compiled.decision.name,
                                 "priority": compiled.decision.priority,
                                 "matched": confidence > 0.0,
                                 "confidence": round(confidence, 3)}
        if compiled.rule is not None:
            entry["rule"] = explain_rule(compiled.rule, leaves)
        return entry


def _describe(leaf: str, report: SignalReport) -> str:
    family, name = leaf.split(":", 1)
    result = report.results.get(family)
    match = result.matches.get(name) if result is not None else None
    return f"{leaf} '{match.value}'" if match is not None and match.value is not None else leaf


def desugar(config: RouteyardConfig) -> tuple[SignalsConfig, list[RuleTree | None]]:
    """Turn each decision's `when:` into signal leaves; return the signals and rule trees."""
    keyword_sets: dict[str, KeywordSignal] = {}
    bands: dict[str, TokenBand] = {}
    rules: list[RuleTree | None] = []
    for decision in config.decisions:
        parts: list[RuleTree] = []
        when = decision.when
        name = f"@{decision.name}"
        if when.keywords_any:
            keyword_sets[name] = KeywordSignal(any=when.keywords_any)
            parts.append(RuleTree(signal=f"keyword:{name}"))
        if when.min_prompt_tokens is not None or when.max_prompt_tokens is not None:
            bands[name] = TokenBand(min_tokens=when.min_prompt_tokens or 0,
                                    max_tokens=when.max_prompt_tokens)
            parts.append(RuleTree(signal=f"context_length:{name}"))
        if decision.rules is not None:
            parts.append(decision.rules)
        rules.append(None if not parts else parts[0] if len(parts) == 1
                     else RuleTree(all=parts))
    signals = config.signals
    if keyword_sets:
        family = signals.keyword or KeywordFamily()
        signals = signals.model_copy(update={"keyword": family.model_copy(
            update={"sets": {**family.sets, **keyword_sets}})})
    if bands:
        family_cl = signals.context_length or ContextLengthFamily()
        signals = signals.model_copy(update={"context_length": family_cl.model_copy(
            update={"bands": {**family_cl.bands, **bands}})})
    return signals, rules


def referenced_leaves(rules: list[RuleTree | None]) -> dict[str, set[str]]:
    referenced: dict[str, set[str]] = {}
    for rule in rules:
        for leaf in rule.leaves() if rule is not None else []:
            family, name = leaf.split(":", 1)
            referenced.setdefault(family, set()).add(name)
    return referenced


def _decision(config: DecisionConfig | DefaultDecisionConfig) -> Decision:
    return Decision(
        name=config.name,
        candidates=[c.model for c in config.candidates],
        efforts={c.model: c.reasoning_effort for c in config.candidates if c.reasoning_effort},
        options=dict(config.algorithm_options),
        algorithm=config.algorithm,
        fallback=list(config.fallback),
        priority=getattr(config, "priority", 0),
        plugins=tuple(p.model_dump() for p in config.plugins),
        cascade=config.cascade,
        exploration=config.exploration,
        shadow=config.shadow,
        ensemble=config.ensemble,
        collaborate=config.collaborate,
    )
