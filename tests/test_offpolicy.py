"""Off-policy estimators on synthetic logs whose truth is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from routeyard.eval.offpolicy import (
    ESTIMATORS,
    LoggedBandit,
    OffPolicyError,
    UnsupportedPolicy,
    effective_sample_size,
    estimate,
    estimate_all,
)

K = 3
MEANS = np.array([0.2, 0.5, 0.8])  # each action's expected reward (Bernoulli)
LOGGING = np.array([0.5, 0.3, 0.2])
TARGET = np.array([0.1, 0.2, 0.7])
TRUE_VALUE = float(TARGET @ MEANS)  # 0.68


def _log(n: int, seed: int, *, logging: np.ndarray = LOGGING, target: np.ndarray = TARGET,
         model: np.ndarray | None = None) -> LoggedBandit:
    rng = np.random.default_rng(seed)
    actions = rng.choice(K, size=n, p=logging)
    rewards = (rng.random(n) < MEANS[actions]).astype(float)
    predicted = None if model is None else np.tile(model, (n, 1))
    return LoggedBandit(actions, logging[actions], rewards, np.tile(target, (n, 1)), predicted)


def test_ips_is_unbiased_on_average_over_seeds() -> None:
    values = [estimate(_log(400, seed), "ips", n_resamples=50).value for seed in range(200)]
    # Standard error of the mean over 200 seeds is about 0.004.
    assert abs(np.mean(values) - TRUE_VALUE) < 0.015


def test_dr_equals_dm_when_the_reward_model_is_exact_in_expectation() -> None:
    # With an exact model the residuals are mean-zero noise: DR's correction vanishes on
    # average, and with deterministic rewards it vanishes exactly.
    n = 500
    rng = np.random.default_rng(1)
    actions = rng.choice(K, size=n, p=LOGGING)
    rewards = MEANS[actions]  # deterministic rewards: the model is exact
    log = LoggedBandit(actions, LOGGING[actions], rewards, np.tile(TARGET, (n, 1)),
                       np.tile(MEANS, (n, 1)))
    dm, dr = estimate(log, "dm"), estimate(log, "dr")
    assert dm.value == pytest.approx(TRUE_VALUE)
    assert dr.value == pytest.approx(dm.value)


def test_snips_equals_the_mean_when_target_is_logging() -> None:
    log = _log(300, 2, target=LOGGING)
    assert estimate(log, "snips").value == pytest.approx(float(log.outcome.mean()))
    assert estimate(log, "ips").value == pytest.approx(float(log.outcome.mean()))
    assert estimate(log, "snips").ess == pytest.approx(300)


def test_ess_closed_form() -> None:
    assert effective_sample_size(np.array([1.0, 1.0, 0.0, 2.0])) == pytest.approx(16 / 6)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_intervals_cover_the_truth_at_about_95_percent() -> None:
    biased_model = MEANS + np.array([0.1, -0.1, 0.05])  # a wrong model: DR must still cover
    covered = {name: 0 for name in ("ips", "snips", "dr")}
    runs = 60
    for seed in range(runs):
        log = _log(600, 100 + seed, model=biased_model)
        for name in covered:
            est = estimate(log, name, seed=seed, n_resamples=300)
            covered[name] += est.low <= TRUE_VALUE <= est.high
    for name, hits in covered.items():
        # Binomial(60, 0.95): fewer than 50 hits has probability below 0.1%.
        assert hits >= 50, (name, hits)


def test_dm_with_a_wrong_model_is_biased_and_dr_corrects_it() -> None:
    wrong = MEANS + 0.15
    values = [(estimate(_log(800, s, model=wrong), "dm", n_resamples=20).value,
               estimate(_log(800, s, model=wrong), "dr", n_resamples=20).value)
              for s in range(30)]
    dm, dr = np.mean(values, axis=0)
    assert dm == pytest.approx(TRUE_VALUE + 0.15)
    assert abs(dr - TRUE_VALUE) < 0.02


def test_missing_propensity_is_a_support_problem() -> None:
    log = _log(100, 3)
    propensity = log.propensity.copy()
    propensity[:5] = np.nan
    propensity[5:7] = 0.0
    broken = LoggedBandit(log.actions, propensity, log.outcome, log.target)
    with pytest.raises(UnsupportedPolicy, match="7 of 100 events lack support"):
        estimate(broken, "ips")
    report = estimate_all(broken)
    assert report.estimates == {} and report.support_problems == 7
    assert "no estimate" in (report.unsupported or "")


def test_deterministic_logging_cannot_support_another_action() -> None:
    n = 50
    actions = np.zeros(n, dtype=int)
    deterministic = LoggedBandit(actions, np.ones(n), np.ones(n), np.tile(TARGET, (n, 1)))
    with pytest.raises(UnsupportedPolicy):
        estimate(deterministic, "snips")
    # The same log evaluates a target that agrees with it.
    same = LoggedBandit(actions, np.ones(n), np.ones(n), np.tile([1.0, 0, 0], (n, 1)))
    assert estimate(same, "ips").value == 1.0


def test_zero_target_mass_on_an_unlogged_event_is_fine() -> None:
    n = 10
    target = np.tile([0.0, 1.0, 0.0], (n, 1))
    log = LoggedBandit(np.zeros(n, dtype=int), np.full(n, np.nan), np.ones(n), target)
    assert estimate(log, "ips").value == 0.0


def test_bad_logs() -> None:
    with pytest.raises(OffPolicyError, match="no logged events"):
        LoggedBandit(np.zeros(0, dtype=int), np.zeros(0), np.zeros(0), np.zeros((0, 2)))
    with pytest.raises(OffPolicyError, match="reward model"):
        estimate(_log(10, 0), "dr")
    with pytest.raises(KeyError, match="unknown estimator"):
        estimate(_log(10, 0), "magic")


def test_estimate_all_and_intervals_are_seeded() -> None:
    log = _log(200, 4, model=MEANS)
    first, second = estimate_all(log, seed=7), estimate_all(log, seed=7)
    assert set(first.estimates) == set(ESTIMATORS)
    assert first.to_dict() == second.to_dict()
    for est in first.estimates.values():
        assert est.low <= est.value <= est.high
    assert set(estimate_all(_log(200, 4)).estimates) == {"ips", "snips"}
