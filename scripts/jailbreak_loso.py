"""Leave-one-source-out evaluation of the jailbreak detector's training recipes.

    python scripts/jailbreak_loso.py [--recipes static+ngrams,minilm+ngrams] [--shipped]
                                     [--max-fpr 0.01] [--json FILE] [--shared DIR]

For every attack source (sources under 20 rows share one fold), each recipe is trained on the
shippable rows of all the other sources (scripts/jailbreak_data.py), its threshold set for
<= 1% false positives on the calibration split of the chat-like benign rows, and its recall
measured on the held-out source. Evaluation-only sources (Tensor Trust) are never trained on.
`--shipped` adds the shipped model as it is (no retraining; its threshold re-set the same way).
Prints a table per recipe: recall, threshold, calibration and held-out test FPR, then the mean
and the worst source. MiniLM recipes need the `jailbreak-accurate` extra.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
from jailbreak_data import load_rows, subsample_clinc
from jailbreak_recipe import RECIPES, feature_matrix, loso_fitter, pattern_hits

from routeyard.safety.jailbreak_eval import (
    Fitter,
    FoldResult,
    LabelledRow,
    Scorer,
    format_table,
    leave_one_source_out,
    summarise,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paths import add_shared_option, shared_dir


def shipped_fitter(rows: list[LabelledRow], artifact: Path | None) -> Fitter:
    """The shipped detector (patterns included) as a fixed scorer: it ignores the fold."""
    from routeyard.signals.jailbreak import (
        JailbreakClassifier,
        jailbreak_score,
        load_builtin,
        make_detector,
    )

    classifier = JailbreakClassifier.load(artifact) if artifact else load_builtin()
    detector = make_detector(classifier)
    scores = np.array([1.0 if detector.pattern(r.text) else jailbreak_score(
        detector.classifier.probabilities(detector.embed(r.text), r.text)) for r in rows])

    def fit(_train: Sequence[int]) -> Scorer:
        return lambda index: scores[list(index)]

    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--recipes", default="static+ngrams",
                        help="comma-separated, of: " + ", ".join(RECIPES))
    parser.add_argument("--shipped", action="store_true", help="also the shipped model as is")
    parser.add_argument("--artifact", type=Path, default=None,
                        help="with --shipped: this .npz instead of the shipped one")
    parser.add_argument("--max-fpr", type=float, default=0.01)
    parser.add_argument("--min-rows", type=int, default=20)
    parser.add_argument("--only", default=None, help="comma-separated folds to run")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    add_shared_option(parser)
    args = parser.parse_args()
    data = args.data or shared_dir(args.shared) / "data" / "safety"
    rows = subsample_clinc(load_rows(data))
    texts = [r.text for r in rows]
    only = set(args.only.split(",")) if args.only else None
    print(f"{len(rows)} rows; chat benign calib/test: "
          f"{sum(r.chat and r.split == 'calib' for r in rows)}/"
          f"{sum(r.chat and r.split == 'test' for r in rows)}", flush=True)
    report: dict[str, object] = {}

    def run(name: str, fit: Fitter) -> None:
        started = time.perf_counter()
        results = leave_one_source_out(rows, fit, args.max_fpr, args.min_rows, only,
                                       progress=lambda r: print(f"  {name}: {r.fold} "
                                                                f"{r.recall:.3f}", flush=True))
        print(format_table(results, f"== {name} ({time.perf_counter() - started:.0f} s)"),
              flush=True)
        report[name] = {"summary": summarise(results),
                        "folds": [result_dict(r) for r in results]}

    if args.shipped:
        run("shipped" if args.artifact is None else str(args.artifact),
            shipped_fitter(rows, args.artifact))
    hits = pattern_hits(texts) if args.recipes else np.zeros(0, dtype=bool)
    for name in filter(None, args.recipes.split(",")):
        recipe = RECIPES[name]
        started = time.perf_counter()
        x = feature_matrix(recipe, texts)
        print(f"{name}: features {x.shape} in {time.perf_counter() - started:.0f} s", flush=True)
        run(name, loso_fitter(recipe, rows, x, hits))
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


def result_dict(result: FoldResult) -> dict[str, object]:
    return {"fold": result.fold, "rows": result.rows, "recall": round(result.recall, 4),
            "threshold": result.threshold, "calib_fpr": round(result.calib_fpr, 4),
            "test_fpr": round(result.test_fpr, 4), "trainable": result.trainable,
            "source_fpr": result.source_fpr}


if __name__ == "__main__":
    main()
