"""Eval metrics against hand-computed cases (DESIGN.md §3 "Eval JSON")."""

from __future__ import annotations

import numpy as np
import pytest

from routeyard.dataset import RoutingDataset
from routeyard.eval.metrics import (
    aiq,
    best_single,
    cost_ratio_at_best,
    hull_area,
    hull_value,
    max_quality,
    oracle,
    random_router,
    single_model_points,
    upper_hull,
)


def _dataset(scores: list[list[float]], costs: list[list[float]],
             models: tuple[str, ...] = ("a", "b", "c")) -> RoutingDataset:
    n = len(scores)
    return RoutingDataset("toy", [str(i) for i in range(n)], ["t"] * n, [f"p{i}" for i in range(n)],
                          list(models), np.array(scores, float), np.array(costs, float))


# -- hull ---------------------------------------------------------------------------------------

def test_hull_keeps_a_concave_rising_chain() -> None:
    points = [(3, 0.6), (1, 0.2), (2, 0.5)]
    assert upper_hull(points) == [(1, 0.2), (2, 0.5), (3, 0.6)]


def test_hull_drops_points_under_a_chord() -> None:
    # (1, 0.1) lies under the chord (0, 0) -> (2, 1), which reads 0.5 at cost 1.
    assert upper_hull([(0, 0), (1, 0.1), (2, 1)]) == [(0, 0), (2, 1)]
    # collinear points add nothing either
    assert upper_hull([(0, 0), (1, 0.5), (2, 1)]) == [(0, 0), (2, 1)]


def test_hull_is_non_decreasing() -> None:
    # Costing more and scoring less than (2, 0.9): dropped; so is an equal quality at more cost,
    # and the lower of two points at one cost.
    hull = upper_hull([(1, 0.5), (2, 0.9), (3, 0.6), (4, 0.9), (1, 0.3)])
    assert hull == [(1, 0.5), (2, 0.9)]


def test_hull_reads_zero_left_and_flat_right() -> None:
    hull = [(1.0, 0.4), (2.0, 0.8)]
    assert hull_value(hull, 0.5) == 0.0
    assert hull_value(hull, 1.0) == pytest.approx(0.4)
    assert hull_value(hull, 1.5) == pytest.approx(0.6)
    assert hull_value(hull, 10.0) == pytest.approx(0.8)
    assert hull_value([], 1.0) == 0.0


def test_hull_area_counts_zero_left_of_the_first_point_and_flat_right_of_the_last() -> None:
    hull = [(0.5, 0.4), (1.0, 0.8)]
    # [0, 0.5]: 0; [0.5, 1]: trapezoid 0.5 * (0.4 + 0.8) / 2 = 0.3; [1, 2]: flat 0.8
    assert hull_area(hull, 0.0, 2.0) == pytest.approx(1.1)
    # a window that starts inside a segment: [0.75, 1] reads 0.6..0.8 -> 0.175
    assert hull_area(hull, 0.75, 1.0) == pytest.approx(0.175)
    assert hull_area(hull, 0.0, 0.5) == 0.0


# -- AIQ ----------------------------------------------------------------------------------------

SINGLES = [(1.0, 0.5), (3.0, 0.9)]  # span [1, 3]


def test_aiq_of_the_single_models_alone() -> None:
    # normalised: (0, 0.5) -> (1, 0.9): (0.5 + 0.9) / 2
    assert aiq([], SINGLES) == pytest.approx(0.7)


def test_aiq_with_a_curve_point_above_the_chord() -> None:
    # (2, 0.8) -> (0.5, 0.8): 0.5 * (0.5 + 0.8) / 2 + 0.5 * (0.8 + 0.9) / 2 = 0.325 + 0.425
    assert aiq([(2.0, 0.8)], SINGLES) == pytest.approx(0.75)
    # a curve point under the chord changes nothing
    assert aiq([(2.0, 0.6)], SINGLES) == pytest.approx(0.7)


def test_aiq_extends_flat_right() -> None:
    # The dear model (3, 0.6) scores less than the curve's (2, 0.9): dropped, and the hull
    # runs flat at 0.9 from 0.5 to 1: 0.5 * (0.5 + 0.9) / 2 + 0.5 * 0.9 = 0.35 + 0.45
    assert aiq([(2.0, 0.9)], [(1.0, 0.5), (3.0, 0.6)]) == pytest.approx(0.8)


def test_aiq_clips_points_outside_the_span() -> None:
    # cheaper than the cheapest model: counted at the span's left end, flat 1.0 all along
    assert aiq([(0.5, 1.0)], SINGLES) == pytest.approx(1.0)
    # dearer than the dearest: counted at the right end: (0, 0.5) -> (1, 1.0)
    assert aiq([(5.0, 1.0)], SINGLES) == pytest.approx(0.75)


def test_aiq_is_none_when_every_model_costs_the_same() -> None:
    assert aiq([(1.0, 0.9)], [(1.0, 0.5), (1.0, 0.7)]) is None


def test_aiq_stays_in_unit_interval() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        singles = [(float(c), float(q)) for c, q in rng.random((4, 2))]
        curve = [(float(c) * 2, float(q)) for c, q in rng.random((10, 2))]
        value = aiq(curve, singles)
        assert value is not None and 0.0 <= value <= 1.0


# -- quality and cost ratio ---------------------------------------------------------------------

CURVE = [(1.0, 0.5), (2.0, 0.85), (2.5, 0.9), (4.0, 0.95)]


def test_max_quality() -> None:
    assert max_quality(CURVE) == 0.95
    with pytest.raises(ValueError):
        max_quality([])


def test_cost_ratio_at_best() -> None:
    assert cost_ratio_at_best(CURVE, {"model": "m", "cost": 4.0, "quality": 0.9}) == 0.625
    # within the float tolerance counts as reaching it
    assert cost_ratio_at_best(CURVE, (4.0, 0.9 + 1e-12)) == 0.625


def test_cost_ratio_is_none_when_the_curve_never_reaches_best() -> None:
    assert cost_ratio_at_best([(1.0, 0.5), (2.0, 0.8)], (4.0, 0.9)) is None


# -- reference routers --------------------------------------------------------------------------

TOY = _dataset(scores=[[1, 1, 0], [0, 0.5, 1], [0, 1, 1]],
               costs=[[1, 2, 4], [1, 2, 4], [2, 2, 4]])


def test_single_models_and_best_single() -> None:
    singles = single_model_points(TOY)
    assert [s["model"] for s in singles] == ["a", "b", "c"]
    assert singles[0]["cost"] == pytest.approx(4 / 3)
    assert singles[1]["quality"] == pytest.approx(2.5 / 3)
    assert best_single(TOY) == {"model": "b", "cost": 2.0, "quality": pytest.approx(2.5 / 3)}


def test_best_single_prefers_the_cheaper_among_ties() -> None:
    tied = _dataset(scores=[[1, 1], [0, 0]], costs=[[3, 1], [3, 1]], models=("dear", "cheap"))
    assert best_single(tied)["model"] == "cheap"


def test_oracle_takes_the_best_score_at_the_cheapest_price() -> None:
    # row 0: a and b score 1 -> a ($1); row 1: only c -> $4; row 2: b and c -> b ($2)
    assert oracle(TOY) == {"cost": pytest.approx(7 / 3), "quality": pytest.approx(1.0)}


def test_random_router_expectation_and_draw() -> None:
    expected = random_router(TOY)
    assert expected["cost"] == pytest.approx(22 / 9)
    assert expected["quality"] == pytest.approx(5.5 / 9)
    assert random_router(TOY, seed=3) == random_router(TOY, seed=3)
