"""`tool_filter`: send the backend only the k tools most relevant to the current turn.

    plugins:
      - {type: tool_filter, k: 8, min_tools: 16, keep: [search_docs]}

Each function tool is scored by the cosine similarity of its embedded name and description to
the last `user` or `tool` message, or to its best-matching sentence when it has several (the
signals' embedding model, else the builtin static one).
Always kept, on top of the k best: the tools named in `keep`, the tool `tool_choice` names, and
every tool the conversation already called (the names in assistant `tool_calls`, or `tool_use`
blocks). The request carries the session's history, so this needs no session store. Tools that
are not functions (no name to score) are always kept. Kept tools stay in the client's order.

Tool embeddings are cached per plugin in an LRU keyed by a hash of name and description, so an
agent's fixed tool list is embedded once. The work runs on a worker thread unless it is cheaper
than the hop (a short list, all cached, and a short turn). A request with more than `max_tools`
tools gets a 400 before anything is embedded.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from routeyard.plugins.base import Plugin, PluginAnswer, PluginBuild, PluginContext, register
from routeyard.tokens import message_text

if TYPE_CHECKING:
    from routeyard.signals.embedder import Embedder

TOOLS_HEADER = "x-routeyard-tools"  # "<kept>/<sent by the client>" when the plugin filtered
TOO_MANY_REASON = "too_many_tools"
_LATER = object()  # "score this on a worker thread"

# Embedding cost grows with the text: bound what one request can ask for.
_QUERY_CHARS = 4_000  # the start of a long turn (a tool's big JSON result) is representative
_DESCRIPTION_CHARS = 1_000
# Inline (on the event loop) only when the list is short, all cached, and the query short: the
# builtin model embeds ~300 characters (twice at most: see query_parts) in ~0.2 ms.
_INLINE_QUERY_CHARS = 300
_INLINE_TOOLS = 64  # ~1.5 µs a tool to hash and look up
_SENTENCE = re.compile(r"(?<=[.?!;])\s+|\n+|,\s+(?:and|also|then)\s+", re.IGNORECASE)
_PART_CHARS = 12  # shorter sentences ("Thanks.") say nothing about a tool
_MAX_PARTS = 8
_NAME_SPLIT = re.compile(r"[_.\-/:]+|(?<=[a-z0-9])(?=[A-Z])")


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    return value


def tool_name(tool: Any) -> str | None:
    """A function tool's name (chat `{"function": {"name"}}` or flat `{"name"}`), else None."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) and name else None


def tool_description(tool: dict[str, Any]) -> str:
    function = tool.get("function")
    description = (function if isinstance(function, dict) else tool).get("description")
    return description[:_DESCRIPTION_CHARS] if isinstance(description, str) else ""


def tool_text(tool: dict[str, Any], name: str) -> str:
    """What is embedded: the name split into words, then the description."""
    words = " ".join(w for w in _NAME_SPLIT.split(name) if w)
    description = tool_description(tool)
    return f"{words}: {description}" if description else words


def called_tools(messages: Iterable[Any]) -> set[str]:
    """Every tool name the conversation has called: assistant `tool_calls` (and the legacy
    `function_call`), or Anthropic `tool_use` content blocks."""
    names: set[str] = set()
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            names.update(n for call in calls if (n := tool_name(call)) is not None)
        legacy = message.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
            names.add(legacy["name"])
        content = message.get("content")
        if isinstance(content, list):
            names.update(block["name"] for block in content
                         if isinstance(block, dict) and block.get("type") == "tool_use"
                         and isinstance(block.get("name"), str))
    return names


def chosen_tools(tool_choice: Any) -> set[str]:
    """The tools `tool_choice` names: one function, or an `allowed_tools` list."""
    if not isinstance(tool_choice, dict):
        return set()
    name = tool_name(tool_choice)
    if name is not None:
        return {name}
    allowed = tool_choice.get("allowed_tools")
    tools = allowed.get("tools") if isinstance(allowed, dict) else None
    if isinstance(tools, list):
        return {n for t in tools if (n := tool_name(t)) is not None}
    return set()


def query_text(messages: list[Any]) -> str:
    """The current turn: the last `user` or `tool` message's text (its start)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return message_text(message)[:_QUERY_CHARS]
    return ""


class VectorCache:
    """Tool → unit vector, keyed by a hash of its name and description; least recently used
    evicted first. Locked: requests with long tool lists use it from worker threads."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(name: str, description: str) -> bytes:
        text = f"{name}\0{description}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=16).digest()

    def get_many(self, keys: list[bytes]) -> list[np.ndarray | None]:
        with self._lock:
            found = [self._entries.get(key) for key in keys]
            for key, vector in zip(keys, found, strict=True):
                if vector is not None:
                    self._entries.move_to_end(key)
        return found

    def put_many(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        with self._lock:
            for key, vector in items:
                self._entries[key] = vector
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def query_parts(query: str) -> list[str]:
    """The turn, then each of its sentences when it has several: a turn that asks for two
    things gets a tool for each, which its averaged embedding alone would blur."""
    sentences = [s for s in _SENTENCE.split(query) if len(s) >= _PART_CHARS]
    return [query, *sentences[:_MAX_PARTS]] if len(sentences) > 1 else [query]


def select(vectors: np.ndarray, queries: np.ndarray, k: int, forced: list[int]) -> list[int]:
    """Indexes (ascending) of the forced tools plus the k best-scoring others; a tool's score
    is its best similarity to any part of the turn."""
    scores = (vectors @ queries.T).max(axis=1)
    scores[forced] = np.inf  # forced tools are kept and do not use up k
    best = min(len(scores), k + len(forced))
    top = np.argpartition(-scores, best - 1)[:best] if best < len(scores) else range(len(scores))
    return sorted(int(i) for i in top)


@register
class ToolFilterPlugin(Plugin):
    name = "tool_filter"
    options = frozenset({"k", "min_tools", "keep", "max_tools", "cache_size"})
    has_async_request = True

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.k = _int_option(options, "k", 8, 1, 1_000)
        # Filter only lists longer than this (and longer than k: else nothing would go).
        self.min_tools = _int_option(options, "min_tools", self.k, 0, 100_000)
        self.max_tools = _int_option(options, "max_tools", 1_024, 1, 10_000)
        self.cache = VectorCache(_int_option(options, "cache_size", 4_096, 1, 1_000_000))
        keep = options.get("keep", [])
        if not isinstance(keep, list) or not all(isinstance(n, str) and n for n in keep):
            raise ValueError("keep must be a list of tool names")
        self.keep = frozenset(keep)
        self._embedder: Embedder | None = None

    async def on_request_async(self, ctx: PluginContext) -> PluginAnswer | None:
        tools = ctx.body.get("tools")
        if not isinstance(tools, list) or len(tools) <= max(self.k, self.min_tools):
            return None
        if len(tools) > self.max_tools:
            return PluginAnswer.block(
                f"tools: {len(tools)} tools exceed this route's limit of {self.max_tools} "
                "(tool_filter max_tools)", "error", TOO_MANY_REASON)
        messages = ctx.body.get("messages")
        query = query_text(messages) if isinstance(messages, list) else ""
        if not query.strip():
            return None  # nothing to compare with: send every tool
        embedder = self._embedder or await self._load(ctx)
        # On the loop only when it costs less than a hop to a thread: a short list, all of it
        # cached, and a short query. Anything else is scored on a worker thread.
        kept: list[Any] | object | None = _LATER
        if (len(tools) <= _INLINE_TOOLS and len(query) <= _INLINE_QUERY_CHARS
                and _is_static(embedder)):
            kept = self._filter(embedder, ctx.body, tools, query, cached_only=True)
        if kept is _LATER:
            kept = await asyncio.to_thread(self._filter, embedder, ctx.body, tools, query)
        if isinstance(kept, list):
            ctx.body["tools"] = kept
            ctx.headers[TOOLS_HEADER] = f"{len(kept)}/{len(tools)}"
        return None

    def _filter(self, embedder: Embedder, body: dict[str, Any], tools: list[Any], query: str,
                cached_only: bool = False) -> list[Any] | object | None:
        """The tools to send; None: all of them; `_LATER` when `cached_only` and some tool is
        not cached yet."""
        names = [tool_name(t) for t in tools]
        scored = [i for i, n in enumerate(names) if n is not None]
        if len(scored) <= self.k:
            return None  # the rest are not functions (server tools), always kept
        messages = body.get("messages")
        forced_names = (self.keep | chosen_tools(body.get("tool_choice"))
                        | called_tools(messages if isinstance(messages, list) else []))
        forced = [j for j, i in enumerate(scored) if names[i] in forced_names]
        functions = [(tools[i], names[i]) for i in scored]
        picked = self._pick(embedder, functions, query, forced, cached_only)
        if picked is None:
            return _LATER
        chosen = {scored[j] for j in picked}
        return [t for i, t in enumerate(tools) if names[i] is None or i in chosen]

    def _pick(self, embedder: Embedder, functions: list[tuple[dict[str, Any], str]],
              query: str, forced: list[int], cached_only: bool = False) -> list[int] | None:
        """Indexes into `functions` to keep; None when `cached_only` and some tool is not in
        the cache. Tools not cached are embedded and cached, in one batch with the query."""
        keys = [VectorCache.key(name, tool_description(tool)) for tool, name in functions]
        found = self.cache.get_many(keys)
        missing = [j for j, vector in enumerate(found) if vector is None]
        if missing and cached_only:
            return None
        parts = query_parts(query)
        computed = embedder.embed([tool_text(*functions[j]) for j in missing] + parts)
        self.cache.put_many((keys[j], computed[row]) for row, j in enumerate(missing))
        for row, j in enumerate(missing):
            found[j] = computed[row]
        return select(np.stack(found), computed[len(missing):], self.k, forced)  # type: ignore[arg-type]

    async def _load(self, ctx: PluginContext) -> Embedder:
        """The signals' embedder when one is configured, else the builtin static model
        (loaded once per process, on a thread: ~0.5 s)."""
        embedder = ctx.request.embedder
        if embedder is None:
            from routeyard.signals.embedder import load_embedder

            embedder = await asyncio.to_thread(load_embedder)
        self._embedder = embedder
        return embedder


def _is_static(embedder: Embedder) -> bool:
    from routeyard.signals.embedder import StaticEmbedder

    return isinstance(embedder, StaticEmbedder)
