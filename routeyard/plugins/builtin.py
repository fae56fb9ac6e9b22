"""The built-in plugins: block, system_prompt, headers, reasoning_effort."""

from __future__ import annotations

import re
from typing import Any

from routeyard.plugins.base import (
    Plugin,
    PluginAnswer,
    PluginBuild,
    PluginContext,
    header_safe,
    register,
)
from routeyard.pool.providers.base import HeaderEdits

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name


def _text(options: dict[str, Any], key: str, default: str | None = None) -> str:
    value = options.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    return value


@register
class BlockPlugin(Plugin):
    """Answer with a canned message when a signal leaf holds (always, without `when`)."""

    name = "block"
    options = frozenset({"when", "message", "status", "reason"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        when = options.get("when")
        if when is not None and (not isinstance(when, str) or when.count(":") != 1
                                 or not all(when.split(":"))):
            raise ValueError("when must be a signal leaf 'family:name'")
        self.when: str | None = when
        self.message = _text(options, "message", "This request was blocked by policy.")
        status = options.get("status", "ok")
        if status not in ("ok", "error"):
            raise ValueError("status must be 'ok' or 'error'")
        self.blocked = PluginAnswer.block(self.message, status,
                               header_safe(options.get("reason", "policy"), "reason"))

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        if self.when is None:
            return self.blocked
        signals = ctx.signals
        if signals is not None and signals.leaves.get(self.when, 0.0) > 0.0:
            return self.blocked
        return None


_SYSTEM_ROLES = ("system", "developer")


@register
class SystemPromptPlugin(Plugin):
    """inject: a system message first when none exists; replace: every system message becomes
    this one; append: add the text to the first system message (or inject)."""

    name = "system_prompt"
    options = frozenset({"mode", "text"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.mode = options.get("mode", "inject")
        if self.mode not in ("inject", "replace", "append"):
            raise ValueError("mode must be one of inject, replace, append")
        self.text = _text(options, "text")

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        messages = [dict(m) for m in ctx.body["messages"]]  # never the client's dicts
        system = [i for i, m in enumerate(messages) if m.get("role") in _SYSTEM_ROLES]
        if self.mode == "replace":
            messages = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
            system = []
        if not system:
            messages.insert(0, {"role": "system", "content": self.text})
        elif self.mode == "append":
            first = messages[system[0]]
            content = first.get("content")
            if isinstance(content, list):
                first["content"] = [*content, {"type": "text", "text": self.text}]
            else:
                first["content"] = f"{content}\n\n{self.text}" if content else self.text
        ctx.body["messages"] = messages
        return None


@register
class HeadersPlugin(Plugin):
    """Header mutation: `set` adds response headers for the caller; `upstream_set` adds or
    replaces headers sent to the backend, `upstream_remove` drops some (an endpoint's
    configured ones, say). Several `headers` plugins in a chain add up."""

    name = "headers"
    options = frozenset({"set", "upstream_set", "upstream_remove"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.headers = _header_map(options.get("set", {}), "set")
        self.upstream_set = _header_map(options.get("upstream_set", {}), "upstream_set")
        remove = options.get("upstream_remove", [])
        if not isinstance(remove, list) or not all(
                isinstance(n, str) and _TOKEN.match(n) for n in remove):
            raise ValueError("upstream_remove must be a list of header names")
        self.upstream_remove = frozenset(n.lower() for n in remove)
        if not (self.headers or self.upstream_set or self.upstream_remove):
            raise ValueError("give at least one header in set, upstream_set or upstream_remove")

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        ctx.headers.update(self.headers)
        if self.upstream_set or self.upstream_remove:
            earlier = ctx.upstream_headers
            ctx.upstream_headers = HeaderEdits(
                {**(earlier.set if earlier else {}), **self.upstream_set},
                (earlier.remove if earlier else frozenset()) | self.upstream_remove)
        return None


def _header_map(raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a mapping of header name to value")
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _TOKEN.match(key):
            raise ValueError(f"{what}: '{key}' is not a valid header name")
        headers[key.lower()] = header_safe(
            str(value) if isinstance(value, int | float) else value, f"{what}.{key}")
    return headers


_STYLES = {"openai": "openai", "anthropic": "anthropic", "qwen": "qwen", "vllm": "qwen"}
DEFAULT_FAMILIES = {"gpt-": "openai", "o1": "openai", "o3": "openai", "o4": "openai",
                    "claude": "anthropic", "qwen": "qwen"}


@register
class ReasoningEffortPlugin(Plugin):
    """Set the reasoning effort in the parameter style of the chosen model's family:
    openai/anthropic → `reasoning_effort` (the Anthropic adapter maps it to a thinking budget),
    qwen/vllm → `chat_template_kwargs.enable_thinking` (false for low). Families are matched
    by the longest model-name prefix (case-insensitive); an unmatched model is left alone.
    A client's own value wins (a client `reasoning_effort` is translated for qwen/vllm)."""

    name = "reasoning_effort"
    options = frozenset({"effort", "families"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.effort = options.get("effort")
        if self.effort not in ("low", "medium", "high"):
            raise ValueError("effort must be one of low, medium, high")
        families = options.get("families", DEFAULT_FAMILIES)
        if not isinstance(families, dict) or not families:
            raise ValueError("families must be a non-empty mapping of model-name prefix "
                             "to openai | qwen | vllm | anthropic")
        for prefix, style in families.items():
            if style not in _STYLES:
                raise ValueError(f"families.{prefix}: unknown style '{style}' "
                                 f"(known: {', '.join(sorted(_STYLES))})")
        # Longest prefix first.
        self.families = sorted(((str(p).lower(), _STYLES[s]) for p, s in families.items()),
                               key=lambda item: -len(item[0]))

    def style(self, model: str) -> str | None:
        name = model.lower()
        return next((style for prefix, style in self.families if name.startswith(prefix)),
                    None)

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        style = self.style(ctx.model)
        body = ctx.body
        if style in ("openai", "anthropic"):
            body.setdefault("reasoning_effort", self.effort)
        elif style == "qwen":
            effort = body.pop("reasoning_effort", None) or self.effort
            kwargs = body.get("chat_template_kwargs")
            kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
            kwargs.setdefault("enable_thinking", effort not in ("none", "minimal", "low"))
            body["chat_template_kwargs"] = kwargs
        return None
