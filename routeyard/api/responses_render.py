"""Internal answers → the OpenAI Responses API: a whole `chat.completion` as a Response object,
and a stream's `chat.completion.chunk`s as the typed events the openai SDK parses.

A stream is `response.created`, `response.in_progress`, then for each output item
`response.output_item.added`, its parts and deltas (`response.output_text.delta`,
`response.reasoning_text.delta`, `response.function_call_arguments.delta`) and their `.done`
events, `response.output_item.done`; it ends with `response.completed` (`response.incomplete`
when it ran out of tokens), or an `error` event and `response.failed` when it broke. Every event
carries its `sequence_number`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard.api.responses_wire import JSONDict, Turn, new_id

# -- output items and the Response object ---------------------------------------------------


def message_item(item_id: str, text: str, status: str, refusal: str | None = None
                 ) -> JSONDict:
    content: list[JSONDict] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [],
                        "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str
                       ) -> JSONDict:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def reasoning_item(item_id: str, text: str, status: str) -> JSONDict:
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else []}


def arguments_text(value: Any) -> str:
    """A tool call's arguments as the JSON text Responses carries (a few servers send an
    object instead of its text)."""
    if type(value) is str:
        return value
    return "" if value is None else orjson.dumps(value).decode()


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """A chat message's (or delta's) reasoning: `reasoning_content`, or vLLM's `reasoning`."""
    found = message.get("reasoning_content") or message.get("reasoning")
    return found if type(found) is str else None


# finish_reason → why a response is incomplete (any other finish completes it).
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def output_items(message: Mapping[str, Any], finish_reason: str | None) -> list[JSONDict]:
    """A chat answer's message → Response output items: reasoning, message, function calls."""
    items: list[JSONDict] = []
    thinking = reasoning_text(message)
    if thinking:
        items.append(reasoning_item(new_id("rs"), thinking, "completed"))
    content = message.get("content")
    text = content if type(content) is str else "".join(
        p.get("text", "") for p in content or () if type(p) is dict)
    refusal = message.get("refusal")
    calls = message.get("tool_calls") or ()
    if text or refusal or not calls:
        status = "incomplete" if finish_reason in _INCOMPLETE else "completed"
        items.append(message_item(new_id("msg"), text, status, refusal))
    for call in calls:
        function = call.get("function") or {}
        items.append(function_call_item(new_id("fc"), call.get("id") or new_id("call"),
                                        function.get("name") or "",
                                        arguments_text(function.get("arguments")), "completed"))
    return items


def responses_usage(usage: Mapping[str, Any] | None) -> JSONDict | None:
    """Chat usage → Responses usage, with the details the SDK requires."""
    if not usage:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def response_object(turn: Turn, *, model: str, output: list[JSONDict], status: str,
                    usage: JSONDict | None = None, finish_reason: str | None = None,
                    error: JSONDict | None = None) -> JSONDict:
    incomplete = _INCOMPLETE.get(finish_reason or "")
    if incomplete and status == "completed":
        status = "incomplete"
    return {"id": turn.response_id, "object": "response", "created_at": turn.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
            "model": model, "output": output, "usage": usage, **turn.echo}


def response_from_completion(turn: Turn, completion: Mapping[str, Any], model: str
                             ) -> JSONDict:
    """A whole chat answer → the Response object."""
    choice = (completion.get("choices") or [{}])[0]
    finish = choice.get("finish_reason")
    return response_object(turn, model=model,
                           output=output_items(choice.get("message") or {}, finish),
                           status="completed", usage=responses_usage(completion.get("usage")),
                           finish_reason=finish)


def answer_message(completion: Mapping[str, Any]) -> JSONDict:
    """The assistant message a conversation keeps from a whole answer, as the backend gave it
    (its reasoning and thinking signatures reach the next turn)."""
    message = dict((completion.get("choices") or [{}])[0].get("message") or {})
    message["role"] = "assistant"
    return message


# -- a stream → events -------------------------------------------------------------------------

@dataclass(slots=True)
class _OpenText:
    """A message or reasoning item being streamed."""

    kind: str  # "message" | "reasoning"
    output_index: int
    item_id: str
    parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _OpenCall:
    output_index: int
    item_id: str
    call_id: str
    backend_id: str | None
    name: str
    parts: list[str] = field(default_factory=list)


class ResponseEvents:
    """One stream's events, built chunk by chunk; at its end, the whole Response and the
    assistant message the conversation keeps."""

    def __init__(self, turn: Turn, model: str) -> None:
        self.turn = turn
        self.model = model
        self.sequence = 0
        self.output: list[JSONDict] = []  # items in output order, replaced when done
        self.open: _OpenText | None = None
        self.calls: dict[int, _OpenCall] = {}  # by the chunks' tool-call index, still open
        self.done_calls: list[_OpenCall] = []
        self.texts: list[str] = []  # the answer's text, across its message items
        self.thinking: list[str] = []
        self.finish_reason: str | None = None

    def _event(self, kind: str, payload: JSONDict) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self.sequence
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def opening(self) -> bytes:
        response = response_object(self.turn, model=self.model, output=[], status="in_progress")
        return (self._event("response.created", {"response": response})
                + self._event("response.in_progress", {"response": response}))

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        """The events of one chat chunk (b"" for none)."""
        choices = chunk.get("choices")
        if not choices:
            return b""  # the usage chunk: the relay keeps its usage
        choice = choices[0]
        delta = choice.get("delta") or {}
        frames: list[bytes] = []
        thinking = reasoning_text(delta)
        if thinking:
            self._text("reasoning", thinking, frames)
        content = delta.get("content") or delta.get("refusal")
        if content:
            self._text("message", content, frames)
        for call in delta.get("tool_calls") or ():
            self._call(call, frames)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return b"".join(frames)

    def _open_text(self, kind: str, frames: list[bytes]) -> _OpenText:
        """The open item of `kind`, opened now (closing one of the other kind) if need be."""
        current = self.open
        if current is not None:
            if current.kind == kind:
                return current
            self._close_text(frames)
        current = self.open = _OpenText(kind, len(self.output),
                                        new_id("msg" if kind == "message" else "rs"))
        if kind == "message":
            item = message_item(current.item_id, "", "in_progress")
            item["content"] = []
            part: JSONDict = {"type": "output_text", "text": "", "annotations": [],
                              "logprobs": []}
        else:
            item = reasoning_item(current.item_id, "", "in_progress")
            part = {"type": "reasoning_text", "text": ""}
        self.output.append(item)
        frames.append(self._event("response.output_item.added",
                                  {"output_index": current.output_index, "item": item}))
        frames.append(self._event("response.content_part.added", {
            "item_id": current.item_id, "output_index": current.output_index,
            "content_index": 0, "part": part}))
        return current

    def _text(self, kind: str, piece: str, frames: list[bytes]) -> None:
        current = self._open_text(kind, frames)
        current.parts.append(piece)
        (self.texts if kind == "message" else self.thinking).append(piece)
        payload: JSONDict = {"item_id": current.item_id, "output_index": current.output_index,
                             "content_index": 0, "delta": piece}
        if kind == "message":
            payload["logprobs"] = []
            frames.append(self._event("response.output_text.delta", payload))
        else:
            frames.append(self._event("response.reasoning_text.delta", payload))

    def _close_text(self, frames: list[bytes]) -> None:
        current = self.open
        if current is None:
            return
        self.open = None
        text = "".join(current.parts)
        where = {"item_id": current.item_id, "output_index": current.output_index,
                 "content_index": 0}
        if current.kind == "message":
            status = "incomplete" if self.finish_reason in _INCOMPLETE else "completed"
            item = message_item(current.item_id, text, status)
            frames.append(self._event("response.output_text.done",
                                      {**where, "text": text, "logprobs": []}))
            frames.append(self._event("response.content_part.done",
                                      {**where, "part": item["content"][0]}))
        else:
            item = reasoning_item(current.item_id, text, "completed")
            frames.append(self._event("response.reasoning_text.done", {**where, "text": text}))
            frames.append(self._event("response.content_part.done",
                                      {**where, "part": item["content"][0]}))
        self.output[current.output_index] = item
        frames.append(self._event("response.output_item.done",
                                  {"output_index": current.output_index, "item": item}))

    def _call(self, delta: Mapping[str, Any], frames: list[bytes]) -> None:
        index = delta.get("index", 0)
        backend_id = delta.get("id")
        function = delta.get("function") or {}
        call = self.calls.get(index)
        if call is not None and backend_id and call.backend_id and backend_id != call.backend_id:
            self._close_call(index, frames)  # a server that reuses the index for a new call
            call = None
        if call is None:
            self._close_text(frames)
            call = _OpenCall(len(self.output), new_id("fc"), backend_id or new_id("call"),
                             backend_id, function.get("name") or "")
            self.calls[index] = call
            item = function_call_item(call.item_id, call.call_id, call.name, "", "in_progress")
            self.output.append(item)
            frames.append(self._event("response.output_item.added",
                                      {"output_index": call.output_index, "item": item}))
        elif not call.name and function.get("name"):
            call.name = function["name"]
        arguments = arguments_text(function.get("arguments"))
        if arguments:
            call.parts.append(arguments)
            frames.append(self._event("response.function_call_arguments.delta", {
                "item_id": call.item_id, "output_index": call.output_index,
                "delta": arguments}))

    def _close_call(self, index: int, frames: list[bytes]) -> None:
        call = self.calls.pop(index)
        arguments = "".join(call.parts)
        item = function_call_item(call.item_id, call.call_id, call.name, arguments, "completed")
        self.output[call.output_index] = item
        self.done_calls.append(call)
        frames.append(self._event("response.function_call_arguments.done", {
            "item_id": call.item_id, "output_index": call.output_index,
            "arguments": arguments}))
        frames.append(self._event("response.output_item.done",
                                  {"output_index": call.output_index, "item": item}))

    def finish(self, usage: Mapping[str, Any] | None) -> tuple[bytes, JSONDict]:
        """Close every open item: (their events, the whole Response). Its terminal event
        comes from `terminal`, once the response is stored."""
        frames: list[bytes] = []
        if not self.output:  # an empty answer is still one (empty) message
            self._open_text("message", frames)
        self._close_text(frames)
        for index in sorted(self.calls, key=lambda i: self.calls[i].output_index):
            self._close_call(index, frames)
        response = response_object(self.turn, model=self.model, output=self.output,
                                   status="completed", usage=responses_usage(usage),
                                   finish_reason=self.finish_reason)
        return b"".join(frames), response

    def terminal(self, response: JSONDict) -> bytes:
        kind = "response.completed" if response["status"] == "completed" else \
            "response.incomplete"
        return self._event(kind, {"response": response})

    def failed(self, message: str, type_: str, code: str) -> bytes:
        """The end of a stream that broke: an `error` event, then `response.failed`."""
        for item in self.output:
            if item["status"] == "in_progress":
                item["status"] = "incomplete"
        error = {"code": "server_error", "message": message, "type": type_}
        response = response_object(self.turn, model=self.model, output=self.output,
                                   status="failed", error=error)
        return (self._event("error", {"code": code, "message": message, "param": None})
                + self._event("response.failed", {"response": response}))

    def message(self) -> JSONDict:
        """The assistant message the conversation keeps (call `finish` first)."""
        calls = sorted(self.done_calls, key=lambda c: c.output_index)
        message: JSONDict = {"role": "assistant",
                             "content": "".join(self.texts) or (None if calls else "")}
        if self.thinking:
            message["reasoning_content"] = "".join(self.thinking)
        if calls:
            message["tool_calls"] = [
                {"id": c.call_id, "type": "function",
                 "function": {"name": c.name, "arguments": "".join(c.parts)}} for c in calls]
        return message
