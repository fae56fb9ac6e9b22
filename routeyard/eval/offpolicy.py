"""Off-policy estimators: a target policy's mean outcome from events logged by another policy.

An event is (logged action, its probability under the logging policy `propensity`, the
observed outcome) plus the target's probability of every action (`target`, one row per event)
and, for the model-based estimators, a reward model's prediction of every action's outcome
(`predicted`). The outcome may be the quality (reward), the cost or the latency: every
estimator is the same for each.

| name | estimate of E_target[outcome] |
|---|---|
| `ips` | mean of w·y, w = target(a)/propensity(a) (inverse propensity; unbiased) |
| `snips` | Σ w·y / Σ w (self-normalised: bounded by the outcomes, a little biased) |
| `dm` | mean of Σ_a target(a)·ŷ(a) (direct method: the reward model's view, no weights) |
| `dr` | dm + mean of w·(y - ŷ(a)) (doubly robust: unbiased if either part is right) |

Each estimate carries a seeded bootstrap 95% interval over events (scipy.stats.bootstrap,
percentile method; paired for SNIPS's ratio) and the effective sample size (Σw)²/Σw².

`VARIANTS` holds variance-controlled forms of DR, measured by bench/offpolicy_validation.py but
not reported by `evaluate-policy` (they did not lower the error with honest intervals; see
docs/benchmarks.md): `sndr` (dm + Σ w·(y - ŷ) / Σ w), `dr-clip` (weights clipped at
`CLIP`) and `dr-switch` (the correction dropped where w > `CLIP`: the direct method there).

`crossfit_reward` is a richer reward model for DM/DR: a per-cell mean (in-sample) plus a ridge
on per-event features shared by every action, cross-fitted so no event's correction is
predicted by a fit that saw it. Also measured, and not used by `evaluate-policy`.

**Support.** An event whose logged propensity is missing, zero or not in (0, 1] while the
target gives its action positive probability, or whose logged action had probability 1 (so
every other action had 0) while the target puts mass on another action, or where the target
puts mass on an action the logging policy could not take at all (`supported`: say a model that
was not among the logged candidates), cannot be weighted:
the target chooses what the logging policy never could. Such events make the whole estimate
unsupported: `estimate` then raises `UnsupportedPolicy` (with the counts) instead of giving a
figure, since any number would be silently wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 1000
# The variants' fixed weight cap: a rule stated before any measurement, not tuned on the truth.
CLIP = 10.0
# Target mass below this on the other actions counts as none (float noise from a mixture).
_MASS_EPS = 1e-9


class OffPolicyError(ValueError):
    """Logged events that cannot be estimated from (empty, malformed)."""


class UnsupportedPolicy(OffPolicyError):
    """The target gives positive probability to actions the logging policy never took."""

    def __init__(self, problems: int, n: int) -> None:
        super().__init__(f"{problems} of {n} events lack support: the target policy gives "
                         "positive probability to an action whose logged probability is 0 or "
                         "missing; no estimate is given")
        self.problems = problems
        self.n = n


@dataclass(frozen=True, slots=True)
class LoggedBandit:
    """n logged events over K actions. `propensity` may hold NaN where none was logged."""

    actions: np.ndarray  # (n,) int: the logged action's index
    propensity: np.ndarray  # (n,) its probability under the logging policy
    outcome: np.ndarray  # (n,) the observed outcome
    target: np.ndarray  # (n, K) the target policy's probability of each action
    predicted: np.ndarray | None = None  # (n, K) a reward model's outcome per action
    # (n, K) bool: the actions the logging policy could take at all (its candidates); None:
    # every action.
    supported: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.actions)
        if n == 0:
            raise OffPolicyError("no logged events")
        if self.target.ndim != 2 or self.target.shape[0] != n:
            raise OffPolicyError("target must be (events, actions)")
        if len(self.propensity) != n or len(self.outcome) != n:
            raise OffPolicyError("actions, propensity and outcome differ in length")
        for extra in (self.predicted, self.supported):
            if extra is not None and extra.shape != self.target.shape:
                raise OffPolicyError("predicted and supported must have the target's shape")

    @property
    def rows(self) -> np.ndarray:
        return np.arange(len(self.actions))

    def target_of_logged(self) -> np.ndarray:
        return self.target[self.rows, self.actions]

    def support_problems(self) -> np.ndarray:
        """(n,) bool: the events the target cannot be weighted on (see the module doc)."""
        p = np.asarray(self.propensity, dtype=float)
        pi = self.target_of_logged()
        bad_p = ~np.isfinite(p) | (p <= 0) | (p > 1 + 1e-9)
        elsewhere = self.target.sum(axis=1) - pi  # the target's mass off the logged action
        no_other = np.isfinite(p) & (p >= 1 - 1e-9)
        problems = (bad_p & (pi > 0)) | (no_other & (elsewhere > _MASS_EPS))
        if self.supported is not None:
            problems |= np.sum(self.target * ~self.supported, axis=1) > _MASS_EPS
        return problems

    def weights(self) -> np.ndarray:
        p = np.asarray(self.propensity, dtype=float)
        pi = self.target_of_logged()
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(pi > 0, pi / p, 0.0)
        return np.nan_to_num(w, nan=0.0, posinf=0.0)


@dataclass(frozen=True, slots=True)
class Estimate:
    estimator: str
    value: float
    low: float
    high: float
    n: int
    ess: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n,
                "ess": self.ess}


def effective_sample_size(w: np.ndarray) -> float:
    total = float(np.sum(w ** 2))
    return float(np.sum(w)) ** 2 / total if total > 0 else 0.0


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: Callable[..., Any], seed: int,
               n_resamples: int, method: str = "percentile") -> tuple[float, float]:
    from scipy.stats import bootstrap  # scipy loads only when an interval is asked for

    if len(samples[0]) < 2 or all(np.ptp(s) == 0 for s in samples):
        value = float(statistic(*samples, axis=-1))
        return value, value
    result = bootstrap(samples, statistic, paired=len(samples) > 1, vectorized=True,
                       n_resamples=n_resamples, confidence_level=CONFIDENCE,
                       method=method, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def _mean(x: np.ndarray, axis: int = -1) -> Any:
    return np.mean(x, axis=axis)


def _ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> Any:
    total = np.sum(den, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.sum(num, axis=axis) / np.where(total > 0, total, 1), 0.0)


# Each estimator: (samples to resample, their statistic) from a log. Per-event terms make the
# bootstrap a resampling of events.
Terms = tuple[tuple[np.ndarray, ...], Callable[..., Any]]


def _ips(log: LoggedBandit) -> Terms:
    return (log.weights() * log.outcome,), _mean


def _snips(log: LoggedBandit) -> Terms:
    w = log.weights()
    return (w * log.outcome, w), _ratio


def _needs_model(log: LoggedBandit) -> np.ndarray:
    if log.predicted is None:
        raise OffPolicyError("this estimator needs a reward model's predictions")
    return log.predicted


def _dm(log: LoggedBandit) -> Terms:
    predicted = _needs_model(log)
    return (np.sum(log.target * predicted, axis=1),), _mean


def _dr(log: LoggedBandit) -> Terms:
    predicted = _needs_model(log)
    direct = np.sum(log.target * predicted, axis=1)
    residual = log.outcome - predicted[log.rows, log.actions]
    return (direct + log.weights() * residual,), _mean


def _sndr_statistic(direct: np.ndarray, weighted: np.ndarray, w: np.ndarray,
                    axis: int = -1) -> Any:
    return np.mean(direct, axis=axis) + _ratio(weighted, w, axis=axis)


def _sndr(log: LoggedBandit) -> Terms:
    predicted = _needs_model(log)
    w = log.weights()
    residual = log.outcome - predicted[log.rows, log.actions]
    return (np.sum(log.target * predicted, axis=1), w * residual, w), _sndr_statistic


def _capped_dr(log: LoggedBandit, cap: Callable[[np.ndarray], np.ndarray]) -> Terms:
    predicted = _needs_model(log)
    direct = np.sum(log.target * predicted, axis=1)
    residual = log.outcome - predicted[log.rows, log.actions]
    return (direct + cap(log.weights()) * residual,), _mean


def _dr_clip(log: LoggedBandit) -> Terms:
    return _capped_dr(log, lambda w: np.minimum(w, CLIP))


def _dr_switch(log: LoggedBandit) -> Terms:
    return _capped_dr(log, lambda w: np.where(w > CLIP, 0.0, w))


ESTIMATORS: dict[str, Callable[[LoggedBandit], Terms]] = {
    "ips": _ips, "snips": _snips, "dm": _dm, "dr": _dr}
VARIANTS: dict[str, Callable[[LoggedBandit], Terms]] = {
    "sndr": _sndr, "dr-clip": _dr_clip, "dr-switch": _dr_switch}
_ALL = {**ESTIMATORS, **VARIANTS}
MODEL_FREE = ("ips", "snips")


def estimate(log: LoggedBandit, estimator: str, *, seed: int = 0,
             n_resamples: int = N_RESAMPLES, check_support: bool = True,
             method: str = "percentile") -> Estimate:
    """One estimator's figure with its bootstrap interval; raises `UnsupportedPolicy` when
    any event lacks support (see the module doc) and `KeyError` for an unknown name."""
    if estimator not in _ALL:
        known = ", ".join(_ALL)
        raise KeyError(f"unknown estimator {estimator!r} (known: {known})")
    if check_support:
        problems = int(log.support_problems().sum())
        if problems:
            raise UnsupportedPolicy(problems, len(log.actions))
    samples, statistic = _ALL[estimator](log)
    samples = tuple(np.asarray(s, dtype=float) for s in samples)
    value = float(statistic(*samples, axis=-1))
    low, high = _bootstrap(samples, statistic, seed, n_resamples, method)
    return Estimate(estimator, value, low, high, len(log.actions),
                    effective_sample_size(log.weights()))


@dataclass(slots=True)
class Report:
    """Every applicable estimator for one outcome, or the reason none is given."""

    estimates: dict[str, Estimate] = field(default_factory=dict)
    unsupported: str | None = None
    support_problems: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "unsupported": self.unsupported, "support_problems": self.support_problems}


def estimate_all(log: LoggedBandit, *, seed: int = 0, n_resamples: int = N_RESAMPLES,
                 estimators: tuple[str, ...] | None = None) -> Report:
    """Every estimator that applies (the model-based ones need `predicted`)."""
    problems = int(log.support_problems().sum())
    if problems:
        return Report(unsupported=str(UnsupportedPolicy(problems, len(log.actions))),
                      support_problems=problems)
    names = estimators or tuple(n for n in ESTIMATORS
                                if n in MODEL_FREE or log.predicted is not None)
    return Report({name: estimate(log, name, seed=seed, n_resamples=n_resamples,
                                  check_support=False) for name in names})


# -- the reward model ---------------------------------------------------------------------------

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
FOLDS = 5


def _ridge_gcv(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A ridge fit whose penalty is chosen by exact leave-one-out error on (x, y) alone."""
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    best = (math.inf, np.zeros(x.shape[1]))  # (leave-one-out error, coefficients)
    for alpha in RIDGE_ALPHAS:
        shrink = s ** 2 / (s ** 2 + alpha)
        leverage = (u ** 2) @ shrink + 1.0 / len(y)
        fitted = u @ (shrink * uty) + y_mean
        loo = float(np.mean(((y - fitted) / np.maximum(1.0 - leverage, 1e-9)) ** 2))
        if loo < best[0]:
            best = (loo, vt.T @ (s / (s ** 2 + alpha) * uty))
    coef = best[1]
    return lambda z: y_mean + (z - x_mean) @ coef


def crossfit_reward(base: np.ndarray, logged: np.ndarray, outcome: np.ndarray,
                    features: np.ndarray | None, *, cells: np.ndarray | None = None,
                    folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """(n, K) predictions: `base` (n, K; e.g. each event's per-(decision, model) mean) plus a
    per-event shift fitted by ridge on `features` (n, d; say the prompt's embedding and length)
    to the residual outcome - base[logged]. The shift is shared by every action (a prompt that
    is hard is hard for every model) so all n events train it, and it is cross-fitted over
    `folds` seeded folds. It is then centred within each of `cells` (n,; default the logged
    action), so the predictions of what was logged still average to each cell's observed mean
    (a policy that does what the log did gets its realised mean from DM too). Predictions stay
    within the observed outcomes' range."""
    n = len(outcome)
    if features is None or features.shape[1] == 0 or n < 2 * folds:
        return base
    scale = features.std(axis=0)
    x = (features - features.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    residual = outcome - base[np.arange(n), logged]
    fold = np.random.default_rng(seed).permutation(n) % folds
    shift = np.zeros(n)
    for f in range(folds):
        held = fold == f
        shift[held] = _ridge_gcv(x[~held], residual[~held])(x[held])
    groups = np.unique(logged if cells is None else cells, return_inverse=True)[1]
    shift -= (np.bincount(groups, shift) / np.bincount(groups))[groups]
    return np.clip(base + shift[:, None], outcome.min(), outcome.max())
