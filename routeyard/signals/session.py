"""Which agent session a request belongs to (docs/sessions.md).

Agents send long chains of requests that belong together. A request names its session by any
of, in this order:
- an `x-session-id` header;
- `metadata.session_id` in the body;
- a Responses API `previous_response_id` chain (the id of the chain's first response, which
  the Responses surface passes in the header `x-routeyard-response-chain`);
- Anthropic's `metadata.user_id` with the conversation's first user turn, hashed together (one
  user's separate conversations are separate sessions).

Ids are namespaced by where they came from, so a header id and a metadata id never collide. A
bad id the client chose as a session id (not a string, empty, over `MAX_SESSION_ID_CHARS`, or
with characters outside `[A-Za-z0-9._:@/+=-]`) is the client's error, named with its field.
Anthropic's `user_id` is the client's own opaque identifier, not a session id: any string is
taken, and only its hash is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from routeyard.errors import InvalidRequest

SESSION_HEADER = "x-session-id"
CHAIN_HEADER = "x-routeyard-response-chain"  # set by the Responses surface, never by clients
MAX_SESSION_ID_CHARS = 128
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]+")


def session_key(session: str, part: str) -> str:
    """The store key of one part of a session's state (`budget`, `endpoint`, `risk`, ...):
    every part expires after `sessions.idle_ttl_s` without a request."""
    return f"session:{session}:{part}"


def _checked(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where} must be a non-empty string", param=where)
    if len(value) > MAX_SESSION_ID_CHARS:
        raise InvalidRequest(f"{where} is longer than {MAX_SESSION_ID_CHARS} characters",
                             param=where)
    if not _VALID.fullmatch(value):
        raise InvalidRequest(f"{where} may hold only letters, digits and . _ : @ / + = -",
                             param=where)
    return value


def _first_user_text(messages: Any) -> str:
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content
                                if isinstance(p, Mapping))
    return ""


def session_id(body: Mapping[str, Any], headers: Mapping[str, str] | None = None
               ) -> str | None:
    """The request's session, namespaced by its source (`h:`, `m:`, `r:`, `a:`), or None."""
    headers = headers or {}
    found = headers.get(SESSION_HEADER)
    if found is not None:
        return "h:" + _checked(found, SESSION_HEADER)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and metadata.get("session_id") is not None:
        return "m:" + _checked(metadata.get("session_id"), "metadata.session_id")
    chain = headers.get(CHAIN_HEADER)
    if chain is not None:
        return "r:" + _checked(chain, CHAIN_HEADER)
    user = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if isinstance(user, str) and user:
        first = _first_user_text(body.get("messages"))
        digest = hashlib.sha256(f"{len(user)}:{user}{first}".encode()).hexdigest()
        return f"a:{digest[:32]}"
    return None
