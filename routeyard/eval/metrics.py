"""Cost/quality metrics of routers on a routing dataset (DESIGN.md §3 "Eval JSON").

A point is (mean dollars per prompt, mean score). A router's curve comes from sweeping its
cost/quality knob; it is judged against the single models, the per-prompt oracle and random
routing. AIQ follows RouterBench: the area under the non-decreasing upper convex hull of the
curve's points together with the single models' points, over the single models' cost span.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TypedDict

import numpy as np

from routeyard.dataset import RoutingDataset

Point = tuple[float, float]  # (cost, quality)

TOLERANCE = 1e-9  # "reaches the best single model's quality": float means are not exact


class SingleModel(TypedDict):
    model: str
    cost: float
    quality: float


class Reference(TypedDict):
    cost: float
    quality: float


# -- reference routers ------------------------------------------------------------------------

def single_model_points(test: RoutingDataset) -> list[SingleModel]:
    """Every model used alone: its mean cost and mean score, in `test.models` order."""
    costs = test.costs.mean(axis=0)
    quality = test.scores.mean(axis=0)
    return [SingleModel(model=m, cost=float(c), quality=float(q))
            for m, c, q in zip(test.models, costs, quality, strict=True)]


def best_single(test: RoutingDataset) -> SingleModel:
    """The model with the highest mean score; the cheaper one among ties."""
    singles = single_model_points(test)
    top = max(s["quality"] for s in singles)
    tied = [s for s in singles if s["quality"] >= top - TOLERANCE]
    return min(tied, key=lambda s: s["cost"])


def oracle(test: RoutingDataset) -> Reference:
    """Per prompt the best score, paying the cheapest model among those that reach it."""
    best = test.scores.max(axis=1, keepdims=True)
    # Models short of the best score get an infinite price, so argmin picks a tied best.
    priced = np.where(test.scores >= best - TOLERANCE, test.costs, np.inf)
    chosen = np.argmin(priced, axis=1)
    rows = np.arange(len(chosen))
    return Reference(cost=float(test.costs[rows, chosen].mean()),
                     quality=float(test.scores[rows, chosen].mean()))


def random_router(test: RoutingDataset, seed: int | None = None) -> Reference:
    """A uniform random choice per prompt. With no seed: its exact expectation (the mean over
    models), which is what the eval reports; with a seed: one sampled draw."""
    if seed is None:
        return Reference(cost=float(test.costs.mean()), quality=float(test.scores.mean()))
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(test.models), size=len(test))
    rows = np.arange(len(chosen))
    return Reference(cost=float(test.costs[rows, chosen].mean()),
                     quality=float(test.scores[rows, chosen].mean()))


# -- hull and area ----------------------------------------------------------------------------

def upper_hull(points: Iterable[Point]) -> list[Point]:
    """The non-decreasing upper convex hull, as its vertices sorted by cost.

    Read as a function of cost it is 0 left of the first vertex, linear between vertices and
    flat right of the last. A point costing more but scoring no better than a cheaper one adds
    nothing (it lies under the flat extension), so it is dropped before the hull is taken.
    """
    ordered = sorted(((float(c), float(q)) for c, q in points), key=lambda p: (p[0], -p[1]))
    rising: list[Point] = []
    for point in ordered:
        if not rising or point[1] > rising[-1][1]:
            rising.append(point)
    hull: list[Point] = []
    for point in rising:  # Andrew's monotone chain, upper half; costs are strictly increasing
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()  # hull[-1] is on or under the chord hull[-2] -> point
        hull.append(point)
    return hull


def _cross(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def hull_value(hull: Sequence[Point], cost: float) -> float:
    """The hull read as a function: 0 left of its first vertex, flat right of its last."""
    if not hull or cost < hull[0][0]:
        return 0.0
    costs = [c for c, _ in hull]
    return float(np.interp(cost, costs, [q for _, q in hull]))


def hull_area(hull: Sequence[Point], lo: float, hi: float) -> float:
    """Exact integral of `hull_value` over [lo, hi] (piecewise linear, so trapezoids)."""
    if hi <= lo or not hull:
        return 0.0
    # The function is linear between these breakpoints, apart from the jump at the first
    # vertex, which is a breakpoint itself (the interval right of it starts at its quality).
    breaks = sorted({lo, hi, *(c for c, _ in hull if lo < c < hi)})
    area = 0.0
    for left, right in pairwise(breaks):
        if right <= hull[0][0]:
            continue  # quality 0 left of the first vertex
        area += (right - left) * (hull_value(hull, left) + hull_value(hull, right)) / 2
    return area


def aiq(curve: Iterable[Point], singles: Iterable[Point]) -> float | None:
    """Area under the non-decreasing upper hull of the curve and the singles, on normalised cost.

    Cost runs over [cheapest single model's mean cost, dearest single model's] and is scaled to
    [0, 1]; points outside the span are clipped into it. The result is in [0, 1] (for scores in
    [0, 1]). None where every single model costs the same: there is no span to integrate over.
    """
    single_points = [(float(c), float(q)) for c, q in singles]
    if not single_points:
        raise ValueError("aiq needs the single models' points")
    lo = min(c for c, _ in single_points)
    hi = max(c for c, _ in single_points)
    if hi - lo <= 0:
        return None
    span = hi - lo
    clipped = [((min(max(c, lo), hi) - lo) / span, q)
               for c, q in [*((float(c), float(q)) for c, q in curve), *single_points]]
    return hull_area(upper_hull(clipped), 0.0, 1.0)


def max_quality(curve: Sequence[Point]) -> float:
    if not curve:
        raise ValueError("empty curve")
    return float(max(q for _, q in curve))


def cost_ratio_at_best(curve: Sequence[Point], best: SingleModel | Point) -> float | None:
    """The cheapest curve cost whose quality reaches the best single model's, over that
    model's cost. None if the curve never gets there (or the best model is free)."""
    best_cost, best_quality = ((best["cost"], best["quality"]) if isinstance(best, dict)
                               else best)
    reaching = [c for c, q in curve if q >= best_quality - TOLERANCE]
    if not reaching or best_cost <= 0:
        return None
    return float(min(reaching) / best_cost)
