"""Rewriting the text of a streamed answer as it passes (the `pii_redact` restore).

A plugin offers a `TextRewriter` factory; the relay keeps one rewriter chain per choice's
content and per tool call's arguments, and runs each delta through it. A rewriter may hold text
back (a placeholder split across two chunks) and must give it all back on `flush`, which runs
before the choice's finishing chunk, or before the end of the stream when no chunk said it
finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from routeyard.wire import chunk, delta_choice


class TextRewriter(Protocol):
    def feed(self, text: str) -> str:
        """The rewritten text that is safe to emit now; the rest is held back."""
        ...

    def flush(self) -> str:
        """Everything still held back, rewritten."""
        ...


RewriterFactory = Callable[[], TextRewriter]


# A rewriter chain per text stream: (choice index, None) for the content, (choice index,
# tool-call index) for one tool call's arguments.
_Key = tuple[int, int | None]


class ContentRewrite:
    """The rewriter chains of one stream: each choice's content and each tool call's
    arguments are rewritten on their own."""

    def __init__(self, factories: Sequence[RewriterFactory]) -> None:
        self.factories = tuple(factories)
        self.chains: dict[_Key, list[TextRewriter]] = {}
        self.finished: set[int] = set()  # choice indexes whose held text was delivered

    def _feed(self, key: _Key, text: str) -> str:
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = [factory() for factory in self.factories]
        for rewriter in chain:
            text = rewriter.feed(text)
        return text

    def _flush(self, key: _Key) -> str:
        text = ""
        for rewriter in self.chains[key]:  # what one held back still passes the next
            text = rewriter.feed(text) + rewriter.flush() if text else rewriter.flush()
        return text

    def _rewrite_delta(self, index: int, delta: dict[str, Any]) -> bool:
        changed = False
        content = delta.get("content")
        if isinstance(content, str) and content:
            delta["content"] = self._feed((index, None), content)
            changed = delta["content"] != content
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str) and arguments:
                function["arguments"] = self._feed((index, call.get("index", 0)), arguments)
                changed |= function["arguments"] != arguments
        return changed

    def _deliver_held(self, index: int, delta: dict[str, Any]) -> bool:
        """Add what the choice's rewriters still hold to `delta`; True when there was any."""
        self.finished.add(index)
        changed = False
        for key in sorted((k for k in self.chains if k[0] == index),
                          key=lambda k: -1 if k[1] is None else k[1]):
            rest = self._flush(key)
            if not rest:
                continue
            changed = True
            if key[1] is None:
                delta["content"] = (delta.get("content") or "") + rest
            else:
                delta.setdefault("tool_calls", []).append(
                    {"index": key[1], "function": {"arguments": rest}})
        return changed

    def apply(self, chunk: dict[str, Any]) -> bytes | None:
        """The chunk's new payload when a rewriter changed it, else None."""
        changed = False
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                changed |= self._rewrite_delta(index, delta)
            if choice.get("finish_reason") is not None and index not in self.finished:
                if not isinstance(delta, dict):
                    delta = {}
                if self._deliver_held(index, delta):
                    choice["delta"] = delta
                    changed = True
        return orjson.dumps(chunk) if changed else None

    def leftovers(self, template: dict[str, Any]) -> list[bytes]:
        """Chunks that deliver what unfinished choices still hold (a stream with no
        finishing chunk); `template` is the stream's first chunk, for its id and model."""
        chunks: list[bytes] = []
        for index in sorted({k[0] for k in self.chains} - self.finished):
            delta: dict[str, Any] = {}
            if self._deliver_held(index, delta):
                chunks.append(orjson.dumps(chunk(
                    template.get("id"), template.get("model"), template.get("created"),
                    [delta_choice(index, delta)])))
        return chunks


__all__ = ["ContentRewrite", "RewriterFactory", "TextRewriter"]
