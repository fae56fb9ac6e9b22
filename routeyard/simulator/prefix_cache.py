"""A simulated backend's prefix cache (vLLM's automatic prefix caching, SGLang's radix cache).

A prompt is a chain of blocks: the system prompt, then each message. A block's key hashes its
content with its parent's key, so equal keys mean equal prefixes. The cache keeps keys in LRU
order with a capacity in tokens; a request's cached tokens are those of its longest prefix of
cached blocks, and after it is prefilled its whole prompt is cached. Only the uncached tokens
are prefilled, which is what shortens the time to first token.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from routeyard.simulator.text import content_text

Block = tuple[bytes, int]  # (the prefix's key, this block's tokens)


def prompt_blocks(messages: list[Any], system: Any = None) -> list[Block]:
    """A prompt's blocks, with tokens counted as `estimate_prompt_tokens` counts them (four
    characters a token, a few for each message's framing), so they add up to its total."""
    parts = ([{"system": system}] if system is not None else []) + list(messages)
    blocks: list[Block] = []
    key, chars, tokens_so_far = b"", 0, 0
    for index, part in enumerate(parts):
        is_system = index == 0 and system is not None
        text = content_text(system) if is_system else (
            content_text(part.get("content")) if isinstance(part, Mapping) else "")
        chars += len(text) + (0 if is_system else 4)
        tokens = (chars + 3) // 4
        key = hashlib.blake2b(key + _canonical(part), digest_size=16).digest()
        blocks.append((key, tokens - tokens_so_far))
        tokens_so_far = tokens
    return blocks


def _canonical(part: Any) -> bytes:
    try:
        return orjson.dumps(part, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-shaped; still a stable key within this process
        return repr(part).encode()


class PrefixCache:
    """LRU of prefix blocks, holding at most `capacity_tokens` tokens."""

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.tokens = 0
        self._blocks: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def cached_tokens(self, blocks: list[Block]) -> int:
        """Tokens of the prompt's longest cached prefix."""
        cached = 0
        for key, tokens in blocks:
            if key not in self._blocks:
                break
            cached += tokens
        return cached

    def admit(self, blocks: list[Block]) -> None:
        """Cache the whole prompt (it was just prefilled). Blocks are touched from the last
        to the first, so a prefix stays longer than its extensions, as in a radix tree."""
        store = self._blocks
        for key, tokens in reversed(blocks):
            if key in store:
                store.move_to_end(key)
            else:
                store[key] = tokens
                self.tokens += tokens
        self._evict()

    def resize(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self._evict()

    def _evict(self) -> None:
        store = self._blocks
        while self.tokens > self.capacity_tokens and store:
            _, tokens = store.popitem(last=False)
            self.tokens -= tokens

    def stats(self) -> dict[str, int]:
        return {"blocks": len(self._blocks), "tokens": self.tokens,
                "capacity_tokens": self.capacity_tokens}
