"""Anthropic Messages provider: OpenAI chat-completions in, Anthropic `/messages` on the wire.

Requests are rebuilt from an allow-list of OpenAI fields, so OpenAI-only parameters that
Anthropic would reject are dropped simply by not being copied: n, presence_penalty,
frequency_penalty, logit_bias, logprobs, top_logprobs, seed, response_format,
stream_options, service_tier, store, modalities, audio, prediction, web_search_options,
and the legacy functions/function_call. The response side (Anthropic -> OpenAI, whole and
streamed) lives in `anthropic_stream.py`.

Two extensions of the internal form survive translation: `thinking_blocks` on assistant
messages (thinking with its signature, which Anthropic needs back in later turns) and
`cache_control` on content parts, system parts and tools (prompt caching breakpoints).

A body that carries the client's own Anthropic request (`routeyard.wire.WithNative`, from the
/v1/messages surface) is sent as the client wrote it, with only the model replaced, and its
answer comes back beside the translation, so nothing is lost in the round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from routeyard.pool.providers.anthropic_stream import (
    AnthropicChatStream,
    error_text,
    to_openai_completion,
)
from routeyard.pool.providers.base import EndpointTarget, UpstreamError, forwarded_for
from routeyard.pool.providers.http import HttpProvider
from routeyard.pool.providers.sse import SSEChatStream
from routeyard.wire import WithNative, native_of

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often omit it
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for thinking.budget_tokens

# reasoning_effort -> thinking budget; "none" (or anything unknown) means no thinking.
EFFORT_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}

# OpenAI string tool_choice -> Anthropic tool_choice.
TOOL_CHOICES: dict[str, dict[str, str]] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
}

__all__ = [
    "AnthropicProvider",
    "TranslationError",
    "anthropic_headers",
    "convert_messages",
    "prefill_ready",
    "to_anthropic_request",
    "to_openai_completion",
    "tool_input",
    "with_forwarded",
]


class TranslationError(ValueError):
    """The OpenAI request uses something Anthropic cannot express."""


# --- request: OpenAI -> Anthropic ------------------------------------------------------------


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _split_data_url(url: str) -> tuple[str, str]:
    """'data:image/png;base64,AAAA' -> ('image/png', 'AAAA')."""
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise TranslationError("only base64 data URLs are supported")
    return header.removeprefix("data:").removesuffix(";base64"), data


def _image_part(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, dict) else str(image or "")
    if url.startswith("data:"):
        media_type, data = _split_data_url(url)
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError(f"unsupported image URL: {url[:40]!r}")
    return {"type": "image", "source": source}


def _file_part(part: dict[str, Any]) -> dict[str, Any]:
    file_data = (part.get("file") or {}).get("file_data")
    if not file_data:
        raise TranslationError("file parts need inline file_data (file ids are OpenAI-only)")
    media_type, data = _split_data_url(file_data)
    kind = "image" if media_type.startswith("image/") else "document"
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}


# OpenAI content part type -> Anthropic block (refusal only appears in assistant history).
PART_CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "text": lambda part: _text_block(part.get("text", "")),
    "refusal": lambda part: _text_block(part.get("refusal", "")),
    "image_url": _image_part,
    "file": _file_part,
}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        convert = PART_CONVERTERS.get(part.get("type"))
        if convert is None:
            raise TranslationError(f"unsupported content part type: {part.get('type')!r}")
        block = convert(part)
        if "cache_control" in part:  # a prompt-caching breakpoint (OpenRouter's convention)
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    # Anthropic rejects empty text blocks, which OpenAI clients send freely (e.g. content "").
    return [b for b in blocks if b["type"] != "text" or b["text"]]


def tool_input(arguments: Any) -> dict[str, Any]:
    """OpenAI tool-call arguments (a JSON string) -> an Anthropic tool_use input object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        decoded = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # Models do emit broken arguments and clients echo them back; keep the turn usable.
        return {"_raw_arguments": arguments}
    return decoded if isinstance(decoded, dict) else {"value": decoded}


def _user_turn(msg: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    return "user", _content_blocks(msg.get("content"))


def _assistant_turn(msg: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    # Thinking (with its signature) comes first in an assistant turn, as Anthropic wants it.
    blocks = [dict(b) for b in msg.get("thinking_blocks") or () if isinstance(b, dict)]
    blocks += _content_blocks(msg.get("content"))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": tool_input(fn.get("arguments")),
            }
        )
    return "assistant", blocks


def _tool_turn(msg: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    content = _content_blocks(msg.get("content"))
    if content:
        block["content"] = content
    return "user", [block]


# OpenAI role -> (Anthropic role, blocks). system/developer are hoisted to `system` instead.
ROLE_CONVERTERS: dict[str, Callable[[dict[str, Any]], tuple[str, list[dict[str, Any]]]]] = {
    "user": _user_turn,
    "assistant": _assistant_turn,
    "tool": _tool_turn,
}


def _system_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _system_blocks(contents: list[Any]) -> list[dict[str, Any]]:
    """System contents as text blocks, keeping each part's cache_control."""
    blocks: list[dict[str, Any]] = []
    for content in contents:
        if isinstance(content, str):
            if content:
                blocks.append(_text_block(content))
            continue
        for part in content or ():
            if part.get("type") == "text" and part.get("text"):
                block = _text_block(part["text"])
                if "cache_control" in part:
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
    return blocks


def _has_cache_control(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and "cache_control" in p for p in content)


def convert_messages(messages: list[dict[str, Any]]
                     ) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages -> (system, strictly alternating Anthropic messages). The system is
    text, or text blocks when some part carries a cache_control breakpoint."""
    system: list[Any] = []
    turns: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(msg.get("content"))
            continue
        convert = ROLE_CONVERTERS.get(str(role))
        if convert is None:
            raise TranslationError(f"unsupported message role: {role!r}")
        arole, blocks = convert(msg)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == arole:  # Anthropic requires alternation
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": arole, "content": blocks})
    for turn in turns:  # plain string content for the common single-text case
        if len(turn["content"]) == 1 and turn["content"][0].keys() == {"type", "text"}:
            turn["content"] = turn["content"][0]["text"]
    if any(_has_cache_control(content) for content in system):
        return _system_blocks(system), turns
    return "\n\n".join(text for content in system if (text := _system_text(content))), turns


def _convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise TranslationError(f"unsupported tool type: {tool.get('type')!r}")
        fn = tool.get("function") or {}
        converted = {
            "name": fn.get("name"),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            converted["description"] = fn["description"]
        if "cache_control" in tool:
            converted["cache_control"] = tool["cache_control"]
        out.append(converted)  # `strict` has no Anthropic counterpart
    return out


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:  # e.g. OpenAI's allowed_tools form
            raise TranslationError(f"unsupported tool_choice: {choice!r}")
        converted: dict[str, Any] = {"type": "tool", "name": name}
    elif choice is None:
        converted = {"type": "auto"}
    elif choice in TOOL_CHOICES:
        converted = dict(TOOL_CHOICES[choice])
    else:
        raise TranslationError(f"unsupported tool_choice: {choice!r}")
    if parallel is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    return None if converted == {"type": "auto"} else converted


def _apply_thinking(body: dict[str, Any], out: dict[str, Any], max_tokens_given: bool) -> None:
    """reasoning_effort / thinking -> Anthropic thinking, within Anthropic's constraints."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        budget = EFFORT_BUDGETS.get(str(body.get("reasoning_effort")))
        thinking = {"type": "enabled", "budget_tokens": budget} if budget else None
    if thinking is None:
        return
    thinking = dict(thinking)
    if thinking.get("type") == "enabled":
        # Anthropic forbids thinking with forced tool use; the tool choice is the harder rule.
        if (out.get("tool_choice") or {}).get("type") in ("any", "tool"):
            return
        budget = int(thinking.get("budget_tokens") or MIN_THINKING_BUDGET)
        # budget must stay below max_tokens; OpenAI's max_completion_tokens already counts
        # reasoning, so shrink the budget rather than grow a cap the client chose.
        if not max_tokens_given:
            out["max_tokens"] = DEFAULT_MAX_TOKENS + budget
        budget = min(budget, out["max_tokens"] - 1)
        if budget < MIN_THINKING_BUDGET:  # too little room to think at all
            return
        thinking["budget_tokens"] = budget
        # Thinking rejects temperature/top_k changes and top_p below 0.95.
        out.pop("temperature", None)
        out.pop("top_k", None)
        if out.get("top_p", 1.0) < 0.95:
            out.pop("top_p")
    out["thinking"] = thinking


def prefill_ready(turns: list[dict[str, Any]]) -> None:
    """A final assistant turn is a prefill: the answer continues from its text (how a stream
    that broke off elsewhere is continued here). Anthropic refuses a prefill that ends in
    whitespace, so it is trimmed (the relay drops the whitespace the continuation then
    repeats); a prefill of whitespace alone is dropped."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    content = turns[-1]["content"]
    if isinstance(content, str):
        if content.rstrip():
            turns[-1]["content"] = content.rstrip()
        else:
            turns.pop()
        return
    if content and content[-1].get("type") == "text":
        text = content[-1]["text"].rstrip()
        if text:
            content[-1]["text"] = text
        else:
            content.pop()
            if not content:
                turns.pop()


def to_anthropic_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """Translate an OpenAI chat-completions body into an Anthropic Messages body."""
    system, messages = convert_messages(body.get("messages") or [])
    prefill_ready(messages)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI allows up to 2
    for key in ("top_p", "top_k"):  # top_k is not OpenAI, but clients aimed at Claude send it
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["metadata"] = {"user_id": str(user)}
    if body.get("tools"):
        out["tools"] = _convert_tools(body["tools"])
        choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    _apply_thinking(body, out, max_tokens_given=bool(max_tokens))
    return out


# --- the provider ----------------------------------------------------------------------------


def anthropic_headers(target: EndpointTarget) -> dict[str, str]:
    """Anthropic authenticates with x-api-key, not Bearer; a non-default auth_header wins
    (e.g. a proxy in front of Anthropic), and target.headers may override the version."""
    headers = {"anthropic-version": ANTHROPIC_VERSION, **target.headers}
    if target.api_key:
        default = target.auth_header.lower() == "authorization"
        headers["x-api-key" if default else target.auth_header] = target.api_key
    return headers


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    path = "/messages"
    label = "anthropic"

    def endpoint_headers(self, target: EndpointTarget) -> dict[str, str]:
        return anthropic_headers(target)

    def _request_headers(self, target: EndpointTarget) -> dict[str, str]:
        """The endpoint's headers (built once) with the Anthropic client's own
        `anthropic-version` and `anthropic-beta` when the request came from one."""
        headers = super()._request_headers(target)
        forwarded = forwarded_for("anthropic")
        return headers if not forwarded else with_forwarded(headers, forwarded)

    def request_body(
        self, target: EndpointTarget, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        native = native_of(body, "anthropic")
        if native is not None:  # the client's own request: as written, on our model
            payload = {**native, "model": target.upstream_model}
            if stream or "stream" in payload:
                payload["stream"] = stream
            return payload
        try:
            payload = to_anthropic_request(body, target.upstream_model)
        except TranslationError as exc:
            # Not the endpoint's fault, and no other Anthropic endpoint would do better.
            err = {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
            raise UpstreamError("status", str(exc), status=400, body=err) from exc
        payload["stream"] = stream
        return payload

    async def complete(
        self, target: EndpointTarget, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> dict[str, Any]:
        """The translated answer; for a native request, with the raw answer beside it."""
        response = await self._post(target, self.request_body(target, body, stream=False), timeout)
        answer = await self._read_json(response)
        translated = self.completion(answer, target)
        if native_of(body, "anthropic") is None:
            return translated
        return WithNative(translated, native=answer, protocol="anthropic")

    def completion(self, answer: Any, target: EndpointTarget) -> dict[str, Any]:
        if not isinstance(answer, dict) or answer.get("type") != "message":
            raise UpstreamError("protocol", "anthropic sent no message object", body=answer)
        return to_openai_completion(answer, model=target.upstream_model)

    def chat_stream(
        self, response: aiohttp.ClientResponse, target: EndpointTarget
    ) -> SSEChatStream:
        return AnthropicChatStream(response, target.upstream_model)

    def status_message(self, response: aiohttp.ClientResponse, body: Any) -> str:
        fallback = f"HTTP {response.status} {response.reason or ''}".strip()
        return f"anthropic {response.status}: {error_text(body, fallback)}"


def with_forwarded(headers: dict[str, str], forwarded: dict[str, str]) -> dict[str, str]:
    """`headers` with a client's forwarded ones: its `anthropic-version` wins (it wrote the body
    for that version), and its betas join the endpoint's own."""
    merged = dict(headers)
    lower = {name.lower(): name for name in headers}
    for name, value in forwarded.items():
        existing = lower.get(name)
        if name == "anthropic-beta" and existing is not None:
            betas = [b.strip() for b in f"{headers[existing]},{value}".split(",") if b.strip()]
            merged[existing] = ",".join(dict.fromkeys(betas))
        else:
            if existing is not None:
                del merged[existing]
            merged[name] = value
    return merged
