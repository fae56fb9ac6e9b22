"""Hyper-parameter choice on a validation split carved from train (never test).

Candidates are compared by the area under their validation quality/cost curve, the same
shape of figure the offline evaluation reports, so the knob is tuned for routing rather than
for a proxy loss alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 40)])


def split_rows(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows): a seeded shuffle, so choices are reproducible."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def routing_area(predicted: np.ndarray, scores: np.ndarray, costs: np.ndarray,
                 expected_costs: np.ndarray | None = None) -> float:
    """Area under the upper hull of the λ-swept (cost, quality) curve, cost in [0, 1].

    The knob is λ over costs scaled by the dearest model's mean, as `TrainableRouter.choose`;
    choices price each prompt by `expected_costs` (per prompt and model) when given, else by
    each model's mean cost.
    """
    mean_costs = costs.mean(axis=0)
    scale = float(mean_costs.max()) or 1.0
    priced = mean_costs[None, :] if expected_costs is None else expected_costs
    rows = np.arange(len(scores))
    points = [(float(mean_costs[j]), float(scores[:, j].mean())) for j in range(scores.shape[1])]
    for lam in LAMBDAS:
        pick = np.argmax(predicted - lam * priced / scale, axis=1)
        points.append((float(costs[rows, pick].mean()), float(scores[rows, pick].mean())))
    low, high = float(mean_costs.min()), float(mean_costs.max())
    if high <= low:  # every model costs the same: the best quality is all that counts
        return max(q for _, q in points)
    return _hull_area([((c - low) / (high - low), q) for c, q in points])


def _hull_area(points: list[tuple[float, float]]) -> float:
    """Area under the non-decreasing upper convex hull on [0, 1] (0 left of its first point)."""
    hull: list[tuple[float, float]] = []
    for point in sorted(points):
        if hull and point[1] <= hull[-1][1]:
            continue  # dominated: dearer and no better
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(hull):
        area += (min(x1, 1.0) - max(x0, 0.0)) * (y0 + y1) / 2 if x1 > 0 else 0.0
    if hull and hull[-1][0] < 1.0:
        area += (1.0 - max(hull[-1][0], 0.0)) * hull[-1][1]
    return area


def _cross(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def choose_candidate(train: RoutingDataset, embeddings: np.ndarray,
                     candidates: Iterable[dict[str, Any]],
                     fit_predict: Callable[[dict[str, Any], RoutingDataset, np.ndarray,
                                            np.ndarray], np.ndarray],
                     seed: int = 0) -> tuple[dict[str, Any], dict[str, float]]:
    """Best candidate by validation routing area; also returns every candidate's score.

    `fit_predict(candidate, fit_data, fit_embeddings, val_embeddings)` returns predicted
    quality on the validation rows.
    """
    fit_rows, val_rows = split_rows(len(train), seed=seed)
    fit_data, val_data = train.subset(fit_rows), train.subset(val_rows)
    best: tuple[float, dict[str, Any]] | None = None
    report: dict[str, float] = {}
    for candidate in candidates:
        predicted = fit_predict(candidate, fit_data, embeddings[fit_rows], embeddings[val_rows])
        area = routing_area(predicted, val_data.scores, val_data.costs)
        report[repr(candidate)] = area
        if best is None or area > best[0]:
            best = (area, candidate)
    if best is None:
        raise ValueError("no hyper-parameter candidates")
    return best[1], report
