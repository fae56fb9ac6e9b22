"""Text helpers: precomputed filler output, prompt token estimates, splitting text into tokens."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_FILLER_SOURCE = (
    "Routing sends each request to the model that fits it best. A small model answers simple "
    "questions quickly and cheaply, while a large model handles the hard ones. The router reads "
    "cheap signals from the prompt, applies its rules, picks a candidate, and forwards the call. "
    "When a backend fails, it retries elsewhere, opens a circuit breaker, and keeps serving. "
    "Feedback from users and offline evaluation on recorded datasets tune the trade-off between "
    "quality, cost, and latency over time."
)
_FILLER_TOKENS = 16384
_PIECE_RE = re.compile(r"\s*\S+")


def _piece(words: list[str], i: int) -> str:
    word = words[i % len(words)]
    return word if i == 0 else " " + word


def encode_piece(piece: str) -> bytes:
    """JSON string for one stream piece.

    stdlib json, not orjson: each small orjson output keeps a ~4 KB buffer, which adds up to
    megabytes when thousands of pieces are held at once.
    """
    return json.dumps(piece, ensure_ascii=False).encode()


@functools.cache
def _filler() -> tuple[str, tuple[int, ...], tuple[str, ...], tuple[bytes, ...]]:
    # Built once on first use: the text, end offset of each token, the pieces, their JSON form.
    words = _FILLER_SOURCE.split()
    pieces = [_piece(words, i) for i in range(_FILLER_TOKENS)]
    text = "".join(pieces)
    ends, pos = [0], 0
    for piece in pieces:
        pos += len(piece)
        ends.append(pos)
    encoded = tuple(encode_piece(p) for p in pieces)
    return text, tuple(ends), tuple(pieces), encoded


def filler_text(n: int) -> str:
    """The first n filler tokens as one string (one word counts as one token)."""
    text, ends, _, _ = _filler()
    if n < len(ends):
        return text[: ends[n]]
    return "".join(filler_pieces(n))


def filler_pieces(n: int) -> list[str]:
    _, _, pieces, _ = _filler()
    if n <= len(pieces):
        return list(pieces[:n])
    words = _FILLER_SOURCE.split()
    return [*pieces, *(_piece(words, i) for i in range(len(pieces), n))]


def filler_pieces_json(n: int) -> list[bytes]:
    """JSON-encoded filler pieces, precomputed so streaming avoids per-token encoding."""
    encoded = _filler()[3]
    if n <= len(encoded):
        return list(encoded[:n])
    return [*encoded, *map(encode_piece, filler_pieces(n)[len(encoded) :])]


@functools.lru_cache(maxsize=64)
def stepped_text(n: int, step_tokens: int) -> str:
    """The first n filler words laid out as reasoning steps of `step_tokens` words each,
    separated by blank lines (a step's first word carries the blank line before it)."""
    words = _FILLER_SOURCE.split()
    return "".join(
        words[i % len(words)] if i == 0
        else ("\n\n" if i % step_tokens == 0 else " ") + words[i % len(words)]
        for i in range(n))


def split_pieces(text: str) -> list[str]:
    """Split recorded text into streamable word pieces that join back to the same text."""
    pieces = _PIECE_RE.findall(text)
    tail = len(text) - sum(map(len, pieces))
    if tail and pieces:  # trailing whitespace belongs to the last piece
        pieces[-1] += text[-tail:]
    elif tail:
        pieces = [text]
    return pieces


def continue_after(prefix: str, recorded: str | None, n: int) -> str:
    """What follows `prefix`, the start of an answer given back to be continued (vLLM's
    `continue_final_message`, Anthropic's assistant prefill): the rest of the recorded answer,
    or of the first `n` filler tokens. A prefix that ends mid-word gets at least the rest of
    that word (so a prefix as long as the answer gets nothing more: it is complete, as is the
    whole answer followed by whitespace). A prefix that is not the start of the answer gets the
    whole answer after it, as a model answering anew would."""
    # The filler as long as the answer, or as the prefix if that is longer.
    answer = recorded if recorded is not None else filler_text(max(n, len(split_pieces(prefix))))
    if answer.startswith(prefix):
        return answer[len(prefix):]
    if prefix.rstrip() == answer:  # the whole answer given back, then a blank line: complete
        return ""
    whole = recorded if recorded is not None else filler_text(n)
    return whole if not prefix or prefix[-1].isspace() else " " + whole


def content_text(content: Any) -> str:
    """Text of a message `content`: a string, or a list of parts with `text` fields."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def estimate_prompt_tokens(messages: list[Any], system: Any = None) -> tuple[int, str]:
    """Estimate prompt tokens as characters / 4 (OpenAI's rule of thumb for English, and cheap).

    Also returns the last user message's text, which replay mode looks up.
    """
    chars = len(content_text(system)) if system is not None else 0
    last_user = ""
    for message in messages:
        if isinstance(message, dict):
            text = content_text(message.get("content"))
            chars += len(text) + 4  # a few tokens of per-message framing
            if message.get("role") == "user":
                last_user = text
    return max(1, (chars + 3) // 4), last_user
