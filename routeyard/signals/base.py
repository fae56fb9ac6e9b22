"""The signal contract: a family reads a request and returns named matches with confidence.

A family is built once from its config section and evaluated per request. Cheap families
(`Family`) run inline; expensive ones (`AsyncFamily`) run concurrently under a time budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from routeyard.tokens import count_prompt_tokens, message_text

if TYPE_CHECKING:
    import numpy as np

    from routeyard.pool import Pool
    from routeyard.signals.embedder import Embedder
    from routeyard.state import Store


@dataclass(slots=True)
class Match:
    confidence: float = 1.0
    value: Any = None  # what was found (a keyword, a language code, a score)


@dataclass(slots=True)
class FamilyResult:
    matches: dict[str, Match] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # what it measured, for the dry run
    latency_ms: float = 0.0
    error: str | None = None


class RequestContext:
    """One request as the signals see it. Derived views are computed once, on first use."""

    def __init__(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None,
                 embedder: Embedder | None = None) -> None:
        self.body = body
        self.messages: list[dict[str, Any]] = body["messages"]
        self.headers = headers or {}
        self.embedder = embedder
        self._user_texts: list[str] | None = None
        self._tokens: int | None = None
        self._embedding: np.ndarray | None = None

    @property
    def user_texts(self) -> list[str]:
        if self._user_texts is None:
            self._user_texts = [message_text(m) for m in self.messages if m.get("role") == "user"]
        return self._user_texts

    @property
    def last_user_text(self) -> str:
        texts = self.user_texts
        return texts[-1] if texts else ""

    def texts_of(self, roles: list[str]) -> str:
        if roles == ["user"]:
            return "\n".join(self.user_texts)
        return "\n".join(message_text(m) for m in self.messages if m.get("role") in roles)

    @property
    def prompt_tokens(self) -> int:
        if self._tokens is None:
            self._tokens = count_prompt_tokens(self.messages)
        return self._tokens

    @property
    def tokens_counted(self) -> int | None:
        return self._tokens

    def api_key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else None

    def embedding(self) -> np.ndarray:
        """The last user turn's embedding (normalised), computed once and shared by families."""
        if self._embedding is None:
            if self.embedder is None:
                raise RuntimeError("no embedding model is configured")
            self._embedding = self.embedder.embed_one(self.last_user_text)
        return self._embedding


@dataclass(slots=True, frozen=True)
class FamilyBuild:
    """What a family is built with besides its config section."""

    embedder: Embedder | None = None  # the shared embedding model, when some family needs it
    base_dir: Path | None = None  # files a family names resolve against it
    pool: Pool | None = None  # the Router's pool, for families that call a model (guard)
    store: Store | None = None  # the Router's store, for families that keep state (session_risk)


class Family(ABC):
    """A cheap family, evaluated inline."""

    name: ClassVar[str]
    is_async: ClassVar[bool] = False
    needs_embedder: ClassVar[bool] = False
    # A model's inference (not a table lookup or a regex): it gets a span of its own when
    # tracing is on. Families that embed or call a model count as learned anyway.
    learned: ClassVar[bool] = False

    @classmethod
    def is_learned(cls) -> bool:
        return cls.learned or cls.needs_embedder or cls.is_async

    def __init__(self, config: Any, embedder: Embedder | None = None) -> None:
        self.config = config
        self.embedder = embedder

    @classmethod
    def build(cls, config: Any, build: FamilyBuild) -> Family:
        """Construct from config and what the Router gives every family."""
        return cls(config, build.embedder)

    def declared_names(self) -> set[str] | None:
        """The names a rule may reference, or None when any name is possible."""
        return None

    @abstractmethod
    def evaluate(self, ctx: RequestContext) -> FamilyResult: ...


class AsyncFamily(Family):
    """An expensive family: awaited concurrently with the others, under its time budget."""

    is_async = True

    def evaluate(self, ctx: RequestContext) -> FamilyResult:  # pragma: no cover - not used
        raise NotImplementedError("AsyncFamily is awaited through evaluate_async")

    @abstractmethod
    async def evaluate_async(self, ctx: RequestContext) -> FamilyResult: ...


FAMILIES: dict[str, type[Family]] = {}


def register(cls: type[Family]) -> type[Family]:
    FAMILIES[cls.name] = cls
    return cls
