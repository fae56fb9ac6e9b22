"""Decisions: which rule matches a request, and so which candidates and algorithm apply.

This is the minimal rule form (keywords and prompt-length bounds, ANDed). The winner is the
matching decision with the highest priority; ties go to the one declared first. When none
matches, the default decision applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from routeyard.config.schema import DecisionConfig, DefaultDecisionConfig, RouteyardConfig
from routeyard.tokens import count_prompt_tokens, message_text


class RequestFeatures:
    """What rules look at, computed lazily so unused features cost nothing."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self._text: str | None = None
        self._tokens: int | None = None

    @property
    def text(self) -> str:
        """Lower-cased text of the user turns."""
        if self._text is None:
            self._text = " ".join(
                message_text(m) for m in self.messages if m.get("role") == "user"
            ).lower()
        return self._text

    @property
    def prompt_tokens(self) -> int:
        if self._tokens is None:
            self._tokens = count_prompt_tokens(self.messages)
        return self._tokens

    def computed(self) -> dict[str, Any]:
        """The features some rule or step actually needed (for the dry-run explanation)."""
        signals: dict[str, Any] = {}
        if self._tokens is not None:
            signals["prompt_tokens"] = self._tokens
        return signals


@dataclass(slots=True, frozen=True)
class Decision:
    name: str
    candidates: list[str]
    algorithm: str
    fallback: list[str]
    priority: int = 0


@dataclass(slots=True)
class DecisionOutcome:
    decision: Decision
    matched: list[str] = field(default_factory=list)  # why it matched, condition by condition
    considered: list[dict[str, Any]] = field(default_factory=list)


class _CompiledRule:
    def __init__(self, config: DecisionConfig) -> None:
        # Whole words or phrases, so "prove" does not match "approve".
        keywords = [k.lower() for k in config.when.keywords_any if k.strip()]
        self.keywords = (
            re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, keywords)) + r")(?!\w)")
            if keywords else None
        )
        self.min_tokens = config.when.min_prompt_tokens
        self.max_tokens = config.when.max_prompt_tokens

    def match(self, features: RequestFeatures) -> list[str] | None:
        """The satisfied conditions, or None when some condition fails."""
        reasons: list[str] = []
        if self.keywords is not None:
            hit = self.keywords.search(features.text)
            if hit is None:
                return None
            reasons.append(f"keyword '{hit.group(0)}'")
        if self.min_tokens is not None:
            if features.prompt_tokens < self.min_tokens:
                return None
            reasons.append(f"prompt_tokens {features.prompt_tokens} >= {self.min_tokens}")
        if self.max_tokens is not None:
            if features.prompt_tokens > self.max_tokens:
                return None
            reasons.append(f"prompt_tokens {features.prompt_tokens} <= {self.max_tokens}")
        return reasons or ["no conditions: always matches"]


class DecisionEngine:
    def __init__(self, config: RouteyardConfig) -> None:
        ordered = sorted(enumerate(config.decisions), key=lambda pair: (-pair[1].priority, pair[0]))
        self._rules = [(_decision(d), _CompiledRule(d)) for _, d in ordered]
        default = config.default or DefaultDecisionConfig(candidates=[config.models[0].name])
        self.default = _decision(default)

    def decide(self, features: RequestFeatures, *, explain: bool = False) -> DecisionOutcome:
        considered: list[dict[str, Any]] = []
        for decision, rule in self._rules:
            reasons = rule.match(features)
            if explain:
                considered.append({"name": decision.name, "priority": decision.priority,
                                   "matched": reasons is not None, "conditions": reasons or []})
            if reasons is not None:
                return DecisionOutcome(decision, reasons, considered)
        return DecisionOutcome(self.default, ["no decision matched: default"], considered)


def _decision(config: DecisionConfig | DefaultDecisionConfig) -> Decision:
    return Decision(
        name=config.name,
        candidates=list(config.candidates),
        algorithm=config.algorithm,
        fallback=list(config.fallback),
        priority=getattr(config, "priority", 0),
    )
