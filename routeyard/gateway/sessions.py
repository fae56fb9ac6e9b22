"""Agent sessions' state, kept in the store so that replicas share it (docs/sessions.md).

Each scope a request counts for has one small JSON value in the store's key-value space, which
expires after `sessions.idle_ttl_s` without a request:

    session:<session>:budget          the session's spend, tokens, steps, last model, endpoint
    session:<session>:task:<task>     a task of that session (`x-task-id`/`metadata.task_id`)
    session:t:<task>:budget           a task named without a session
    session:k:<key id>:budget         a key, across its sessions, while it is active

The accounting tells the tracker of every finished request (an observer on the loop, so the
update is a background task); the Router reads a request's state before planning, only for
scopes that have a budget. The update is a read-modify-write: exact for the sequential steps
of one agent, last-writer-wins for two requests of one session answered at the same instant
on two replicas (the budgets are a steering aid, not an accounting ledger: hard money limits
are the gateway's key budgets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from routeyard.config.schema import SessionsConfig
from routeyard.errors import InvalidRequest
from routeyard.gateway.session_budget import BudgetRule, SessionSteer, Standing, weigh
from routeyard.signals.session import _checked, session_id, session_key
from routeyard.state import Store, StoreUnavailable
from routeyard.state.record import ERROR_STATUSES

if TYPE_CHECKING:
    from routeyard.gateway.callers import Caller
    from routeyard.signals import RequestContext
    from routeyard.state import DecisionRecord

log = logging.getLogger("routeyard.sessions")

TASK_HEADER = "x-task-id"
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(slots=True)
class SessionState:
    """What a scope has done so far."""

    usd: float = 0.0
    tokens: int = 0
    steps: int = 0  # requests that got an answer
    model: str | None = None  # the model and endpoint that answered last
    endpoint: str | None = None
    updated: float = 0.0  # unix seconds

    def spent(self, kind: str) -> float:
        return {"usd": self.usd, "tokens": float(self.tokens), "steps": float(self.steps)}[kind]

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> SessionState:
        if raw is None:
            return cls()
        try:
            data = orjson.loads(raw)
            return cls(**{k: data[k] for k in _STATE_FIELDS if k in data})
        except (orjson.JSONDecodeError, TypeError):
            log.warning("unreadable session state; counted from zero")
            return cls()


_STATE_FIELDS = tuple(f.name for f in fields(SessionState))


@dataclass(frozen=True, slots=True)
class Scopes:
    """The store keys a request counts for, by budget scope."""

    keys: dict[str, tuple[str, str]]  # scope → (scope id as shown, store key)


def task_id(body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """The request's task within its session: `x-task-id`, else `metadata.task_id`."""
    found = headers.get(TASK_HEADER)
    if found is not None:
        return _checked(found, TASK_HEADER)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("task_id") is not None:
        return _checked(metadata.get("task_id"), "metadata.task_id")
    return None


def scopes_of(session: str | None, task: str | None, key_id: str | None) -> Scopes:
    keys: dict[str, tuple[str, str]] = {}
    if session is not None:
        keys["session"] = (session, session_key(session, "budget"))
    if task is not None:
        keys["task"] = ((f"{session}/{task}", session_key(session, f"task:{task}"))
                        if session is not None else (task, session_key(f"t:{task}", "budget")))
    if key_id is not None:
        keys["key"] = (key_id, session_key(f"k:{key_id}", "budget"))
    return Scopes(keys)


class Observed(Protocol):
    """What the observer reads of a finished request's plan (a RoutePlan, a layer above)."""

    session: str | None
    caller: Caller | None
    context: RequestContext


class SessionTracker:
    """Session state and budgets, built by the Router when `sessions:` asks for them."""

    def __init__(self, config: SessionsConfig, store: Store, spawn: Spawn, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.spawn = spawn
        self.ttl_s = config.idle_ttl_s
        self.clock = clock
        self.rules = [BudgetRule.of(b) for b in config.budgets]
        self.scoped = frozenset(rule.scope for rule in self.rules)
        # Store key → its update lock here and how many updates hold or wait for it.
        self._writing: dict[str, tuple[asyncio.Lock, int]] = {}

    @staticmethod
    def wanted(config: SessionsConfig) -> bool:
        return bool(config.budgets) or config.track

    # -- before planning -----------------------------------------------------------------

    async def begin(self, body: Mapping[str, Any], headers: Mapping[str, str],
                    caller: Caller | None) -> tuple[str | None, SessionSteer | None]:
        """The request's session id and its budgets' steer; a 400 for a bad session or task
        id, a 429 `budget_exceeded` when one of its budgets is spent."""
        session = session_id(body, headers)
        if not self.rules:
            return session, None
        scopes = self.scopes(session, body, headers, caller)
        wanted = [(rule, *scopes.keys[rule.scope]) for rule in self.rules
                  if rule.scope in scopes.keys]
        if not wanted:
            return session, None
        states = await self._read({key for _, _, key in wanted})
        if states is None:
            return session, None  # the store is down: served unsteered, not refused
        return session, weigh([Standing(rule, shown, states[key].spent(rule.kind))
                               for rule, shown, key in wanted])

    def scopes(self, session: str | None, body: Mapping[str, Any], headers: Mapping[str, str],
               caller: Caller | None) -> Scopes:
        task = task_id(body, headers) if "task" in self.scoped else None
        key = caller.key_id if caller is not None and "key" in self.scoped else None
        return scopes_of(session, task, key)

    async def state(self, session: str) -> SessionState | None:
        """A session's state (None when it has none, or it expired)."""
        raw = await self.store.get_value(session_key(session, "budget"))
        return SessionState.from_bytes(raw) if raw is not None else None

    async def _read(self, keys: set[str]) -> dict[str, SessionState] | None:
        ordered = sorted(keys)
        try:
            # One scope (the usual case) is awaited directly: gather would make a task.
            raws = ([await self.store.get_value(ordered[0])] if len(ordered) == 1 else
                    await asyncio.gather(*(self.store.get_value(k) for k in ordered)))
        except StoreUnavailable:
            log.warning("session budgets not checked: the store is down")
            return None
        return {k: SessionState.from_bytes(raw) for k, raw in zip(ordered, raws, strict=True)}

    # -- after answering (the accounting's observer) ----------------------------------------

    def observe(self, plan: Observed, record: DecisionRecord, _text: str | None) -> None:
        """Count a finished request against its scopes (in the background)."""
        session = plan.session
        context = plan.context
        task = None
        if "task" in self.scoped:
            try:
                task = task_id(context.body, context.headers)
            except InvalidRequest:  # refused at planning already (a library call's plan)
                task = None
        caller = plan.caller
        key = caller.key_id if caller is not None and "key" in self.scoped else None
        scopes = scopes_of(session, task, key)
        if scopes.keys:
            self.spawn(self._add(scopes, record))

    async def _add(self, scopes: Scopes, record: DecisionRecord) -> None:
        tokens = record.prompt_tokens + record.completion_tokens
        step = record.status not in ERROR_STATUSES
        for _, key in scopes.keys.values():
            lock, users = self._writing.get(key) or (asyncio.Lock(), 0)
            self._writing[key] = (lock, users + 1)
            try:
                async with lock:
                    state = SessionState.from_bytes(await self.store.get_value(key))
                    state.usd += record.cost_usd
                    state.tokens += tokens
                    state.steps += int(step)
                    if record.model is not None:
                        state.model, state.endpoint = record.model, record.endpoint
                    state.updated = self.clock()
                    await self.store.set_value(key, state.to_bytes(), ttl_s=self.ttl_s)
            except StoreUnavailable:
                log.warning("session state %s not updated: the store is down", key)
            finally:
                lock, users = self._writing[key]
                if users > 1:
                    self._writing[key] = (lock, users - 1)
                else:
                    del self._writing[key]
