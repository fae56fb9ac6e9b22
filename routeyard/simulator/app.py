"""The simulator's ASGI app: OpenAI and Anthropic surfaces plus run-time control endpoints.

A raw ASGI callable rather than a framework app: the simulator is the baseline that router
overhead is measured against, so its own per-request cost must stay near the server's floor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from routeyard.simulator.embeddings import (
    EmbeddingInputError,
    EmbeddingRequest,
    EmbeddingsAnswer,
    is_embedding_model,
)
from routeyard.simulator.engine import (
    FAULT_OVERRIDES,
    NO_SAMPLING,
    ModelState,
    Plan,
    Sampling,
    SimulatorEngine,
)
from routeyard.simulator.load_metrics import render_metrics
from routeyard.simulator.prefix_cache import prompt_blocks
from routeyard.simulator.profiles import SimulatorConfig, demo_config
from routeyard.simulator.replay import ReplayIndex
from routeyard.simulator.runner import Receive, Scope, Send, run_plan, send_json
from routeyard.simulator.text import content_text, estimate_prompt_tokens
from routeyard.simulator.wire import AnthropicSurface, OpenAISurface, Surface

Handler = Callable[[Scope, Receive, Send, str], Awaitable[None]]
_PROFILES = "/_sim/profiles"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest(400, f"{name} must be a positive integer", "invalid_value")
    return value


def _fault_header(scope: Scope, traces: deque[str]) -> str | None:
    """The fault a request asks for; its `traceparent`, if any, is kept in `traces` (the
    last few, shown by /_sim/stats: a traced router's propagation is checked there)."""
    fault = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            traces.append(value.decode("latin-1"))
        elif name == b"x-sim-fault":
            fault = value.decode("latin-1").strip().lower()
            if fault not in FAULT_OVERRIDES:
                allowed = ", ".join(sorted(FAULT_OVERRIDES))
                raise _BadRequest(400, f"x-sim-fault must be one of: {allowed}")
    return fault


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left while sending it."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
    return b"".join(parts)


def _final_assistant_text(messages: list[Any]) -> str | None:
    """The text of a final assistant message (the answer's start, to continue), else None."""
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "assistant":
        return content_text(last.get("content"))
    return None


def _continued_prefix(request: dict[str, Any], messages: list[Any]) -> str | None:
    """OpenAI surface, as vLLM: with `continue_final_message` the final assistant message is
    the start of the answer, continued; without it a final assistant message is history. vLLM
    adds a generation prompt unless told not to, and the two exclude each other."""
    if request.get("continue_final_message") is not True:
        return None
    if request.get("add_generation_prompt", True) is not False:
        raise _BadRequest(400, "Cannot set both `continue_final_message` and "
                          "`add_generation_prompt` to True.", "invalid_value")
    prefix = _final_assistant_text(messages)
    if prefix is None:
        raise _BadRequest(400, "continue_final_message needs the final message to be the "
                          "assistant's", "invalid_value")
    return prefix


def _prefill(messages: list[Any]) -> str | None:
    """Anthropic surface: a final assistant message is a prefill, the answer's start."""
    prefix = _final_assistant_text(messages)
    if prefix is not None and prefix != prefix.rstrip():
        raise _BadRequest(400, "messages: final assistant content cannot end with trailing "
                          "whitespace")
    return prefix


def _sampling(request: dict[str, Any]) -> Sampling:
    """`stop` and `logprobs`/`top_logprobs` of an OpenAI chat request, checked as OpenAI
    does."""
    stop = request.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise _BadRequest(400, "stop must be a string or a list of at most 4 strings",
                          "invalid_value")
    logprobs = request.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _BadRequest(400, "logprobs must be a boolean", "invalid_type")
    top = request.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
            raise _BadRequest(400, "top_logprobs must be an integer from 0 to 20",
                              "invalid_value")
        if logprobs is not True:
            raise _BadRequest(400, "top_logprobs requires logprobs to be true",
                              "invalid_value")
    if not stops and logprobs is not True:
        return NO_SAMPLING
    return Sampling(stops, (top or 0) if logprobs else None)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, "request body must be a JSON object")
    return data


class SimulatorApp:
    """ASGI app simulating one or more LLM backends; see `build_simulator_app`."""

    def __init__(self, config: SimulatorConfig, replay: ReplayIndex | None = None) -> None:
        if replay is None and config.replay:
            replay = ReplayIndex.load(config.replay)
        self.engine = SimulatorEngine(config, replay)
        self.traceparents: deque[str] = deque(maxlen=64)  # the last ones received
        # [model, reasoning_effort or None] of the last chat requests: what a router sent.
        self.efforts: deque[tuple[str, Any]] = deque(maxlen=64)
        self.openai = OpenAISurface()
        self.anthropic = AnthropicSurface()
        self._routes: dict[str, Handler] = {
            "/v1/chat/completions": self._chat,
            "/chat/completions": self._chat,
            "/v1/messages": self._messages,
            "/v1/embeddings": self._embeddings,
            "/embeddings": self._embeddings,
            "/v1/models": self._models,
            "/models": self._models,
            "/_sim/stats": self._stats,
            "/_sim/reset": self._reset,
            _PROFILES: self._profiles,
            "/healthz": self._health,
            "/metrics": self._metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):  # mounted under a prefix (e.g. /simulator)
            path = path[len(root) :]
        handler = self._routes.get(path) or self._match(path)
        try:
            await handler(scope, receive, send, path)
        except _BadRequest as exc:
            surface: Surface = self.anthropic if path.endswith("/messages") else self.openai
            await send_json(send, exc.status, surface.error(exc.status, exc.message, exc.code))

    def _match(self, path: str) -> Handler:
        # Fallback for hosts that mount us without setting root_path: match on the path's tail.
        if _PROFILES + "/" in path:
            return self._profiles
        for route, handler in self._routes.items():
            if path.endswith(route):
                return handler
        return self._not_found

    async def _not_found(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        raise _BadRequest(404, f"no route for {scope['method']} {path}", "not_found")

    async def _body(self, scope: Scope, receive: Receive, method: str = "POST") -> dict[str, Any]:
        if scope["method"] != method:
            raise _BadRequest(405, f"use {method} here", "method_not_allowed")
        body = await _read_body(receive)
        if body is None:
            raise _BadRequest(400, "client disconnected while sending the body")
        return _json_object(body)

    async def _chat(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        request = await self._body(scope, receive)
        model, messages = request.get("model"), request.get("messages")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, "model is required", "missing_required_parameter")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest(400, "messages must be a non-empty array", "invalid_value")
        max_tokens = request.get("max_completion_tokens")
        name = "max_completion_tokens"
        if max_tokens is None:
            max_tokens, name = request.get("max_tokens"), "max_tokens"
        if max_tokens is not None:
            max_tokens = _positive_int(max_tokens, name)
        self.efforts.append((model, request.get("reasoning_effort")))
        stream = request.get("stream") is True
        options = request.get("stream_options")
        include_usage = (
            stream and isinstance(options, dict) and options.get("include_usage") is True
        )
        await self._answer(
            scope,
            receive,
            send,
            self.openai,
            model,
            messages,
            None,
            max_tokens,
            stream,
            include_usage,
            _continued_prefix(request, messages),
            _sampling(request),
        )

    async def _messages(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        request = await self._body(scope, receive)
        model, messages = request.get("model"), request.get("messages")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, "model: Field required")
        if "max_tokens" not in request:
            raise _BadRequest(400, "max_tokens: Field required")
        max_tokens = _positive_int(request["max_tokens"], "max_tokens")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest(400, "messages: must be a non-empty list")
        stream = request.get("stream") is True
        await self._answer(
            scope,
            receive,
            send,
            self.anthropic,
            model,
            messages,
            request.get("system"),
            max_tokens,
            stream,
            False,
            _prefill(messages),
        )

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        surface: Surface,
        model: str,
        messages: list[Any],
        system: Any,
        max_tokens: int | None,
        stream: bool,
        include_usage: bool,
        prefix: str | None,
        sampling: Sampling = NO_SAMPLING,
    ) -> None:
        """`prefix`: the start of the answer, to continue (None: answer anew); `sampling`:
        stop strings and logprobs (OpenAI surface)."""
        fault = _fault_header(scope, self.traceparents)
        engine = self.engine
        state = engine.state_for(model)
        if state is None:
            raise _BadRequest(404, f"The model `{model}` does not exist", "model_not_found")
        if is_embedding_model(model, state.profile):  # as the real APIs answer
            raise _BadRequest(404, f"`{model}` is an embedding model, not a chat model: "
                              "use /v1/embeddings", "model_not_supported")
        prompt_tokens, last_user = estimate_prompt_tokens(messages, system)
        # Only a profile that models prefill pays for hashing the prompt's blocks.
        blocks = prompt_blocks(messages, system) if state.profile.models_prefill else None
        plan = engine.plan(model, state, prompt_tokens, last_user, max_tokens, fault, prefix,
                           sampling, blocks)
        await run_plan(plan, surface, stream, include_usage, receive, send)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        request = await self._body(scope, receive)
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, "model is required", "missing_required_parameter")
        try:
            parsed = EmbeddingRequest.parse(request)
        except EmbeddingInputError as exc:
            raise _BadRequest(400, str(exc), "invalid_value") from None
        fault = _fault_header(scope, self.traceparents)
        state = self._embedding_model(model)
        state.requests += 1
        # Only the time to the first token applies: an embedding has no output tokens.
        plan = Plan(model, state, state.profile, fault or state.draw_fault(),
                    parsed.prompt_tokens(), 0, "stop", None, None)
        await run_plan(plan, EmbeddingsAnswer(self.openai, parsed), False, False, receive, send)

    def _embedding_model(self, model: str) -> ModelState:
        """The state of an embedding model. A name containing "embed" is served even when
        not configured (with the default profile), so clients' default names just work."""
        engine = self.engine
        state = engine.state_for(model)
        if state is None and is_embedding_model(model, None):
            state = engine.states[model] = ModelState(model, engine.config.default,
                                                      engine.config.seed)
        if state is None:
            raise _BadRequest(404, f"The model `{model}` does not exist", "model_not_found")
        if not is_embedding_model(model, state.profile):
            raise _BadRequest(400, f"`{model}` is a chat model: it does not serve embeddings",
                              "model_not_supported")
        return state

    async def _models(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "routeyard-simulator"}
            for name in self.engine.served
        ]
        await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _health(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        await send_json(send, 200, b'{"status":"ok"}')

    async def _metrics(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """vLLM's load gauges from the queue model (load_metrics.py), for routers to scrape."""
        engine = self.engine
        body = render_metrics(engine.states, engine.clock())
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
            (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def _stats(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        await send_json(send, 200, orjson.dumps({**self.engine.stats(),
                                                 "traceparents": list(self.traceparents),
                                                 "reasoning_efforts": list(self.efforts)}))

    async def _reset(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if scope["method"] != "POST":
            raise _BadRequest(405, "use POST here", "method_not_allowed")
        self.engine.reset()
        self.traceparents.clear()
        self.efforts.clear()
        await send_json(send, 200, b'{"reset":true}')

    async def _profiles(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        engine = self.engine
        model = path[path.index(_PROFILES) + len(_PROFILES) :].lstrip("/")
        if not model:
            profiles = {name: s.profile.to_dict() for name, s in engine.states.items()}
            body = {"default": engine.config.default.to_dict(), "models": profiles}
            await send_json(send, 200, orjson.dumps(body))
            return
        if scope["method"] == "GET":
            state = engine.states.get(model)
            if state is None:
                raise _BadRequest(404, f"no profile for model `{model}`", "model_not_found")
            await send_json(send, 200, orjson.dumps(state.profile.to_dict()))
            return
        updates = await self._body(scope, receive, method="PUT")
        try:
            profile = engine.set_profile(model, updates)
        except ValueError as exc:
            raise _BadRequest(400, str(exc), "invalid_value") from None
        await send_json(send, 200, orjson.dumps(profile.to_dict()))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_simulator_app(config: SimulatorConfig | None = None) -> SimulatorApp:
    """An ASGI app serving `config` (the demo models if None); mountable under any prefix."""
    return SimulatorApp(config if config is not None else demo_config())
