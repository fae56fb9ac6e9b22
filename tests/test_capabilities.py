"""What a request needs (`Needs`) and how planning skips the models that cannot serve it: pure
logic through a real Router's planner, no network. The HTTP side is in
test_capabilities_http.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.errors import CapabilityMissing, ContextTooLong
from routeyard.serving.planner import Needs
from routeyard.state import MemoryStore

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
SCHEMA = {"type": "json_schema",
          "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def chat(content: Any = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}


# -- Needs -------------------------------------------------------------------------------------


def test_a_plain_request_needs_nothing() -> None:
    needs = Needs.of(chat())
    assert needs == Needs() and needs.wanted == () and needs.output_tokens == 0


@pytest.mark.parametrize("body, wanted", [
    (chat([{"type": "text", "text": "what is this?"}, IMAGE]), ("vision",)),
    (chat([{"type": "input_image", "image_url": "https://x.test/a.png"}]), ("vision",)),
    (chat(tools=[TOOL]), ("tools",)),
    (chat(functions=[{"name": "lookup"}]), ("tools",)),
    # The tools are still sent with tool_choice none: they still need a model that takes them.
    (chat(tools=[TOOL], tool_choice="none"), ("tools",)),
    (chat(response_format=SCHEMA), ("structured_output",)),
    (chat(reasoning_effort="low"), ("reasoning",)),
    (chat(thinking={"type": "enabled", "budget_tokens": 2048}), ("reasoning",)),
    (chat([IMAGE], tools=[TOOL], response_format=SCHEMA, reasoning_effort="high"),
     ("vision", "tools", "structured_output", "reasoning")),
])
def test_needs_are_read_from_the_body(body: dict[str, Any], wanted: tuple[str, ...]) -> None:
    needs = Needs.of(body)
    assert needs.wanted == wanted
    assert all(getattr(needs, capability) for capability in wanted)


@pytest.mark.parametrize("body", [
    chat(tools=[]),  # an empty list asks for nothing
    chat(tools=None, functions=[]),
    chat(response_format={"type": "json_object"}),  # JSON mode is not a schema
    chat(response_format="json_schema"),  # not even an object
    chat(reasoning_effort=None),
    chat(reasoning_effort="none"),  # asks for no reasoning: any model gives that
    chat(thinking={"type": "disabled"}),
    chat(thinking="yes"),
    chat([{"type": "text", "text": "no image here"}, "a bare string", 7, None]),
    chat([{"type": "image_url_like"}]),
    {"model": "auto", "messages": ["not a message", {"role": "user"}]},
])
def test_lookalikes_and_junk_need_nothing(body: dict[str, Any]) -> None:
    assert Needs.of(body).wanted == ()


@pytest.mark.parametrize("extra, expected", [
    ({"max_tokens": 500}, 500),
    ({"max_completion_tokens": 700}, 700),
    ({"max_completion_tokens": 700, "max_tokens": 500}, 700),  # the newer name wins
    ({"max_tokens": True}, 0),  # a bool is not a count
    ({"max_tokens": "500"}, 0),
    ({"max_tokens": -3}, 0),
])
def test_output_tokens(extra: dict[str, Any], expected: int) -> None:
    assert Needs.of(chat(**extra)).output_tokens == expected


# -- planning ----------------------------------------------------------------------------------


def router(decisions: list[dict[str, Any]], default: dict[str, Any]) -> Router:
    endpoint = [{"base_url": "http://127.0.0.1:9/v1"}]

    def model(name: str, window: int = 100_000, **capabilities: bool) -> dict[str, Any]:
        return {"name": name, "context_window": window, "capabilities": capabilities,
                "endpoints": endpoint}

    return Router(build_config({
        "models": [model("plain"), model("eye", vision=True), model("hands", tools=True),
                   model("strict", structured_output=True), model("thinker", reasoning=True),
                   model("narrow", 300, vision=True, tools=True),
                   model("all", vision=True, tools=True, structured_output=True,
                         reasoning=True)],
        "decisions": decisions,
        "default": default,
    }), store=MemoryStore())


async def test_candidates_that_cannot_serve_are_skipped_before_selection() -> None:
    r = router([], {"candidates": ["plain", "hands", "eye", "all"]})
    plan = await r.plan(chat([IMAGE]), explain=True)
    assert [m.name for m in plan.models] == ["eye", "all"]
    assert plan.skipped == [{"model": "plain", "reason": "no vision"},
                            {"model": "hands", "reason": "no vision"}]
    assert plan.explanation["skipped"] == plan.skipped
    assert plan.explanation["fallback"] == ["all"]
    both = await r.plan(chat([IMAGE], tools=[TOOL]))
    assert [m.name for m in both.models] == ["all"]
    assert both.skipped[1:] == [{"model": "hands", "reason": "no vision"},
                                {"model": "eye", "reason": "no tools"}]
    assert both.skipped[0] == {"model": "plain", "reason": "no vision, no tools"}


async def test_a_plain_request_skips_nothing() -> None:
    r = router([], {"candidates": ["plain", "eye"]})
    plan = await r.plan(chat(), explain=True)
    assert [m.name for m in plan.models] == ["plain", "eye"]
    assert plan.skipped == [] and plan.explanation["skipped"] == []


async def test_fallbacks_are_checked_too() -> None:
    r = router([], {"candidates": ["plain"], "fallback": ["hands", "eye", "all"]})
    plan = await r.plan(chat([IMAGE]))
    assert [m.name for m in plan.models] == ["eye", "all"]
    assert "the first fallback that can" in plan.reason
    assert [s["model"] for s in plan.skipped] == ["plain", "hands"]


async def test_prompt_plus_max_tokens_must_fit_the_window() -> None:
    r = router([], {"candidates": ["narrow", "plain"]})
    assert (await r.plan(chat("hi", max_tokens=200))).model == "narrow"
    plan = await r.plan(chat("hi", max_tokens=400))
    assert plan.model == "plain"
    (skip,) = plan.skipped
    assert skip["model"] == "narrow"
    assert skip["reason"].startswith("context window 300 < ")
    needed = int(skip["reason"].split(" < ")[1].split()[0])
    assert needed > 400  # the prompt and the answer's room
    assert (await r.plan(chat("hi", max_completion_tokens=400))).model == "plain"


async def test_nothing_can_serve_names_the_missing_capability() -> None:
    r = router([{"name": "words", "when": {"keywords_any": ["words"]},
                 "candidates": ["plain", "hands"], "fallback": ["narrow"]}],
               {"candidates": ["all"]})
    with pytest.raises(CapabilityMissing) as caught:
        await r.plan(chat([{"type": "text", "text": "words"}, IMAGE], max_tokens=1000))
    error = caught.value
    assert error.status == 400 and error.code == "capability_missing"
    assert error.param == "messages"
    found = re.search(r"a context window of (\d+) tokens", error.message)
    assert found is not None and int(found[1]) > 1000  # the prompt and max_tokens
    needed = found[1]
    assert error.message == (
        f"no model of decision 'words' supports vision (images in the request) and a context "
        f"window of {needed} tokens: skipped plain (no vision), hands (no vision), narrow "
        f"(context window 300 < {needed} tokens).")
    with pytest.raises(CapabilityMissing) as caught:
        await r.plan(chat("words", response_format=SCHEMA))
    assert caught.value.param == "response_format"
    assert "supports structured_output (a json_schema response_format)" in caught.value.message
    with pytest.raises(CapabilityMissing) as caught:
        await r.plan(chat("words", reasoning_effort="medium"))
    assert caught.value.param == "reasoning_effort"
    assert "thinker" not in caught.value.message  # not in the decision: never considered


async def test_only_the_window_missing_is_still_context_length_exceeded() -> None:
    r = router([], {"candidates": ["narrow"]})
    with pytest.raises(ContextTooLong) as caught:
        await r.plan(chat("hi", max_tokens=5000))
    assert caught.value.code == "context_length_exceeded"
    assert "asks for up to 5000 more in the answer" in caught.value.message


async def test_a_named_model_that_cannot_serve_is_a_400() -> None:
    r = router([], {"candidates": ["all"]})
    with pytest.raises(CapabilityMissing) as caught:
        await r.plan({**chat([IMAGE], tools=[TOOL]), "model": "eye"})
    assert caught.value.message == \
        "the model 'eye' does not support tools (tools in the request)."
    assert caught.value.param == "tools"
    with pytest.raises(ContextTooLong) as too_long:
        await r.plan({**chat("hi", max_tokens=300), "model": "narrow"})
    assert "'narrow' takes at most 300" in too_long.value.message
    plan = await r.plan({**chat([IMAGE]), "model": "eye"})
    assert plan.model == "eye" and plan.skipped == []


async def test_a_client_reasoning_effort_disqualifies_but_a_configured_one_does_not() -> None:
    # `plain` has no reasoning, yet its decision sets an effort for it: it is still chosen.
    r = router([], {"candidates": [{"model": "plain", "reasoning_effort": "high"}, "eye"],
                    "fallback": ["thinker"]})
    plan = await r.plan(chat())
    assert plan.model == "plain" and plan.reasoning_effort == "high"
    # The body sent carries that effort to every failover target: `eye` cannot take it.
    assert [m.name for m in plan.models] == ["plain", "thinker"]
    assert plan.skipped == [{"model": "eye", "reason": "no reasoning (as a failover target it "
                                                        "would get the reasoning_effort 'high' "
                                                        "set for plain)"}]
    # A client's own effort is what is sent (the decision's is not), and it needs reasoning.
    client = await r.plan(chat(reasoning_effort="low"))
    assert [m.name for m in client.models] == ["thinker"]
    assert [s["model"] for s in client.skipped] == ["plain", "eye"]
    # The client asked for no reasoning: the decision's effort is not added, nothing skipped.
    none = await r.plan(chat(reasoning_effort="none"))
    assert [m.name for m in none.models] == ["plain", "eye", "thinker"]


async def test_a_preferred_model_that_cannot_serve_is_not_kept() -> None:
    r = router([], {"candidates": ["plain", "eye"]})
    assert (await r.plan(chat(), prefer="eye")).model == "eye"
    assert (await r.plan(chat([IMAGE]), prefer="plain")).model == "eye"


async def test_selection_algorithms_only_see_models_that_can_serve() -> None:
    # cheapest would pick `plain` (free) over `all`: it never sees it for an image.
    r = router([], {"candidates": ["plain", "all"], "algorithm": "cheapest"})
    plan = await r.plan(chat([IMAGE]))
    assert plan.model == "all" and [m.name for m in plan.models] == ["all"]
