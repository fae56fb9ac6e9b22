"""The tool_filter plugin: the backend gets the k tools nearest the current turn, plus the ones
the conversation already called, the ones `tool_choice` names and the ones listed in `keep`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from routerproc import start_router
from scripted_backend import Reply, scripted_backend

from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.plugins import PLUGINS, PluginContext
from routeyard.plugins.tool_filter import (
    TOOLS_HEADER,
    ToolFilterPlugin,
    called_tools,
    query_parts,
)
from routeyard.router import Router
from routeyard.signals import RequestContext
from routeyard.state import MemoryStore

DESCRIPTIONS = {
    "get_weather": "Get the current weather forecast, temperature and rain for a city.",
    "send_email": "Send an email message to a recipient with a subject and body.",
    "create_calendar_event": "Create a meeting or appointment in the user's calendar.",
    "search_flights": "Search for airline flights between two airports on a date.",
    "book_hotel": "Book a hotel room in a city for given check-in and check-out dates.",
    "convert_currency": "Convert an amount of money from one currency to another.",
    "get_stock_price": "Get the latest share price of a company listed on a stock exchange.",
    "translate_text": "Translate a text from one language into another language.",
    "play_music": "Play a song, album or playlist on the user's speakers.",
    "set_alarm": "Set an alarm clock to ring at a given time.",
    "order_pizza": "Order a pizza for delivery with chosen toppings and size.",
    "read_file": "Read the contents of a file from the local disk.",
    "write_file": "Write text contents to a file on the local disk.",
    "run_sql_query": "Run a SQL query against the company database and return the rows.",
    "get_directions": "Get driving or walking directions between two addresses.",
    "calculate_mortgage": "Calculate the monthly payment of a home mortgage loan.",
    "find_recipe": "Find cooking recipes that use the given ingredients.",
    "check_bank_balance": "Check the balance of the user's bank account.",
    "create_github_issue": "Open a new issue in a GitHub repository with a title and body.",
    "get_news_headlines": "Get today's top news headlines for a topic or country.",
    "reserve_restaurant": "Reserve a table at a restaurant for a number of people.",
    "track_package": "Track the delivery status of a parcel by its tracking number.",
    "get_movie_showtimes": "List cinema showtimes for a movie near a location.",
    "turn_on_lights": "Turn on the smart lights in a room of the house.",
    "set_thermostat": "Set the heating thermostat of the house to a temperature.",
    "lookup_word_definition": "Look up the dictionary definition of an English word.",
    "get_sports_scores": "Get the latest scores of football, basketball or tennis games.",
    "schedule_doctor_visit": "Schedule an appointment with a doctor at a clinic.",
    "compute_bmi": "Compute the body mass index from height and weight.",
    "post_tweet": "Publish a short post on the user's social media account.",
}


def tool(name: str, description: str | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description or DESCRIPTIONS[name],
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


TOOLS = [tool(name) for name in DESCRIPTIONS]


def names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] if "function" in t else t["type"] for t in tools]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def ctx_for(body: dict[str, Any]) -> PluginContext:
    body = {"model": "m", **body}
    return PluginContext("req_1", "d", "m", RequestContext(body), None, dict(body), {}, False)


async def run(plugin: Any, body: dict[str, Any]) -> PluginContext:
    ctx = ctx_for(body)
    assert plugin.on_request(ctx) is None
    answer = await plugin.on_request_async(ctx)
    assert answer is None
    return ctx


def build(**options: Any) -> ToolFilterPlugin:
    return PLUGINS["tool_filter"](options)


async def test_keeps_the_k_most_relevant_tools_in_the_clients_order() -> None:
    plugin = build(k=3)
    ctx = await run(plugin, {"messages": [user("Will it rain in Paris tomorrow? I need the "
                                               "weather forecast.")], "tools": TOOLS})
    kept = names(ctx.body["tools"])
    assert len(kept) == 3 and "get_weather" in kept
    assert kept == [n for n in DESCRIPTIONS if n in kept]  # the client's order
    assert ctx.headers[TOOLS_HEADER] == f"3/{len(TOOLS)}"
    assert ctx.request.body["tools"] == TOOLS  # the client's request is untouched

    ctx = await run(plugin, {"messages": [user("Book me a hotel room in Rome for two nights")],
                             "tools": TOOLS})
    assert "book_hotel" in names(ctx.body["tools"])
    assert len(plugin.cache) == len(TOOLS)  # the list was embedded once, then reused


async def test_tools_called_earlier_in_the_conversation_are_kept() -> None:
    messages = [
        user("Email Bob the weather forecast for Oslo"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "send_email", "arguments": "{}"}},
            {"id": "c2", "type": "function",
             "function": {"name": "compute_bmi", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sent"},
        {"role": "tool", "tool_call_id": "c2", "content": "22.5"},
        user("Now what is the weather forecast in Oslo today?"),
    ]
    ctx = await run(build(k=2), {"messages": messages, "tools": TOOLS})
    kept = names(ctx.body["tools"])
    assert {"send_email", "compute_bmi", "get_weather"} <= set(kept)
    assert len(kept) == 4  # the called tools do not use up k


def test_called_tools_reads_openai_legacy_and_anthropic_shapes() -> None:
    messages = [
        {"role": "assistant", "tool_calls": [{"function": {"name": "a"}}]},
        {"role": "assistant", "function_call": {"name": "b", "arguments": "{}"}},
        {"role": "assistant", "content": [{"type": "text", "text": "x"},
                                          {"type": "tool_use", "name": "c", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_use", "name": "not-an-assistant"}]},
        "junk", {"role": "assistant", "tool_calls": "junk"},
    ]
    assert called_tools(messages) == {"a", "b", "c"}


async def test_the_tool_named_by_tool_choice_and_keep_are_kept() -> None:
    body = {"messages": [user("What's the weather in Lima?")], "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "order_pizza"}}}
    kept = names((await run(build(k=1, keep=["post_tweet"]), body)).body["tools"])
    assert sorted(kept) == ["get_weather", "order_pizza", "post_tweet"]
    body["tool_choice"] = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "set_alarm"}}]}}
    kept = names((await run(build(k=1), body)).body["tools"])
    assert sorted(kept) == ["get_weather", "set_alarm"]


async def test_the_current_turn_is_the_last_user_or_tool_message() -> None:
    messages = [user("Play some jazz music"),
                {"role": "assistant", "content": "ok"},
                {"role": "tool", "tool_call_id": "x",
                 "content": "Error: the parcel tracking number is invalid, track the package "
                            "delivery again"}]
    kept = names((await run(build(k=1), {"messages": messages, "tools": TOOLS})).body["tools"])
    assert kept == ["track_package"]


async def test_a_turn_asking_for_two_things_keeps_a_tool_for_each() -> None:
    turn = "What can I cook with leeks and potatoes? Wake me at 6:30 tomorrow."
    assert query_parts(turn) == [turn, "What can I cook with leeks and potatoes?",
                                 "Wake me at 6:30 tomorrow."]
    # The whole turn's embedding alone ranks get_directions above set_alarm here.
    kept = names((await run(build(k=2), {"messages": [user(turn)], "tools": TOOLS})).body[
        "tools"])
    assert sorted(kept) == ["find_recipe", "set_alarm"]
    assert query_parts("Thanks. Book it.") == ["Thanks. Book it."]  # nothing worth a part


async def test_short_lists_and_turns_without_text_are_left_alone() -> None:
    few = {"messages": [user("weather?")], "tools": TOOLS[:10]}
    ctx = await run(build(k=3, min_tools=10), few)
    assert ctx.body["tools"] == TOOLS[:10] and TOOLS_HEADER not in ctx.headers
    image = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}],
        "tools": TOOLS}
    assert (await run(build(k=3), image)).body["tools"] == TOOLS
    for bad in ("junk", [1, 2, 3] * 10, None):  # malformed lists are the backend's to refuse
        assert (await run(build(k=3), {"messages": [user("hi")], "tools": bad})).body[
            "tools"] == bad


async def test_tools_without_a_name_are_always_kept() -> None:
    server_tools = [{"type": "web_search"}, {"type": "code_interpreter"}]
    body = {"messages": [user("convert 10 euros to dollars")], "tools": [*server_tools, *TOOLS]}
    kept = (await run(build(k=1), body)).body["tools"]
    assert names(kept) == ["web_search", "code_interpreter", "convert_currency"]


async def test_a_thousand_tools_are_bounded_and_cached_in_a_bounded_lru() -> None:
    many = [tool(f"tool_{i}_widget", f"Handles widget number {i} of the inventory.")
            for i in range(997)] + TOOLS[:3]
    plugin = build(k=5, cache_size=600)
    body = {"messages": [user("What is the weather forecast for Paris?")], "tools": many}
    started = time.perf_counter()
    ctx = await run(plugin, body)
    assert len(ctx.body["tools"]) == 5 and "get_weather" in names(ctx.body["tools"])
    assert ctx.headers[TOOLS_HEADER] == "5/1000"
    assert len(plugin.cache) == 600  # bounded: the least recently used were dropped
    assert time.perf_counter() - started < 10

    # Beyond max_tools: a clean refusal, before anything is embedded.
    ctx = ctx_for({**body, "tools": many * 2})
    answer = await build(max_tools=1_500).on_request_async(ctx)
    assert answer is not None and answer.status == "error" and answer.reason == "too_many_tools"
    assert "2000 tools exceed" in answer.message and "1500" in answer.message


async def test_embedding_a_new_list_does_not_block_the_event_loop() -> None:
    many = [tool(f"fresh_{i}", f"Fresh tool {i} that files report number {i}.")
            for i in range(1_000)]
    plugin = build(k=5)
    await run(plugin, {"messages": [user("warm up")], "tools": TOOLS})  # loads the model
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await run(plugin, {"messages": [user("file a report")], "tools": many})
    task.cancel()
    assert ticks > 1  # the loop kept running while the thousand tools were embedded


@pytest.mark.parametrize("options", [{"k": 0}, {"k": "5"}, {"k": True}, {"keep": "a"},
                                     {"keep": [""]}, {"min_tools": -1}, {"max_tools": 0},
                                     {"cache_size": 0}, {"top": 3}])
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(**options)


def test_bad_options_name_the_decision() -> None:
    raw = {"models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}],
           "default": {"candidates": ["m"], "plugins": [{"type": "tool_filter", "k": -2}]}}
    with pytest.raises((ConfigError, ValueError), match=r"tool_filter\): k must be"):
        Router(build_config(raw), store=MemoryStore())


# -- end to end: routeyard serve, the openai SDK, a backend that records what it got -----------

def test_the_backend_gets_the_filtered_tools(tmp_path: Path) -> None:
    with scripted_backend() as backend:
        config = {
            "models": [{"name": "m", "endpoints": [{"base_url": backend.url}],
                        "capabilities": {"tools": True}}],
            "default": {"candidates": ["m"], "plugins": [
                {"type": "tool_filter", "k": 4, "max_tools": 1_000}]},
            "pool": {"health_check": {"interval_s": 0}},
        }
        with start_router(config, tmp_path) as gateway:
            client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0,
                                   timeout=30)
            backend.replies.append(Reply(tool_calls=[("call_1", "set_alarm", "{}")]))
            messages: list[Any] = [user("Wake me up at 7 tomorrow, set an alarm clock")]
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
            reply = raw.parse()
            sent = names(backend.received[-1]["tools"])
            assert len(sent) == 4 and "set_alarm" in sent
            assert raw.headers[TOOLS_HEADER] == f"4/{len(TOOLS)}"

            # Next turn, streamed: the called tool stays although the turn is about news.
            messages += [reply.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": "call_1", "content": "alarm set"},
                         user("And give me today's top news headlines")]
            stream = client.chat.completions.create(model="auto", messages=messages,
                                                    tools=TOOLS, stream=True)  # type: ignore
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            sent = names(backend.received[-1]["tools"])
            assert {"set_alarm", "get_news_headlines"} <= set(sent) and len(sent) == 5

            # The Responses API's flat tools are filtered in their translated form.
            flat = [{"type": "function", "name": n, "description": d,
                     "parameters": {"type": "object", "properties": {}}}
                    for n, d in DESCRIPTIONS.items()]
            client.responses.create(model="auto", input="Check my bank account balance",
                                    tools=flat)  # type: ignore[arg-type]
            sent = names(backend.received[-1]["tools"])
            assert len(sent) == 4 and "check_bank_balance" in sent

            # Too many tools: an OpenAI 400, and no backend call.
            calls = len(backend.received)
            many = [tool(f"t{i}", f"tool {i}") for i in range(1_001)]
            with pytest.raises(openai.BadRequestError) as error:
                client.chat.completions.create(model="auto", messages=messages,
                                               tools=many)  # type: ignore[arg-type]
            assert "1001 tools exceed" in str(error.value)
            assert len(backend.received) == calls


def test_anthropic_clients_keep_the_tools_they_used(tmp_path: Path) -> None:
    """Through /v1/messages: the translated body is filtered, a `tool_use` of an earlier turn
    keeps its tool, and too many tools is an Anthropic-shaped 400."""
    import anthropic

    with scripted_backend() as backend:
        config = {
            "models": [{"name": "m", "endpoints": [{"base_url": backend.url}],
                        "capabilities": {"tools": True}}],
            "default": {"candidates": ["m"], "plugins": [{"type": "tool_filter", "k": 2}]},
            "pool": {"health_check": {"interval_s": 0}},
        }
        with start_router(config, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0,
                                         timeout=30)
            tools = [{"name": n, "description": d, "input_schema": {"type": "object"}}
                     for n, d in DESCRIPTIONS.items()]
            messages: list[Any] = [
                user("What is my body mass index? I am 180 cm and 75 kg"),
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "compute_bmi", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "23.1"},
                    {"type": "text", "text": "Now translate 'good morning' into Spanish"}]}]
            reply = client.messages.create(model="auto", max_tokens=64, messages=messages,
                                           tools=tools)  # type: ignore[arg-type]
            assert reply.content
            sent = names(backend.received[-1]["tools"])
            assert "compute_bmi" in sent and "translate_text" in sent and len(sent) == 3

            many = [{"name": f"t{i}", "description": f"tool {i}",
                     "input_schema": {"type": "object"}} for i in range(1_100)]
            with pytest.raises(anthropic.BadRequestError) as error:
                client.messages.create(model="auto", max_tokens=64, messages=messages[:1],
                                       tools=many)  # type: ignore[arg-type]
            assert error.value.body["type"] == "error"  # type: ignore[index]
            assert "1100 tools exceed" in str(error.value)
