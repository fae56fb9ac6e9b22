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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 1000
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


ESTIMATORS: dict[str, Callable[[LoggedBandit], Terms]] = {
    "ips": _ips, "snips": _snips, "dm": _dm, "dr": _dr}
MODEL_FREE = ("ips", "snips")


def estimate(log: LoggedBandit, estimator: str, *, seed: int = 0,
             n_resamples: int = N_RESAMPLES, check_support: bool = True,
             method: str = "percentile") -> Estimate:
    """One estimator's figure with its bootstrap interval; raises `UnsupportedPolicy` when
    any event lacks support (see the module doc) and `KeyError` for an unknown name."""
    if estimator not in ESTIMATORS:
        known = ", ".join(ESTIMATORS)
        raise KeyError(f"unknown estimator {estimator!r} (known: {known})")
    if check_support:
        problems = int(log.support_problems().sum())
        if problems:
            raise UnsupportedPolicy(problems, len(log.actions))
    samples, statistic = ESTIMATORS[estimator](log)
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
