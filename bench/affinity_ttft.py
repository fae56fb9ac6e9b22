"""What prefix-cache affinity gains agent sessions in time to first token:
`python bench/affinity_ttft.py [--endpoints 3] [--sessions 12] [--turns 8] [--rounds 3]`

Simulated agent sessions (a long system prompt and tool list, then turns that each add a tool
result and an answer, so the context grows) run concurrently, with think time between turns,
against `routeyard serve` over N simulator processes that serve one model. Each simulator
models prefill and a prefix cache (docs/simulator.md): a request's time to first token is the
base plus the prefill of the prompt tokens its endpoint has not cached, and one endpoint
prefills one prompt at a time, so load queues. The client streams and times the first content
chunk.

Policies, each behind its own router, over the same simulators (reset, so cold, before each):
- `least_loaded`: the pool's normal balancing, weighted least-outstanding requests (ties go to
  the endpoint listed first). It is the baseline: ratios are against it, in the same run.
- `affinity`: `sessions.endpoint_affinity: true` with the default overload bound (a session
  leaves its endpoint once that has over 8 requests in flight more than the least-loaded one).
- `affinity_unbounded`: affinity whatever the load (only an open breaker or a failed health
  check moves a session), to show what the bound is for.
Rounds interleave the policies, so drift on the machine hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from procs import machine_info, start_routeyard, start_simulator
from ttfb_client import percentile

MODEL = "agent-model"
# The simulated GPU: 60 ms per 1000 uncached prompt tokens (an 8B model's prefill is of that
# order), 25 ms base, 8 ms a token after the first.
SIM_PROFILE = {"ttft_ms": 25, "tpot_ms": 8, "output_tokens_mean": 24, "output_tokens_sd": 0,
               "prefill_ms_per_1k_tokens": 60}
POLICIES: dict[str, dict[str, Any] | None] = {  # name → `sessions:` (None: affinity off)
    "least_loaded": None,
    "affinity": {"endpoint_affinity": True},
    "affinity_unbounded": {"endpoint_affinity": True, "affinity_max_extra_in_flight": 1000},
}
SYSTEM_WORDS = 1600  # ~2000 tokens: instructions and tool schemas
TOOL_RESULT_WORDS = 400  # ~500 tokens added per turn


def simulator_config(cache_tokens: int) -> dict[str, Any]:
    return {"models": {MODEL: {**SIM_PROFILE, "prefix_cache_tokens": cache_tokens}}}


def router_config(sim_urls: list[str], sessions: dict[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "models": [{"name": MODEL, "context_window": 1_000_000, "endpoints": [
            {"name": f"gpu-{i}", "base_url": url + "/v1"} for i, url in enumerate(sim_urls)]}],
        "pool": {"health_check": {"interval_s": 0}},
        "state": {"backend": "memory"},
    }
    if sessions is not None:
        config["sessions"] = sessions
    return config


def words(rng: random.Random, n: int, tag: str) -> str:
    vocabulary = ("file", "test", "error", "def", "return", "import", "path", "line", "call",
                  "value", "class", "list", "config", "build", "patch", "diff")
    return tag + " " + " ".join(rng.choice(vocabulary) for _ in range(n))


async def timed_turn(http: aiohttp.ClientSession, url: str, messages: list[dict[str, str]],
                     session: str) -> tuple[float, str]:
    """One streamed request: (time to first content chunk in ms, the answer's text)."""
    body = orjson.dumps({"model": "auto", "messages": messages, "stream": True})
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async with http.post(url, data=body, headers={"x-session-id": session,
                                                  "content-type": "application/json"}) as reply:
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {(await reply.text())[:300]}")
        async for line in reply.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[6:])
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
    if first is None:
        raise RuntimeError("the stream carried no content")
    return (first - started) * 1000, "".join(parts)


async def run_session(http: aiohttp.ClientSession, url: str, index: int, turns: int,
                      seed: str, ttfts: list[float], stagger_s: float) -> None:
    rng = random.Random(f"{seed}:{index}")
    await asyncio.sleep(index * stagger_s)  # sessions start staggered, as agents do
    messages = [{"role": "system", "content": words(rng, SYSTEM_WORDS, f"agent {seed}-{index}")}]
    for turn in range(turns):
        messages.append({"role": "user",
                         "content": words(rng, TOOL_RESULT_WORDS, f"tool result {turn}")})
        ttft_ms, answer = await timed_turn(http, url, messages, f"{seed}-{index}")
        ttfts.append(ttft_ms)
        messages.append({"role": "assistant", "content": answer})
        await asyncio.sleep(rng.uniform(0.05, 0.3))  # the agent runs its tool


async def run_policy(url: str, sessions: int, turns: int, seed: str, stagger_s: float
                     ) -> list[float]:
    ttfts: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        await asyncio.gather(*(run_session(http, url, i, turns, seed, ttfts, stagger_s)
                               for i in range(sessions)))
    return ttfts


async def reset(http: aiohttp.ClientSession, sim_urls: list[str]) -> None:
    for url in sim_urls:
        async with http.post(url + "/_sim/reset") as reply:
            reply.raise_for_status()


async def cache_totals(sim_urls: list[str]) -> dict[str, int]:
    totals = {"cached_tokens": 0, "prefilled_tokens": 0}
    async with aiohttp.ClientSession() as http:
        for url in sim_urls:
            async with http.get(url + "/_sim/stats") as reply:
                found = (await reply.json())["prefix_cache"][MODEL]
            for key in totals:
                totals[key] += found[key]
    return totals


def run(endpoints: int, sessions: int, turns: int, rounds: int, cache_tokens: int,
        stagger_s: float) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in POLICIES}
    cache: dict[str, dict[str, int]] = {name: {"cached_tokens": 0, "prefilled_tokens": 0}
                                        for name in POLICIES}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sim_urls: list[str] = []
        for i in range(endpoints):
            folder = Path(tmp) / f"sim{i}"  # each simulator writes its config file there
            folder.mkdir()
            sim_urls.append(stack.enter_context(start_simulator(
                simulator_config(cache_tokens), folder))[0])
        routers = {name: stack.enter_context(start_routeyard(
            router_config(sim_urls, sessions_config), Path(tmp) / name))
            for name, sessions_config in POLICIES.items()}

        async def one(name: str, round_: int) -> list[float]:
            async with aiohttp.ClientSession() as http:
                await reset(http, sim_urls)
            found = await run_policy(routers[name].chat_url, sessions, turns,
                                     f"r{round_}-{name}", stagger_s)
            for key, value in (await cache_totals(sim_urls)).items():
                cache[name][key] += value
            return found

        for round_ in range(rounds):
            order = list(POLICIES)
            if round_ % 2:
                order.reverse()
            for name in order:
                samples[name] += asyncio.run(one(name, round_))
                print(f"round {round_ + 1}/{rounds}: {name} done", file=sys.stderr, flush=True)
    base = samples["least_loaded"]
    base_p50, base_p99 = percentile(base, 50), percentile(base, 99)
    results: dict[str, Any] = {}
    for name, found in samples.items():
        p50, p99 = percentile(found, 50), percentile(found, 99)
        hits = cache[name]
        results[name] = {
            "requests": len(found), "ttft_ms_p50": round(p50, 1),
            "ttft_ms_p99": round(p99, 1), "ttft_ms_mean": round(sum(found) / len(found), 1),
            "p50_vs_least_loaded": round(p50 / base_p50, 3),
            "p99_vs_least_loaded": round(p99 / base_p99, 3),
            "prompt_tokens_cached": round(hits["cached_tokens"] / max(
                1, hits["cached_tokens"] + hits["prefilled_tokens"]), 3),
        }
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = ["| Policy | requests | TTFT p50 (ms) | TTFT p99 (ms) | p50 vs least-loaded | "
             "p99 vs least-loaded | prompt tokens from cache |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, found in results.items():
        lines.append(f"| {name} | {found['requests']} | {found['ttft_ms_p50']:.0f} | "
                     f"{found['ttft_ms_p99']:.0f} | {found['p50_vs_least_loaded']:.2f}x | "
                     f"{found['p99_vs_least_loaded']:.2f}x | "
                     f"{found['prompt_tokens_cached']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=3, choices=range(2, 9),
                        metavar="2-8", help="simulator endpoints of the one model")
    parser.add_argument("--sessions", type=int, default=12, help="concurrent agent sessions")
    parser.add_argument("--turns", type=int, default=8, help="requests per session")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the policies")
    parser.add_argument("--cache-tokens", type=int, default=200_000,
                        help="each endpoint's prefix cache, in tokens")
    parser.add_argument("--stagger-s", type=float, default=0.15,
                        help="seconds between the starts of two sessions")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    results = run(args.endpoints, args.sessions, args.turns, args.rounds, args.cache_tokens,
                  args.stagger_s)
    if args.markdown:
        print(markdown(results))
    else:
        json.dump({"machine": machine_info(), "endpoints": args.endpoints,
                   "sessions": args.sessions, "turns": args.turns, "rounds": args.rounds,
                   "cache_tokens": args.cache_tokens, "stagger_s": args.stagger_s,
                   "simulator": SIM_PROFILE,
                   "results": results}, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
