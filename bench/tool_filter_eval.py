"""How often the `tool_filter` plugin keeps the tool a turn needs, and how many prompt tokens it
saves, on Berkeley Function Calling Leaderboard items (bench/data/tool_filter_bfcl.json; see
bench/data/README.md for its source, licence and derivation).

    python bench/tool_filter_eval.py                       # ~1 min: recall@5/10, tokens saved
    python bench/tool_filter_eval.py --sizes 20 50 100 --ks 5 10 --seed 0 --markdown
    python bench/tool_filter_eval.py derive DIR            # rebuild the data file from BFCL

Each item is one user turn, the tool(s) its ground truth calls (one, or 2-5 for the parallel
items), and the candidate tools BFCL offers with it (same-API neighbours: the realistic
distractors). Each tool list is the item's own candidates plus tools drawn at random from the
other items, to reach 20, 50 or 100 tools, in a shuffled order. The plugin itself filters it
(its code path, its cache, the builtin embedder); BM25 over the tools' names and descriptions
and a random pick of k run on the same lists. Tokens are those of the tools' JSON
(`routeyard.tokens`, cl100k), before and after filtering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routeyard.plugins.base import PluginContext  # noqa: E402
from routeyard.plugins.tool_filter import ToolFilterPlugin, tool_text  # noqa: E402
from routeyard.signals import RequestContext  # noqa: E402
from routeyard.tokens import count_text_tokens  # noqa: E402

DATA = ROOT / "bench" / "data" / "tool_filter_bfcl.json"
SOURCES = ("BFCL_v4_multiple", "BFCL_v4_live_multiple", "BFCL_v4_parallel_multiple",
           "BFCL_v4_live_parallel_multiple")
_WORD = re.compile(r"[a-z0-9]+")

Tool = dict[str, Any]
Item = dict[str, Any]
Ranker = Callable[[str, list[Tool], int, random.Random], list[int]]


# -- derivation ---------------------------------------------------------------------------------

def derive(source: Path, out: Path) -> None:
    """BFCL's question files and their possible answers (read from `source`) → the tool pool
    (name, description, parameters; deduplicated) and the items (query, candidate tool ids,
    needed tool ids)."""
    pool: list[Tool] = []
    ids: dict[str, int] = {}
    items: list[Item] = []
    for name in SOURCES:
        questions = [json.loads(line) for line in (source / f"{name}.json").open()]
        answers = {a["id"]: a for a in map(json.loads, (source / f"answer_{name}.json").open())}
        for question in questions:
            turn = question["question"][-1]
            query = next(m["content"] for m in reversed(turn) if m["role"] == "user")
            candidates = []
            for function in question["function"]:
                tool = {"name": function["name"], "description": function.get("description", ""),
                        "parameters": function.get("parameters", {})}
                key = json.dumps(tool, sort_keys=True)
                if key not in ids:
                    ids[key] = len(pool)
                    pool.append(tool)
                candidates.append(ids[key])
            needed_names = {n for call in answers[question["id"]]["ground_truth"] for n in call}
            needed = [c for c in candidates if pool[c]["name"] in needed_names]
            if len(needed) != len(needed_names):
                continue  # the answer names a tool the item does not offer
            items.append({"id": question["id"], "query": query, "candidates": candidates,
                          "needed": needed})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tools": pool, "items": items}, separators=(",", ":")) + "\n")
    print(f"{len(items)} items, {len(pool)} distinct tools → {out}")


# -- tool lists ---------------------------------------------------------------------------------

def as_openai(tool: Tool) -> Tool:
    parameters = dict(tool["parameters"])
    if parameters.get("type") == "dict":  # BFCL's spelling of a JSON-schema object
        parameters["type"] = "object"
    return {"type": "function", "function": {"name": tool["name"],
                                             "description": tool["description"],
                                             "parameters": parameters}}


def tool_list(item: Item, pool: list[Tool], size: int, rng: random.Random) -> list[int]:
    """The item's candidates (its needed tools first if they must be cut to `size`) and random
    tools of other items with other names, shuffled."""
    own = list(item["candidates"])
    if len(own) > size:
        others = [c for c in own if c not in item["needed"]]
        own = item["needed"] + rng.sample(others, size - len(item["needed"]))
    taken = {pool[c]["name"] for c in own}
    chosen = list(own)
    while len(chosen) < size:
        pick = rng.randrange(len(pool))
        if pool[pick]["name"] not in taken:
            taken.add(pool[pick]["name"])
            chosen.append(pick)
    rng.shuffle(chosen)
    return chosen


# -- rankers ------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bm25(query: str, tools: list[Tool], k: int, rng: random.Random) -> list[int]:
    """Okapi BM25 (k1 1.2, b 0.75) of the query over each tool's name words + description."""
    docs = [words(tool_text(tool, tool["function"]["name"])) for tool in tools]
    average = sum(map(len, docs)) / len(docs)
    frequency = Counter(w for doc in docs for w in set(doc))
    scores = []
    for doc in docs:
        counts = Counter(doc)
        score = 0.0
        for word in set(words(query)):
            if word in counts:
                idf = math.log(1 + (len(docs) - frequency[word] + 0.5) / (frequency[word] + 0.5))
                tf = counts[word]
                score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / average))
        scores.append(score)
    order = sorted(range(len(tools)), key=lambda i: (-scores[i], rng.random()))
    return order[:k]


def random_k(query: str, tools: list[Tool], k: int, rng: random.Random) -> list[int]:
    return rng.sample(range(len(tools)), k)


def plugin_ranker(plugins: dict[int, ToolFilterPlugin]) -> Ranker:
    def rank(query: str, tools: list[Tool], k: int, rng: random.Random) -> list[int]:
        ctx = _context(query, tools)
        asyncio.run(plugins[k].on_request_async(ctx))
        kept = {id(t) for t in ctx.body["tools"]}
        return [i for i, t in enumerate(tools) if id(t) in kept]

    return rank


# -- the run ------------------------------------------------------------------------------------

def evaluate(data: dict[str, Any], sizes: list[int], ks: list[int], seed: int
             ) -> list[dict[str, Any]]:
    pool, items = data["tools"], data["items"]
    openai_pool = [as_openai(t) for t in pool]
    tokens = [count_text_tokens(json.dumps(t)) for t in openai_pool]
    # min_tools 0: filter every list longer than k; one plugin (and cache) per k, as deployed.
    plugins = {k: ToolFilterPlugin({"k": k, "min_tools": 0, "cache_size": 8_192}) for k in ks}
    rankers: dict[str, Ranker] = {"tool_filter (embedding)": plugin_ranker(plugins),
                                  "BM25": bm25, "random k": random_k}
    rows = []
    for size in sizes:
        lists = [tool_list(item, pool, size, random.Random(f"{seed}:{size}:{item['id']}"))
                 for item in items]
        for k in ks:
            for method, ranker in rankers.items():
                rng = random.Random(f"{seed}:{method}")
                hits = needed = whole = sent = full = 0
                for item, ids in zip(items, lists, strict=True):
                    kept = {ids[i] for i in ranker(item["query"], [openai_pool[i] for i in ids],
                                                   k, rng)}
                    found = sum(1 for n in item["needed"] if n in kept)
                    hits += found
                    needed += len(item["needed"])
                    whole += found == len(item["needed"])
                    full += sum(tokens[i] for i in ids)
                    sent += sum(tokens[i] for i in kept)
                rows.append({"tools": size, "k": k, "method": method,
                             "recall": hits / needed, "all_needed": whole / len(items),
                             "tokens_full": full / len(items), "tokens_sent": sent / len(items),
                             "saved": 1 - sent / full})
    return rows


def timing(data: dict[str, Any], sizes: list[int], repeat: int = 50) -> list[str]:
    """The plugin's time per request (one event loop) on a list it has never seen, then on
    the same list again (an agent's fixed tools: every request after the first)."""
    import statistics
    import time

    pool = [as_openai(t) for t in data["tools"]]
    query = data["items"][0]["query"]

    async def measure() -> list[str]:
        lines = []
        await ToolFilterPlugin({"k": 8, "min_tools": 0}).on_request_async(
            _context(query, pool[:20]))  # loads the model
        for size in sizes:
            plugin = ToolFilterPlugin({"k": 8, "min_tools": 0, "max_tools": 10_000})
            times = []
            for _ in range(repeat + 1):
                ctx = _context(query, pool[:size])
                started = time.perf_counter()
                await plugin.on_request_async(ctx)
                times.append((time.perf_counter() - started) * 1000)
            lines.append(f"{size} tools: first request {times[0]:.1f} ms, then "
                         f"{statistics.median(times[1:]):.2f} ms (median of {repeat})")
        return lines

    return asyncio.run(measure())


def _context(query: str, tools: list[Tool]) -> PluginContext:
    body = {"model": "m", "messages": [{"role": "user", "content": query}], "tools": tools}
    return PluginContext("req_1", "d", "m", RequestContext(body), None, dict(body), {}, False)


def markdown(rows: list[dict[str, Any]], items: int) -> str:
    lines = [f"{items} BFCL items (multiple, live_multiple, parallel_multiple, "
             "live_parallel_multiple).", "",
             "| tools | k | method | recall of needed tool | all needed kept | tool tokens "
             "(all → sent) | saved |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tools']} | {r['k']} | {r['method']} | {r['recall']:.3f} | "
                     f"{r['all_needed']:.3f} | {r['tokens_full']:.0f} → {r['tokens_sent']:.0f} "
                     f"| {r['saved']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["derive"]:
        parser = argparse.ArgumentParser(prog="tool_filter_eval.py derive")
        parser.add_argument("source", type=Path, help="BFCL_v4_{multiple,live_multiple}.json "
                            "and answer_<same>.json (from bfcl_eval/data/possible_answer)")
        parser.add_argument("--out", type=Path, default=DATA)
        args = parser.parse_args(sys.argv[2:])
        derive(args.source, args.out)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N items")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", type=Path, help="write the rows as JSON")
    parser.add_argument("--timing", action="store_true",
                        help="also time the plugin on 20, 100 and 1,000 tools")
    args = parser.parse_args()
    data = json.loads(args.data.read_text())
    if args.limit:
        data["items"] = data["items"][:args.limit]
    rows = evaluate(data, args.sizes, args.ks, args.seed)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.markdown:
        print(markdown(rows, len(data["items"])))
    else:
        for r in rows:
            print(f"tools={r['tools']:<4} k={r['k']:<3} {r['method']:<24} recall={r['recall']:.3f} "
                  f"all={r['all_needed']:.3f} tokens {r['tokens_full']:.0f}→"
                  f"{r['tokens_sent']:.0f} saved={r['saved']:.0%}")
    if args.timing:
        print("\n".join(timing(data, [20, 100, 1_000])))


if __name__ == "__main__":
    main()
