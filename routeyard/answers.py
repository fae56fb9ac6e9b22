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


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SPACE = re.compile(r"\s+")


def normalise_number(text: str) -> str | None:
    """The answer's last number in a canonical form ("4", "4.0", "The answer is 4." → "4";
    "1,000" → "1000"), or None when it has none."""
    found = _NUMBER.findall(text.replace("\\n", "\n"))
    if not found:
        return None
    value = float(found[-1].replace(",", ""))
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def normalise_exact(text: str) -> str:
    """The text with case, runs of whitespace and trailing punctuation made irrelevant."""
    return _SPACE.sub(" ", text.replace("\\n", "\n")).strip().lower().rstrip(".!?;: ")
