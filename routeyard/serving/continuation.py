"""Streams that survive a dying backend: a stream that breaks off after its first byte goes on
from a healthy alternative, and the client sees one uninterrupted stream.

When a backend's stream raises `UpstreamError` mid-way, the relay asks its `Continuation` to
`resume`. The alternative gets the original request with the partial answer as the final
assistant message, in the shape its model takes (`ModelConfig.continuation`):

- `continue_final_message`: vLLM's `continue_final_message: true, add_generation_prompt: false`;
- `prefill`: the final assistant message alone (Anthropic's assistant prefill; the Anthropic
  provider sends it as the last turn, without trailing whitespace, as Anthropic requires);
- `none`: the model cannot continue. Unset: by the endpoint's provider (`DEFAULT_BY_PROVIDER`).

Alternatives, in order: the broken model's other endpoints (the same model continues best),
then the plan's other models in failover order. Never an endpoint that broke during this stream,
nor a model whose context window cannot take the prompt, the partial answer and the rest of the
answer. The executor opens the continuation with its usual retries and failover before its
first byte.

`ContinuedStream` makes the continuation's chunks the rest of the first stream: the first
stream's `id`, `created` and `model`, no second role chunk, the whitespace the seam would repeat
dropped, usage summed over every call, and what happened (`routeyard.continued`) on the chunk
that finishes the answer.

What is safe to continue: a partial answer of plain text. A stream that has shown tool calls,
reasoning or a refusal ends with the error event instead (a tool call cut mid-arguments cannot
be resumed faithfully, and reasoning cannot be handed to another model), as does a request for
several choices (`n > 1`). A stream that broke before any text is simply asked again, of any
alternative, whatever its continuation mode.

Nothing here runs unless a stream breaks: opening a stream only builds a `Continuation` (three
references).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from routeyard.pool import Endpoint, PooledModel, PoolExhausted, Served, UpstreamError
from routeyard.pool.executor import Executor
from routeyard.pool.providers.base import ChatStream
from routeyard.pool.providers.sse import SSEChatStream
from routeyard.serving.capabilities import Needs
from routeyard.serving.planner import RoutePlan
from routeyard.tokens import count_text_tokens
from routeyard.wire import chunk, usage

log = logging.getLogger("routeyard.streaming")

CONTINUE_FINAL_MESSAGE = "continue_final_message"
PREFILL = "prefill"
NONE = "none"

# A model's continuation mode when its config leaves it unset, by the endpoint's provider:
# Anthropic takes an assistant prefill; OpenAI itself refuses vLLM's flag.
DEFAULT_BY_PROVIDER: dict[str, str] = {"anthropic": PREFILL, "openai": NONE}


def _continue_final_message(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "continue_final_message": True, "add_generation_prompt": False}


# Continuation mode → the request it sends, from the body whose final assistant message is the
# partial answer. A mode missing here (`none`) cannot continue.
SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    CONTINUE_FINAL_MESSAGE: _continue_final_message,
    PREFILL: lambda body: body,
}

# Request fields a continuation leaves out: reasoning is over once the answer's text has begun
# (and Anthropic refuses a prefill with thinking on).
_NOT_CONTINUED = frozenset({"reasoning_effort", "thinking"})
_MAX_TOKENS = ("max_completion_tokens", "max_tokens")


def continuation_mode(model: PooledModel, endpoint: Endpoint) -> str:
    return model.config.continuation or DEFAULT_BY_PROVIDER.get(endpoint.provider.kind, NONE)


def any_can_continue(models: Iterable[PooledModel]) -> bool:
    """Whether some endpoint of `models` takes continuations (then the tokenizer, which counts
    what a broken call said, is loaded at start rather than by the first broken stream)."""
    return any(continuation_mode(model, endpoint) != NONE
               for model in models for endpoint in model.endpoints)


def estimated_tokens(text: str) -> int:
    """A cheap estimate (4 characters a token) for deciding how much room the rest of the
    answer needs; the record counts exactly, off the event loop."""
    return (len(text) + 3) // 4


def with_partial_answer(body: Mapping[str, Any], partial: str) -> dict[str, Any]:
    """The request to continue `partial` with: the partial answer as the final assistant
    message (after the client's own prefill, when it sent one), reasoning left out, and
    `max_tokens` lowered by what was already said."""
    continued = {k: v for k, v in body.items() if k not in _NOT_CONTINUED}
    spent = estimated_tokens(partial)
    for key in _MAX_TOKENS:
        limit = continued.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool):
            continued[key] = max(1, limit - spent)
    messages = list(body.get("messages") or ())
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant" and not last.get("tool_calls"):
        messages[-1] = {**last, "content": _joined(last.get("content"), partial)}
    else:
        messages.append({"role": "assistant", "content": partial})
    continued["messages"] = messages
    return continued


def _joined(content: Any, partial: str) -> Any:
    if isinstance(content, list):
        return [*content, {"type": "text", "text": partial}]
    return (content if isinstance(content, str) else "") + partial


@dataclass(slots=True)
class Leg:
    """One backend call that streamed part of the answer."""

    served: Served
    start: int  # where its text begins in the answer, in characters
    end: int | None = None  # where it broke off (None: the call still streaming)
    said: asyncio.Future[int] | None = None  # its text's tokens, counted once it broke


class Continuation:
    """What a stream needs to go on from another backend when its own breaks off, and, once it
    has, the calls it took and how they are accounted for."""

    __slots__ = ("body", "context", "executor", "legs", "prompt", "records")

    def __init__(self, executor: Executor, body: dict[str, Any],
                 context: contextvars.Context) -> None:
        """`body`: the request as sent; `context`: the request's context variables as the
        stream was opened with them (upstream header edits, forwarded client headers)."""
        self.executor = executor
        self.body = body
        self.context = context
        self.legs: list[Leg] = []
        self.records: list[dict[str, Any]] = []  # per failover: the decision log's, the trailer's
        self.prompt: asyncio.Future[int] | None = None  # the request's tokens, counted

    @property
    def continued(self) -> bool:
        return bool(self.records)

    @property
    def one_choice(self) -> bool:
        choices = self.body.get("n")
        return not (isinstance(choices, int) and choices > 1)

    def answered(self, stream: ChatStream) -> bool:
        """Whether a stream that broke had already finished its answer (the backend dropped
        only its end, after the finish reason): nothing is left to continue. With several
        choices, one choice's finish says nothing of the others."""
        if isinstance(stream, ContinuedStream):
            stream = stream.inner
        return self.one_choice and isinstance(stream, SSEChatStream) and stream.may_end_here()

    async def resume(self, plan: RoutePlan, served: Served, partial: str,
                     error: UpstreamError, first_chunk: Mapping[str, Any] | None
                     ) -> ContinuedStream | None:
        """The stream that continues `partial` after `served`'s broke with `error`, or None
        when no alternative can continue it."""
        if not self.legs:
            self.legs.append(Leg(served, 0))
        broken = self.legs[-1]
        broken.end = len(partial)
        broken.served.release(ok=False)  # the breaker hears of it now, not when the answer ends
        if not self.one_choice:  # the relay follows choice 0 alone
            return None
        body = with_partial_answer(self.body, partial) if partial else self.body
        alternatives = self._alternatives(plan, broken.served.model, body, partial)
        started = time.monotonic()
        try:
            opened = await asyncio.create_task(
                self.executor.open_continuation(alternatives,
                                                self._bodies(body, bool(partial), alternatives)),
                context=self.context)
        except PoolExhausted as exhausted:
            log.warning("request %s: no alternative could continue its stream: %s",
                        plan.request_id, exhausted.message)
            return None
        self.records.append({
            "from": broken.served.model.name, "endpoint": broken.served.endpoint.name,
            "to": opened.model.name, "to_endpoint": opened.endpoint.name,
            "after_chars": len(partial), "error": error.kind,
            "ttft_ms": round((time.monotonic() - started) * 1000, 1)})
        log.warning("request %s: the stream from %s (%s) broke after %d chars (%s); "
                    "continued on %s (%s)", plan.request_id, broken.served.model.name,
                    broken.served.endpoint.name, len(partial), error.message,
                    opened.model.name, opened.endpoint.name)
        self.legs.append(Leg(opened, len(partial)))
        # Counted in a thread, while the continuation streams: the first count loads the BPE
        # tables (half a second), which must stall neither the event loop nor this stream.
        if self.prompt is None:
            context = plan.context
            self.prompt = _off_loop(lambda: context.prompt_tokens)
        broken.said = _off_loop(lambda: count_text_tokens(partial[broken.start:broken.end]))
        return ContinuedStream(opened.result, self, first_chunk or {},
                               trim_seam=partial[-1:].isspace())

    @staticmethod
    def _alternatives(plan: RoutePlan, broken: PooledModel, body: Mapping[str, Any],
                      partial: str) -> list[PooledModel]:
        """The broken model first (its other endpoints), then the plan's others; each able to
        take the request with the partial answer in its prompt."""
        models = [broken, *(m for m in plan.models if m is not broken)]
        needs = Needs.of(body)
        counted = plan.context.tokens_counted  # the planner's exact count, if it made one
        prompt = counted + estimated_tokens(partial) if counted is not None else 0
        return [m for m in models if not needs.missing(m, prompt)]

    def _bodies(self, body: dict[str, Any], has_partial: bool, models: list[PooledModel]
                ) -> Callable[[Endpoint], dict[str, Any] | None]:
        """Each endpoint's request: none for an endpoint that broke during this stream or whose
        model cannot continue; with no partial answer yet, any other endpoint gets the request
        as it was."""
        broken = {leg.served.endpoint for leg in self.legs}
        by_name = {model.name: model for model in models}
        shaped: dict[str, dict[str, Any]] = {}

        def body_for(endpoint: Endpoint) -> dict[str, Any] | None:
            if endpoint in broken:
                return None
            if not has_partial:
                return body
            mode = continuation_mode(by_name[endpoint.model], endpoint)
            found = shaped.get(mode)
            if found is None:
                shape = SHAPES.get(mode)
                if shape is None:
                    return None
                found = shaped[mode] = shape(body)
            return found

        return body_for

    # -- accounting ------------------------------------------------------------------------

    async def calls(self) -> list[tuple[int, int]]:
        """(prompt, completion) tokens of each call that broke off, as counted: each was sent
        the request and what the calls before it had said."""
        base = await self.prompt if self.prompt is not None else 0
        counts: list[tuple[int, int]] = []
        said_before = 0
        for leg in self.legs[:-1]:
            said = await leg.said if leg.said is not None else 0
            counts.append((base + said_before, said))
            said_before += said
        return counts

    async def summed(self, last_prompt: int | None, last_completion: int) -> dict[str, int]:
        """The whole answer's usage: the broken calls' and the last call's (its prompt tokens
        as its backend reported them; None: counted)."""
        counts = await self.calls()
        if last_prompt is None:
            base = await self.prompt if self.prompt is not None else 0
            last_prompt = base + sum(said for _, said in counts)
        return usage(sum(p for p, _ in counts) + last_prompt,
                     sum(c for _, c in counts) + last_completion)

    async def counted(self, text: str) -> dict[str, int]:
        """The whole answer's usage when the last call reported none: its share of the answer
        `text` counted too."""
        said = await asyncio.to_thread(count_text_tokens, text[self.legs[-1].start:])
        return await self.summed(None, said)

    async def settle(self, summed: Mapping[str, Any], *, ok: bool
                     ) -> tuple[float, dict[str, Any]]:
        """Release the last call; return the cost of every call at its own model's price and
        the record's detail. `summed` is the whole answer's usage."""
        self.legs[-1].served.release(ok=ok)
        counts = await self.calls()
        cost = sum(leg.served.model.config.pricing.cost(*count)
                   for leg, count in zip(self.legs, counts, strict=False))
        last_prompt = int(summed.get("prompt_tokens") or 0) - sum(p for p, _ in counts)
        last_said = int(summed.get("completion_tokens") or 0) - sum(c for _, c in counts)
        cost += self.legs[-1].served.model.config.pricing.cost(max(0, last_prompt),
                                                                max(0, last_said))
        return cost, {"continued": self.records}

    def trailer(self) -> bytes:
        """An SSE comment line for raw-SSE readers (SDKs skip comments)."""
        hops = "; ".join(f"{r['from']} ({r['endpoint']}) -> {r['to']} ({r['to_endpoint']}) "
                         f"after {r['after_chars']} chars: {r['error']}" for r in self.records)
        return f": routeyard continued {hops}\n\n".encode()


def _off_loop(count: Callable[[], int]) -> asyncio.Future[int]:
    return asyncio.ensure_future(asyncio.to_thread(count))


class ContinuedStream(ChatStream):
    """A continuation's chunk payloads, made the rest of the stream it continues."""

    def __init__(self, inner: ChatStream, continuation: Continuation,
                 first: Mapping[str, Any], *, trim_seam: bool) -> None:
        """`first`: the stream's first chunk (its id, created and model stay the stream's);
        `trim_seam`: the partial answer ends in whitespace, so the continuation's leading
        whitespace is dropped."""
        self.inner = inner
        self.continuation = continuation
        self.first = first
        self.trim_seam = trim_seam

    async def __aiter__(self) -> AsyncIterator[bytes]:
        said: list[str] = []  # this call's text, to count if its backend reports no usage
        reported = False
        async for payload in self.inner:
            try:
                parsed = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamError("protocol", "the backend sent a chunk that is not "
                                    "JSON") from None
            own = parsed.get("usage")
            if own:  # this call's usage: the client gets the whole answer's
                reported = True
                parsed["usage"] = {**own, **await self.continuation.summed(
                    int(own.get("prompt_tokens") or 0), int(own.get("completion_tokens") or 0))}
            if self._rewrite(parsed, said) or own:
                yield orjson.dumps(parsed)
        if not reported:  # the backend reported none: the sum, counted
            own_said = await asyncio.to_thread(count_text_tokens, "".join(said))
            first = self.first
            yield orjson.dumps(chunk(first.get("id"), first.get("model"), first.get("created"),
                                     [], await self.continuation.summed(None, own_said)))

    def _rewrite(self, parsed: dict[str, Any], said: list[str]) -> bool:
        """Make one chunk the stream's: its id, no role, no whitespace repeated at the seam, the
        trailer on the chunk that finishes the answer. False: nothing is left to send (the
        second role chunk)."""
        first = self.first
        for key in ("id", "created", "model"):
            if key in first:
                parsed[key] = first[key]
        choices = parsed.get("choices")
        if not choices:
            return True
        keep = False
        for choice in choices:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                delta.pop("role", None)
                content = delta.get("content")
                if content:
                    if self.trim_seam:  # the partial answer ended in whitespace already
                        content = delta["content"] = content.lstrip()
                        self.trim_seam = not content
                    said.append(content)
                keep = keep or any(delta.values())
            if choice.get("finish_reason"):
                parsed["routeyard"] = {"continued": self.continuation.records}
                keep = True
        return keep

    async def aclose(self) -> None:
        await self.inner.aclose()

    def interrupt(self) -> None:
        self.inner.interrupt()
