"""Votes over an ensemble's answers: normal forms, embedding clusters of free text, tool calls.

Answers come in prior order (the best member first), so every tie goes to the member with the
best prior: the first answer with the winning normal form is the one returned.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from routeyard.answers import normalise_answer, normalise_exact, normalise_number

SHORT_WORDS = 25  # auto: a numeric answer longer than this is free text, not a number


def _choice(text: str) -> str | None:
    letter = normalise_answer(text)
    return letter if len(letter) == 1 and letter in "abcde" else None


# normalise option → the normal form of one answer (None: it has none, and dissents)
NORMALISERS: dict[str, Callable[[str], str | None]] = {
    "choice": _choice,
    "number": normalise_number,
    "exact": normalise_exact,
}


@dataclass(frozen=True, slots=True)
class Tally:
    """The outcome of one vote: the winning answer's index, its votes, and how it was read."""

    winner: int
    votes: int
    voters: int
    normalise: str  # the normal form actually used (auto resolves to one)
    keys: tuple[str | None, ...]

    def record(self) -> dict[str, Any]:
        return {"normalise": self.normalise, "votes": self.votes, "voters": self.voters,
                "keys": list(self.keys)}


def plurality(keys: Sequence[str | None]) -> tuple[int, int]:
    """(index, votes) of the most common key, ties to the earliest; no key at all: (0, 0)."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return 0, 0
    best = max(counts.values())
    for index, key in enumerate(keys):
        if key is not None and counts[key] == best:
            return index, best
    raise AssertionError("unreachable")


def auto_mode(texts: Sequence[str]) -> str:
    """The normal form `auto` reads a set of answers with: letters when every answer is one, a
    number when every answer is a short one with a number, else the text (and when no two
    texts agree, embedding clusters: `vote` decides that)."""
    if all(_choice(t) is not None for t in texts):
        return "choice"
    if all(len(t.split()) <= SHORT_WORDS and normalise_number(t) is not None for t in texts):
        return "number"
    return "exact"


class LazyEmbedder:
    """The static embedding model, loaded on first use (off the event loop): a deployment whose
    ensembles never cluster free text never loads it."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._embedder: Any = None
        self._lock = asyncio.Lock()

    async def embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            async with self._lock:
                if self._embedder is None:
                    from routeyard.signals.embedder import load_embedder

                    self._embedder = await asyncio.to_thread(load_embedder, self.model)
        return await asyncio.to_thread(self._embedder.embed, texts)


def clusters(vectors: np.ndarray, similarity: float) -> list[str]:
    """Leader clustering in prior order: each answer joins the first cluster whose leader it
    is at least `similarity` (cosine) close to. A key per answer: its leader's index."""
    leaders: list[int] = []
    keys: list[str] = []
    for index, vector in enumerate(vectors):
        found = next((lead for lead in leaders
                      if float(np.dot(vectors[lead], vector)) >= similarity), None)
        if found is None:
            leaders.append(index)
            found = index
        keys.append(str(found))
    return keys


async def vote(texts: Sequence[str], normalise: str, *, similarity: float,
               embedder: LazyEmbedder | None) -> Tally:
    """A majority over the answers' normal forms, ties to the best prior."""
    mode = auto_mode(texts) if normalise == "auto" else normalise
    if mode == "embedding" or (normalise == "auto" and mode == "exact" and embedder is not None
                               and _no_two_agree([normalise_exact(t) for t in texts])):
        if embedder is not None:
            keys: list[str | None] = list(clusters(await embedder.embed(list(texts)),
                                                   similarity))
            index, votes = plurality(keys)
            return Tally(index, votes, len(texts), "embedding", tuple(keys))
        mode = "exact"  # no embedder configured: the text is all there is to compare
    keys = [NORMALISERS[mode](t) for t in texts]
    index, votes = plurality(keys)
    return Tally(index, votes, len(texts), mode, tuple(keys))


def _no_two_agree(keys: Sequence[str]) -> bool:
    return len(set(keys)) == len(keys)


def tool_call_key(message: Mapping[str, Any]) -> str | None:
    """The message's tool calls as one comparable key: each call's name and its arguments
    parsed and dumped with sorted keys (so key order and spacing do not count); None when
    the message calls no tool."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls:
        return None
    normal = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            return None
        arguments = function.get("arguments")
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
        except orjson.JSONDecodeError:
            parsed = arguments  # not JSON: compared as the model wrote it
        normal.append([function.get("name"), parsed])
    return orjson.dumps(normal, option=orjson.OPT_SORT_KEYS).decode()


def tool_vote(messages: Sequence[Mapping[str, Any]]) -> Tally | None:
    """A vote on the tool call, when some member made one: the call a strict majority of the
    members that answered made, else the best-prior member's answer (votes 0). None: no member
    called a tool (the answers are text, voted on as such)."""
    keys = [tool_call_key(m) for m in messages]
    if all(k is None for k in keys):
        return None
    index, votes = plurality(keys)
    if votes * 2 <= len(keys):
        return Tally(0, 0, len(keys), "tool_call", tuple(keys))
    return Tally(index, votes, len(keys), "tool_call", tuple(keys))
