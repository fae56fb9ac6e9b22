"""Offline cascade: cheap models vote with their recorded answers; disagreement escalates.

A dataset has one recorded answer per model, so self-consistency is scored across different
cheap models: the voters are all called (their costs add up), the share of the majority
answer (normalised as the live cascade does, see routeyard.answers.normalise_answer) is
compared with a threshold, and below it the final model is called too (its cost adds up as
well). The returned answer, and so the quality, is the cheapest voter of the majority's.

Every chain is chosen on TRAIN: the final model, the 2-3 voters among the models cheaper than
it with the best train quality per dollar, and the threshold. For each λ the chain maximising
train quality - λ·cost/scale is then scored on test (the runner's λ convention), so the knob
swept is in effect the number of voters and the agreement threshold. Chains of one model (no
cascade) are candidates too, so the curve spans the cheapest model to the best one.
Rows without any recorded response are skipped and counted in `skipped`.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

import numpy as np

from routeyard.answers import normalise_answer
from routeyard.dataset import RoutingDataset
from routeyard.eval import metrics

VOTER_POOL = 5  # voters are drawn from this many best-quality-per-dollar cheaper models
THRESHOLDS = {2: (1.0,), 3: (2 / 3, 1.0)}  # agreement thresholds worth trying per voter count


@dataclass(frozen=True, slots=True)
class Chain:
    voters: tuple[int, ...]  # model columns, cheapest (train mean cost) first; () = no vote
    threshold: float
    final: int

    def describe(self, models: list[str]) -> str:
        if not self.voters:
            return models[self.final]
        names = "+".join(models[v] for v in self.voters)
        return f"{names} (agree ≥ {self.threshold:.2f}) > {models[self.final]}"


def answer_codes(data: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
    """(codes, kept): per row and model an integer per normalised answer, equal codes meaning
    equal answers; a missing answer gets a code no other model shares. `kept` marks rows with
    at least one recorded response."""
    n, m = len(data), len(data.models)
    codes = np.empty((n, m), dtype=np.int64)
    kept = np.zeros(n, dtype=bool)
    responses = data.responses or [{} for _ in range(n)]
    for row, answers in enumerate(responses):
        seen: dict[str, int] = {}
        for col, model in enumerate(data.models):
            text = answers.get(model)
            if isinstance(text, str):
                kept[row] = True
                codes[row, col] = seen.setdefault(normalise_answer(text), len(seen))
            else:
                codes[row, col] = -1 - col
    return codes, kept


def run_chain(chain: Chain, codes: np.ndarray, costs: np.ndarray, scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (cost of every call, quality of the returned answer, escalated?)."""
    n = len(codes)
    if not chain.voters:
        return costs[:, chain.final], scores[:, chain.final], np.zeros(n, dtype=bool)
    voters = list(chain.voters)
    votes = codes[:, voters]
    support = (votes[:, :, None] == votes[:, None, :]).sum(axis=2)  # (n, k)
    winner = support.argmax(axis=1)  # the cheapest voter holding the majority answer
    share = support.max(axis=1) / len(voters)
    escalate = share < chain.threshold - 1e-9
    rows = np.arange(n)
    cost = costs[:, voters].sum(axis=1) + np.where(escalate, costs[:, chain.final], 0.0)
    quality = np.where(escalate, scores[:, chain.final], scores[:, voters][rows, winner])
    return cost, quality, escalate


def candidate_chains(mean_cost: np.ndarray, mean_quality: np.ndarray) -> list[Chain]:
    chains = [Chain((), 1.0, j) for j in range(len(mean_cost))]
    for final in range(len(mean_cost)):
        cheaper = [j for j in range(len(mean_cost)) if mean_cost[j] < mean_cost[final]]
        value = sorted(cheaper, key=lambda j: -mean_quality[j] / max(mean_cost[j], 1e-12))
        pool = sorted(value[:VOTER_POOL], key=lambda j: mean_cost[j])
        for k, thresholds in THRESHOLDS.items():
            for voters in itertools.combinations(pool, k):
                chains += [Chain(tuple(voters), t, final) for t in thresholds]
    return chains


class CascadeEval:
    """The `cascade` output-aware algorithm of `routeyard eval`."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.chains: list[Chain] = []
        self.train_points = np.zeros((0, 2))
        self.cost_scale = 1.0
        self.skipped: dict[str, int] = {}
        self.chosen: dict[float, str] = {}

    def fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        codes, kept = answer_codes(train)
        self.skipped["train"] = int((~kept).sum())
        if not kept.any():
            raise ValueError(f"{train.name}: no recorded responses; the cascade cannot be scored")
        costs, scores = train.costs[kept], train.scores[kept]
        mean_cost = costs.mean(axis=0)
        self.models = list(train.models)
        self.cost_scale = float(mean_cost.max()) or 1.0
        self.chains = candidate_chains(mean_cost, scores.mean(axis=0))
        points = []
        for chain in self.chains:
            cost, quality, _ = run_chain(chain, codes[kept], costs, scores)
            points.append((cost.mean(), quality.mean()))
        self.train_points = np.array(points)

    def choose(self, lam: float) -> Chain:
        utility = self.train_points[:, 1] - lam * self.train_points[:, 0] / self.cost_scale
        return self.chains[int(np.argmax(utility))]

    def curve(self, test: RoutingDataset, embeddings: np.ndarray,
              lambdas: tuple[float, ...]) -> list[tuple[float, metrics.Point]]:
        codes, kept = answer_codes(test)
        self.skipped["test"] = int((~kept).sum())
        if self.skipped["test"] or self.skipped.get("train"):
            print(f"cascade: skipped rows without responses: {self.skipped}", file=sys.stderr)
        costs, scores = test.costs[kept], test.scores[kept]
        points: list[tuple[float, metrics.Point]] = []
        for lam in lambdas:
            chain = self.choose(lam)
            self.chosen[lam] = chain.describe(self.models)
            cost, quality, _ = run_chain(chain, codes[kept], costs, scores)
            points.append((lam, (float(cost.mean()), float(quality.mean()))))
        return points
