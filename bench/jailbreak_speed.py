"""Latency of the jailbreak family's tiers on a 500-token prompt, against baselines of the same run.

    python bench/jailbreak_speed.py [--repeats 300] [--old FILE] [--json]

Times `JailbreakDetector.detect` (patterns, embedding and classifier) on a real prompt cut to
500 tokens (the one bench/signals_speed.py uses), one call at a time, one thread:
- `baseline`: the shipped fast detector as it was before issue 15 (`--old FILE`: its .npz, e.g.
  from `git show HEAD:routeyard/signals/models/jailbreak/classifier.npz`; by default the current
  fast tier is its own baseline);
- `fast`: the shipped default tier (classifier.npz);
- `accurate`: the int8 MiniLM tier (accurate.npz), when the `jailbreak-accurate` extra is
  installed.
Each p50 is reported with its ratio to the baseline's, so that a slower or busier machine
shows in both. A short prompt is timed too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from paths import add_shared_option, shared_dir
from signals_speed import request_body
from timing import p50_ms

os.environ.setdefault("OMP_NUM_THREADS", "1")


def detectors(old: Path | None) -> dict[str, Any]:
    from routeyard.signals.jailbreak import (
        ACCURATE_ARTIFACT,
        JailbreakClassifier,
        load_builtin,
        make_detector,
    )

    found = {"baseline": make_detector(JailbreakClassifier.load(old) if old else load_builtin()),
             "fast": make_detector(load_builtin())}
    if ACCURATE_ARTIFACT.is_file():
        try:
            found["accurate"] = make_detector(load_builtin("accurate"))
        except RuntimeError as error:  # the extra is not installed
            print(f"accurate tier skipped: {error}", file=sys.stderr)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--old", type=Path, default=None, help="the baseline's .npz")
    parser.add_argument("--json", action="store_true")
    add_shared_option(parser)
    args = parser.parse_args()
    long_text = request_body(shared_dir(args.shared))["messages"][-1]["content"]
    short_text = "What is the capital of France, and how many people live there?"
    results: dict[str, dict[str, float]] = {}
    for name, detector in detectors(args.old).items():
        results[name] = {
            "p50_ms_500_tokens": round(p50_ms(lambda d=detector: d.detect(long_text),
                                              args.repeats), 4),
            "p50_ms_short": round(p50_ms(lambda d=detector: d.detect(short_text),
                                         args.repeats), 4)}
    base = results["baseline"]
    for row in results.values():
        row["ratio_500_tokens"] = round(row["p50_ms_500_tokens"] / base["p50_ms_500_tokens"], 2)
    if args.json:
        sys.stdout.write(orjson.dumps({"prompt_chars": len(long_text), **results}).decode()
                         + "\n")
        return
    print(f"500-token prompt: {len(long_text)} characters")
    for name, row in results.items():
        print(f"{name:<9} p50 {row['p50_ms_500_tokens']:8.3f} ms (x{row['ratio_500_tokens']:.2f}"
              f" of baseline)   short prompt p50 {row['p50_ms_short']:.3f} ms")


if __name__ == "__main__":
    main()
