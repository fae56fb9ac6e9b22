"""Embeddings: `POST /v1/embeddings` planned over the pool's embedding models and run with
failover, then accounted for like any other request.

Embeddings take no decisions and run no plugins: a name routes to embedding models only.

- A configured embedding model's name goes to that model alone: vectors of different models
  live in different spaces, so a client that stores them must get the model it named. An
  exact name wins over a `model_routes` pattern that also matches it.
- A chat model's name is a 400 (`model_not_supported`); an unknown name a 404.
- An alias, or a name a `model_routes` pattern matches, goes to every embedding model of the
  pool in config order, failing over from one to the next (the answering model is in the
  `x-routeyard-model` header). With none configured, a 404 (`no_embedding_model`).

Every request is recorded under the decision name `embeddings`, priced at the model's input
price; usage is the backend's `usage.prompt_tokens`, or counted when it sends none.
"""

from __future__ import annotations

import time
from typing import Any

from routeyard.errors import ContextTooLong, Forbidden, InvalidRequest, ModelNotFound
from routeyard.pool import Pool, PooledModel
from routeyard.pool.executor import Executor
from routeyard.serving.accounting import Accountant
from routeyard.serving.handler import Accounted, Answer, Handler
from routeyard.serving.planner import Planner, RoutePlan, _new_request_id
from routeyard.serving.relay import NO_HOOKS, StreamHooks, StreamRelay
from routeyard.tokens import count_text_tokens

EMBEDDINGS = "embeddings"  # the decision name of every embeddings request
MAX_INPUTS = 2048  # OpenAI's limit on the items of one request
_ENCODINGS = (None, "float", "base64")

EmbeddingInput = str | list[int]


# -- validation ------------------------------------------------------------------------------


def validate_embeddings_request(data: Any) -> dict[str, Any]:
    """Check the fields Routeyard reads; every other field passes through to the backend.
    The body itself is returned, untouched."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a non-empty string is required", param="model")
    embedding_inputs(data.get("input"))
    if data.get("encoding_format") not in _ENCODINGS:
        raise InvalidRequest("encoding_format: must be 'float' or 'base64'",
                             param="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and not (_is_int(dimensions) and dimensions >= 1):
        raise InvalidRequest("dimensions: must be an integer of at least 1", param="dimensions")
    if "user" in data and not isinstance(data["user"], str):
        raise InvalidRequest("user: must be a string", param="user")
    return data


def embedding_inputs(value: Any) -> list[EmbeddingInput]:
    """`input` as a list of items, each a string or a list of token ids; a 400 if it is
    none of OpenAI's four forms (a string, strings, token ids, lists of token ids)."""
    if isinstance(value, str) or (isinstance(value, list) and value
                                  and all(_is_token(t) for t in value)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("input: must be a non-empty string or a non-empty array",
                             param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"input: at most {MAX_INPUTS} items per request", param="input")
    texts = isinstance(value[0], str)  # texts or token-id arrays, never a mix (as OpenAI)
    kind = "string" if texts else "array of token ids"
    for index, item in enumerate(value):
        if texts:
            valid = isinstance(item, str) and bool(item)
        else:
            valid = isinstance(item, list) and bool(item) and all(map(_is_token, item))
        if not valid:
            raise InvalidRequest(f"input[{index}]: must be a non-empty {kind} (input holds "
                                 "texts or token-id arrays, not both)", param=f"input[{index}]")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_token(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _tokens_of(item: EmbeddingInput) -> int:
    return count_text_tokens(item) if isinstance(item, str) else len(item)


def _largest_input(inputs: list[EmbeddingInput], window: int) -> int:
    """Tokens of the longest input; counted exactly only where a cheap bound (a token is at
    least one UTF-8 byte) could exceed `window`."""
    largest = 0
    for item in inputs:
        if isinstance(item, str):
            size = len(item) if item.isascii() else 4 * len(item)
            if size > window:
                size = count_text_tokens(item)
        else:
            size = len(item)
        largest = max(largest, size)
    return largest


# -- planning and running --------------------------------------------------------------------


class EmbeddingHandler(Handler):
    """One embeddings call over the plan's models, with the executor's retries and failover."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        served = await self.executor.embed(plan.models, body)
        response: dict[str, Any] = served.result
        found = response.get("usage")
        prompt = found.get("prompt_tokens") if isinstance(found, dict) else None
        if _is_int(prompt):
            usage = {"prompt_tokens": prompt, "total_tokens": found.get("total_tokens", prompt)}
        else:  # the backend sent none: count it, and the client gets ours
            counted = sum(_tokens_of(item) for item in embedding_inputs(body["input"]))
            usage = {"prompt_tokens": counted, "total_tokens": counted}
            response = {**response, "usage": usage}
        return Answer(plan, served, response, usage)

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        raise InvalidRequest("embeddings are not streamed", param="stream")


class Embeddings:
    """Plans and runs embeddings requests for the Router."""

    def __init__(self, planner: Planner, pool: Pool, accountant: Accountant) -> None:
        self.planner = planner
        self.pool = pool
        # Outermost, as for chat: records every answer and failure, and turns an exhausted
        # pool into the client's error.
        self.handler = Accounted(EmbeddingHandler(pool.executor), accountant)

    def plan(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> RoutePlan:
        """Where a validated request goes. Its context sees the texts as user messages, so
        the caller's key and token counts work as for chat."""
        started = time.monotonic()
        models, reason = self._models_for(body["model"])
        inputs = embedding_inputs(body["input"])
        messages = [{"role": "user", "content": item if isinstance(item, str) else ""}
                    for item in inputs]
        context = self.planner.engine.context({"model": body["model"], "messages": messages},
                                              headers)
        largest = _largest_input(inputs, min(m.config.context_window for m in models))
        fitting = [model for model in models if model.fits(largest)]
        if not fitting:
            raise ContextTooLong(f"The longest input has {largest} tokens; no embedding model "
                                 f"it may go to takes more than "
                                 f"{max(m.config.context_window for m in models)}.",
                                 param="input")
        return RoutePlan(_new_request_id(), started, EMBEDDINGS, fitting, reason, context,
                         surface="embeddings", candidates=fitting)

    async def run(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        """The embeddings answer: an OpenAI `list` (the backend's, with usage)."""
        return await self.handler.complete(plan, body)

    async def embed(self, body: Any, headers: dict[str, str] | None = None) -> Answer:
        body = validate_embeddings_request(body)
        return await self.run(self.plan(body, headers), body)

    def _models_for(self, name: str) -> tuple[list[PooledModel], str]:
        planner = self.planner
        model = self.pool.models.get(name)
        # A configured name wins over a model_routes pattern, unless names may not be used.
        if name in planner.aliases or ((model is None or not planner.allow_direct)
                                       and planner.route_of(name)[0]):
            models = [m for m in self.pool.models.values() if m.config.kind == "embedding"]
            if not models:
                raise ModelNotFound("No embedding model is configured: add a model with "
                                    "`kind: embedding` to serve /v1/embeddings.", param="model",
                                    code="no_embedding_model")
            return models, f"'{name}' is routed: the embedding models in config order"
        aliases = ", ".join(sorted(planner.aliases))
        if model is None:
            raise ModelNotFound(f"The model '{name}' does not exist. Use an alias ({aliases}) "
                                "or an embedding model of GET /v1/models.", param="model")
        if not planner.allow_direct:
            raise Forbidden(f"This router routes every request: use an alias ({aliases}) "
                            f"instead of the model name '{name}'.", param="model")
        if model.config.kind != "embedding":
            raise InvalidRequest(f"'{name}' is a {model.config.kind} model; it does not serve "
                                 "/v1/embeddings.", param="model", code="model_not_supported")
        return [model], "the request named this model"
