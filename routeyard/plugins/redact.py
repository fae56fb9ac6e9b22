"""The `pii_redact` plugin: reversible masking of personal data before the request goes upstream.

    plugins:
      - {type: pii_redact, entities: [EMAIL_ADDRESS, PHONE_NUMBER], roles: [user]}

on_request replaces every PII span (`routeyard.signals.pii.find_pii`) in the text of the
selected messages with a numbered placeholder (`<EMAIL_ADDRESS_1>`); the same value gets the
same placeholder everywhere in the request. The placeholder → value mapping lives on the
request's PluginContext (`ctx.state`), never on the plugin, which all requests share.
When `restore` is on, the values are put back into the answer: in a whole completion by
on_response, in a stream by a rewriter that holds back any tail that may be the start of a
placeholder split across chunks (content and tool-call arguments alike).
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

from routeyard.config.signals import ALL_PII_ENTITIES, PII_ENTITIES
from routeyard.plugins.base import Plugin, PluginAnswer, PluginBuild, PluginContext, register
from routeyard.plugins.rewrite import RewriterFactory
from routeyard.signals.pii import find_pii

ROLES = ("system", "developer", "user", "assistant", "tool")
DEFAULT_PLACEHOLDER = "<{label}_{n}>"


def _check_placeholder(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("placeholder must be a non-empty string")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        value.format(label="X", n=1)
    except (ValueError, IndexError, KeyError) as error:
        raise ValueError(f"placeholder: bad format string ({error})") from None
    if "n" not in fields or not fields <= {"label", "n"}:
        raise ValueError("placeholder must use {n} and may use {label}, nothing else")
    if value.format(label="X", n=1).isdigit():
        raise ValueError("placeholder needs text around {n}: a bare number is not restorable")
    return value


class _Masking:
    """One request's mapping: (label, value) → placeholder, and back."""

    def __init__(self, placeholder: str, taken: str) -> None:
        self.placeholder = placeholder
        self.taken = taken  # the request's own text: a placeholder found in it is skipped
        self.by_value: dict[tuple[str, str], str] = {}
        self.values: dict[str, str] = {}  # placeholder → original value
        self.counts: dict[str, int] = {}

    def mask(self, label: str, value: str) -> str:
        key = (label, value)
        found = self.by_value.get(key)
        if found is not None:
            return found
        while True:
            n = self.counts[label] = self.counts.get(label, 0) + 1
            token = self.placeholder.format(label=label, n=n)
            if token not in self.taken and token not in self.values:
                break
        self.by_value[key] = token
        self.values[token] = value
        self.__dict__.pop("pattern", None)  # a new placeholder: rebuild the pattern on use
        return token

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        # Longest first, so that <X_1> never eats the start of <X_10>.
        return re.compile("|".join(re.escape(t) for t in
                                   sorted(self.values, key=len, reverse=True)))

    def restore(self, text: str) -> str:
        if not self.values or not text:
            return text
        return self.pattern.sub(lambda m: self.values[m.group()], text)


class _StreamRestore:
    """Restores one streamed choice: emits text up to the longest tail that could still
    grow into a placeholder, and holds that tail for the next delta."""

    def __init__(self, masking: _Masking) -> None:
        self.masking = masking
        self.held = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        cut = len(text) - self._open_tail(text)
        for match in self.masking.pattern.finditer(text, max(0, cut - self._longest)):
            if match.start() < cut < match.end():  # never split a whole placeholder
                cut = match.start()
                break
        self.held = text[cut:]
        return self.masking.restore(text[:cut])

    def flush(self) -> str:
        text, self.held = self.held, ""
        return self.masking.restore(text)

    @functools.cached_property
    def _longest(self) -> int:
        return max(map(len, self.masking.values))

    @functools.cached_property
    def _prefixes(self) -> frozenset[str]:
        """Every proper prefix of every placeholder."""
        return frozenset(token[:size] for token in self.masking.values
                         for size in range(1, len(token)))

    def _open_tail(self, text: str) -> int:
        """The length of the longest tail of `text` that is a proper prefix of a placeholder."""
        prefixes = self._prefixes
        for size in range(min(len(text), self._longest - 1), 0, -1):
            if text[-size:] in prefixes:
                return size
        return 0


@register
class PiiRedactPlugin(Plugin):
    """Mask PII in the selected messages before the backend sees them; restore it in the
    answer, whole or streamed."""

    name = "pii_redact"
    options = frozenset({"entities", "restore", "placeholder", "roles"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        entities = options.get("entities", list(PII_ENTITIES))
        if (not isinstance(entities, list | tuple) or not entities
                or not all(isinstance(e, str) for e in entities)):
            raise ValueError("entities must be a non-empty list of PII entity types")
        unknown = set(entities) - set(ALL_PII_ENTITIES)
        if unknown:
            raise ValueError(f"entities: unknown {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(ALL_PII_ENTITIES)})")
        self.entities = tuple(dict.fromkeys(entities))
        restore = options.get("restore", True)
        if not isinstance(restore, bool):
            raise ValueError("restore must be true or false")
        self.restore = restore
        self.placeholder = _check_placeholder(options.get("placeholder", DEFAULT_PLACEHOLDER))
        roles = options.get("roles", ["user"])
        if (not isinstance(roles, list | tuple) or not roles
                or not all(isinstance(r, str) for r in roles)):
            raise ValueError(f"roles must be a non-empty list of {', '.join(ROLES)}")
        bad = set(roles) - set(ROLES)
        if bad:
            raise ValueError(f"roles: unknown {', '.join(sorted(bad))} "
                             f"(known: {', '.join(ROLES)})")
        self.roles = frozenset(roles)
        self._key = f"{self.name}@{id(self)}"

    # -- request --------------------------------------------------------------------------------

    def _redact(self, text: str, masking: _Masking) -> str:
        spans = find_pii(text, self.entities)
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for span in spans:  # sorted, without overlaps
            out.append(text[last:span.start])
            out.append(masking.mask(span.label, text[span.start:span.end]))
            last = span.end
        out.append(text[last:])
        return "".join(out)

    def _redact_message(self, message: Any, masking: _Masking) -> Any:
        if not isinstance(message, dict) or message.get("role") not in self.roles:
            return message
        content = message.get("content")
        if isinstance(content, str):
            redacted = self._redact(content, masking)
            return message if redacted == content else {**message, "content": redacted}
        if isinstance(content, list):
            parts: list[Any] = []
            changed = False
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str) and part.get("type", "text") == "text":
                    redacted = self._redact(text, masking)
                    if redacted != text:
                        part = {**part, "text": redacted}
                        changed = True
                parts.append(part)
            return {**message, "content": parts} if changed else message
        return message

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        messages = ctx.body.get("messages")
        if not isinstance(messages, list):
            return None
        masking = _Masking(self.placeholder, _all_text(messages))
        redacted = [self._redact_message(m, masking) for m in messages]
        if masking.values:
            ctx.body["messages"] = redacted  # new dicts only: the client's are untouched
            ctx.state[self._key] = masking
        return None

    # -- response -------------------------------------------------------------------------------

    def on_response(self, ctx: PluginContext, response: dict[str, Any]) -> None:
        masking: _Masking | None = ctx.state.get(self._key)
        if not self.restore or masking is None:
            return
        for choice in response.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                _restore_message(message, masking)


    def stream_rewriter(self, ctx: PluginContext) -> RewriterFactory | None:
        masking: _Masking | None = ctx.state.get(self._key)
        if not self.restore or masking is None:
            return None
        return lambda: _StreamRestore(masking)


def _all_text(messages: list[Any]) -> str:
    texts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(texts)


def _restore_message(message: dict[str, Any], masking: _Masking) -> None:
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = masking.restore(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = masking.restore(part["text"])
    # Tool-call arguments are JSON text; PII values hold no quotes or backslashes
    # (see the patterns in routeyard.signals.pii), so a plain substitution keeps them valid.
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            function["arguments"] = masking.restore(function["arguments"])


__all__ = ["DEFAULT_PLACEHOLDER", "PiiRedactPlugin"]
