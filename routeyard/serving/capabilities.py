"""What a request needs of the model that serves it, and which models cannot give it.

`Needs` is read once from the internal body: images need vision, tools need tool support, a
JSON-schema response format needs structured output, a reasoning effort needs a reasoning
model, and the prompt plus the answer's `max_tokens` must fit the context window. `Skips`
filters candidates and failover targets against their models' capabilities and remembers why
each was skipped, for the decision log, the dry run and the client's 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routeyard.errors import CapabilityMissing, ContextTooLong, RouteyardError
from routeyard.pool import PooledModel

CONTEXT = "context_window"  # the need every request has: room for its prompt and answer

_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def _has_images(body: Mapping[str, Any]) -> bool:
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in _IMAGE_PARTS:
                    return True
    return False


def _has_tools(body: Mapping[str, Any]) -> bool:
    # Tools count even with `tool_choice: none`: they are still sent, and a backend without
    # tool support may reject or mis-render them.
    return bool(body.get("tools")) or bool(body.get("functions"))


def _wants_json_schema(body: Mapping[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"


def _wants_reasoning(body: Mapping[str, Any]) -> bool:
    # `none` asks for no reasoning, which any model gives; a `thinking` block (Anthropic's
    # form) asks for it unless it is disabled.
    effort = body.get("reasoning_effort")
    if effort is not None and effort != "none":
        return True
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled")


# capability (a `ModelConfig.capabilities` field) → (does the body need it?, what needs it,
# the request parameter that does). Checked in this order.
NEEDS: dict[str, tuple[Callable[[Mapping[str, Any]], bool], str, str]] = {
    "vision": (_has_images, "images in the request", "messages"),
    "tools": (_has_tools, "tools in the request", "tools"),
    "structured_output": (_wants_json_schema, "a json_schema response_format",
                          "response_format"),
    "reasoning": (_wants_reasoning, "a reasoning effort in the request", "reasoning_effort"),
}

# The body keys the needs but vision are read from (keep in step with NEEDS); images are in
# the messages.
_NEED_KEYS = frozenset({"tools", "functions", "response_format", "reasoning_effort", "thinking",
                        "max_completion_tokens", "max_tokens"})


def _output_tokens(body: Mapping[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request asks of the model that serves it, read once from the internal body.

    The context a model needs is `prompt tokens + output_tokens`; the prompt is counted
    lazily by the planner (an upper bound often suffices), so only the answer's share is here.
    """

    vision: bool = False
    tools: bool = False
    structured_output: bool = False
    reasoning: bool = False
    output_tokens: int = 0

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Needs:
        # A plain text request (the common case) touches none of the keys: one set check and
        # one walk over the messages for images.
        if _NEED_KEYS.isdisjoint(body) and not _has_images(body):
            return _PLAIN
        return cls(**{capability: test(body) for capability, (test, _, _) in NEEDS.items()},
                   output_tokens=_output_tokens(body))

    @property
    def wanted(self) -> tuple[str, ...]:
        """The capabilities asked for, in NEEDS order."""
        return tuple(capability for capability in NEEDS if getattr(self, capability))

    def missing(self, model: PooledModel, prompt_tokens: int) -> tuple[str, ...]:
        """What `model` lacks to serve the request (CONTEXT when it is too small)."""
        capabilities = model.config.capabilities
        lacking = tuple(c for c in self.wanted if not getattr(capabilities, c))
        if prompt_tokens + self.output_tokens > model.config.context_window:
            lacking += (CONTEXT,)
        return lacking


_PLAIN = Needs()


def _skip_reason(model: PooledModel, missing: tuple[str, ...], context_needed: int) -> str:
    return ", ".join(
        f"context window {model.config.context_window} < {context_needed} tokens"
        if c == CONTEXT else f"no {c}" for c in missing)


@dataclass(slots=True)
class Skips:
    """One request's filtering: which models were skipped, and why."""

    needs: Needs
    prompt_tokens: int
    # model name → (what it lacks, why it was skipped), first reason kept
    found: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)

    def servable(self, models: list[PooledModel], needs: Needs | None = None,
                 why: str = "") -> list[PooledModel]:
        """The models that can serve the request (`needs`, by default the request's own);
        `why` is added to the reason a model is skipped."""
        needs = needs if needs is not None else self.needs
        kept: list[PooledModel] = []
        for model in models:
            missing = needs.missing(model, self.prompt_tokens)
            if not missing:
                kept.append(model)
            elif model.name not in self.found:
                reason = _skip_reason(model, missing, self.context_needed)
                self.found[model.name] = (missing, f"{reason}{why}")
        return kept

    @property
    def context_needed(self) -> int:
        return self.prompt_tokens + self.needs.output_tokens

    def records(self) -> list[dict[str, str]]:
        return [{"model": name, "reason": reason} for name, (_, reason) in self.found.items()]

    def error(self, decision: str) -> RouteyardError:
        """The client's 400 when no model of `decision` can serve the request."""
        missing = [c for c in (*self.needs.wanted, CONTEXT)
                   if any(c in lacking for lacking, _ in self.found.values())]
        listed = ", ".join(f"{name} ({reason})" for name, (_, reason) in self.found.items())
        if missing == [CONTEXT]:
            return ContextTooLong(f"{self._size()}; no model of decision '{decision}' has a "
                                  f"context window that large.", param="messages")
        return CapabilityMissing(
            f"no model of decision '{decision}' supports {self._describe(missing)}: skipped "
            f"{listed}.", param=self._param(missing))

    def direct_error(self, model: PooledModel, missing: tuple[str, ...]) -> RouteyardError:
        """The client's 400 when the model the request named cannot serve it."""
        if missing == (CONTEXT,):
            return ContextTooLong(f"{self._size()}; '{model.name}' takes at most "
                                  f"{model.config.context_window}.", param="messages")
        return CapabilityMissing(f"the model '{model.name}' does not support "
                                 f"{self._describe(list(missing))}.", param=self._param(missing))

    def _size(self) -> str:
        size = f"The prompt has {self.prompt_tokens} tokens"
        if self.needs.output_tokens:
            size += f" and asks for up to {self.needs.output_tokens} more in the answer"
        return size

    def _describe(self, missing: list[str]) -> str:
        return " and ".join(
            f"a context window of {self.context_needed} tokens" if c == CONTEXT
            else f"{c} ({NEEDS[c][1]})" for c in missing)

    @staticmethod
    def _param(missing: list[str] | tuple[str, ...]) -> str:
        return NEEDS[missing[0]][2] if missing[0] in NEEDS else "messages"
