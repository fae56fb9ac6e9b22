"""Step-level collaboration (GlimpRouter's idea): a small model drafts each reasoning step, and
where it is unsure how to begin one, the large model writes that step instead.

    decisions:
      - name: think-together
        collaborate: {small: sim-small, large: sim-large, entropy_threshold: 1.0}

For each step, up to `max_steps`: the small model is asked for the next step (non-streamed,
`max_tokens: max_step_tokens`, `stop: [step_marker]`, `logprobs` with `top_logprobs`),
continuing the transcript so far as a partial assistant message, in the shape its model takes
(`continuation.py`: vLLM's `continue_final_message` or an assistant prefill). The entropy of its
first token is H = -Σ p log p over that token's `top_logprobs`, renormalised to sum to 1 (the
mass outside the top k is unknown). Above `entropy_threshold` (nats) the large model is asked for
the step from the same transcript, and the small model's draft is discarded (its tokens are
paid for all the same); otherwise the draft is kept. A draft with no logprobs counts as unsure.
The answer is complete when a step ends by itself (it did not stop at the marker: vLLM's
`stop_reason`, or an empty step where the backend does not say why it stopped).

Failures: the large model failing on a step keeps the small model's draft (noted); the small
model failing hands the rest of the answer to the large model, in one call.

Streaming: each step is sent as one chunk as soon as it is decided; the usage chunk at the end
is the sum of every call, and what each model wrote rides on the chunk that finishes the answer
(`routeyard.collaborate`). A whole answer carries `x-routeyard-steps: small=5,large=2`. Either
way the decision record's `selection.collaborate` has the writers, entropies and cost.

Requests a step loop cannot serve (tools, several choices, a structured response format) are
answered by the plan's models directly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard.config.schema import CollaborateConfig
from routeyard.decisions import Decision
from routeyard.pool import Pool, PooledModel, PoolExhausted, Served, UpstreamError
from routeyard.pool.executor import Executor
from routeyard.pool.providers.base import ChatStream
from routeyard.serving.accounting import Accountant
from routeyard.serving.continuation import SHAPES, continuation_mode, with_partial_answer
from routeyard.serving.handler import Answer, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, StreamHooks, StreamRelay
from routeyard.serving.request import wants_usage
from routeyard.wire import chunk, completion, delta_choice, usage

log = logging.getLogger("routeyard.collaborate")

STEPS_HEADER = "x-routeyard-steps"  # what each model wrote: "small=5,large=2"
SMALL, LARGE = "small", "large"

# Request fields the step calls set themselves, or that a step-by-step answer leaves out
# (reasoning is over once the answer's text has begun, as for a continuation).
_OWN_FIELDS = frozenset({"stream", "stream_options", "n", "logprobs", "top_logprobs", "stop",
                         "max_tokens", "max_completion_tokens", "reasoning_effort", "thinking"})


def first_token_entropy(choice: dict[str, Any]) -> float | None:
    """The entropy (nats) of a choice's first token over its `top_logprobs`, renormalised;
    None when the backend gave no logprobs for it."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs")
    values = [t.get("logprob") for t in top if isinstance(t, dict)] if isinstance(top, list) \
        else []
    probabilities = [math.exp(v) for v in values
                     if isinstance(v, int | float) and not isinstance(v, bool)]
    total = sum(probabilities)
    if not probabilities or total <= 0:
        return None
    return max(0.0, -sum(p / total * math.log(p / total) for p in probabilities if p > 0))


def collaborate_handlers(pool: Pool, decisions: Iterable[Decision], accountant: Accountant,
                         direct: Handler) -> dict[str, CollaborateHandler]:
    """The collaboration of each decision that has one, checked once when a Router is built
    (config loading reports the same problems with their location first)."""
    handlers: dict[str, CollaborateHandler] = {}
    for decision in decisions:
        config = decision.collaborate
        if config is None:
            continue
        models = []
        for part in (config.small, config.large):
            model = pool.models.get(part)
            if model is None:
                raise ValueError(f"decision '{decision.name}': collaborate: unknown model "
                                 f"'{part}'")
            models.append(model)
        handlers[decision.name] = CollaborateHandler(config, models[0], models[1],
                                                     pool.executor, accountant, direct)
    return handlers


def _shape(model: PooledModel) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """How `model` is asked to continue a partial answer (its first endpoint's mode)."""
    mode = continuation_mode(model, model.endpoints[0])
    shape = SHAPES.get(mode)
    if shape is None:
        raise ValueError(f"model '{model.name}' cannot continue a partial answer "
                         "(collaborate needs its `continuation` set)")
    return shape


def _serves_step_by_step(body: dict[str, Any]) -> bool:
    choices = body.get("n")
    response_format = body.get("response_format")
    return not (body.get("tools") or body.get("functions")
                or (isinstance(choices, int) and choices > 1)
                or (isinstance(response_format, dict) and response_format.get("type") != "text"))


@dataclass(slots=True)
class Step:
    """One step of the answer, as decided."""

    writer: str  # SMALL or LARGE
    text: str  # what it adds to the answer (the marker before it included)
    entropy: float | None  # the small model's first token's; None: no logprobs came back
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """One backend call, and the completion tokens it was charged."""

    served: Served
    completion_tokens: int


@dataclass(slots=True)
class _Said:
    """One call's step: its text and how it ended."""

    text: str
    finish: str
    ended: bool  # the answer is complete after it (it did not stop at the marker)
    at_marker: bool


class CollaborateHandler(Handler):
    def __init__(self, config: CollaborateConfig, small: PooledModel, large: PooledModel,
                 executor: Executor, accountant: Accountant, direct: Handler) -> None:
        self.config = config
        self.small, self.large = small, large
        self.shapes = {small.name: _shape(small), large.name: _shape(large)}
        self.executor = executor
        self.accountant = accountant
        self.direct = direct  # for requests a step loop cannot serve
        self.warned_no_logprobs = False

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        if not _serves_step_by_step(body):
            return await self.direct.complete(plan, body)
        session = _Session(self, plan, body)
        while await session.step() is not None:
            pass
        return session.answer()

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        """The first step is decided before the stream opens (so a request no model can
        answer gets its error, not a broken stream); each later one is sent as it comes."""
        if not _serves_step_by_step(body):
            return await self.direct.open_stream(plan, body, hooks)
        session = _Session(self, plan, body)
        first = await session.step()
        stream = _StepStream(session, first)
        relay = StreamRelay(plan, stream, self.accountant, served=session.last_served,
                            client_wants_usage=wants_usage(body), hooks=hooks)
        stream.relay = relay
        return relay

    def no_logprobs(self, plan: RoutePlan) -> None:
        if not self.warned_no_logprobs:
            self.warned_no_logprobs = True
            log.warning("request %s: %s gave no logprobs; its steps go to %s (logged once)",
                        plan.request_id, self.small.name, self.large.name)


@dataclass(slots=True)
class _Session:
    """One request's collaboration: the transcript, the steps and every call's cost."""

    handler: CollaborateHandler
    plan: RoutePlan
    body: dict[str, Any]
    base: dict[str, Any] = field(init=False)
    stops: list[str] = field(init=False)
    budget: int | None = field(init=False)  # the client's max_tokens, over all steps
    transcript: str = ""
    pending_marker: bool = False  # the last step stopped at the marker: the next follows it
    steps: list[Step] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    written: int = 0  # completion tokens of the steps kept
    cost_usd: float = 0.0
    last_served: Served | None = None
    finish: str | None = None  # set when the answer is complete
    small_failed: str | None = None
    prefilled: bool = False  # the client's last message is the assistant's: the answer's start
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        body = self.body
        self.base = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
        stop = body.get("stop")
        client = [stop] if isinstance(stop, str) else list(stop or ())
        self.stops = [self.handler.config.step_marker, *client][:4]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        self.budget = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        messages = body.get("messages") or [{}]
        self.prefilled = isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant"

    async def step(self) -> Step | None:
        """Decide the next step and add it; None once the answer is complete."""
        config = self.handler.config
        if self.finish is not None:
            return None
        left = None if self.budget is None else self.budget - self.written
        if len(self.steps) >= config.max_steps or (left is not None and left <= 0):
            self.finish = "length"
            return None
        limit = config.max_step_tokens if left is None else min(left, config.max_step_tokens)
        try:
            drafted, draft = await self._ask(self.handler.small, limit, logprobs=True)
        except PoolExhausted as exhausted:
            return await self._large_writes_the_rest(exhausted, left)
        said = self._said(draft)
        if not said.text.strip():  # nothing more to say: the answer is complete
            self.finish = said.finish if said.ended else "stop"
            self.last_served = self.last_served or drafted.served
            return None
        entropy = first_token_entropy(draft)
        if entropy is None:
            self.handler.no_logprobs(self.plan)
        if entropy is not None and entropy <= config.entropy_threshold:
            return self._add(Step(SMALL, "", entropy), said, drafted)
        try:
            wrote, choice = await self._ask(self.handler.large, limit, logprobs=False)
        except PoolExhausted as exhausted:  # keep the draft
            return self._add(Step(SMALL, "", entropy, f"large failed: {exhausted.message}"),
                             said, drafted)
        return self._add(Step(LARGE, "", entropy), self._said(choice), wrote)

    async def _large_writes_the_rest(self, exhausted: PoolExhausted, left: int | None
                                     ) -> Step | None:
        """The small model failed: the large one writes the rest of the answer in one call
        (a PoolExhausted of its own is the request's)."""
        self.small_failed = exhausted.message
        log.warning("request %s: %s failed (%s); %s writes the rest", self.plan.request_id,
                    self.handler.small.name, exhausted.message, self.handler.large.name)
        wrote, choice = await self._ask(self.handler.large, left, logprobs=False,
                                        stops=self.stops[1:])
        said = self._said(choice)
        said.ended = True
        return self._add(Step(LARGE, "", None, f"small failed: {exhausted.message}"), said,
                         wrote)

    async def _ask(self, model: PooledModel, limit: int | None, *, logprobs: bool,
                   stops: list[str] | None = None) -> tuple[_Call, dict[str, Any]]:
        """One call for the next step, continuing the transcript; its cost is counted."""
        config = self.handler.config
        transcript = self.transcript + (config.step_marker if self.pending_marker else "")
        body = dict(self.base)
        if transcript or self.prefilled:
            body = self.handler.shapes[model.name](with_partial_answer(body, transcript))
        body.pop("max_completion_tokens", None)
        if limit is None:
            body.pop("max_tokens", None)
        else:
            body["max_tokens"] = limit
        body["stop"] = self.stops if stops is None else stops
        if not body["stop"]:
            del body["stop"]
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = config.top_logprobs
        served = await self.handler.executor.complete([model], body)
        spent = self.handler.accountant.usage(self.plan, served.result)
        prompt = int(spent.get("prompt_tokens") or 0)
        said = int(spent.get("completion_tokens") or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += said
        self.cost_usd += model.config.pricing.cost(prompt, said)
        choices = served.result.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else {}
        return _Call(served, said), first if isinstance(first, dict) else {}

    def _said(self, choice: dict[str, Any]) -> _Said:
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message.get("content"), str) else ""
        finish = choice.get("finish_reason") or "stop"
        if finish == "length":
            return _Said(text, finish, ended=False, at_marker=False)
        if finish != "stop":
            return _Said(text, finish, ended=True, at_marker=False)
        if "stop_reason" in choice:  # vLLM's (and the Anthropic adapter's): what stopped it
            at_marker = choice["stop_reason"] == self.handler.config.step_marker
            return _Said(text, finish, ended=not at_marker, at_marker=at_marker)
        # Not said: take it as the marker; an empty next step ends the answer.
        return _Said(text, finish, ended=False, at_marker=True)

    def _add(self, step: Step, said: _Said, call: _Call) -> Step:
        marker = self.handler.config.step_marker if self.pending_marker and said.text else ""
        step.text = marker + said.text
        self.transcript += step.text
        self.pending_marker = said.at_marker or (self.pending_marker and not said.text)
        self.written += call.completion_tokens
        self.last_served = call.served
        self.steps.append(step)
        if said.ended:
            self.finish = said.finish
        return step

    # -- the answer -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {writer: sum(s.writer == writer for s in self.steps) for writer in (SMALL, LARGE)}

    def summary(self) -> dict[str, Any]:
        """For the decision record and the stream's last chunk."""
        config = self.handler.config
        found: dict[str, Any] = {
            "small": self.handler.small.name, "large": self.handler.large.name,
            "threshold": config.entropy_threshold, "steps": self.counts(),
            "writers": [s.writer for s in self.steps],
            "entropies": [None if s.entropy is None else round(s.entropy, 4)
                          for s in self.steps],
            "cost_usd": self.cost_usd}
        notes = [f"step {i}: {s.note}" for i, s in enumerate(self.steps) if s.note]
        if notes:
            found["notes"] = notes
        return found

    def settle(self) -> tuple[dict[str, int], str]:
        """The summed usage, and the steps header; the record's detail is filled in."""
        self.plan.handled = {**(self.plan.handled or {}), "collaborate": self.summary()}
        steps = ",".join(f"{writer}={n}" for writer, n in self.counts().items())
        return usage(self.prompt_tokens, self.completion_tokens), steps

    def model_name(self) -> str:
        served = self.last_served
        return served.model.name if served is not None else self.handler.small.name

    def answer(self) -> Answer:
        summed, steps = self.settle()
        served = self.last_served
        response = completion(
            f"chatcmpl-{self.plan.request_id}", self.model_name(),
            {"role": "assistant", "content": self.transcript},
            finish_reason=self.finish or "stop", usage_=summed, created=self.created)
        return Answer(self.plan, served, response, summed, cost_usd=self.cost_usd,
                      headers={STEPS_HEADER: steps})


class _StepStream(ChatStream):
    """The answer as chunks, one per step as each is decided."""

    def __init__(self, session: _Session, first: Step | None) -> None:
        self.session = session
        self.first = first
        self.relay: StreamRelay | None = None  # told the cost and the last writer at the end
        self.task: asyncio.Task[Step | None] | None = None
        self.interrupted = False

    def _chunk(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None = None
               ) -> bytes:
        session = self.session
        return orjson.dumps(chunk(f"chatcmpl-{session.plan.request_id}", session.model_name(),
                                  session.created, choices, usage_))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        session = self.session
        yield self._chunk([delta_choice(0, {"role": "assistant", "content": ""})])
        step = self.first
        while step is not None:
            yield self._chunk([delta_choice(0, {"content": step.text})])
            step = await self._next()
        summed = self._settle()
        ending = orjson.loads(self._chunk([delta_choice(0, {}, session.finish or "stop")]))
        ending["routeyard"] = {"collaborate": session.summary()}
        yield orjson.dumps(ending)
        yield self._chunk([], summed)

    async def _next(self) -> Step | None:
        """The next step, as an upstream error when no model could write it or the stream
        was interrupted (the relay then ends the stream with an error event)."""
        if self.interrupted:
            raise UpstreamError("disconnect", "the collaboration was interrupted")
        self.task = asyncio.ensure_future(self.session.step())
        try:
            return await self.task
        except PoolExhausted as exhausted:
            raise UpstreamError("status", exhausted.message) from None
        except asyncio.CancelledError:
            if self.interrupted:
                raise UpstreamError("disconnect", "the collaboration was interrupted") from None
            raise
        finally:
            self.task = None

    def _settle(self) -> dict[str, int]:
        """Tell the relay what every call so far cost and who wrote last; fill the record."""
        session = self.session
        summed, _ = session.settle()
        if self.relay is not None:
            self.relay.cost_usd = session.cost_usd
            self.relay.served = session.last_served
        return summed

    async def aclose(self) -> None:
        """The stream ended early (the client left, or a step failed): what was spent so far
        is still recorded."""
        if self.task is not None:
            self.task.cancel()
        self._settle()

    def interrupt(self) -> None:
        self.interrupted = True
        if self.task is not None:
            self.task.cancel()
