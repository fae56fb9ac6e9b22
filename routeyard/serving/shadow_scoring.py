"""Scorers for shadow traffic: how the served answer and the shadow answer compare.

A scorer gives a `Verdict` from the shadow's point of view: `win` (the shadow's answer is
better), `tie` or `loss`, or None when it cannot tell (no reference, a judge that failed).

- `judge`: a pool model reads the question and the two answers, in a random order (so that a
  judge's preference for the first or second slot cancels out over many requests), and says
  "A", "B" or "tie".
- `exact`, `numeric`, `choice`: each answer is checked against the request's reference answer
  (`metadata.reference` in the chat body): win when only the shadow is right, loss when only the
  served answer is, tie otherwise. Without a reference only agreement is recorded.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Asks the judge model one request body; returns (the answer's text, what it cost in USD).
AskJudge = Callable[[dict[str, Any]], Awaitable[tuple[str, float]]]


@dataclass(frozen=True, slots=True)
class Pair:
    """One mirrored request: the question, both answers, and the reference if it had one."""

    question: str
    served: str
    shadow: str
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str | None  # win | tie | loss (the shadow's), or None: undecided
    agree: bool | None = None  # the two answers say the same (reference scorers)
    judge_cost_usd: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScorerBuild:
    """What a scorer is built with: the judge call (judge only) and the Router's draws."""

    ask_judge: AskJudge | None = None
    rng: random.Random = field(default_factory=random.Random)


class Scorer(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def score(self, pair: Pair) -> Verdict: ...


# -- reference scorers -----------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_CHOICE_PATTERNS = (
    # "the answer is (B)", "Answer: B", "correct option is c"
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[\[\(\"'*]*([A-J])\b", re.IGNORECASE),
    # a reply that is, or starts with, the letter: "B", "(B)", "**B**.", "B) because"
    re.compile(r"^[\s\[\(\"'*]*([A-J])(?:[\s\].):\"'*,]|$)", re.IGNORECASE),
)


class ReferenceScorer(Scorer):
    """Compares each answer with the reference through `extract`, a normal form (None: the
    answer gives none)."""

    @abstractmethod
    def extract(self, text: str) -> Any: ...

    def same(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and a == b

    async def score(self, pair: Pair) -> Verdict:
        served, shadow = self.extract(pair.served), self.extract(pair.shadow)
        agree = self.same(served, shadow)
        if pair.reference is None:
            return Verdict(None, agree)
        reference = self.extract(pair.reference)
        served_right, shadow_right = self.same(served, reference), self.same(shadow, reference)
        outcome = "tie" if served_right == shadow_right else ("win" if shadow_right else "loss")
        return Verdict(outcome, agree, detail={"served_correct": served_right,
                                               "shadow_correct": shadow_right})


class ExactScorer(ReferenceScorer):
    """The same text, up to case, surrounding whitespace and a final full stop."""

    name = "exact"

    def extract(self, text: str) -> str:
        return _SPACES.sub(" ", text).strip().rstrip(".").strip().casefold()


class NumericScorer(ReferenceScorer):
    """The last number in the text (1,234.5 and -3e2 forms), equal to a relative 1e-6."""

    name = "numeric"

    def extract(self, text: str) -> float | None:
        found = _NUMBER.findall(text)
        if not found:
            return None
        try:
            return float(found[-1].replace(",", ""))
        except ValueError:
            return None

    def same(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


class ChoiceScorer(ReferenceScorer):
    """A multiple-choice letter, A to J: "B", "(b)", "The answer is B."."""

    name = "choice"

    def extract(self, text: str) -> str | None:
        for pattern in _CHOICE_PATTERNS:
            match = pattern.search(text.strip())
            if match:
                return match.group(1).upper()
        return None


# -- the judge ---------------------------------------------------------------------------------

JUDGE_PROMPT = """You compare two answers to the same request. Decide which answer is better: \
more correct, more helpful, and more complete. Ignore the order in which they appear and \
their length as such.

[Request]
{question}

[Answer A]
{first}

[Answer B]
{second}

Reply with exactly one of: A, B, tie."""

# A and B as capitals only: "a" is an article; "tie" in any case.
_JUDGE_REPLY = re.compile(r"\b((?i:tie)|A|B)\b")


def parse_judge_reply(text: str) -> str | None:
    """"A", "B" or "tie" from the judge's reply (its first such word), else None."""
    match = _JUDGE_REPLY.search(text.strip())
    if match is None:
        return None
    word = match.group(1)
    return "tie" if word.lower() == "tie" else word.upper()


class JudgeScorer(Scorer):
    name = "judge"

    def __init__(self, build: ScorerBuild) -> None:
        if build.ask_judge is None:
            raise ValueError("the judge scorer needs a judge model")
        self.ask = build.ask_judge
        self.rng = build.rng

    async def score(self, pair: Pair) -> Verdict:
        shadow_first = self.rng.random() < 0.5
        first, second = (pair.shadow, pair.served) if shadow_first else (pair.served, pair.shadow)
        body = {"messages": [{"role": "user", "content": JUDGE_PROMPT.format(
            question=pair.question, first=first, second=second)}],
            "temperature": 0, "max_tokens": 8}
        order = "shadow_first" if shadow_first else "served_first"
        try:
            reply, cost = await self.ask(body)
        except JudgeFailed as failure:
            return Verdict(None, judge_cost_usd=failure.cost_usd,
                           detail={"judge_status": failure.status, "judge_order": order})
        said = parse_judge_reply(reply)
        if said is None:
            return Verdict(None, judge_cost_usd=cost,
                           detail={"judge_status": "unparsed", "judge_order": order})
        # "A" is the shadow's answer when it came first.
        outcome = "tie" if said == "tie" else ("win" if (said == "A") == shadow_first
                                               else "loss")
        return Verdict(outcome, judge_cost_usd=cost,
                       detail={"judge_status": "ok", "judge_order": order, "judge_said": said})


class JudgeFailed(Exception):
    """The judge gave no answer (`status`: failed or timeout)."""

    def __init__(self, status: str, cost_usd: float = 0.0) -> None:
        super().__init__(status)
        self.status = status
        self.cost_usd = cost_usd


_REFERENCE_SCORERS: dict[str, type[ReferenceScorer]] = {
    cls.name: cls for cls in (ExactScorer, NumericScorer, ChoiceScorer)}
SCORERS: dict[str, Callable[[ScorerBuild], Scorer]] = {
    **{name: (lambda build, cls=cls: cls()) for name, cls in _REFERENCE_SCORERS.items()},
    JudgeScorer.name: JudgeScorer,
}


def make_scorer(name: str, build: ScorerBuild) -> Scorer:
    try:
        factory = SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown shadow scorer '{name}' (known: "
                         f"{', '.join(sorted(SCORERS))})") from None
    return factory(build)


def reference_of(body: dict[str, Any]) -> str | None:
    """The request's reference answer: `metadata.reference` (OpenAI's metadata holds strings;
    a number is accepted too)."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return None
    reference = metadata.get("reference")
    if isinstance(reference, bool) or not isinstance(reference, str | int | float):
        return None
    return str(reference)
