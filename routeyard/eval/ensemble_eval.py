"""Offline ensembles (`routeyard eval --ensembles`): vote, rank and synthesise scored on the
dataset's recorded answers (issue 17).

Every member of an ensemble is called, so its cost is the sum of the members' recorded costs,
plus every judge (or synthesiser) call at that model's price per token, fitted on train from
its own recorded calls (see `fit_prices`). A judge call is priced on the live ensemble's own
prompt (routeyard/serving/ensemble_judge.py) with the prompt and answers counted by the
tokenizer (cl100k): rank reads the prompt and two answers and writes a letter; a synthesis
reads the prompt and every answer and writes an answer as long as the members' mean.

- vote: answers in the normal form of `routeyard.answers.normalise_answer` (the live cascade's);
  free text (code) counts as one answer only when it is identical after stripping and
  lower-casing. The largest group wins; ties go to the group of the member with the best prior
  (fit-rows mean score), and the returned answer, hence the quality, is that group's best-prior
  member's.
- rank: a judge compares the live ensemble's pairs (`judge_pairs`: every pair once for k <= 5,
  k·(k-1)/2 calls, fewer than k²). Simulated, it prefers the answer with the higher recorded
  score with probability `accuracy` (equal scores: a fair coin), independently of the prompt;
  in "own-answer" mode it prefers the answer equal to its own recorded one, so its mistakes
  fall where it cannot answer itself. Bradley-Terry strengths fitted to the verdicts pick the
  answer (ties: best prior).
- synthesise: a MODEL, not a measurement: the synthesiser's answer scores as the members'
  best answer with probability `accuracy`, else as the vote's answer. Reported as its
  expectation.

Nothing is tuned on test: priors come from 80% of train ("fit"), member sets are chosen on the
other 20% ("validation", `tuning.split_rows`, as the learned routers do), and the chosen
configurations are then scored once on test. Judge accuracy is a scenario, not a knob: it is
swept and stated beside every figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.eval.cascade_eval import answer_codes
from routeyard.serving.ensemble_judge import judge_pairs, rank_messages, synthesis_messages
from routeyard.tokens import count_prompt_tokens, count_text_tokens

DEFAULT_ACCURACIES: tuple[float, ...] = (0.6, 0.75, 0.9, 1.0)
SIZES = (3, 4, 5)
POOL = 7  # member sets are every 3-5 subset of this many best models (fit-rows quality)
CHEAP_SHARE = 0.1  # "cheap": mean cost at most this share of the best model's
VALIDATION_FRACTION = 0.2
DEFAULT_REPEATS = 5  # judge simulations averaged per figure
VERDICT_TOKENS = 2  # "A" or "B" and an end token (the live judge is asked for the letter alone)
OWN_ANSWER = "own-answer"  # rank's judge mode that reads the judge's recorded answers
BT_PRIOR = 0.1  # pseudo-wins each way per pair, so an undefeated member's strength is finite
BT_ITERATIONS = 60


# -- the dataset as arrays ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tables:
    """One split, restricted to rows with at least one recorded response."""

    scores: np.ndarray  # (n, m)
    costs: np.ndarray  # (n, m)
    codes: np.ndarray  # (n, m) equal codes = equal normalised answers
    prompt_tokens: np.ndarray  # (n,)
    answer_tokens: np.ndarray  # (n, m)
    skipped: int

    def __len__(self) -> int:
        return len(self.scores)

    def rows(self, index: np.ndarray) -> Tables:
        return Tables(self.scores[index], self.costs[index], self.codes[index],
                      self.prompt_tokens[index], self.answer_tokens[index], 0)


def tables(data: RoutingDataset, count: Callable[[str], int] = count_text_tokens) -> Tables:
    codes, kept = answer_codes(data)
    if not kept.any():
        raise ValueError(f"{data.name}: no recorded responses; ensembles cannot be scored "
                         f"offline")
    rows = np.flatnonzero(kept)
    answers = [[count(data.responses[r].get(m) or "") for m in data.models] for r in rows]
    return Tables(data.scores[rows], data.costs[rows], codes[rows],
                  np.array([count(data.prompts[r]) for r in rows], dtype=float),
                  np.array(answers, dtype=float).reshape(len(rows), len(data.models)),
                  int((~kept).sum()))


def fit_prices(t: Tables) -> np.ndarray:
    """(m, 2) dollars per input and per output token: least squares of each model's recorded
    call costs on its prompt and answer tokens (on routerbench this recovers the list prices,
    e.g. gpt-4-1106 at $9.9/$27.8 per million, within 1% of the billed costs)."""
    prices = np.zeros((t.costs.shape[1], 2))
    for column in range(t.costs.shape[1]):
        design = np.stack([t.prompt_tokens, t.answer_tokens[:, column]], axis=1)
        solved, *_ = np.linalg.lstsq(design, t.costs[:, column], rcond=None)
        if (solved < 0).any():  # degenerate fit: one blended rate for every token
            total = design.sum()
            solved = np.full(2, t.costs[:, column].sum() / total if total else 0.0)
        prices[column] = solved
    return prices


# -- the three methods ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Config:
    method: str
    members: tuple[int, ...]  # model columns, best prior first
    judge: int | None = None  # the judge (rank) or synthesiser (synthesise) column
    accuracy: float | None = None  # rank: None = the judge's own answer decides

    def describe(self, models: Sequence[str]) -> dict[str, Any]:
        mode = None if self.judge is None else "simulated" if self.accuracy is not None \
            else OWN_ANSWER
        return {"method": self.method, "members": [models[c] for c in self.members],
                "judge": None if self.judge is None else models[self.judge],
                "judge_mode": mode, "judge_accuracy": self.accuracy}


def vote_choice(codes: np.ndarray) -> np.ndarray:
    """Per row, the position (in `codes`' columns, best prior first) of the returned answer:
    the first member of the largest group of equal answers."""
    support = (codes[:, :, None] == codes[:, None, :]).sum(axis=2)
    return support.argmax(axis=1)


def bradley_terry(wins: np.ndarray) -> np.ndarray:
    """(n, k) strengths from (n, k, k) verdict counts (wins[r, i, j]: i preferred to j),
    by the MM algorithm with BT_PRIOR pseudo-wins each way for every compared pair."""
    games = wins + np.swapaxes(wins, 1, 2)
    played = games > 0
    won = np.where(played, wins + BT_PRIOR, 0.0)
    games = np.where(played, games + 2 * BT_PRIOR, 0.0)
    strength = np.ones(wins.shape[:2])
    for _ in range(BT_ITERATIONS):
        pair_sum = strength[:, :, None] + strength[:, None, :]
        denominator = (games / pair_sum).sum(axis=2)
        strength = np.where(denominator > 0, won.sum(axis=2) / np.maximum(denominator, 1e-300),
                            strength)
        strength /= strength.sum(axis=1, keepdims=True)
    return strength


def rank_choice(scores: np.ndarray, accuracy: float | None, coins: np.ndarray,
                agrees: np.ndarray | None = None) -> np.ndarray:
    """Per row, the position of the answer the judge ranks first, over the live ensemble's
    pairs (`judge_pairs`: every pair up to k = 5). `coins` (n, k, k) are uniform draws: [i, j]
    decides the verdict on (i, j), [j, i] breaks a tie by a fair coin.

    With `accuracy`, the judge prefers the better-scored answer with that probability (a tie
    when the scores are equal). With None, the judge's own recorded answer decides: it prefers
    the answer equal to its own (`agrees`, per row and member), a tie when both or neither
    are; its mistakes then fall on the prompts it cannot answer itself, as a real judge's do.
    """
    n, k = scores.shape
    wins = np.zeros((n, k, k))
    for i, j in judge_pairs(k):
        if accuracy is None:
            assert agrees is not None
            decided = agrees[:, i] != agrees[:, j]
            i_preferred = agrees[:, i]
        else:
            decided = scores[:, i] != scores[:, j]
            right = coins[:, i, j] < accuracy  # the judge prefers the better-scored answer
            i_preferred = np.where(scores[:, i] > scores[:, j], right, ~right)
        i_wins = np.where(decided, i_preferred, coins[:, j, i] < 0.5)
        wins[:, i, j] = i_wins
        wins[:, j, i] = ~i_wins
    strength = bradley_terry(wins)
    top = strength.max(axis=1, keepdims=True)
    return (strength >= top * (1 - 1e-9)).argmax(axis=1)  # first = best prior among ties


@dataclass(frozen=True, slots=True)
class Outcome:
    quality: np.ndarray  # per row
    cost: np.ndarray  # per row, every call
    judge_cost: np.ndarray  # per row, the judge's or synthesiser's share of `cost`


def _picked(t: Tables, members: list[int], position: np.ndarray) -> np.ndarray:
    return t.scores[:, members][np.arange(len(t)), position]


def score_vote(config: Config, t: Tables, prices: np.ndarray, coins: np.ndarray) -> Outcome:
    members = list(config.members)
    quality = _picked(t, members, vote_choice(t.codes[:, members]))
    return Outcome(quality, t.costs[:, members].sum(axis=1), np.zeros(len(t)))


def score_rank(config: Config, t: Tables, prices: np.ndarray, coins: np.ndarray) -> Outcome:
    members, k = list(config.members), len(config.members)
    assert config.judge is not None
    agrees = t.codes[:, members] == t.codes[:, [config.judge]]
    quality = np.mean([_picked(t, members, rank_choice(t.scores[:, members], config.accuracy,
                                                       draw[:, members][:, :, members],
                                                       agrees))
                       for draw in coins], axis=0)
    price_in, price_out = prices[config.judge]
    # The live ensemble's pairs and prompt (routeyard/serving/ensemble_judge.py): each call
    # reads its wrapping, the prompt and its two answers, and writes one letter.
    judge = np.zeros(len(t))
    for a, b in judge_pairs(k):
        read = rank_overhead() + t.prompt_tokens + t.answer_tokens[:, members[a]] \
            + t.answer_tokens[:, members[b]]
        judge += price_in * read + price_out * VERDICT_TOKENS
    return Outcome(quality, t.costs[:, members].sum(axis=1) + judge, judge)


def score_synthesis(config: Config, t: Tables, prices: np.ndarray,
                    coins: np.ndarray) -> Outcome:
    members = list(config.members)
    assert config.judge is not None and config.accuracy is not None
    voted = _picked(t, members, vote_choice(t.codes[:, members]))
    best = t.scores[:, members].max(axis=1)
    quality = config.accuracy * best + (1 - config.accuracy) * voted
    price_in, price_out = prices[config.judge]
    read = synthesis_overhead(len(members)) + t.prompt_tokens \
        + t.answer_tokens[:, members].sum(axis=1)
    written = t.answer_tokens[:, members].mean(axis=1)  # an answer of the members' length
    synthesis = price_in * read + price_out * written
    return Outcome(quality, t.costs[:, members].sum(axis=1) + synthesis, synthesis)


def score_single(config: Config, t: Tables, prices: np.ndarray, coins: np.ndarray) -> Outcome:
    column = config.members[0]
    return Outcome(t.scores[:, column], t.costs[:, column], np.zeros(len(t)))


METHODS: dict[str, Callable[[Config, Tables, np.ndarray, np.ndarray], Outcome]] = {
    "vote": score_vote, "rank": score_rank, "synthesise": score_synthesis,
}
JUDGED = ("rank", "synthesise")


@cache
def rank_overhead() -> int:
    """Tokens of a live rank call besides the prompt and the two answers."""
    return count_prompt_tokens(rank_messages("", "", ""))


@cache
def synthesis_overhead(k: int) -> int:
    """Tokens of a live synthesis call over k answers besides the prompt and the answers."""
    return count_prompt_tokens(synthesis_messages("", [""] * k))


# A single model is a candidate on the λ curves, as chains of one are in the cascade's.
SCORERS = {**METHODS, "single": score_single}


def score(config: Config, t: Tables, prices: np.ndarray, coins: np.ndarray) -> Outcome:
    return SCORERS[config.method](config, t, prices, coins)


def answer_matching_accuracy(t: Tables, judge: int) -> float:
    """A grounding for the simulated accuracy, not used by the simulation: how often a judge
    that prefers the answer equal to its own recorded answer (else a fair coin) prefers the
    better-scored of two other models' answers, over every pair whose scores differ."""
    agrees = t.codes == t.codes[:, [judge]]
    others = [c for c in range(t.scores.shape[1]) if c != judge]
    right, pairs = 0.0, 0
    for a, b in itertools.combinations(others, 2):
        differ = t.scores[:, a] != t.scores[:, b]
        better_a = t.scores[:, a] > t.scores[:, b]
        hi = np.where(better_a, agrees[:, a], agrees[:, b])[differ]
        lo = np.where(better_a, agrees[:, b], agrees[:, a])[differ]
        right += float((hi & ~lo).sum() + 0.5 * (hi == lo).sum())
        pairs += int(differ.sum())
    return right / pairs if pairs else float("nan")


def draw_coins(n: int, m: int, repeats: int, seed: int) -> np.ndarray:
    """Common random numbers: every configuration sees the same verdict draws per model pair,
    so configurations differ by their members, not by luck."""
    return np.random.default_rng(seed).random((repeats, n, m, m))


# -- checks ---------------------------------------------------------------------------------------

def check_accuracies(accuracies: Sequence[float]) -> tuple[float, ...]:
    if not accuracies:
        raise ValueError("--judge-accuracy names no accuracy")
    bad = [a for a in accuracies if not 0.0 <= a <= 1.0]
    if bad:
        raise ValueError(f"judge accuracy must be in [0, 1], got {bad[0]:g}")
    return tuple(float(a) for a in accuracies)


def check_models(names: Sequence[str], models: Sequence[str], what: str) -> list[int]:
    unknown = [n for n in names if n not in models]
    if unknown:
        raise ValueError(f"unknown {what} model '{unknown[0]}'; known: {', '.join(models)}")
    return [list(models).index(n) for n in names]

