"""What a continuation sends, and when a broken stream is not continued: `routeyard serve` over
two scripted backends that record every request body (the simulator cannot say what it was
sent, nor stream tool calls or reasoning), through the openai SDK."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from continuation_setup import openai_client, router_config
from routerproc import RouterProcess, start_router
from scripted_backend import Reply, ScriptedBackend, scripted_backend

from routeyard.pool.providers.anthropic import to_anthropic_request

CFM = "continue_final_message"
ABLE = {"capabilities": {"tools": True, "reasoning": True}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def scripted_model(name: str, url: str, continuation: str) -> dict[str, Any]:
    return {"name": name, "continuation": continuation, **ABLE,
            "endpoints": [{"base_url": url, "upstream_model": name, "name": name}]}


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[ScriptedBackend, ScriptedBackend]]:
    with scripted_backend() as first, scripted_backend() as second:
        yield first, second


@pytest.fixture(autouse=True)
def fresh(backends: tuple[ScriptedBackend, ScriptedBackend]) -> None:
    for backend in backends:
        backend.received.clear()
        backend.replies.clear()


@pytest.fixture(scope="module")
def gateway(backends: tuple[ScriptedBackend, ScriptedBackend],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    first, second = backends
    config = router_config([scripted_model("first", first.url, CFM),
                            scripted_model("second", second.url, CFM),
                            scripted_model("cannot", second.url, "none"),
                            scripted_model("third", first.url, CFM)],
                           candidates=["first"], fallback=["second"])
    config["decisions"] = [{"name": "retry-only", "when": {"keywords_any": ["retry"]},
                            "candidates": ["first"], "fallback": ["cannot"]},
                           {"name": "chain", "when": {"keywords_any": ["chain"]},
                            "candidates": ["first"], "fallback": ["second", "third"]}]
    with start_router(config, tmp_path_factory.mktemp("safety")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai_client(gateway)


def streamed(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any
             ) -> tuple[str, list[Any]]:
    chunks = list(client.chat.completions.create(model="auto", messages=messages,
                                                 stream=True, **extra))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


USER = [{"role": "user", "content": "what is the answer?"}]


def test_the_continuation_carries_the_partial_answer_in_its_models_shape(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    first, second = backends
    # Streamed four characters a chunk after the role chunk: "The " "answ", then cut.
    first.replies.append(Reply(content="The answer is 42.", break_after=3))
    second.replies.append(Reply(content="er is 42."))
    text, chunks = streamed(client, USER, max_tokens=100, reasoning_effort="low")
    assert text == "The answer is 42."
    assert len({c.id for c in chunks}) == 1
    sent = second.received[-1]
    assert sent["messages"] == [*USER, {"role": "assistant", "content": "The answ"}]
    assert (sent["continue_final_message"], sent["add_generation_prompt"]) == (True, False)
    assert sent["max_tokens"] == 98  # what was already said is taken off the limit
    assert "reasoning_effort" not in sent  # the reasoning was over: the text had begun
    assert sent["stream"] is True and sent["model"] == "second"


def test_a_continuation_that_breaks_too_is_continued_again(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    first, second = backends
    first.replies += [Reply(content="The answer is 42.", break_after=3),  # "The answ"
                      Reply(content="s 42.")]  # the third model, on the first backend
    second.replies.append(Reply(content="er is 42.", break_after=2))  # "er i"
    messages = [{"role": "user", "content": "a chain of breaks"}]
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=messages, stream=True)
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "The answer is 42."
    assert len({c.id for c in chunks}) == 1
    trailer = next(c.model_extra["routeyard"]["continued"] for c in chunks
                   if c.model_extra and "routeyard" in c.model_extra)
    assert [(h["from"], h["to"], h["after_chars"]) for h in trailer] == [
        ("first", "second", len("The answ")), ("second", "third", len("The answer i"))]
    assert first.received[-1]["messages"][-1] == {"role": "assistant",
                                                  "content": "The answer i"}


def test_the_clients_own_prefill_is_continued_with_the_partial_answer(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    first, second = backends
    first.replies.append(Reply(content="The answer", break_after=2))
    second.replies.append(Reply(content="answer"))
    prefill = [*USER, {"role": "assistant", "content": "Sure: "}]
    text, _ = streamed(client, prefill)
    assert text == "The answer"
    assert second.received[-1]["messages"][-1] == {"role": "assistant",
                                                   "content": "Sure: The "}


def test_whitespace_at_the_seam_is_not_repeated(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    first, second = backends
    first.replies.append(Reply(content="abc def ghi", break_after=2))  # "abc " then cut
    second.replies.append(Reply(content="  def ghi"))  # a backend that starts with a space
    text, _ = streamed(client, USER)
    assert text == "abc def ghi"


@pytest.mark.parametrize("reply", [
    Reply(tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')], break_after=3),
    Reply(content="Let me check", tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')],
          break_after=5),
    Reply(reasoning="thinking it over", content="It is 42.", break_after=3),
    Reply(reasoning="thinking it over", content="It is 42.", break_after=8),
], ids=["tool-call-cut", "text-then-tool-call-cut", "mid-reasoning", "text-after-reasoning"])
def test_a_stream_that_showed_more_than_text_ends_with_the_error_event(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI,
        reply: Reply) -> None:
    first, second = backends
    first.replies.append(reply)
    with pytest.raises(openai.APIError) as caught:
        streamed(client, USER, tools=TOOLS)
    assert "stream broke" in str(caught.value)
    assert second.received == []  # nothing was asked to continue it


def test_several_choices_are_not_continued(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    first, second = backends
    first.replies.append(Reply(content="The answer is 42.", break_after=3))
    with pytest.raises(openai.APIError):
        streamed(client, USER, n=2)
    assert second.received == []


def test_a_stream_broken_before_any_text_is_asked_again_of_any_alternative(
        backends: tuple[ScriptedBackend, ScriptedBackend], client: openai.OpenAI) -> None:
    """Only the role chunk went out: nothing to continue, so the request goes as it was, even
    to a model that cannot continue."""
    first, second = backends
    first.replies.append(Reply(content="lost", break_after=1))
    second.replies.append(Reply(content="The answer is 42."))
    messages = [{"role": "user", "content": "retry if you must"}]
    text, chunks = streamed(client, messages)
    assert text == "The answer is 42."
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role
            ] == ["assistant"]
    sent = second.received[-1]
    assert sent["messages"] == messages and "continue_final_message" not in sent
    assert sent["model"] == "cannot"


class _CutAfterFinish(socketserver.StreamRequestHandler):
    """Streams a whole answer, its finish reason included, then drops the connection before
    `[DONE]` and before the chunked body's end: the backend dies just after answering."""

    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):  # the request head; body unread
            pass
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
        for delta, finish in (({"role": "assistant", "content": ""}, None),
                              ({"content": "All of it."}, None), ({}, "stop")):
            chunk = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1,
                     "model": "m", "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish}]}
            frame = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.wfile.flush()


def test_a_stream_cut_after_its_finish_reason_ends_well(
        backends: tuple[ScriptedBackend, ScriptedBackend], tmp_path: Path) -> None:
    """Nothing is left to continue, and nothing to complain of: the client gets the whole
    answer with no error event, and no alternative is asked."""
    _, second = backends
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CutAfterFinish) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = router_config([scripted_model("first", url, CFM),
                                scripted_model("second", second.url, CFM)],
                               candidates=["first"], fallback=["second"])
        try:
            with start_router(config, tmp_path) as gateway:
                text, chunks = streamed(openai_client(gateway), USER)
        finally:
            server.shutdown()
    assert text == "All of it."
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, "stop"]
    assert second.received == []


@pytest.mark.parametrize(("assistant", "sent"), [
    ("The answer is ", "The answer is"),
    ([{"type": "text", "text": "The"}, {"type": "text", "text": " answer\n"}],
     [{"type": "text", "text": "The"}, {"type": "text", "text": " answer"}]),
    ("   ", None),  # nothing left to continue from: the user's turn is last
])
def test_an_anthropic_prefill_is_sent_without_trailing_whitespace(
        assistant: Any, sent: Any) -> None:
    """Anthropic refuses a final assistant turn that ends in whitespace; the seam's whitespace
    is dropped from the continuation instead (test_whitespace_at_the_seam_is_not_repeated)."""
    body = {"model": "m", "messages": [*USER, {"role": "assistant", "content": assistant}]}
    messages = to_anthropic_request(body, "claude")["messages"]
    if sent is None:
        assert messages == [{"role": "user", "content": USER[0]["content"]}]
    else:
        assert messages[-1] == {"role": "assistant", "content": sent}
