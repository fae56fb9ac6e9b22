"""Comparing answers: the normal form two answers must share to count as the same vote.

Used by the live cascade (serving) and by its offline evaluation (eval), and by anything else
that votes over several models' answers.
"""

from __future__ import annotations

import re
from collections import Counter

_LETTER = re.compile(r"^(?:answer\s*(?:is)?\s*:?\s*)?[\[\(\"'\s]*([a-e])\s*(?:[.):\]\"',]|$)")


def normalise_answer(text: str) -> str:
    """Stripped and lower-cased; a multiple-choice answer ("B", "(b)", "['B']") is its letter."""
    cleaned = text.replace("\\n", "\n").strip().lower()
    match = _LETTER.match(cleaned)
    return match.group(1) if match else cleaned


def vote(answers: list[str | None], voters: int) -> tuple[int | None, float]:
    """The index of the first majority answer and its share of `voters` (None votes dissent)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    top, n = counts.most_common(1)[0]
    return answers.index(top), n / max(voters, 1)
