"""Speed of the signal and decision engines, in process, against the goals of issue 3.

    python bench/signals_speed.py [--iterations 5000] [--json] [--markdown]

On a real prompt cut to 500 tokens, with a fresh RequestContext per call, it times the heuristic
signals, the same plus embedding and domain, 100 compiled rule trees over a fixed leaves dict,
and a full `decide`; next to two baselines from the same run (`orjson.loads` of the body, an
empty `await`). A fresh process measures the first request once. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from paths import add_shared_option, shared_dir

DATA = Path("data") / "llmrouter" / "test.jsonl"  # in the shared folder (see paths.py)
PROMPT_ID = "llmrouter.test.11"  # a logic-grid puzzle in English prose, 645 tokens untrimmed
TARGET_TOKENS = 500
HEADERS = {"authorization": "Bearer sk-bench-user", "x-tier": "gold"}

HEURISTIC: dict[str, Any] = {
    "keyword": {"sets": {
        "code": {"any": ["python", "javascript", "c++", "rust", "function", "compile error"]},
        "math": {"any": ["prove", "integral", "derivative", "theorem", "equation"]},
        "sql": {"all": ["select", "from", "where"]},
        "puzzle": {"any": ["riddle", "logic puzzle", "clue", "sudoku"]},
        "ticket": {"regex": [r"\b[A-Z]{2,8}-\d+\b"], "case_sensitive": True},
        "pii": {"regex": [r"\b\d{3}-\d{2}-\d{4}\b", r"[\w.+-]+@[\w-]+\.[\w.]+"]},
        "urgent": {"any": ["urgent", "asap", "immediately"], "regex": [r"\bdead-?line\b"]},
    }},
    "context_length": {"bands": {"short": {"max_tokens": 256}, "long": {"min_tokens": 4097},
                                 "medium": {"min_tokens": 257, "max_tokens": 4096}}},
    "language": {"groups": {"latin": ["en", "fr", "de", "es", "it"], "cjk": ["zh", "ja", "ko"]}},
    "conversation": {}, "modality": {},
    "authz": {"roles": {
        "admin": {"api_keys": [hashlib.sha256(b"sk-bench-admin").hexdigest()]},
        "gold": {"headers": {"x-tier": ["gold"]}}}},
    "metadata": {"hints": {"tenant": {"field": "tenant"}, "end_user": {"field": "user"},
                           "tier": {"header": "x-tier", "equals": ["gold", "silver"]}}},
}
SEMANTIC: dict[str, Any] = {
    "embedding": {"sets": {
        "coding": {"examples": ["Fix this Python function", "Why does my code not compile?",
                                "Write a SQL query that joins two tables"]},
        "puzzles": {"examples": ["Solve this logic grid puzzle", "Who lives in the red house?",
                                 "Use the clues to find who owns the zebra"],
                    "aggregate": "mean", "threshold": 0.3},
        "chitchat": {"examples": ["Hi, how are you?", "Tell me a joke", "Good morning!"],
                     "aggregate": "any"}}},
    "domain": {"examples": {
        "code": ["Refactor this Java class", "Debug my segfault in C", "Write a bash script"],
        "science": ["Balance this chemical equation", "Explain quantum tunnelling",
                    "What is the Krebs cycle?"],
        "reasoning": ["Solve this riddle step by step", "Which suspect is lying?",
                      "Seat five guests given these constraints"],
        "chat": ["Tell me a joke about cats", "What to cook tonight?", "Recommend a novel"]}},
}
# The names each heuristic family can match (language: a few codes and the groups).
LEAF_NAMES = {"keyword": list(HEURISTIC["keyword"]["sets"]), "language": ["en", "latin", "cjk"],
              "context_length": ["short", "medium", "long"], "modality": ["image", "text_only"],
              "conversation": ["multi_turn", "long_conversation", "has_tools", "has_system"],
              "authz": ["admin", "gold"], "metadata": ["tenant", "end_user", "tier"]}
ALL_LEAVES = [f"{family}:{name}" for family, names in LEAF_NAMES.items() for name in names]


def request_body(shared: Path) -> dict[str, Any]:
    """A system turn and a real prompt, cut at whitespace to TARGET_TOKENS for the request."""
    from routeyard.tokens import _encoding, count_prompt_tokens

    data = (shared / DATA).read_bytes()
    rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    start = next(i for i, r in enumerate(rows) if r["id"] == PROMPT_ID)
    text = "\n\n".join(r["prompt"] for r in rows[start:start + 3])  # long enough to cut

    def body(prompt: str) -> dict[str, Any]:
        return {"model": "auto", "user": "u-42", "metadata": {"tenant": "acme"},
                "messages": [{"role": "system", "content": "You are a careful assistant."},
                             {"role": "user", "content": prompt}]}

    budget = TARGET_TOKENS - count_prompt_tokens(body("")["messages"])  # the chat framing
    return body(_encoding().decode(_encoding().encode_ordinary(text)[:budget]).rsplit(None, 1)[0])


def rule_trees(count: int = 100, seed: int = 3) -> list[dict[str, Any]]:
    """`count` rule trees of exactly 5 leaves each, cycling through mixed all/any/not shapes."""
    rng = random.Random(seed)

    def leaf() -> Any:
        name = rng.choice(ALL_LEAVES)
        return {"signal": name, "threshold": 0.5} if rng.random() < 0.2 else name

    shapes: list[Callable[[], dict[str, Any]]] = [
        lambda: {"all": [leaf(), leaf(), {"any": [leaf(), leaf()]}, {"not": leaf()}]},
        lambda: {"any": [{"all": [leaf(), leaf()]}, {"all": [leaf(), leaf()]}, leaf()]},
        lambda: {"all": [leaf(), {"not": {"any": [leaf(), leaf()]}}, leaf(), leaf()]},
        lambda: {"any": [leaf(), leaf(), {"not": {"all": [leaf(), leaf(), leaf()]}}]},
    ]
    return [shapes[i % len(shapes)]() for i in range(count)]


def decision_config(signals: dict[str, Any]) -> dict[str, Any]:
    """100 decisions; `confidence` makes `decide` evaluate every one, the costliest case."""
    models = [{"name": m, "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}
              for m in ("small", "large")]
    return {"models": models, "signals": signals, "decision_strategy": "confidence",
            "decisions": [{"name": f"d{i}", "rules": tree, "candidates": ["large"]}
                          for i, tree in enumerate(rule_trees())],
            "default": {"candidates": ["small"]}}


def signal_engine(signals: dict[str, Any]) -> Any:
    from routeyard.config.signals import SignalsConfig, declared_names
    from routeyard.signals import SignalEngine

    config = SignalsConfig.model_validate(signals)
    referenced = {f: declared_names(f, signals[f]) or set(LEAF_NAMES.get(f, ())) for f in signals}
    return SignalEngine(config, referenced)


def stats(samples_ns: list[int]) -> dict[str, float]:
    ordered, count = sorted(samples_ns), len(samples_ns)
    p50, p99 = (ordered[min(count - 1, int(q * count))] / 1e6 for q in (0.5, 0.99))
    return {"p50": p50, "p99": p99, "mean": sum(ordered) / count / 1e6, "n": count}


async def timed(make: Callable[[], Any], n: int, awaited: bool = True) -> list[int]:
    """Nanoseconds per call after a warm-up. Awaited: `make()` builds the coroutine (and the
    RequestContext it is given) before the clock starts, and only the `await` is timed."""
    for _ in range(min(500, n)):
        await make() if awaited else make()
    gc.collect()
    samples, clock = [], time.perf_counter_ns
    for _ in range(n):
        if awaited:
            pending: Awaitable[Any] = make()
            started = clock()
            await pending
        else:
            started = clock()
            make()
        samples.append(clock() - started)
    return samples


async def measure(n: int, body: dict[str, Any]) -> dict[str, Any]:
    from routeyard.catalog import build_config
    from routeyard.config.signals import RuleTree
    from routeyard.decisions.engine import DecisionEngine
    from routeyard.decisions.rules import compile_rule
    from routeyard.tokens import count_prompt_tokens

    raw = orjson.dumps(body)
    heuristic, semantic_only = signal_engine(HEURISTIC), signal_engine(SEMANTIC)
    semantic = signal_engine({**HEURISTIC, **SEMANTIC})
    decider = DecisionEngine(build_config(decision_config(HEURISTIC)))
    leaves = (await heuristic.evaluate(heuristic.context(body, HEADERS))).leaves
    functions = [compile_rule(RuleTree.model_validate(t)) for t in rule_trees()]

    def rules() -> None:
        for function in functions:
            function(leaves)

    async def empty() -> None:
        return None

    samples = {
        "baseline: orjson.loads(body)": await timed(lambda: orjson.loads(raw), n, False),
        "baseline: empty await": await timed(empty, n),
        "signals: heuristic": await timed(
            lambda: heuristic.evaluate(heuristic.context(body, HEADERS)), n),
        "signals: embedding + domain only": await timed(
            lambda: semantic_only.evaluate(semantic_only.context(body, HEADERS)), n),
        "signals: heuristic + embedding + domain": await timed(
            lambda: semantic.evaluate(semantic.context(body, HEADERS)), n),
        "rules: 100 trees x 5 leaves": await timed(rules, n, False),
        "decide: 100 decisions, heuristic": await timed(
            lambda: decider.decide(decider.context(body, HEADERS)), n),
    }
    outcome = await decider.decide(decider.context(body, HEADERS))
    families: dict[str, list[float]] = {}
    for _ in range(min(n, 2000)):  # each family's own latency_ms, as the engine records it
        report = await semantic.evaluate(semantic.context(body, HEADERS))
        for name, result in report.results.items():
            families.setdefault(name, []).append(result.latency_ms)
    return {"prompt": {"id": PROMPT_ID, "tokens": count_prompt_tokens(body["messages"]),
                       "body_bytes": len(raw)},
            "leaves": sorted(leaves), "decision": outcome.decision.name,
            "decisions_matching": sum(f(leaves) > 0 for f in functions),
            "results": {name: stats(s) for name, s in samples.items()},
            "family_p50_ms": {k: sorted(v)[len(v) // 2] for k, v in families.items()}}


GOALS = {"signals: heuristic": [("p50", 0.2)],
         "signals: heuristic + embedding + domain": [("p50", 3.0), ("p99", 10.0)],
         "rules: 100 trees x 5 leaves": [("p50", 0.1)]}


def cold_probe() -> dict[str, float]:
    """In a fresh process (the body comes on stdin): what the first request pays, in ms."""
    body, clock, marks = orjson.loads(sys.stdin.buffer.read()), time.perf_counter, {}
    built: list[Any] = []
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("import routeyard.signals", lambda: importlib.import_module("routeyard.signals")),
        ("load the embedding model (model2vec)",
         lambda: importlib.import_module("routeyard.signals.embedder").load_embedder()),
        ("build the engine (embed examples, fit domain)",
         lambda: built.append(signal_engine({**HEURISTIC, **SEMANTIC}))),
        *[(label, lambda: asyncio.run(built[0].evaluate(built[0].context(body, HEADERS))))
          for label in ("first evaluate (loads BPE tables, langdetect)",
                        "second evaluate (warm)")]]
    for label, action in steps:
        started = clock()
        action()
        marks[label] = round((clock() - started) * 1000, 2)
    marks["total: import to warm"] = round(sum(marks.values()), 2)
    return marks


def table(results: dict[str, Any]) -> list[tuple[str, ...]]:
    base = results["results"]["baseline: orjson.loads(body)"]["p50"]
    rows = [("measure", "p50 ms", "p99 ms", "mean ms", "p50 / loads", "goal", "status")]
    for name, s in results["results"].items():
        goals = GOALS.get(name, [])
        goal = ", ".join(f"{m} <= {v:g}" for m, v in goals) or "-"
        status = ("MET" if all(s[m] <= v for m, v in goals) else "MISS") if goals else ""
        rows.append((name, f"{s['p50']:.4f}", f"{s['p99']:.4f}", f"{s['mean']:.4f}",
                     f"{s['p50'] / base:.1f}x", goal, status))
    return rows


def render(rows: list[tuple[str, ...]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join([lines[0], "|" + "---|" * len(rows[0]), *lines[1:]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Signal and decision engine speed.")
    parser.add_argument("--iterations", type=int, default=5000, help="timed calls per measure")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown report")
    parser.add_argument("--cold-probe", action="store_true", help=argparse.SUPPRESS)
    add_shared_option(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # model2vec's model card notice
    if args.cold_probe:
        print(json.dumps(cold_probe()))
        return
    load_before = os.getloadavg()[0]  # other work on the machine shows up in the p99s
    body = request_body(shared_dir(args.shared))
    probe = subprocess.run([sys.executable, __file__, "--cold-probe"], check=True, text=True,
                           input=orjson.dumps(body).decode(), capture_output=True)
    results = asyncio.run(measure(args.iterations, body))
    results["cold_ms"] = json.loads(probe.stdout)
    sys.path.insert(0, str(Path(__file__).parent))
    from procs import machine_info
    results["meta"] = {"command": " ".join(["python bench/signals_speed.py", *sys.argv[1:]]),
                       "machine": machine_info(), "iterations": args.iterations,
                       "loadavg_1m_before_after": [load_before, os.getloadavg()[0]],
                       "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    prompt, meta, machine = results["prompt"], results["meta"], results["meta"]["machine"]
    load = "load average {:.2f} -> {:.2f}".format(*meta["loadavg_1m_before_after"])
    tables = [table(results),
              [("family (in the full engine)", "p50 ms, own latency_ms")]
              + [(k, f"{v:.4f}") for k, v in results["family_p50_ms"].items()],
              [("first request, fresh process", "ms")]
              + [(k, f"{v:g}") for k, v in results["cold_ms"].items()]]
    print(f"prompt {prompt['id']}: {prompt['tokens']} tokens, {prompt['body_bytes']} B body; "
          f"{results['decisions_matching']}/100 rule trees hold on its leaves; decide -> "
          f"{results['decision']}; {args.iterations} timed calls per measure; {load}\n")
    print("\n\n".join(render(rows, False) for rows in tables))
    if args.markdown:
        print(f"\n`{meta['command']}` · {meta['date']} · {machine['nproc']} cores, "
              f"{machine['cpu_model']}, Python {machine['python']} · prompt {prompt['id']}, "
              f"{prompt['tokens']} tokens · {args.iterations} timed calls per measure · {load}\n")
        print("\n\n".join(render(rows, True) for rows in tables))


if __name__ == "__main__":
    main()
