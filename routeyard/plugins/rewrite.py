"""Rewriting the text of a streamed answer as it passes (the `pii_redact` restore).

A plugin offers a `TextRewriter` factory; the relay keeps one rewriter chain per choice index
and runs each content delta through it. A rewriter may hold text back (a placeholder split
across two chunks) and must give it all back on `flush`, which runs before the choice's
finishing chunk, or before the end of the stream when no chunk said it finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson


class TextRewriter(Protocol):
    def feed(self, text: str) -> str:
        """The rewritten text that is safe to emit now; the rest is held back."""
        ...

    def flush(self) -> str:
        """Everything still held back, rewritten."""
        ...


RewriterFactory = Callable[[], TextRewriter]


class ContentRewrite:
    """The rewriter chains of one stream, per choice index."""

    def __init__(self, factories: Sequence[RewriterFactory]) -> None:
        self.factories = tuple(factories)
        self.chains: dict[int, list[TextRewriter]] = {}
        self.finished: set[int] = set()

    def _chain(self, index: int) -> list[TextRewriter]:
        chain = self.chains.get(index)
        if chain is None:
            chain = self.chains[index] = [factory() for factory in self.factories]
        return chain

    def _feed(self, index: int, text: str) -> str:
        for rewriter in self._chain(index):
            text = rewriter.feed(text)
        return text

    def _flush(self, index: int) -> str:
        text = ""
        for rewriter in self._chain(index):  # what one held back still passes the next
            text = rewriter.feed(text) + rewriter.flush() if text else rewriter.flush()
        return text

    def apply(self, chunk: dict[str, Any]) -> bytes | None:
        """The chunk's new payload when a rewriter changed its content, else None."""
        changed = False
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                new = self._feed(index, content)
                changed |= new != content
                content = delta["content"] = new  # type: ignore[index]
            if choice.get("finish_reason") is not None and index not in self.finished:
                self.finished.add(index)
                rest = self._flush(index)
                if rest:
                    if not isinstance(delta, dict):
                        delta = choice["delta"] = {}
                    delta["content"] = (content or "") + rest
                    changed = True
        return orjson.dumps(chunk) if changed else None

    def leftovers(self, template: dict[str, Any]) -> list[bytes]:
        """Chunks that deliver what unfinished choices still hold (a stream with no
        finishing chunk); `template` is the stream's first chunk, for its id and model."""
        chunks: list[bytes] = []
        for index in sorted(set(self.chains) - self.finished):
            self.finished.add(index)
            rest = self._flush(index)
            if rest:
                chunks.append(orjson.dumps({
                    "id": template.get("id"), "object": "chat.completion.chunk",
                    "created": template.get("created"), "model": template.get("model"),
                    "choices": [{"index": index, "delta": {"content": rest},
                                 "finish_reason": None}]}))
        return chunks


__all__ = ["ContentRewrite", "RewriterFactory", "TextRewriter"]
