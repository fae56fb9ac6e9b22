"""What an ensemble's judge model is asked, and how its replies are read: pairwise preferences
combined by Bradley-Terry (rank), and one answer written from several (synthesise).

The prompts are plain functions of the request and the answers, so the same request always
gives the judge the same prompt (tests replay recorded judge replies against them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from routeyard.tokens import message_text

RANK_SYSTEM = ("You compare two answers to the same question. Reply with one letter: A if "
               "answer A is better, B if answer B is better. Nothing else.")
SYNTHESIS_SYSTEM = ("You are given a question and several candidate answers written by "
                    "different models. Write the single best answer to the question: keep what "
                    "is correct in them, drop what is wrong. Reply with the answer only; do not "
                    "mention the candidates.")

_PREFERENCE = re.compile(r"^[\s\"'*(\[]*(?:answer\s*)?([ab])[\s\"'*)\].!]*$", re.IGNORECASE)


def question(body: Mapping[str, Any]) -> str:
    """The conversation a judge is shown: the last user message alone when there is only
    one turn, else every turn as `role: text`."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    if len(messages) == 1 or (len(messages) == 2 and messages[0].get("role") == "system"):
        return message_text(messages[-1])
    return "\n\n".join(f"{m.get('role', 'user')}: {message_text(m)}" for m in messages)


def judge_pairs(k: int) -> list[tuple[int, int]]:
    """Which answers the judge compares, as (shown as A, shown as B): a ring of strides 1 to
    ceil(log2 k), so the comparison graph is connected (Bradley-Terry needs it) with at most
    k·ceil(log2 k) pairs: every pair up to k = 4, 24 of the 28 at k = 8, always fewer than k².
    Around a ring each answer is shown first as often as second, so that a judge preferring
    one position does not favour any one member."""
    if k < 2:
        return []
    seen: set[frozenset[int]] = set()
    pairs: list[tuple[int, int]] = []
    for stride in range(1, max(1, math.ceil(math.log2(k))) + 1):
        for i in range(k):
            j = (i + stride) % k
            if i != j and frozenset((i, j)) not in seen:
                seen.add(frozenset((i, j)))
                pairs.append((i, j))
    return pairs


def rank_messages(asked: str, first: str, second: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": RANK_SYSTEM},
            {"role": "user", "content": f"Question:\n{asked}\n\nAnswer A:\n{first}\n\n"
                                        f"Answer B:\n{second}\n\nWhich answer is better, A or B?"}]


def parse_preference(text: str) -> int | None:
    """0 for A, 1 for B; None for anything else (the comparison is then dropped)."""
    match = _PREFERENCE.match(text.strip())
    if match is None:
        return None
    return 0 if match.group(1).lower() == "a" else 1


def bradley_terry(k: int, wins: Sequence[tuple[int, int]], *, iterations: int = 100,
                  prior: float = 0.1) -> np.ndarray:
    """Each answer's strength from (winner, loser) pairs, fitted with the MM algorithm (Hunter
    2004): p_i ← W_i / Σ_j n_ij / (p_i + p_j). `prior` adds that many virtual wins to every
    answer, so that one that never won keeps a finite, comparable strength."""
    won = np.full(k, prior)
    games = np.zeros((k, k))
    for winner, loser in wins:
        won[winner] += 1
        games[winner, loser] += 1
        games[loser, winner] += 1
    games += prior / max(k - 1, 1) * (1 - np.eye(k))  # the prior's games, spread evenly
    strength = np.ones(k)
    for _ in range(iterations):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)
        updated = won / denominator
        updated /= updated.sum()
        if np.allclose(updated, strength, atol=1e-9):
            return updated
        strength = updated
    return strength


def synthesis_messages(asked: str, answers: Sequence[str]) -> list[dict[str, str]]:
    shown = "\n\n".join(f"Candidate {i + 1}:\n{a}" for i, a in enumerate(answers))
    return [{"role": "system", "content": SYNTHESIS_SYSTEM},
            {"role": "user", "content": f"Question:\n{asked}\n\n{shown}\n\n"
                                        "Write the best answer to the question."}]
