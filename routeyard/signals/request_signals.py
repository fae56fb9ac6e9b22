"""Families that read the request's shape and its caller: conversation, modality, authz,
metadata."""

from __future__ import annotations

import hashlib
from typing import Any

from routeyard.config.signals import (
    CONVERSATION_NAMES,
    MODALITY_NAMES,
    AuthzFamily,
    ConversationFamily,
    MetadataFamily,
)
from routeyard.signals.base import Family, FamilyResult, Match, RequestContext, register


@register
class ConversationSignals(Family):
    name = "conversation"
    def declared_names(self) -> set[str]:
        return set(CONVERSATION_NAMES)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        config: ConversationFamily = self.config
        messages = ctx.messages
        user_turns = len(ctx.user_texts)
        depth = _tool_loop_depth(messages)
        result = FamilyResult(values={"messages": len(messages), "user_turns": user_turns,
                                      "tool_loop_depth": depth})
        found = result.matches
        if user_turns >= 2:
            found["multi_turn"] = Match(1.0, user_turns)
        if len(messages) >= config.long_conversation_turns:
            found["long_conversation"] = Match(1.0, len(messages))
        if ctx.body.get("tools"):
            found["has_tools"] = Match(1.0, len(ctx.body["tools"]))
        if depth >= config.tool_loop_depth:
            found["tool_loop"] = Match(1.0, depth)
        if any(m.get("role") in ("system", "developer") for m in messages):
            found["has_system"] = Match(1.0)
        if user_turns >= 2:
            similarity = _similarity(ctx.user_texts[-1], ctx.user_texts[-2])
            result.values["reask_similarity"] = round(similarity, 3)
            if similarity >= config.reask_similarity:
                found["reask"] = Match(similarity)
        return result


def _tool_loop_depth(messages: list[dict[str, Any]]) -> int:
    """Tool results since the last user turn: how deep the agent loop has gone."""
    depth = 0
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            break
        if role in ("tool", "function"):
            depth += 1
    return depth


def _similarity(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(a.strip().lower(), b.strip().lower()) / 100.0


_PART_KINDS = {"image_url": "image", "input_image": "image", "image": "image",
               "input_audio": "audio", "audio": "audio", "file": "file", "input_file": "file"}


@register
class ModalitySignals(Family):
    name = "modality"

    def declared_names(self) -> set[str]:
        return set(MODALITY_NAMES)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        counts: dict[str, int] = {}
        for message in ctx.messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for part in content:
                kind = _PART_KINDS.get(part.get("type")) if isinstance(part, dict) else None
                if kind is not None:
                    counts[kind] = counts.get(kind, 0) + 1
        result = FamilyResult(values=dict(counts))
        for kind, count in counts.items():
            result.matches[kind] = Match(1.0, count)
        if not counts:
            result.matches["text_only"] = Match(1.0)
        return result


@register
class AuthzSignals(Family):
    """Roles from the caller's API key (plain or SHA-256 hex in config) or from headers."""

    name = "authz"

    def declared_names(self) -> set[str]:
        return set(self.config.roles)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        config: AuthzFamily = self.config
        key = ctx.api_key()
        digest = hashlib.sha256(key.encode()).hexdigest() if key else None
        result = FamilyResult()
        for role, mapping in config.roles.items():
            by_key = key is not None and (key in mapping.api_keys or digest in mapping.api_keys)
            by_header = any(ctx.headers.get(h.lower()) in values
                            for h, values in mapping.headers.items())
            if by_key or by_header:
                result.matches[role] = Match(1.0, "api_key" if by_key else "header")
        result.values["roles"] = sorted(result.matches)
        return result


@register
class MetadataSignals(Family):
    """Caller hints from a header, a `metadata` key, or the `user` field."""

    name = "metadata"

    def declared_names(self) -> set[str]:
        return set(self.config.hints)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        config: MetadataFamily = self.config
        metadata = ctx.body.get("metadata")
        result = FamilyResult()
        for name, rule in config.hints.items():
            if rule.header is not None:
                value: Any = ctx.headers.get(rule.header.lower())
            elif rule.field == "user":
                value = ctx.body.get("user")
            else:
                value = metadata.get(rule.field) if isinstance(metadata, dict) else None
            if value is not None and (not rule.equals or str(value) in rule.equals):
                result.matches[name] = Match(1.0, str(value))
        return result
