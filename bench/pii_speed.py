"""Latency of the PII detector with every type on, against the frozen baseline in the same run.

    nice -n 10 python bench/pii_speed.py            # ~1 min; [--rounds N] [--json]
    nice -n 10 python bench/pii_speed.py --default-types   # the 6 pattern types only

Texts: every text of data/safety/pii.jsonl in the shared folder (short sentences and synthetic
documents), and a second set of long prompts (benign.jsonl rows of 1,500-3,000 characters, about
500 tokens). Each text is timed with the baseline (`bench/pii_baseline.py`: the detector as of
commit 3994c63, all its 8 types) and with `routeyard.signals.pii.find_pii` (all its types),
alternating which goes first; the names tagger's memo is cleared before each call, so neither
reuses the other's tagging. Reports p50 / p90 / mean per detector and the current/baseline
ratio of each.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pii_baseline
from paths import add_shared_option, shared_dir

from routeyard.config.signals import PII_ENTITIES
from routeyard.signals import names
from routeyard.signals.pii import DETECTABLE_ENTITIES, find_pii

Detect = Callable[[str], Any]
GOAL_P50_MS = 2.0


def _load(path: Path, key: str, low: int = 0, high: int = 10**9, limit: int = 10**9
          ) -> list[str]:
    out: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get(key, "") if line.strip() else ""
            if isinstance(text, str) and low <= len(text) <= high:
                out.append(text)
                if len(out) >= limit:
                    break
    return out


def _time(detect: Detect, text: str) -> float:
    names.find_names.cache_clear()
    t0 = time.perf_counter()
    detect(text)
    return (time.perf_counter() - t0) * 1000


def measure(texts: Sequence[str], detectors: dict[str, Detect], rounds: int
            ) -> dict[str, dict[str, float]]:
    """Per detector: the median over rounds of each text's time, summarised."""
    per: dict[str, list[list[float]]] = {name: [[] for _ in texts] for name in detectors}
    order = list(detectors)
    for r in range(rounds):
        for i, text in enumerate(texts):
            for name in (order if (i + r) % 2 == 0 else order[::-1]):
                per[name][i].append(_time(detectors[name], text))
    out: dict[str, dict[str, float]] = {}
    for name, times in per.items():
        medians = sorted(statistics.median(t) for t in times)
        out[name] = {"p50_ms": medians[len(medians) // 2],
                     "p90_ms": medians[int(len(medians) * 0.9)],
                     "mean_ms": statistics.fmean(medians)}
    base, cur = out["baseline"], out["current"]
    out["ratio"] = {k: cur[k] / base[k] if base[k] else 0.0 for k in base}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_option(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long", type=int, default=200, help="how many long prompts")
    parser.add_argument("--default-types", action="store_true",
                        help="time the family's default types (patterns only) instead of all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    safety = shared_dir(args.shared) / "data" / "safety"
    if not (safety / "pii.jsonl").is_file():
        print(f"no data at {safety}", file=sys.stderr)
        return 2
    base_entities = list(pii_baseline.ALL_PII_ENTITIES)
    entities = list(DETECTABLE_ENTITIES)
    if args.default_types:  # the family's default: the pattern types, no names
        base_entities = entities = list(PII_ENTITIES)
    detectors: dict[str, Detect] = {
        "baseline": lambda text: pii_baseline.find_pii(text, base_entities),
        "current": lambda text: find_pii(text, entities),
    }
    sets = {"pii.jsonl": _load(safety / "pii.jsonl", "text"),
            "long prompts": _load(safety / "benign.jsonl", "text", 1500, 3000, args.long)}
    for text in sets["pii.jsonl"][:200]:  # warm up: imports, the tagger, regex caches
        for detect in detectors.values():
            detect(text)
    results = {name: {"texts": len(texts), **measure(texts, detectors, args.rounds)}
               for name, texts in sets.items() if texts}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"python {platform.python_version()} on {platform.machine()}, {args.rounds} rounds; "
          f"baseline types {len(base_entities)}, current types {len(entities)}\n")
    print("| texts | detector | p50 ms | p90 ms | mean ms |\n|---|---|---|---|---|")
    for name, res in results.items():
        for det in ("baseline", "current", "ratio"):
            unit = "x" if det == "ratio" else ""
            print(f"| {name} ({res['texts']}) | {det} | {res[det]['p50_ms']:.3f}{unit} | "
                  f"{res[det]['p90_ms']:.3f}{unit} | {res[det]['mean_ms']:.3f}{unit} |")
    p50 = results["pii.jsonl"]["current"]["p50_ms"]
    verdict = "met" if p50 <= GOAL_P50_MS else "NOT met"
    print(f"\ngoal p50 <= {GOAL_P50_MS} ms on pii.jsonl: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
