"""Stored responses: what `store: true` keeps, so that `GET /v1/responses/{id}`, its input
items and `previous_response_id` work, on any replica that shares the state store.

One key per response, `response:{id}`, holds everything about it: the Response object, its
input items, the whole conversation so far as the chat messages the backend saw (so continuing
a chain is one read, however long it is), its owner, and the decision and model that served it
(for stickiness). Keys expire after `responses.ttl_s`.

A response is visible only to its owner (`caller_id`, a hash of the API key): to anyone else it
does not exist, a 404 rather than a 403, so ids cannot be probed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import orjson

from routeyard.errors import NotFound
from routeyard.state import Store

log = logging.getLogger("routeyard.api.responses")

JSONDict = dict[str, Any]


class ResponseNotFound(NotFound):
    code = "response_not_found"


class PreviousResponseNotFound(NotFound):
    code = "previous_response_not_found"


@dataclass(slots=True)
class StoredResponse:
    owner: str
    decision: str
    model: str | None  # the model that answered; None when a plugin did
    request_id: str  # the decision log's key (feedback)
    response: JSONDict
    input_items: list[JSONDict]
    conversation: list[JSONDict]  # chat messages, without instructions; ends with the answer


_FIELDS = tuple(f.name for f in fields(StoredResponse))


def _key(response_id: str) -> str:
    return f"response:{response_id}"


class ResponseStore:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def save(self, record: StoredResponse) -> None:
        # Not dataclasses.asdict: that deep-copies the whole conversation first.
        value = orjson.dumps({name: getattr(record, name) for name in _FIELDS})
        await self.store.set_value(_key(record.response["id"]), value, ttl_s=self.ttl_s)

    async def load(self, response_id: str, owner: str) -> StoredResponse:
        """The caller's stored response; ResponseNotFound when absent, expired, deleted or
        someone else's."""
        record = await self._read(response_id, owner)
        if record is None:
            raise ResponseNotFound(f"Response with id '{response_id}' not found.")
        return record

    async def previous(self, response_id: str, owner: str) -> StoredResponse:
        """A `previous_response_id`'s record, or its own 404."""
        record = await self._read(response_id, owner)
        if record is None:
            raise PreviousResponseNotFound(
                f"Previous response with id '{response_id}' not found.",
                param="previous_response_id")
        return record

    async def delete(self, response_id: str, owner: str) -> None:
        await self.load(response_id, owner)  # someone else's is not there for this caller
        await self.store.delete_value(_key(response_id))

    async def _read(self, response_id: str, owner: str) -> StoredResponse | None:
        if not response_id.startswith("resp_") or len(response_id) > 128:
            return None  # not one of ours: no store round trip
        raw = await self.store.get_value(_key(response_id))
        if raw is None:
            return None
        try:
            record = StoredResponse(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            log.warning("stored response %s is unreadable; treated as absent", response_id)
            return None
        return record if record.owner == owner else None
