"""Simulated token log-probabilities, in OpenAI's wire format, with a configurable entropy at the
start of each reasoning step.

An answer's steps are separated by blank lines ("\\n\\n"). The first token of each step gets the
entropy the profile's `step_entropy` gives that step; every other token a low one
(`TOKEN_ENTROPY`). A token's distribution puts all its mass on the `top_logprobs` alternatives
reported (the chosen token first, the rest sharing what it leaves equally), so the entropy of the
reported alternatives, renormalised or not, is the configured one (clipped to ln k for k
alternatives; k is at least 2, so `top_logprobs: 1` reports one of two).

`step_entropy` is either a list (step i gets item i; later steps the last item) or a generator
`{mean, spread, seed, hard_share, hard_mean}`: each step of the answer to a prompt draws, from a
random stream seeded by (seed, prompt, step), a "hard" step with probability `hard_share`
(entropy uniform in hard_mean ± spread) or else an easy one (mean ± spread), floored at 0. The same
prompt and step always get the same entropy, whichever model or request asks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STEP_MARKER = "\n\n"  # where the simulator's steps end
TOKEN_ENTROPY = 0.05  # nats: tokens inside a step are near-certain
_MAX_TOP = 20  # as OpenAI: top_logprobs is 0..20
# Alternatives reported next to the chosen token (prefixed with its leading whitespace).
_ALTERNATIVES = ("the", "so", "then", "first", "next", "we", "it", "this", "thus", "a", "now",
                 "here", "one", "each", "if", "but", "and", "to", "by", "as", "or")
_GENERATOR_KEYS = frozenset({"mean", "spread", "seed", "hard_share", "hard_mean"})


@dataclass(frozen=True, slots=True)
class StepEntropy:
    """The first-token entropy (nats) of each step: a fixed list, or a seeded generator."""

    values: tuple[float, ...] = ()
    mean: float = 0.0
    spread: float = 0.0
    seed: int = 0
    hard_share: float = 0.0
    hard_mean: float = 0.0

    @classmethod
    def parse(cls, raw: Any) -> StepEntropy:
        if isinstance(raw, Sequence) and not isinstance(raw, str):
            if not raw:
                raise ValueError("step_entropy: a list needs at least one value")
            return cls(values=tuple(_nats(f"step_entropy[{i}]", v) for i, v in enumerate(raw)))
        if not isinstance(raw, Mapping):
            raise ValueError("step_entropy must be a list of nats per step, or "
                             "{mean, spread, seed, hard_share, hard_mean}")
        unknown = set(raw) - _GENERATOR_KEYS
        if unknown:
            raise ValueError(f"step_entropy: unknown key(s) {', '.join(sorted(unknown))}")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("step_entropy.seed must be an integer")
        share = _nats("step_entropy.hard_share", raw.get("hard_share", 0.0))
        if share > 1:
            raise ValueError("step_entropy.hard_share must be in [0, 1]")
        return cls(mean=_nats("step_entropy.mean", raw.get("mean", 0.0)),
                   spread=_nats("step_entropy.spread", raw.get("spread", 0.0)), seed=seed,
                   hard_share=share,
                   hard_mean=_nats("step_entropy.hard_mean", raw.get("hard_mean", 0.0)))

    def to_wire(self) -> list[float] | dict[str, float | int]:
        if self.values:
            return list(self.values)
        return {"mean": self.mean, "spread": self.spread, "seed": self.seed,
                "hard_share": self.hard_share, "hard_mean": self.hard_mean}

    def of_step(self, step: int, prompt: str) -> float:
        if self.values:
            return self.values[min(step, len(self.values) - 1)]
        draws = random.Random(f"{self.seed}:{prompt}:{step}")
        centre = self.hard_mean if draws.random() < self.hard_share else self.mean
        return max(0.0, centre + draws.uniform(-self.spread, self.spread))


def _nats(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number >= 0")
    return float(value)


def distribution(entropy: float, k: int) -> list[float]:
    """k probabilities, the first the largest and the others equal, whose entropy is `entropy`
    (clipped to [0, ln k]). Found by bisection on the first: entropy falls as it grows."""
    if k <= 1:
        return [1.0]
    entropy = min(max(entropy, 0.0), math.log(k))

    def entropy_of(top: float) -> float:
        rest = (1.0 - top) / (k - 1)
        return -sum(p * math.log(p) for p in (top, *[rest] * (k - 1)) if p > 0)

    low, high = 1.0 / k, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if entropy_of(middle) > entropy:
            low = middle
        else:
            high = middle
    top = (low + high) / 2
    return [top, *[(1.0 - top) / (k - 1)] * (k - 1)]


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def token_logprob(piece: str, entropy: float, top: int) -> dict[str, Any]:
    """One `choices[].logprobs.content[]` item: the chosen token and its `top` alternatives."""
    probabilities = distribution(entropy, max(2, min(top, _MAX_TOP)))
    lead = piece[: len(piece) - len(piece.lstrip())]
    others = (lead + word for word in _ALTERNATIVES if lead + word != piece)
    tokens = [piece, *others]
    floor = math.log(1e-300)
    entries = [_entry(tokens[i], math.log(p) if p > 0 else floor)
               for i, p in enumerate(probabilities)]
    return {**entries[0], "top_logprobs": entries[:top]}


def answer_logprobs(pieces: Sequence[str], prefix: str, prompt: str,
                    steps: StepEntropy | None, top: int) -> list[dict[str, Any]]:
    """The logprobs of each output piece of an answer that continues `prefix` ("" when it
    starts anew): a piece that starts a step (the answer's first, the first after a blank line)
    gets that step's entropy."""
    step = prefix.count(STEP_MARKER)
    starts = not prefix or prefix.endswith(STEP_MARKER)
    out = []
    for piece in pieces:
        lead = piece[: len(piece) - len(piece.lstrip())]
        if STEP_MARKER in lead:
            step += lead.count(STEP_MARKER)
            starts = True
        entropy = TOKEN_ENTROPY
        if starts:
            entropy = steps.of_step(step, prompt) if steps is not None else TOKEN_ENTROPY
        out.append(token_logprob(piece, entropy, top))
        starts = False
    return out
