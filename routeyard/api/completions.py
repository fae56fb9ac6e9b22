"""POST /v1/completions: OpenAI's legacy text completions, answered by chat models.

Each prompt becomes one chat request (`messages: [{"role": "user", "content": prompt}]`, the
other fields as they are), planned and answered like any chat request; the answers come back
as `text_completion` choices. A list of prompts makes one chat call per prompt, run
concurrently; prompt i's choice j has index `i * n + j`, as OpenAI numbers them.

Legacy fields chat cannot express are refused with a 400 rather than half-served: `suffix`,
`logprobs`, and a `best_of` other than `n`; token-id prompts too (chat takes text). `echo` is
honoured. `max_tokens` defaults to 16, as on OpenAI's endpoint.

Several prompts are read, planned and answered together, which `serve_routed` (one body, one
plan) cannot do, so this surface runs its own short request path with the same pieces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from routeyard import tracing
from routeyard.api.body import read_json
from routeyard.api.common import (
    JSON,
    RoutedStream,
    answer_headers,
    begin_trace,
    decision_headers,
    request_headers,
    trace_plan,
)
from routeyard.api.errors import OPENAI
from routeyard.errors import InvalidRequest, RouteyardError
from routeyard.router import Router
from routeyard.serving.handler import Answer
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import StreamFailure, StreamRelay
from routeyard.serving.request import validate_chat_request
from routeyard.tokens import message_text
from routeyard.wire import DONE, error_frame, sse

MAX_PROMPTS = 128  # each prompt is a backend call of its own
DEFAULT_MAX_TOKENS = 16  # OpenAI's default on /v1/completions (chat has none)
TEXT_COMPLETION = "text_completion"
# Read here and never sent on: chat has no such parameters.
_OWN_FIELDS = frozenset({"prompt", "suffix", "echo", "logprobs", "best_of"})
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_SIGNALS_HEADER = "x-routeyard-signals"

# field → (does this value ask for what chat cannot do?, the 400's message)
_UNSUPPORTED: dict[str, tuple[Callable[[Any, dict[str, Any]], bool], str]] = {
    "suffix": (lambda value, _: value not in (None, ""),
               "suffix (text after the completion) is not supported: the completion is "
               "answered by a chat model, which takes no suffix"),
    "logprobs": (lambda value, _: value is not None,
                 "logprobs are not supported on /v1/completions; use /v1/chat/completions "
                 "with logprobs: true"),
    "best_of": (lambda value, data: value is not None and value != (data.get("n") or 1),
                "best_of other than n is not supported: ask for n completions instead"),
}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    prompts: list[str]
    bodies: list[dict[str, Any]]  # one internal chat body per prompt
    n: int  # choices per prompt
    echo: bool
    stream: bool


def parse_completion_request(data: Any) -> CompletionRequest:
    """The legacy body → one validated chat body per prompt (a 400 when it is bad)."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    prompts = _prompts(data.get("prompt"))
    for field, (unsupported, message) in _UNSUPPORTED.items():
        if unsupported(data.get(field), data):
            raise InvalidRequest(message, param=field, code="unsupported_parameter")
    echo = data.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise InvalidRequest("echo: must be a boolean", param="echo")
    shared = {key: value for key, value in data.items() if key not in _OWN_FIELDS}
    if shared.get("max_tokens") is None and shared.get("max_completion_tokens") is None:
        shared["max_tokens"] = DEFAULT_MAX_TOKENS
    # The bodies differ only in their prompt string: validating one validates them all.
    bodies = [{**shared, "messages": [{"role": "user", "content": prompt}]}
              for prompt in prompts]
    validate_chat_request(bodies[0])
    stream = bool(shared.get("stream"))
    if stream and len(prompts) > 1:
        raise InvalidRequest("stream: a stream answers one prompt; send the prompts in "
                             "separate requests, or without stream", param="stream")
    return CompletionRequest(prompts, bodies, shared.get("n") or 1, bool(echo), stream)


def _prompts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("prompt: must be a string or a non-empty array of strings",
                             param="prompt")
    if all(isinstance(prompt, str) for prompt in value):
        if len(value) > MAX_PROMPTS:
            raise InvalidRequest(f"prompt: at most {MAX_PROMPTS} prompts per request",
                                 param="prompt")
        return value
    if all(isinstance(item, int | list) and not isinstance(item, bool) for item in value):
        raise InvalidRequest("prompt: token-id prompts are not supported; completions are "
                             "answered by chat models, which take text", param="prompt",
                             code="unsupported_parameter")
    raise InvalidRequest("prompt: must be a string or an array of strings", param="prompt")


# -- rendering -------------------------------------------------------------------------------


def _completion_id(plan: RoutePlan) -> str:
    return f"cmpl-{plan.request_id}"


def render(request: CompletionRequest, answers: list[Answer]) -> bytes:
    """The chat answers, one per prompt, as one `text_completion`."""
    choices = []
    for number, answer in enumerate(answers):
        echo = request.prompts[number] if request.echo else ""
        for position, choice in enumerate(answer.response.get("choices") or ()):
            choices.append({
                "text": echo + message_text(choice.get("message") or {}),
                "index": number * request.n + int(choice.get("index", position)),
                "logprobs": None, "finish_reason": choice.get("finish_reason")})
    first = answers[0]
    return orjson.dumps({
        "id": _completion_id(first.plan), "object": TEXT_COMPLETION,
        "created": first.response.get("created") or int(time.time()),
        "model": first.response.get("model") or first.model, "choices": choices,
        "usage": {key: sum(int(a.usage.get(key) or 0) for a in answers) for key in _USAGE_KEYS},
    })


async def stream(relay: StreamRelay, request: CompletionRequest) -> AsyncIterator[bytes]:
    """The chat stream as `text_completion` SSE chunks, then `[DONE]` (or an error event)."""
    completion_id = _completion_id(relay.plan)
    echoed: set[int] = set()
    async for item in relay.chunks():
        if isinstance(item, StreamFailure):
            yield error_frame(item.message, type_=item.type, code=item.code)
            return
        choices = []
        for choice in item.get("choices") or ():
            index = int(choice.get("index", 0))
            text = (choice.get("delta") or {}).get("content") or ""
            if request.echo and index not in echoed:  # each choice opens with the prompt
                echoed.add(index)
                text = request.prompts[0] + text
            finish = choice.get("finish_reason")
            if text or finish:  # a role-only or reasoning chunk has no text to show
                choices.append({"text": text, "index": index, "logprobs": None,
                                "finish_reason": finish})
        usage = item.get("usage")
        if choices or usage:
            payload: dict[str, Any] = {"id": completion_id, "object": TEXT_COMPLETION,
                                       "created": item.get("created"),
                                       "model": item.get("model"), "choices": choices}
            if usage:
                payload["usage"] = usage
            yield sse(orjson.dumps(payload))
    yield DONE


def _merged_headers(per_prompt: list[dict[str, str]]) -> dict[str, str]:
    """One prompt's headers as they are. With several: each header every prompt has, its
    values comma-separated in prompt order (the signals, a list already, are left out)."""
    if len(per_prompt) == 1:
        return per_prompt[0]
    return {name: ",".join(headers[name] for headers in per_prompt) for name in per_prompt[0]
            if name != _SIGNALS_HEADER and all(name in headers for headers in per_prompt)}


# -- the endpoint ----------------------------------------------------------------------------


async def create_completion(request: Request) -> Response:
    # Read once: a reload swaps app.state.router, and this request finishes on this one.
    router: Router = request.app.state.router
    router.in_flight += 1
    streaming = False
    caller = request_headers(request)
    trace = begin_trace(request, caller, "completions")
    status = 500
    try:
        try:
            with tracing.span("routeyard.validate"):
                completion = parse_completion_request(await read_json(request))
            plans = [await router.plan(body, caller) for body in completion.bodies]
        except RouteyardError as error:
            router.accountant.rejected(error)
            status = error.status
            raise
        for plan in plans:
            plan.surface = "completions"
        if len(plans) == 1:  # several prompts: their own stages still hang under the span
            trace_plan(trace, plans[0], completion.bodies[0])
        headers = [decision_headers(plan) for plan in plans]
        if completion.stream:
            try:
                relay = await router.open_stream(completion.bodies[0], plans[0])
            except RouteyardError as error:
                status = error.status
                return OPENAI.for_error(error, headers[0])
            answer_headers(headers[0], relay.model, relay.headers)
            headers[0]["cache-control"] = "no-cache"
            streaming = True
            return RoutedStream(router, relay, stream(relay, completion), headers[0], trace)
        # Every call runs to its end (and is accounted for) even when another fails.
        results = await asyncio.gather(
            *(router.complete(body, plan) for body, plan in zip(completion.bodies, plans,
                                                                 strict=True)),
            return_exceptions=True)
        answers: list[Answer] = []
        for result, prompt_headers in zip(results, headers, strict=True):
            if isinstance(result, RouteyardError):
                status = result.status
                return OPENAI.for_error(result, _merged_headers(headers))
            if isinstance(result, BaseException):
                raise result
            answer_headers(prompt_headers, result.model, result.headers)
            answers.append(result)
        status = 200
        return Response(render(completion, answers), headers=_merged_headers(headers),
                        media_type=JSON)
    finally:
        if not streaming:
            router.in_flight -= 1
        if trace is not None:
            trace.detach()
            if not streaming:
                trace.end(status)


ROUTES: list[BaseRoute] = [Route("/v1/completions", create_completion, methods=["POST"])]
