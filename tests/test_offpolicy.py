"""Off-policy estimators on synthetic logs whose truth is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from routeyard.eval.offpolicy import (
    CLIP,
    ESTIMATORS,
    VARIANTS,
    LoggedBandit,
    OffPolicyError,
    UnsupportedPolicy,
    crossfit_reward,
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
    # The variants are measured by the bench, not reported by default.
    assert not set(VARIANTS) & set(first.estimates)


# -- the variance-controlled variants -------------------------------------------------------------

SKEWED = np.array([0.9, 0.05, 0.05])  # weights 1/9, 4 and 14 for TARGET: one above CLIP


def test_variants_equal_dr_when_no_weight_exceeds_the_cap() -> None:
    log = _log(400, 5, model=MEANS + 0.1)
    assert log.weights().max() <= CLIP
    dr = estimate(log, "dr").value
    for name in ("dr-clip", "dr-switch"):
        assert estimate(log, name).value == pytest.approx(dr)


def test_sndr_is_dr_when_the_target_is_the_logging_policy() -> None:
    log = _log(300, 6, target=LOGGING, model=MEANS - 0.2)  # w = 1 on every event
    assert estimate(log, "sndr").value == pytest.approx(estimate(log, "dr").value)
    skewed = _log(300, 6, logging=SKEWED, model=MEANS - 0.2)
    assert skewed.predicted is not None
    w = skewed.weights()
    residual = skewed.outcome - skewed.predicted[skewed.rows, skewed.actions]
    direct = np.sum(skewed.target * skewed.predicted, axis=1)
    expected = float(direct.mean() + np.sum(w * residual) / np.sum(w))
    assert estimate(skewed, "sndr").value == pytest.approx(expected)
    assert estimate(skewed, "sndr").value != pytest.approx(estimate(skewed, "dr").value)


def test_switch_drops_the_correction_above_the_cap() -> None:
    n = 300
    log = _log(n, 7, logging=SKEWED, model=MEANS + 0.15)
    w = log.weights()
    assert set(np.round(np.unique(w), 3)) <= {0.111, 4.0, 14.0}
    assert log.predicted is not None
    direct = np.sum(log.target * log.predicted, axis=1)
    residual = log.outcome - log.predicted[log.rows, log.actions]
    expected = float(np.mean(direct + np.where(w > CLIP, 0.0, w) * residual))
    assert estimate(log, "dr-switch").value == pytest.approx(expected)
    clipped = float(np.mean(direct + np.minimum(w, CLIP) * residual))
    assert estimate(log, "dr-clip").value == pytest.approx(clipped)


def test_clipping_bias_has_its_closed_form() -> None:
    # E[dr-clip] - truth = Σ_a μ(a)·(min(w_a, C) - w_a)·(mean_a - ŷ_a): only action 2 is capped.
    wrong = MEANS + 0.15
    w2 = TARGET[2] / SKEWED[2]
    bias = SKEWED[2] * (CLIP - w2) * (MEANS[2] - wrong[2])  # +0.03
    values = {name: np.mean([estimate(_log(1500, 300 + s, logging=SKEWED, model=wrong), name,
                                      n_resamples=10).value for s in range(40)])
              for name in ("dr-clip", "dr")}
    assert values["dr-clip"] == pytest.approx(TRUE_VALUE + bias, abs=0.012)
    assert values["dr"] == pytest.approx(TRUE_VALUE, abs=0.02)
    # With an exact model any weights leave DR unbiased: the capped forms too.
    exact = np.mean([estimate(_log(1500, 400 + s, logging=SKEWED, model=MEANS), "dr-clip",
                              n_resamples=10).value for s in range(40)])
    assert exact == pytest.approx(TRUE_VALUE, abs=0.01)


# -- the reward model ---------------------------------------------------------------------------

def test_crossfit_reward_learns_a_shift_shared_by_every_action() -> None:
    rng = np.random.default_rng(8)
    n = 600
    x = rng.normal(size=(n, 3))
    shift = 0.1 * x[:, 0]  # a harder or easier prompt for every action alike
    actions = rng.integers(0, K, n)
    outcome = 0.5 + 0.2 * actions + shift + rng.normal(0, 0.01, n)
    base = np.tile([0.5, 0.7, 0.9], (n, 1))
    fitted = crossfit_reward(base, actions, outcome, x)
    assert np.abs(fitted - (base + shift[:, None]).clip(outcome.min(), outcome.max())
                  ).max() < 0.03
    assert np.array_equal(crossfit_reward(base, actions, outcome, None), base)
    # Features that carry nothing leave the base nearly untouched.
    noise = crossfit_reward(base, actions, 0.5 + 0.2 * actions + rng.normal(0, 0.1, n),
                            rng.normal(size=(n, 20)))
    assert np.abs(noise - base).mean() < 0.02


def test_crossfit_reward_never_predicts_an_event_from_itself() -> None:
    rng = np.random.default_rng(9)
    n, d = 200, 40
    x = rng.normal(size=(n, d))
    actions = rng.integers(0, K, n)
    outcome = np.clip(0.5 + x @ rng.normal(0, 0.03, d) + rng.normal(0, 0.05, n), 0, 1)
    base = np.full((n, K), 0.5)
    before = crossfit_reward(base, actions, outcome, x)
    changed = outcome.copy()
    changed[17] = outcome.min() if outcome[17] > 0.5 else outcome.max()  # the range stays
    after = crossfit_reward(base, actions, changed, x)
    # Only the per-cell centring (one constant per action, ~70 events each) sees event 17:
    # an in-sample ridge with d/n = 0.2 would move its prediction by ~0.2 x the change.
    assert np.abs(after[17] - before[17]).max() < 0.05 * abs(changed[17] - outcome[17])
    others = np.arange(n) != 17
    assert np.abs(after[others] - before[others]).max() > 0.01  # the other folds learnt it


def test_crossfit_reward_keeps_each_cells_mean() -> None:
    # Long prompts are harder for every model: the shift learns it from every event, and the
    # predictions of what was logged still average to each cell's observed mean.
    rng = np.random.default_rng(10)
    n = 600
    long = rng.random(n) < 0.5
    actions = rng.integers(0, 2, n)
    outcome = (rng.random(n) < np.where(actions == 1, 0.8, 0.6) - 0.4 * long).astype(float)
    means = np.array([outcome[actions == a].mean() for a in (0, 1)])
    fitted = crossfit_reward(np.tile(means, (n, 1)), actions, outcome,
                             np.log1p(np.where(long, 2000.0, 20.0))[:, None])
    assert fitted[~long, 1].mean() - fitted[long, 1].mean() == pytest.approx(0.4, abs=0.1)
    for a in (0, 1):
        assert fitted[actions == a, a].mean() == pytest.approx(means[a])
