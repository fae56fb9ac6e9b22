"""Ensembles end to end: the openai (and anthropic) SDK against `routeyard serve`, whose members
and judge are the simulator in replay mode, so each model's answer to each prompt is known;
faults come from endpoints that always fail or hang. Tool calls come from scripted backends
(the simulator makes none)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from routerproc import RouterProcess, start_router
from scripted_backend import Reply, ScriptedBackend, scripted_backend
from simproc import SimulatorProcess, start_simulator

from routeyard.serving.ensemble_judge import judge_pairs, rank_messages, synthesis_messages

MEMBERS = ("a", "b", "c")
# prompt → each member's recorded answer (a, b, c)
VOTE_Q = "What is six times seven?"
RANK_Q = "Name the capital of France."
SYNTH_Q = "Explain routing in one line."
GARBAGE_Q = "How many legs has a spider?"  # the judge has no recorded verdicts: filler
ANSWERS = {
    VOTE_Q: ("41", "42", "The answer is 42."),
    RANK_Q: ("Lyon", "Paris", "Marseille"),
    SYNTH_Q: ("Routing picks a model.", "Routing sends requests on.", "Routing saves money."),
    GARBAGE_Q: ("8", "Eight: 8", "6"),
}
SYNTHESIS = "Routing sends each request to the model that serves it best."
BEST = "Paris"  # what the recorded judge prefers in every comparison
KEY = "sk-admin-ensemble-0001"  # may call models and read the decision log


def judge_rows() -> list[dict[str, Any]]:
    """The judge's recorded replies: a verdict for each comparison of the rank prompt (the one
    showing Paris wins; else A), and the synthesis of the synthesis prompt."""
    rows = []
    answers = ANSWERS[RANK_Q]
    for first, second in judge_pairs(len(answers)):
        prompt = rank_messages(RANK_Q, answers[first], answers[second])[-1]["content"]
        rows.append({"prompt": prompt,
                     "responses": {"m-judge": "B" if answers[second] == BEST else "A"}})
    prompt = synthesis_messages(SYNTH_Q, ANSWERS[SYNTH_Q])[-1]["content"]
    rows.append({"prompt": prompt, "responses": {"m-judge": SYNTHESIS}})
    return rows


def write_replay(path: Path) -> Path:
    rows = [{"prompt": q, "responses": {f"m-{m}": a for m, a in zip(MEMBERS, answers,
                                                                      strict=True)}}
            for q, answers in ANSWERS.items()]
    path.write_text("\n".join(json.dumps(r) for r in rows + judge_rows()) + "\n")
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    replay = write_replay(tmp_path_factory.mktemp("ensemble") / "replay.jsonl")
    with start_simulator("--replay", str(replay), "--ttft-ms", "0", "--tpot-ms", "0") as process:
        yield process


def model(sim: SimulatorProcess, name: str, upstream: str | None = None,
          fault: str | None = None, price: float = 1.0) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"base_url": sim.base_url,
                                "upstream_model": upstream or f"m-{name}"}
    if fault is not None:
        endpoint["headers"] = {"x-sim-fault": fault}
    return {"name": name, "endpoints": [endpoint], "capabilities": {"tools": True},
            "pricing": {"input_per_mtok": price, "output_per_mtok": price}}


def ensemble_config(sim: SimulatorProcess) -> dict[str, Any]:
    """One decision per shape, each reached by its own model name (`model_routes`)."""
    members = list(MEMBERS)
    decisions = {
        "vote": {"members": members},
        "rank": {"members": members, "aggregate": "rank", "judge": "judge"},
        "synth": {"members": members, "aggregate": "synthesise", "judge": "judge"},
        "one-down": {"members": ["a", "b", "down", "hung"], "member_timeout_s": 1.0},
        "all-down": {"members": ["down", "hung"], "member_timeout_s": 1.0},
        "judge-down": {"members": members, "aggregate": "synthesise", "judge": "down"},
        "refused": {"members": ["down", "refuser"]},
    }
    return {
        "models": [model(sim, "a", price=1), model(sim, "b", price=2), model(sim, "c", price=3),
                   model(sim, "judge", price=10), model(sim, "down", "m-a", "503"),
                   model(sim, "hung", "m-b", "hang"), model(sim, "refuser", "m-c", "400")],
        "decisions": [{"name": name, "candidates": ["a"], "ensemble": ensemble}
                      for name, ensemble in decisions.items()],
        "default": {"candidates": ["a"]},
        "model_routes": [{"match": name, "decision": name} for name in decisions],
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
        "server": {"admin_keys": [KEY]},
    }


@pytest.fixture(scope="module")
def gateway(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RouterProcess]:
    with start_router(ensemble_config(sim), tmp_path_factory.mktemp("router")) as process:
        yield process


@pytest.fixture
def client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, decision: str, prompt: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=decision, messages=[{"role": "user", "content": prompt}], **extra)


def record(gateway: RouterProcess, request_id: str) -> dict[str, Any]:
    """The request's decision record, once written (a stream's is written as it ends)."""
    deadline = time.monotonic() + 10
    while True:
        reply = httpx.get(f"{gateway.url}/v1/decisions/{request_id}", timeout=10,
                          headers={"authorization": f"Bearer {KEY}"})
        if reply.status_code != 404 or time.monotonic() > deadline:
            reply.raise_for_status()
            return reply.json()
        time.sleep(0.05)


def member_usage(sim: SimulatorProcess, upstream: str, messages: list[dict[str, str]]
                 ) -> dict[str, int]:
    return httpx.post(sim.base_url + "/chat/completions", json={
        "model": upstream, "messages": messages}).json()["usage"]


def streamed(raw: Any) -> tuple[str, list[Any]]:
    chunks = list(raw.parse())
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_vote_whole_and_streamed(client: openai.OpenAI, gateway: RouterProcess,
                                 sim: SimulatorProcess) -> None:
    raw = ask(client, "vote", VOTE_Q)
    answer = raw.parse()
    # "42" and "The answer is 42." agree as numbers and outvote "41", the best prior.
    assert answer.choices[0].message.content == "42"
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c"
    assert raw.headers["x-routeyard-model"] == "b"
    messages = [{"role": "user", "content": VOTE_Q}]
    each = [member_usage(sim, f"m-{m}", messages) for m in MEMBERS]
    assert answer.usage.prompt_tokens == sum(u["prompt_tokens"] for u in each)
    assert answer.usage.completion_tokens == sum(u["completion_tokens"] for u in each)
    logged = record(gateway, raw.headers["x-routeyard-request-id"])
    ensemble = logged["detail"]["ensemble"]
    assert ensemble["winner"] == "b" and ensemble["vote"]["normalise"] == "number"
    assert [m["model"] for m in ensemble["members"]] == list(MEMBERS)
    # Each call priced at its own model's rate ($1, $2, $3 per Mtok).
    expected = sum(p * (u["prompt_tokens"] + u["completion_tokens"]) / 1e6
                   for p, u in zip((1, 2, 3), each, strict=True))
    assert logged["cost_usd"] == pytest.approx(expected)

    raw = ask(client, "vote", VOTE_Q, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c"
    text, chunks = streamed(raw)
    assert text == "42"
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_rank_with_a_judge(client: openai.OpenAI, gateway: RouterProcess) -> None:
    raw = ask(client, "rank", RANK_Q)
    assert raw.parse().choices[0].message.content == BEST
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c>judge"
    ensemble = record(gateway, raw.headers["x-routeyard-request-id"])["detail"][
        "ensemble"]
    assert ensemble["winner"] == "b" and ensemble["aggregate"] == "rank"
    assert len(ensemble["judge"]) == len(judge_pairs(3)) == 3  # fewer than k² calls
    assert all(j["verdict"] == "b" for j in ensemble["judge"] if "b" in j["pair"])
    assert max(ensemble["strengths"], key=ensemble["strengths"].get) == "b"

    raw = ask(client, "rank", RANK_Q, stream=True)
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c>judge"
    assert streamed(raw)[0] == BEST


def test_garbage_judge_falls_back_to_the_vote(client: openai.OpenAI,
                                              gateway: RouterProcess) -> None:
    raw = ask(client, "rank", GARBAGE_Q)
    assert raw.parse().choices[0].message.content == "8"  # "8" and "Eight: 8" outvote "6"
    ensemble = record(gateway, raw.headers["x-routeyard-request-id"])["detail"][
        "ensemble"]
    assert "0 readable verdicts of 3" in ensemble["fallback"]
    assert ensemble["winner"] == "a" and len(ensemble["judge"]) == 3
    assert all(j["verdict"] is None for j in ensemble["judge"])


def test_synthesis_whole_and_live(client: openai.OpenAI, gateway: RouterProcess,
                                  sim: SimulatorProcess) -> None:
    raw = ask(client, "synth", SYNTH_Q)
    answer = raw.parse()
    assert answer.choices[0].message.content == SYNTHESIS
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c>judge"
    assert raw.headers["x-routeyard-model"] == "judge"
    judge_messages = synthesis_messages(SYNTH_Q, ANSWERS[SYNTH_Q])
    judged = member_usage(sim, "m-judge", judge_messages)
    members = [member_usage(sim, f"m-{m}", [{"role": "user", "content": SYNTH_Q}])
               for m in MEMBERS]
    total = sum(u["completion_tokens"] for u in members) + judged["completion_tokens"]
    assert answer.usage.completion_tokens == total

    raw = ask(client, "synth", SYNTH_Q, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c>judge"
    text, chunks = streamed(raw)
    assert text == SYNTHESIS
    assert len([c for c in chunks if c.choices]) > 3  # streamed in pieces, not in one chunk
    assert chunks[-1].usage.completion_tokens == total  # the judge's and the members'
    logged = record(gateway, raw.headers["x-routeyard-request-id"])
    assert logged["stream"] and logged["model"] == "judge"
    assert logged["completion_tokens"] == total
    assert logged["detail"]["ensemble"]["winner"] == "synthesis"


def test_judge_down_falls_back_to_the_vote(client: openai.OpenAI,
                                           gateway: RouterProcess) -> None:
    for stream in (False, True):
        raw = ask(client, "judge-down", VOTE_Q, stream=stream)
        text = streamed(raw)[0] if stream else raw.parse().choices[0].message.content
        assert text == "42"
        assert raw.headers["x-routeyard-ensemble"] == "a,b,c>down"
        ensemble = record(gateway, raw.headers["x-routeyard-request-id"])["detail"][
            "ensemble"]
        assert "judge" in ensemble["fallback"] and ensemble["judge"][0]["outcome"] == "failed"


def test_one_member_down_and_one_hung(client: openai.OpenAI, gateway: RouterProcess) -> None:
    raw = ask(client, "one-down", RANK_Q)
    assert raw.parse().choices[0].message.content == "Lyon"  # no agreement: the best prior
    assert raw.headers["x-routeyard-ensemble"] == "a,b,down,hung"
    members = record(gateway, raw.headers["x-routeyard-request-id"])["detail"][
        "ensemble"]["members"]
    assert [(m["model"], m["outcome"]) for m in members] == [
        ("a", "ok"), ("b", "ok"), ("down", "failed"), ("hung", "timeout")]
    assert 900 < members[3]["latency_ms"] < 5000


def test_all_members_down_is_a_clean_502(client: openai.OpenAI, gateway: RouterProcess) -> None:
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, "all-down", VOTE_Q, stream=stream)
        assert caught.value.status_code == 502
        body = caught.value.response.json()
        assert body["error"]["code"] == "upstream_failed"
        assert "every ensemble member failed" in body["error"]["message"]
    # A backend that refused the request itself: the client gets that refusal, not a 502.
    with pytest.raises(openai.BadRequestError):
        ask(client, "refused", VOTE_Q)


def test_messages_surface_uses_the_ensemble(gateway: RouterProcess) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0, timeout=30)
    raw = client.messages.with_raw_response.create(
        model="vote", max_tokens=100, messages=[{"role": "user", "content": VOTE_Q}])
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c"
    assert raw.parse().content[0].text == "42"
    with client.messages.stream(model="synth", max_tokens=100,
                                messages=[{"role": "user", "content": SYNTH_Q}]) as stream:
        assert "".join(stream.text_stream) == SYNTHESIS


def test_responses_surface_uses_the_ensemble(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="rank", input=RANK_Q)
    assert raw.headers["x-routeyard-ensemble"] == "a,b,c>judge"
    assert raw.parse().output_text == BEST


# -- tool calls -----------------------------------------------------------------------------

def call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> Reply:
    return Reply(tool_calls=[(call_id, name, json.dumps(arguments))])


@pytest.fixture
def tool_backends() -> Iterator[list[ScriptedBackend]]:
    with scripted_backend() as a, scripted_backend() as b, scripted_backend() as c, \
            scripted_backend() as judge:
        yield [a, b, c, judge]


def test_members_vote_on_the_tool_call(tool_backends: list[ScriptedBackend],
                                       tmp_path: Path) -> None:
    a, b, c, judge = tool_backends
    names = ("a", "b", "c", "judge")
    config = {
        "models": [{"name": n, "endpoints": [{"base_url": backend.url}],
                    "capabilities": {"tools": True}}
                   for n, backend in zip(names, tool_backends, strict=True)],
        "default": {"candidates": ["a"], "ensemble": {
            "members": ["a", "b", "c"], "aggregate": "synthesise", "judge": "judge"}},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
        "server": {"admin_keys": [KEY]},
    }
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    # b and c make the same call (their arguments differ only in key order and spacing).
    a.replies.append(Reply(content="I cannot tell."))
    b.replies.append(call("weather", {"city": "Paris", "unit": "c"}, "call_b"))
    c.replies.append(Reply(tool_calls=[("call_c", "weather",
                                        '{ "unit":"c",  "city": "Paris" }')]))
    # Then no two agree: the best member's (a's) answer.
    a.replies.append(call("weather", {"city": "Rome"}, "call_a"))
    b.replies.append(call("weather", {"city": "Oslo"}))
    c.replies.append(Reply(content="Sunny."))
    with start_router(config, tmp_path) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0,
                               timeout=30)
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, tools=tools)
        chosen = raw.parse().choices[0]
        assert chosen.message.tool_calls[0].id == "call_b"
        assert json.loads(chosen.message.tool_calls[0].function.arguments) == {
            "city": "Paris", "unit": "c"}
        assert raw.headers["x-routeyard-ensemble"] == "a,b,c"  # the judge was not asked
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=messages, tools=tools, stream=True)
        chunks = list(raw.parse())
        calls = [d for ch in chunks if ch.choices for d in ch.choices[0].delta.tool_calls or []]
        assert [(d.id, d.function.name) for d in calls] == [("call_a", "weather")]
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
        ensemble = record(gateway, raw.headers["x-routeyard-request-id"])["detail"][
            "ensemble"]
        assert ensemble["reason"].startswith("no majority on the tool call")
    assert judge.received == []
    assert all(len(backend.received) == 2 for backend in (a, b, c))
    assert all("tools" in body for body in a.received)
