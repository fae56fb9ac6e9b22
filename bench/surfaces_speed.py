"""What the API surfaces cost on top of chat completions, measured in one run.

    python bench/surfaces_speed.py [--iterations 5000] [--duration 5] [--rounds 3] [--markdown]

1. **Translation, in process.** The same 10-message conversation with 8 function tools (a
   user question, four assistant turns that each call a tool, four tool results, a last user
   turn) in three wire formats. For each surface, the p50 of translating the request to the
   internal form plus translating a whole answer back, against the chat surface's own cost
   (validating the same body) as the baseline: the difference is what the surface adds.
2. **Over HTTP, c=1.** `routeyard serve` in front of the simulator at 0 ms; wrk at one
   connection against /v1/chat/completions, /v1/messages and /v1/responses with the same
   conversation, in interleaved rounds; the added latency is each surface's p50 minus chat's.
3. **`previous_response_id` on SQLite.** In process: the p50 of loading a stored 10-message
   conversation (the store read and its decoding) from the default SQLite store. Over HTTP:
   a turn that names the previous response against the same turn with the whole conversation
   given inline, so the difference is the lookup itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from procs import machine_info, start_routeyard, start_simulator
from wrkload import run_wrk, send_requests, wrk_available

from routeyard.api.anthropic_answer import to_anthropic_message
from routeyard.api.anthropic_request import to_internal_request
from routeyard.api.responses_render import response_from_completion
from routeyard.api.responses_store import ResponseStore, StoredResponse
from routeyard.api.responses_wire import translate_request
from routeyard.serving.request import validate_chat_request
from routeyard.state import SQLiteStore

SYSTEM = "You are a careful assistant that uses tools. " * 12
TOOL_NAMES = ["get_weather", "search", "read_file", "write_file", "run_tests", "list_dir",
              "grep", "fetch_url"]
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                       "message": {"role": "assistant",
                                   "content": "Paris is 18 degrees and clear today."}}],
          "usage": {"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912}}


def conversation() -> dict[str, Any]:
    """The conversation in each wire format: {"chat": ..., "messages": ..., "responses": ...}."""
    schema = {"type": "object", "properties": {"arg": {"type": "string"}}, "required": ["arg"]}
    chat_msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                       {"role": "user", "content": "Plan my day in Paris."}]
    ant_msgs: list[dict[str, Any]] = [{"role": "user", "content": "Plan my day in Paris."}]
    resp_items: list[dict[str, Any]] = [{"role": "user", "content": "Plan my day in Paris."}]
    for turn in range(4):
        call_id, tool = f"call_{turn}", TOOL_NAMES[turn]
        args = json.dumps({"arg": f"value {turn}"})
        chat_msgs += [
            {"role": "assistant", "content": f"Step {turn}.", "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": tool, "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": f"result {turn}"}]
        ant_msgs += [
            {"role": "assistant", "content": [
                {"type": "text", "text": f"Step {turn}."},
                {"type": "tool_use", "id": call_id, "name": tool,
                 "input": {"arg": f"value {turn}"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": f"result {turn}"}]}]
        resp_items += [
            {"role": "assistant", "content": f"Step {turn}."},
            {"type": "function_call", "call_id": call_id, "name": tool, "arguments": args},
            {"type": "function_call_output", "call_id": call_id, "output": f"result {turn}"}]
    last = "And the weather?"
    chat_msgs.append({"role": "user", "content": last})
    ant_msgs.append({"role": "user", "content": last})
    resp_items.append({"role": "user", "content": last})
    tools = [{"type": "function", "function": {"name": n, "description": f"{n} tool",
                                               "parameters": schema}} for n in TOOL_NAMES]
    return {
        "chat": {"model": "auto", "messages": chat_msgs, "tools": tools, "max_tokens": 256},
        "messages": {"model": "auto", "max_tokens": 256, "system": SYSTEM, "messages": ant_msgs,
                     "tools": [{"name": n, "description": f"{n} tool", "input_schema": schema}
                               for n in TOOL_NAMES]},
        "responses": {"model": "auto", "instructions": SYSTEM, "input": resp_items,
                      "max_output_tokens": 256, "store": False,
                      "tools": [{"type": "function", "name": n, "description": f"{n} tool",
                                 "parameters": schema} for n in TOOL_NAMES]},
    }


def p50_us(call: Callable[[], Any], iterations: int) -> float:
    for _ in range(min(500, iterations)):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def translation(iterations: int) -> dict[str, float]:
    bodies = conversation()

    def chat() -> None:
        validate_chat_request(json.loads(json.dumps(bodies["chat"])))

    def messages() -> None:
        to_internal_request(json.loads(json.dumps(bodies["messages"])))
        to_anthropic_message(ANSWER, model="auto", id_="msg_1")

    def responses() -> None:
        turn = translate_request(json.loads(json.dumps(bodies["responses"])))
        response_from_completion(turn, ANSWER, "m")

    def copy_only() -> None:  # what every measure above spends on its fresh copy of the body
        json.loads(json.dumps(bodies["messages"]))

    baseline = p50_us(copy_only, iterations)
    return {name: p50_us(fn, iterations) - baseline
            for name, fn in (("chat", chat), ("messages", messages), ("responses", responses))}


async def stored_lookup(iterations: int, tmp: Path) -> float:
    """p50 of loading a stored 10-message conversation from SQLite (read + decode)."""
    store = SQLiteStore(tmp / "lookup.db")
    await store.start()
    try:
        responses = ResponseStore(store, ttl_s=3600)
        chat = conversation()["chat"]
        await responses.save(StoredResponse(
            owner="anonymous", decision="d", model="m", request_id="req_1",
            response={"id": "resp_bench", "object": "response", "output": []},
            input_items=[], conversation=chat["messages"][1:]))
        for _ in range(200):
            await responses.previous("resp_bench", "anonymous")
        samples = []
        for _ in range(iterations):
            started = time.perf_counter_ns()
            await responses.previous("resp_bench", "anonymous")
            samples.append(time.perf_counter_ns() - started)
        return statistics.median(samples) / 1000
    finally:
        await store.close()


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None
         ) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def http(duration: float, rounds: int, tmp: Path) -> dict[str, float]:
    bodies = conversation()
    with contextlib.ExitStack() as stack:
        sim_url, _ = stack.enter_context(start_simulator(
            {"models": {"small": {"ttft_ms": 0, "tpot_ms": 0, "output_tokens_mean": 16}},
             "seed": 1}, tmp))
        config = {"server": {"log_level": "warning"},
                  "models": [{"name": "small", "context_window": 100_000,
                              "capabilities": {"tools": True},
                              "endpoints": [{"base_url": sim_url + "/v1"}]}],
                  "default": {"candidates": ["small"]},
                  "responses": {"ttl_s": 3600},
                  "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
                  "pool": {"health_check": {"interval_s": 0}}}
        router = stack.enter_context(start_routeyard(config, tmp / "router"))
        root = router.base_url.removesuffix("/v1")
        first = post(f"{root}/v1/responses", {**bodies["responses"], "store": True,
                                              "input": bodies["responses"]["input"][:-1]})
        inline = bodies["responses"]
        chained = {"model": "auto", "instructions": SYSTEM, "store": False,
                   "previous_response_id": first["id"], "max_output_tokens": 256,
                   "tools": inline["tools"], "input": [inline["input"][-1]]}
        # The stored conversation ends with the first turn's answer: the inline twin too.
        answer = [{"role": "assistant", "content": first["output"][0]["content"][0]["text"]}]
        inline = {**inline, "input": [*inline["input"][:-1], *answer, inline["input"][-1]]}
        cases = {"chat": ("/v1/chat/completions", bodies["chat"]),
                 "messages": ("/v1/messages", bodies["messages"]),
                 "responses": ("/v1/responses", bodies["responses"]),
                 "responses inline": ("/v1/responses", inline),
                 "responses chained": ("/v1/responses", chained)}
        for path, body in cases.values():
            send_requests(root + path, json.dumps(body).encode(), 300, connections=1)
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for round_no in range(rounds):
            order = list(cases.items()) if round_no % 2 == 0 else list(cases.items())[::-1]
            for name, (path, body) in order:
                result = run_wrk(root + path, json.dumps(body).encode(), connections=1,
                                 duration_s=duration)
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} errors")
                runs[name].append(result.p50_ms)
                print(f"  round {round_no + 1} {name}: p50 {result.p50_ms:.3f} ms",
                      file=sys.stderr, flush=True)
        return {name: statistics.median(found) for name, found in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "surfaces.json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="routeyard-surfaces-") as tmp_name:
        tmp = Path(tmp_name)
        pure = translation(args.iterations)
        lookup_us = asyncio.run(stored_lookup(args.iterations, tmp))
        over_http = http(args.duration, args.rounds, tmp)
    chat_ms = over_http["chat"]
    result = {
        "meta": {"command": "python bench/surfaces_speed.py " + shlex.join(
            sys.argv[1:] if argv is None else argv),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info()},
        "translation_us": {k: round(v, 2) for k, v in pure.items()},
        "added_translation_us": {k: round(pure[k] - pure["chat"], 2)
                                 for k in ("messages", "responses")},
        "previous_response_lookup_sqlite_us": round(lookup_us, 1),
        "http_p50_ms": {k: round(v, 3) for k, v in over_http.items()},
        "http_added_ms": {"messages": round(over_http["messages"] - chat_ms, 3),
                          "responses": round(over_http["responses"] - chat_ms, 3),
                          "previous_response_id": round(over_http["responses chained"]
                                                        - over_http["responses inline"], 3)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(yaml.safe_dump({k: v for k, v in result.items() if k != "meta"}, sort_keys=False))
    if args.markdown:
        print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    meta, pure, added = result["meta"], result["translation_us"], result["added_translation_us"]
    web, web_added = result["http_p50_ms"], result["http_added_ms"]
    lookup = result["previous_response_lookup_sqlite_us"]
    return "\n".join([
        f"`{meta['command']}` ({meta['date']}, {meta['machine']['cpu_model']}, "
        f"{meta['machine']['nproc']} cores)", "",
        "| measure | chat completions (baseline) | /v1/messages | /v1/responses | goal |",
        "|---|---|---|---|---|",
        f"| translation p50, in process (µs) | {pure['chat']:.1f} | {pure['messages']:.1f} "
        f"(+{added['messages']:.1f}) | {pure['responses']:.1f} (+{added['responses']:.1f}) "
        "| added <= 200 µs |",
        f"| latency p50 over HTTP, c=1 (ms) | {web['chat']:.3f} | {web['messages']:.3f} "
        f"(+{web_added['messages']:.3f}) | {web['responses']:.3f} "
        f"(+{web_added['responses']:.3f}) | added <= 0.2 ms |",
        "",
        "| `previous_response_id` on SQLite | p50 | goal |",
        "|---|---|---|",
        f"| load a stored 10-message conversation, in process | {lookup:.0f} µs | <= 1 ms |",
        f"| over HTTP: a chained turn minus the same turn given inline, c=1 | "
        f"{web_added['previous_response_id']:+.3f} ms ({web['responses chained']:.3f} vs "
        f"{web['responses inline']:.3f}) | <= 1 ms |",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
