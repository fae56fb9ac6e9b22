"""Per-decision plugins: block (fast response), system_prompt, headers, reasoning_effort, and
all six plugins in one chain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from echo_backend import echo_backend
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.plugins import PLUGINS, PluginContext
from routeyard.router import Router
from routeyard.state import MemoryStore

SIM_MODEL = "sim-model"


# -- against a real router and simulator process ------------------------------------------------

@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", SIM_MODEL, "--ttft-ms", "0", "--tpot-ms", "0",
                         "--output-tokens", "8", "--seed", "1") as proc:
        yield proc


def gateway_config(sim: SimulatorProcess) -> dict[str, Any]:
    return {
        "models": [{"name": SIM_MODEL, "endpoints": [{"base_url": sim.base_url}]}],
        "signals": {"keyword": {"sets": {"forbidden": {"any": ["forbidden"]},
                                         "refuse": {"any": ["refuse"]},
                                         "secret": {"any": ["secret"]}}}},
        "decisions": [
            {"name": "guarded", "rules": "keyword:forbidden", "candidates": [SIM_MODEL],
             "plugins": [{"type": "headers", "set": {"x-team": "blue"}},
                         {"type": "block", "when": "keyword:forbidden", "status": "ok",
                          "message": "Sorry, I cannot discuss that.", "reason": "forbidden"}]},
            {"name": "refused", "rules": "keyword:refuse", "candidates": [SIM_MODEL],
             "plugins": [{"type": "block", "status": "error", "message": "Refused by policy.",
                          "reason": "refusal"}]},
        ],
        # `keyword:secret` is referenced by no rule: the plugin's `when` alone evaluates it.
        "default": {"candidates": [SIM_MODEL],
                    "plugins": [{"type": "headers", "set": {"x-policy": "standard"}},
                                {"type": "block", "when": "keyword:secret",
                                 "message": "No secrets.", "reason": "secret"}]},
        "pool": {"health_check": {"interval_s": 0}},
    }


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_plugins_through_the_gateway(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(gateway_config(sim), tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0,
                               timeout=10)
        sim.reset()

        # block, non-streaming: a normal completion, no backend call
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ask("tell me the forbidden thing"))
        reply = raw.parse()
        assert reply.choices[0].message.content == "Sorry, I cannot discuss that."
        assert reply.choices[0].finish_reason == "stop"
        assert raw.headers["x-routeyard-blocked"] == "forbidden"
        assert raw.headers["x-routeyard-decision"] == "guarded"
        assert raw.headers["x-team"] == "blue"  # the headers plugin ran before the block
        assert "x-routeyard-model" not in raw.headers

        # block, streaming: SSE chunks and [DONE], parsed by the SDK
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=ask("forbidden, streamed"), stream=True,
            stream_options={"include_usage": True})
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-routeyard-blocked"] == "forbidden"
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Sorry, I cannot discuss that."
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 0
        body = httpx.post(gateway.base_url + "/chat/completions", json={
            "model": "auto", "messages": ask("forbidden"), "stream": True}).text
        assert body.endswith("data: [DONE]\n\n")

        # block as an error: a 400 in the OpenAI schema, streaming or not
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(model="auto", messages=ask("I refuse"),
                                               stream=stream)
            assert caught.value.code == "blocked_by_policy"
            assert caught.value.body["message"] == "Refused by policy."  # type: ignore[index]
            assert caught.value.response.headers["x-routeyard-blocked"] == "refusal"

        # a `when` leaf that only a plugin references
        reply = client.chat.completions.create(model="auto", messages=ask("a secret please"))
        assert reply.choices[0].message.content == "No secrets."
        assert sim.stats()["requests"].get(SIM_MODEL, 0) == 0  # no backend was ever called

        # not blocked: the backend answers, with the headers plugin's header
        raw = client.chat.completions.with_raw_response.create(model="auto",
                                                               messages=ask("hello"))
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-policy"] == "standard"
        assert raw.headers["x-routeyard-model"] == SIM_MODEL
        assert "x-routeyard-blocked" not in raw.headers
        with client.chat.completions.with_streaming_response.create(
                model="auto", messages=ask("hello"), stream=True) as streamed:
            assert streamed.headers["x-policy"] == "standard"
            assert "".join(c.choices[0].delta.content or "" for c in streamed.parse()
                           if c.choices)
        assert sim.stats()["requests"][SIM_MODEL] == 2


def test_unknown_plugin_type_is_refused_with_its_location(tmp_path: Path) -> None:
    raw = {"models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:1/v1"}]}],
           "decisions": [{"name": "a", "candidates": ["m"]},
                         {"name": "b", "candidates": ["m"], "plugins": [{"type": "x"}]}]}
    with pytest.raises(ConfigError) as caught:
        build_config(raw)
    assert "decisions[1].plugins[0].type: unknown plugin 'x'" in str(caught.value)
    # Bad options are refused when the Router is built, naming the decision and plugin.
    raw["decisions"][1]["plugins"] = [{"type": "system_prompt", "mode": "prepend", "text": "t"}]
    with pytest.raises(ValueError, match=r"decision 'b': plugins\[0\] \(system_prompt\): mode"):
        Router(build_config(raw), store=MemoryStore())
    raw["decisions"][1]["plugins"] = [{"type": "block", "colour": "red"}]
    with pytest.raises(ValueError, match=r"unknown option.*colour"):
        Router(build_config(raw), store=MemoryStore())


def test_plugin_options_are_checked() -> None:
    bad = [("block", {"status": "maybe"}), ("block", {"when": "nocolon"}),
           ("system_prompt", {"mode": "inject"}), ("headers", {"set": {"bad name": "v"}}),
           ("headers", {}), ("headers", {"upstream_set": {"x": "a\nb"}}),
           ("headers", {"upstream_remove": "x-a"}), ("reasoning_effort", {"effort": "max"}),
           ("reasoning_effort", {"effort": "low", "families": {"x": "gemini"}})]
    for kind, options in bad:
        with pytest.raises(ValueError):
            PLUGINS[kind](options)


# -- upstream bodies, against an in-process echo backend ------------------------------------

@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with echo_backend() as backend:
        yield backend


def echo_router(url: str, plugins: list[dict[str, Any]], models: tuple[str, ...] = ("m",),
                **default: Any) -> Router:
    config = build_config({
        # Every capability: these tests are about plugins, not capability routing.
        "models": [{"name": n, "endpoints": [{"base_url": url}],
                    "capabilities": {"tools": True, "vision": True, "reasoning": True}}
                   for n in models],
        "default": {"candidates": [models[0]], "plugins": plugins, **default},
        "pool": {"health_check": {"interval_s": 0}},
    })
    return Router(config, store=MemoryStore())


def chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": messages, **extra}


SYS = {"role": "system", "content": "Be kind."}
USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(("mode", "messages", "expected"), [
    ("inject", [USER], [{"role": "system", "content": "Be brief."}, USER]),
    ("inject", [SYS, USER], [SYS, USER]),
    ("replace", [SYS, USER, {"role": "system", "content": "Be loud."}],
     [{"role": "system", "content": "Be brief."}, USER]),
    ("append", [SYS, USER], [{"role": "system", "content": "Be kind.\n\nBe brief."}, USER]),
    ("append", [USER], [{"role": "system", "content": "Be brief."}, USER]),
])
async def test_system_prompt_modes(echo: tuple[str, list[dict[str, Any]]], mode: str,
                                   messages: list[dict[str, Any]],
                                   expected: list[dict[str, Any]]) -> None:
    url, received = echo
    original = [dict(m) for m in messages]
    async with echo_router(url, [{"type": "system_prompt", "mode": mode,
                                  "text": "Be brief."}]) as router:
        await router.chat(chat(messages))
    assert received[0]["messages"] == expected
    assert messages == original  # the client's request is never edited


async def test_reasoning_effort_per_family(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    plugin = {"type": "reasoning_effort", "effort": "low",
              "families": {"gpt-": "openai", "qwen": "qwen", "vl-": "vllm",
                           "claude": "anthropic"}}
    for model in ("gpt-5", "qwen3-8b", "vl-llama", "claude-sonnet", "mistral"):
        async with echo_router(url, [plugin], models=(model,)) as router:
            await router.chat(chat([USER]))
    sent = [(b.get("reasoning_effort"), b.get("chat_template_kwargs")) for b in received]
    assert sent == [("low", None), (None, {"enable_thinking": False}),
                    (None, {"enable_thinking": False}), ("low", None), (None, None)]
    received.clear()
    high = {**plugin, "effort": "high"}
    async with echo_router(url, [high], models=("qwen3-8b",)) as router:
        await router.chat(chat([USER]))
        await router.chat(chat([USER], chat_template_kwargs={"enable_thinking": False}))
    assert [b["chat_template_kwargs"] for b in received] == [
        {"enable_thinking": True}, {"enable_thinking": False}]  # the client's own value wins
    received.clear()
    async with echo_router(url, [high], models=("gpt-5",)) as router:
        await router.chat(chat([USER], reasoning_effort="minimal"))
    assert received[0]["reasoning_effort"] == "minimal"


async def test_a_chain_of_plugins(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    chain = [{"type": "system_prompt", "mode": "inject", "text": "Be brief."},
             {"type": "reasoning_effort", "effort": "medium", "families": {"qwen": "qwen"}},
             {"type": "headers", "set": {"x-chain": "yes"}},
             {"type": "block", "when": "keyword:stop", "message": "Stopped.",
              "reason": "stop-word"}]
    async with echo_router(url, chain, models=("qwen3",)) as router:
        plan = await router.plan(chat([USER]))
        result = await router.complete(chat([USER]), plan)
        assert result.headers == {"x-chain": "yes"}
        assert result.served is not None and result.response["choices"][0]["message"][
            "content"] == "ok"
    assert received == [{"model": "qwen3", "messages": [
        {"role": "system", "content": "Be brief."}, USER],
        "chat_template_kwargs": {"enable_thinking": True}}]


async def test_every_plugin_in_one_chain() -> None:
    """pii_redact → system_prompt → headers → reasoning_effort → semantic_cache → block.
    A cache hit behind pii_redact replays the answer restored with the new caller's values."""
    seen: list[dict[str, str]] = []
    chain = [{"type": "pii_redact"},
             {"type": "system_prompt", "mode": "inject", "text": "Be brief."},
             {"type": "headers", "set": {"x-chain": "yes"}, "upstream_set": {"x-tenant": "t1"}},
             {"type": "reasoning_effort", "effort": "low", "families": {"gpt-": "openai"}},
             {"type": "semantic_cache", "threshold": 0.97},
             {"type": "block", "when": "keyword:stop", "message": "Stopped."}]
    async with echo_backend("Noted <EMAIL_ADDRESS_1>.", headers=seen) as (url, received):
        config = build_config({
            "models": [{"name": "gpt-x", "endpoints": [{"base_url": url}]}],
            "signals": {"keyword": {"sets": {"stop": {"any": ["stop"]}}}},
            "default": {"candidates": ["gpt-x"], "plugins": chain},
            "pool": {"health_check": {"interval_s": 0}},
        })
        async with Router(config, store=MemoryStore()) as router:
            first = await router.complete(chat([{"role": "user", "content":
                                                 "Mail jane@example.com the report."}]))
            second = await router.complete(chat([{"role": "user", "content":
                                                  "Mail bob@corp.example.org the report."}]))
            streamed = [c async for c in router.chat_stream(chat(
                [{"role": "user", "content": "Mail bob@corp.example.org the report."}],
                stream=True))]
            stopped = await router.complete(chat([{"role": "user", "content": "stop it"}]))
    assert received == [{"model": "gpt-x", "reasoning_effort": "low", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Mail <EMAIL_ADDRESS_1> the report."}]}]
    assert seen[0]["x-tenant"] == "t1"
    assert first.response["choices"][0]["message"]["content"] == "Noted jane@example.com."
    assert first.headers == {"x-chain": "yes", "x-routeyard-cache": "miss"}
    # Same redacted request: a hit, restored with this caller's own address, never Jane's.
    assert second.served is None
    assert second.response["choices"][0]["message"]["content"] == "Noted bob@corp.example.org."
    assert second.headers == {"x-chain": "yes", "x-routeyard-cache": "hit"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed
                   if c.get("choices"))
    assert text == "Noted bob@corp.example.org."
    assert stopped.response["choices"][0]["message"]["content"] == "Stopped."
    assert stopped.headers is not None
    assert stopped.headers["x-routeyard-blocked"] == "policy"


async def test_headers_plugin_edits_what_the_backend_receives() -> None:
    seen: list[dict[str, str]] = []
    plugins = [{"type": "headers", "upstream_set": {"X-Tenant": "acme"}},
               {"type": "headers", "upstream_remove": ["x-drop"], "set": {"x-seen": "1"}}]
    async with echo_backend(headers=seen) as (url, _):
        config = build_config({
            "models": [{"name": "m", "endpoints": [{
                "base_url": url, "api_key": "sk-test",
                "headers": {"x-drop": "1", "x-keep": "2"}}]}],
            "signals": {"keyword": {"sets": {"edit": {"any": ["edit"]}}}},
            "decisions": [{"name": "edited", "rules": "keyword:edit", "candidates": ["m"],
                           "plugins": plugins}],
            "default": {"candidates": ["m"]},
            "pool": {"health_check": {"interval_s": 0}},
        })
        async with Router(config, store=MemoryStore()) as router:
            edited = chat([{"role": "user", "content": "please edit this"}])
            result = await router.complete(edited)
            assert result.headers == {"x-seen": "1"}
            _ = [c async for c in router.chat_stream({**edited, "stream": True})]
            await router.complete(chat([USER]))  # the default decision: no edits
    for headers in seen[:2]:  # plain and streamed
        assert headers["x-tenant"] == "acme" and headers["x-keep"] == "2"
        assert "x-drop" not in headers
        assert headers["authorization"] == "Bearer sk-test"
    assert "x-tenant" not in seen[2] and seen[2]["x-drop"] == "1"  # edits do not leak


async def test_blocked_requests_are_logged_and_skip_the_backend(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    async with echo_router(url, [{"type": "block", "message": "No."}]) as router:
        result = await router.complete(chat([USER]))
        assert result.served is None
        assert result.response["object"] == "chat.completion"
        assert result.response["choices"][0]["message"] == {"role": "assistant",
                                                            "content": "No."}
        assert result.headers == {"x-routeyard-blocked": "policy"}
        chunks = [c async for c in router.chat_stream(chat([USER]))]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "No."
        await router.store.flush()
        record = await router.store.get_decision(result.plan.request_id)
    assert record is not None and record.status == "blocked" and record.model is None
    assert received == []


async def test_on_response_may_edit_the_answer(echo: tuple[str, list[dict[str, Any]]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = echo
    cls = PLUGINS["headers"]

    def stamp(self: Any, ctx: PluginContext, response: dict[str, Any]) -> None:
        response["routeyard_plugin"] = ctx.headers.get("x-a")

    monkeypatch.setattr(cls, "on_response", stamp)
    async with echo_router(url, [{"type": "headers", "set": {"x-a": "1"}}]) as router:
        reply = await router.chat(chat([USER]))
    assert reply["routeyard_plugin"] == "1"


async def test_decisions_without_plugins_build_nothing(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = echo
    async with echo_router(url, []) as router:
        assert router.plugins == {}
        plan = await router.plan(chat([USER]))
        result = await router.complete(chat([USER]), plan)
        assert not result.headers
