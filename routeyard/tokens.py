"""Offline token counting (bpe-openai bundles its BPE tables; tiktoken downloads them).

cl100k_base is used for every model: it is within a few percent of other vocabularies on
English text, and costs ~35 MB of memory against o200k_base's ~75 MB. bpe-openai is imported on
first use (its import alone takes ~0.4 s and ~65 MB), since most requests never need an exact
count (see `prompt_size_upper_bound`).
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

# Chat formatting adds a few tokens per message and a reply primer (OpenAI's cookbook rule).
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMER = 3


@cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("cl100k_base")


async def load_tokenizer() -> None:
    """Load the tables off the event loop (~0.4 s, longer on a busy machine), so that the first
    request that needs an exact count does not stall every other request of the process."""
    if _encoding.cache_info().currsize == 0:
        await asyncio.to_thread(_encoding)


# bpe-openai refuses texts of a million characters or more; longer prompts are counted in
# pieces cut at whitespace (a token never spans whitespace followed by a word start).
_PIECE = 200_000


def count_text_tokens(text: str) -> int:
    if not text:
        return 0
    encode = _encoding().encode_ordinary
    if len(text) < _PIECE:
        return len(encode(text))
    total, start = 0, 0
    while start < len(text):
        end = min(len(text), start + _PIECE)
        if end < len(text):
            cut = text.rfind(" ", start + _PIECE // 2, end)
            end = cut if cut > start else end
        total += len(encode(text[start:end]))
        start = end
    return total


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message: a string, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"] for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = _REPLY_PRIMER
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count_text_tokens(message_text(message))
    return total


def prompt_size_upper_bound(messages: list[dict[str, Any]]) -> int:
    """A cheap bound on the prompt's token count: a BPE token is at least one UTF-8 byte.

    Lets the hot path skip exact counting when the prompt cannot exceed any context window.
    """
    total = _REPLY_PRIMER
    for message in messages:
        text = message_text(message)
        # len(str) * 4 bounds the UTF-8 byte count without encoding the text.
        total += _TOKENS_PER_MESSAGE + (len(text) if text.isascii() else len(text) * 4)
    return total
