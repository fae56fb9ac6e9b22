"""Feedback: a rating, a score, correctness or a preference for a served request, fed to the
online learner of the decision that served it.

Each request id takes feedback once (claimed in the store, so replicas agree). Learned state
lives in the store under `online:<decision>`: it is loaded when a Router starts, and each
update reloads, changes and writes it back under a lease in the store, so replicas sharing a
store learn together without losing each other's updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routeyard.config.loader import format_location
from routeyard.errors import InvalidRequest, NotFound, RouteyardError
from routeyard.state import DecisionRecord, Store, StoreUnavailable

if TYPE_CHECKING:
    from routeyard.selection.online.base import OnlineAlgorithm
    from routeyard.serving.planner import RoutePlan

log = logging.getLogger("routeyard.feedback")

FEEDBACK_TTL_S = 7 * 24 * 3600.0  # how long a request id stays claimed, and contexts kept
# Requests remembered in-process: the decision log reaches the store ~0.1 s after a request, so
# this only bridges feedback that arrives sooner. Small, so memory stays flat under load.
_RECENT = 1_000
# The lease on a decision's learned state while one update reads and writes it (far above the
# few milliseconds that takes), and how often a waiting update asks for it again.
_LEASE_S = 2.0
_LEASE_POLL_S = 0.005


class DuplicateFeedback(RouteyardError):
    status = 409
    type = "invalid_request_error"
    code = "duplicate_feedback"


class UnknownRequest(NotFound):
    code = "unknown_request_id"


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Annotated[str, Field(min_length=1)]
    rating: Annotated[int, Field(ge=1, le=5)] | None = None  # 1 (bad) to 5 (good)
    score: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    correct: bool | None = None
    preferred_over: str | None = None  # another request id, from the same decision

    @model_validator(mode="after")
    def _exactly_one(self) -> FeedbackBody:
        given = [k for k in ("rating", "score", "correct", "preferred_over")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of rating, score, correct or preferred_over")
        return self

    def reward(self) -> float | None:
        if self.rating is not None:
            return (self.rating - 1) / 4
        if self.score is not None:
            return self.score
        if self.correct is not None:
            return 1.0 if self.correct else 0.0
        return None


def parse_feedback(data: Any) -> FeedbackBody:
    try:
        return FeedbackBody.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = format_location(tuple(first["loc"])) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        raise InvalidRequest(message, param=param) from None


class FeedbackService:
    def __init__(self, store: Store, learners: dict[str, OnlineAlgorithm]) -> None:
        """`learners` maps decision names to their online algorithms."""
        self.store = store
        self.learners = learners
        self._recent: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def load_states(self) -> None:
        for decision, learner in self.learners.items():
            state = await self.store.get_value(_state_key(decision))
            if state is not None:
                learner.set_state(state)

    def served(self, plan: RoutePlan, model: str | None) -> None:
        """Remember a finished request, so feedback can find it before the log is flushed."""
        self._recent[plan.request_id] = (plan.decision, model)
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def needs_context(self, decision: str) -> bool:
        """Whether the decision's learner learns from the prompt's embedding (so a served
        request's embedding must be kept until its feedback comes)."""
        learner = self.learners.get(decision)
        return learner is not None and learner.needs_embedding

    async def remember_context(self, plan: RoutePlan) -> None:
        learner = self.learners.get(plan.decision)
        if learner is not None and learner.needs_embedding:
            vector = plan.context.embedding().astype(np.float16).tobytes()
            await self.store.set_value(f"context:{plan.request_id}", vector, FEEDBACK_TTL_S)

    async def submit(self, feedback: FeedbackBody) -> dict[str, Any]:
        decision, model = await self._lookup(feedback.request_id)
        other: tuple[str, str | None] | None = None
        if feedback.preferred_over is not None:
            other = await self._lookup(feedback.preferred_over)
            if other[0] != decision:
                raise InvalidRequest("preferred_over must name a request of the same decision",
                                     param="preferred_over")
        if model is None:
            raise InvalidRequest("that request was not answered, so it takes no feedback",
                                 param="request_id")
        if not await self.store.claim(_explicit_key(feedback.request_id), FEEDBACK_TTL_S):
            raise DuplicateFeedback(f"feedback for {feedback.request_id} was already counted",
                                    param="request_id")
        learner = self.learners.get(decision)
        reward = feedback.reward()
        if learner is not None:
            await self._learn(decision, learner, feedback.request_id, model, reward,
                              other[1] if other is not None else None)
        try:  # joined to the decision record (a preference counts 1 for the preferred answer)
            await self.store.record_feedback(feedback.request_id,
                                             reward if reward is not None else 1.0)
        except StoreUnavailable:  # the learner has it; only the log misses it
            log.warning("feedback for %s not joined to its record: the store is down",
                        feedback.request_id)
        return {"request_id": feedback.request_id, "decision": decision, "model": model,
                "reward": reward, "learner": learner.name if learner is not None else None}

    async def submit_implicit(self, request_id: str, decision: str, model: str,
                              reward: float) -> bool:
        """Feedback inferred from behaviour (serving/implicit.py), for a request a model
        answered; True when it counted. It never goes over explicit feedback: it is dropped
        when the request has some (claimed or kept), while explicit feedback that comes later
        still counts (its claim is its own) and replaces it in the log. A request takes
        implicit feedback once. The learner learns from it as from explicit feedback (it
        cannot unlearn it when explicit feedback follows). Raises StoreUnavailable."""
        if await self.store.get_value(_explicit_key(request_id)) is not None:
            return False
        if not await self.store.claim(f"implicit:{request_id}", FEEDBACK_TTL_S):
            return False
        # Kept only where the log has no feedback yet (atomic in the store): an explicit
        # feedback that raced in since the check above wins, and the learner is left alone.
        if not await self.store.record_feedback(request_id, reward, implicit=True):
            return False
        learner = self.learners.get(decision)
        if learner is not None:
            await self._learn(decision, learner, request_id, model, reward)
        return True

    async def _learn(self, decision: str, learner: OnlineAlgorithm, request_id: str,
                     model: str, reward: float | None, other_model: str | None = None) -> None:
        """One update of the decision's learned state: a reward, or a preference of `model`
        over `other_model`."""
        context = await self._context(request_id, learner)
        async with self._updating(decision):
            state = await self.store.get_value(_state_key(decision))
            # No await until the new state is taken: a refresh cannot land in between.
            if state is not None:
                learner.set_state(state)  # pick up other replicas' updates first
            if other_model is not None:
                learner.update_preference(model, other_model)
            elif reward is not None:
                learner.update(model, reward, context)
            await self.store.set_value(_state_key(decision), learner.get_state())

    @contextlib.asynccontextmanager
    async def _updating(self, decision: str) -> AsyncIterator[None]:
        """The decision's learned state to this update alone, across replicas: two read-modify-
        writes that interleave lose one of the updates. A lease claimed in the store (and
        deleted when done): a replica that dies holding it holds it `_LEASE_S` at most."""
        async with self._locks.setdefault(decision, asyncio.Lock()):  # one claimant per process
            lease = f"lock:{_state_key(decision)}"
            while not await self.store.claim(lease, _LEASE_S):
                await asyncio.sleep(_LEASE_POLL_S)
            try:
                yield
            finally:
                with contextlib.suppress(StoreUnavailable):  # it expires by itself
                    await self.store.delete_value(lease)

    async def _lookup(self, request_id: str) -> tuple[str, str | None]:
        recent = self._recent.get(request_id)
        if recent is not None:
            return recent
        record: DecisionRecord | None = await self.store.get_decision(request_id)
        if record is None:
            raise UnknownRequest(f"no request with id {request_id!r} is known",
                                 param="request_id")
        return record.decision or "", record.model

    async def _context(self, request_id: str, learner: OnlineAlgorithm) -> np.ndarray | None:
        if not learner.needs_embedding:
            return None
        raw = await self.store.get_value(f"context:{request_id}")
        return None if raw is None else np.frombuffer(raw, dtype=np.float16).astype(np.float32)


def _state_key(decision: str) -> str:
    return f"online:{decision}"


def _explicit_key(request_id: str) -> str:
    """The claim that counts a request's explicit feedback once."""
    return f"feedback:{request_id}"
