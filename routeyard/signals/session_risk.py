"""`session_risk`: a session's decayed cumulative jailbreak and PII risk (docs/sessions.md).

A crescendo attack opens harmlessly and raises the stakes turn by turn; each turn alone may
pass the jailbreak family's threshold. This family keeps, per session, one number:

    risk_t = decay^Δturns · 0.5^(Δt / half_life_s) · risk_{t-1}
             + jailbreak_weight · attack_t + pii_weight · pii_t

where `attack_t` is the shipped jailbreak classifier's probability that the turn is a jailbreak,
an injection or a harmful request (1.0 when a jailbreak pattern matches) and `pii_t` the score of
the strongest PII span in it. Only the last user turn is scored: a chat body repeats the history,
which the stored risk already holds. Its names are the keys of `levels`, each holding once the
risk (this turn included) reaches its value, so `session_risk:high` can route to a guarded
decision or one with a `block` plugin.

The engine hands a family the request only, never another family's result, so this family
scores the turn itself with the same detector the jailbreak family builds (`build_detector`)
and the same `find_pii`; the request's embedding is computed once and shared.

State is one small JSON value under `session:<id>:risk` in the store's KV space, expiring after
`sessions.idle_ttl_s` (replicas sharing a store share it). One `get_value` per request that names
a session; the write is spawned in the background from the family itself: the turn's risk is
known before the answer and does not depend on it, a blocked request must raise the risk as
much as an answered one, and the request never waits for it. Two concurrent requests of one
session may both read the old value; the later write wins, losing one turn's increment, which
a risk score tolerates. The store down: no risk, a warning, never a failed request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from routeyard.config.signals import JailbreakFamily, SessionRiskFamily
from routeyard.signals.base import (
    AsyncFamily,
    Family,
    FamilyBuild,
    FamilyResult,
    Match,
    RequestContext,
    register,
)
from routeyard.signals.jailbreak import JailbreakDetector, build_detector, jailbreak_score
from routeyard.signals.pii import find_pii
from routeyard.signals.session import session_id, session_key
from routeyard.state import Store, StoreUnavailable

if TYPE_CHECKING:
    from routeyard.signals.embedder import Embedder

log = logging.getLogger("routeyard.signals")

RISK_PART = "risk"
DEFAULT_IDLE_TTL_S = 3600.0  # `sessions.idle_ttl_s`'s default, when built without a pool
# A store that is down raises StoreUnavailable; a corrupt value raises while decoding.
_STORE_ERRORS = (StoreUnavailable, OSError, ValueError, TypeError, KeyError)


@dataclass(frozen=True, slots=True)
class TurnScore:
    attack: float  # P(jailbreak, injection or harmful); 1.0 on a pattern
    pii: float  # the strongest PII span's score, 0 without one
    total: float  # weighted: what this turn adds to the session's risk


@dataclass(frozen=True, slots=True)
class RiskState:
    risk: float
    turns: int
    at: float  # wall-clock seconds of the last turn (replicas share it)

    def encode(self) -> bytes:
        return orjson.dumps({"risk": self.risk, "turns": self.turns, "at": self.at})

    @classmethod
    def decode(cls, raw: bytes) -> RiskState:
        data = orjson.loads(raw)
        return cls(float(data["risk"]), int(data["turns"]), float(data["at"]))


def advance(previous: RiskState | None, added: float, now: float, decay: float,
            half_life_s: float | None = None) -> RiskState:
    """The session's state after one more turn adding `added`."""
    if previous is None:
        return RiskState(added, 1, now)
    factor = decay
    if half_life_s is not None:
        factor *= 0.5 ** (max(0.0, now - previous.at) / half_life_s)
    return RiskState(factor * previous.risk + added, previous.turns + 1, now)


class TurnScorer:
    """One user turn's attack and PII scores, weighted as the family's config says."""

    def __init__(self, detector: JailbreakDetector, pii_entities: Iterable[str],
                 jailbreak_weight: float = 1.0, pii_weight: float = 0.3) -> None:
        self.detector = detector
        self.pii_entities = tuple(pii_entities)
        self.jailbreak_weight = jailbreak_weight
        self.pii_weight = pii_weight

    @classmethod
    def from_config(cls, config: SessionRiskFamily, embedder: Embedder,
                    base_dir: Any = None) -> TurnScorer:
        detector = build_detector(JailbreakFamily(artifact=config.artifact), embedder, base_dir)
        return cls(detector, config.pii_entities, config.jailbreak_weight, config.pii_weight)

    def score(self, text: str, embedding: np.ndarray | None = None) -> TurnScore:
        """`embedding`: the request's builtin embedding of `text`, when already computed."""
        detector = self.detector
        if detector.pattern(text) is not None:
            attack = 1.0
        else:
            if embedding is None or not detector.uses_shared_embedding:
                embedding = detector.embed(text)
            probs = detector.classifier.probabilities(embedding, text)
            attack = max(jailbreak_score(probs), probs.get("harmful", 0.0))
        pii = max((s.score for s in find_pii(text, self.pii_entities)), default=0.0)
        return TurnScore(attack, pii, self.jailbreak_weight * attack + self.pii_weight * pii)


@register
class SessionRiskSignals(AsyncFamily):
    name = "session_risk"
    needs_embedder = True
    learned = True

    def __init__(self, config: SessionRiskFamily, embedder: Embedder | None = None, *,
                 store: Store | None = None, scorer: TurnScorer | None = None,
                 idle_ttl_s: float = DEFAULT_IDLE_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(config, embedder)
        if scorer is None:
            if embedder is None:
                raise RuntimeError("the session_risk family needs an embedding model")
            scorer = TurnScorer.from_config(config, embedder)
        self.scorer = scorer
        # The first scoring loads lazy tables (~50 ms): pay it at build, not in a request's
        # budget (the engine warms up sync families only).
        scorer.score("Warm up, please.")
        self.store = store  # None outside a Router (a dry build): evaluating reports no risk
        self.idle_ttl_s = idle_ttl_s
        self.clock = clock
        self._writes: set[asyncio.Task[None]] = set()  # strong references until done

    @classmethod
    def build(cls, config: SessionRiskFamily, build: FamilyBuild) -> Family:
        if build.embedder is None:
            raise RuntimeError("the session_risk family needs an embedding model")
        scorer = TurnScorer.from_config(config, build.embedder, build.base_dir)
        ttl = DEFAULT_IDLE_TTL_S
        if build.pool is not None:
            ttl = build.pool.config.sessions.idle_ttl_s
        return cls(config, build.embedder, store=build.store, scorer=scorer, idle_ttl_s=ttl)

    def declared_names(self) -> set[str]:
        return set(self.config.levels)

    async def _store(self) -> Store | None:
        return self.store

    async def evaluate_async(self, ctx: RequestContext) -> FamilyResult:
        session = session_id(ctx.body, ctx.headers)  # a bad id is the client's 400
        if session is None:
            return FamilyResult(values={"session": None})
        text = ctx.last_user_text
        shared = ctx.embedding() if self.scorer.detector.uses_shared_embedding else None
        turn = self.scorer.score(text, shared)
        values: dict[str, Any] = {"attack": round(turn.attack, 3), "pii": round(turn.pii, 3)}
        key = session_key(session, RISK_PART)
        try:
            store = await self._store()
            if store is None:
                raise StoreUnavailable("no store")
            raw = await store.get_value(key)
            previous = RiskState.decode(raw) if raw else None
        except _STORE_ERRORS as error:
            log.warning("session_risk: session state unreadable, no risk reported: %s", error)
            values["store"] = "unavailable"
            return FamilyResult(values=values)
        config: SessionRiskFamily = self.config
        state = advance(previous, turn.total, self.clock(), config.decay, config.half_life_s)
        self._spawn_write(store, key, state)
        values.update({"risk": round(state.risk, 3), "turns": state.turns})
        result = FamilyResult(values=values)
        for name, level in config.levels.items():
            if state.risk >= level:
                result.matches[name] = Match(1.0, round(state.risk, 3))
        return result

    def _spawn_write(self, store: Store, key: str, state: RiskState) -> None:
        task = asyncio.get_running_loop().create_task(self._write(store, key, state))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, store: Store, key: str, state: RiskState) -> None:
        try:
            await store.set_value(key, state.encode(), ttl_s=self.idle_ttl_s)
        except _STORE_ERRORS as error:
            log.warning("session_risk: session state not saved: %s", error)

    async def settle(self) -> None:
        """Wait for the writes in flight (tests; a closing Router)."""
        while self._writes:
            await asyncio.gather(*list(self._writes))
