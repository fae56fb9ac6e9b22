"""Cache keys. A scope is (decision, tenant); within it, an entry is found either by the exact
hash of the normalised request or, among entries with the same conversation-prefix hash, by the
similarity of the last user turn's embedding."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from routeyard.tokens import message_text

# Body fields that do not change the answer (or are handled elsewhere: `user` is the tenant
# when there is no API key, `stream`/`stream_options` only change the framing of a replay).
_NOT_ANSWER_PARAMS = frozenset({"messages", "stream", "stream_options", "user"})
_SPACES = re.compile(r"\s+")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tenant_of(api_key: str | None, body: dict[str, Any]) -> str:
    """SHA-256 of the caller's API key, else of the body's `user`, else "anonymous"."""
    if api_key:
        return _sha(b"key:" + api_key.encode())
    user = body.get("user")
    if isinstance(user, str) and user:
        return _sha(b"user:" + user.encode())
    return "anonymous"


def scope_of(decision: str, tenant: str) -> str:
    """A short, key-safe name for (decision, tenant)."""
    return _sha(orjson.dumps([decision, tenant]))[:32]


@dataclass(slots=True, frozen=True)
class RequestKey:
    prefix: str  # hash of the answer-changing parameters and every earlier message
    exact: str  # hash of the whole normalised request (prefix + last message)
    text: str | None  # the last user turn's text when it may be matched semantically


def _is_text_only(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content)


def request_key(body: dict[str, Any]) -> RequestKey:
    messages = body.get("messages") or []
    params = {k: v for k, v in body.items() if k not in _NOT_ANSWER_PARAMS}
    last = messages[-1] if messages else {}
    # Semantic matching only for a last turn from the user made of text (an image or a tool
    # result at the end would be invisible to the embedding).
    semantic = last.get("role") == "user" and _is_text_only(last.get("content")) and set(
        last) <= {"role", "content", "name"}
    earlier = messages[:-1] if messages else []
    prefix = _sha(orjson.dumps([params, earlier], option=orjson.OPT_SORT_KEYS))
    if semantic:
        text = _SPACES.sub(" ", message_text(last)).strip()
        exact = _sha(orjson.dumps([prefix, last.get("name"), text]))
        return RequestKey(prefix, exact, text)
    exact = _sha(orjson.dumps([prefix, last], option=orjson.OPT_SORT_KEYS))
    return RequestKey(prefix, exact, None)
