"""Train a shipped jailbreak classifier (routeyard/signals/models/jailbreak/).

    python scripts/train_jailbreak.py [--tier fast|accurate] [--recipe NAME] [--shared DIR]

`--tier fast` (default) writes classifier.npz (the builtin static embedding + hashed word and
char n-grams); `--tier accurate` writes accurate.npz (the int8 MiniLM encoder + the same n-grams;
needs the `jailbreak-accurate` extra). Rows, licences and splits: scripts/jailbreak_data.py.
Only shippable rows (MIT, Apache-2.0, CC0-1.0, CC-BY) train the weights: the safety training
files (benign_train.jsonl, attacks_train_extra.jsonl), verazuo/jailbreak_llms and GPTFuzz
templates, AdvBench / GPTFuzz / forbidden-question harmful requests, CLINC150 and GSM8K, plus
synthetic injections and look-alikes written for this project (scripts/jailbreak_synthetic.py).
Benign rows split 60/20/20 (train / calibration / test) by a hash of the text; attack and
harmful rows all train (scripts/jailbreak_loso.py measures unseen sources).
The thresholds are set on the calibration split of the chat-like benign rows (benign_train.jsonl
plus ShareGPT and AlpacaEval, whose licences allow setting two numbers, never the weights) for
<= TARGET_FPR false positives of the whole family (patterns included); the test split and the
Tensor Trust hijacks (never trained on) measure it. Writes the .npz, PROVENANCE*.md, split.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
from collections import Counter
from pathlib import Path

import orjson
from jailbreak_data import load_rows, subsample_clinc
from jailbreak_recipe import RECIPES, feature_matrix, fit_model, to_classifier

from routeyard.safety.jailbreak_eval import LabelledRow, calibration_group, is_training_row
from routeyard.signals.jailbreak import (
    BUILTIN_ENCODER,
    MINILM_ENCODER,
    MODEL_DIR,
    JailbreakDetector,
    jailbreak_score,
    make_detector,
)

# bench/paths.py is the one place that finds the shared folder beside the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paths import add_shared_option, shared_dir

TARGET_FPR = 0.008  # on the calibration chat rows, leaving room for unseen traffic (goal: 1%)
TIERS = {"fast": ("static+ngrams", "classifier.npz", ""),
         "accurate": ("minilm+ngrams", "accurate.npz", "_accurate")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="default: data/safety/ in the shared folder")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--tier", choices=sorted(TIERS), default="fast")
    parser.add_argument("--recipe", default=None, help="default: the tier's; one of "
                        + ", ".join(RECIPES))
    add_shared_option(parser)
    args = parser.parse_args()
    args.data = args.data or shared_dir(args.shared) / "data" / "safety"
    default_recipe, filename, suffix = TIERS[args.tier]
    recipe = RECIPES[args.recipe or default_recipe]
    rows = subsample_clinc(load_rows(args.data))
    train = [r for r in rows if is_training_row(r)]
    print("train:", Counter(r.label for r in train), flush=True)
    model = fit_model(recipe, feature_matrix(recipe, [r.text for r in train]),
                      [r.label for r in train])
    encoder = MINILM_ENCODER if recipe.dense == "minilm" else BUILTIN_ENCODER
    dims = 0 if recipe.dense is None else 384 if recipe.dense == "minilm" else 256
    meta = {"encoder": encoder, "recipe": recipe.name, "c": recipe.c,
            "trained": datetime.date.today().isoformat()}
    classifier = to_classifier(recipe, model, dims, meta)
    calib = [r for r in rows if r.chat and r.label == "benign" and r.split == "calib"]
    detector = make_detector(classifier)
    per_group = [calibrate(detector, [r.text for r in calib if calibration_group(r) == group])
                 for group in sorted({calibration_group(r) for r in calib})]
    threshold = max(t for t, _ in per_group)
    harmful_threshold = max(h for _, h in per_group)
    classifier.meta = {"threshold": threshold, "harmful_threshold": harmful_threshold,
                       **classifier.meta}
    args.out.mkdir(parents=True, exist_ok=True)
    classifier.save(args.out / filename)
    detector = make_detector(classifier)
    report = measure(detector, rows)
    print(threshold, harmful_threshold, orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    held = sorted(hashlib.sha256(r.text.encode()).hexdigest()[:16] for r in rows
                  if r.split == "test" and r.label == "benign")
    (args.out / "split.json").write_bytes(orjson.dumps({
        "rule": "sha256(text)[:8] % 10: 0-5 train, 6-7 calibration, 8-9 test (benign rows)",
        "test_sha256_16": held}))
    write_provenance(args.out / f"PROVENANCE{suffix}.md", recipe.name, encoder, rows, train,
                     threshold, harmful_threshold, report, len(calib))


def measure(detector: JailbreakDetector, rows: list[LabelledRow]) -> dict[str, float]:
    """Flagged shares on held-out rows: chat test FPR overall and per source group."""
    test_chat = [r for r in rows if r.chat and r.label == "benign" and r.split == "test"]
    report = {"chat test FPR (all)": rate(detector, [r.text for r in test_chat])}
    for name in ("sharegpt_first_turn", "alpaca_eval"):
        report[f"chat test FPR ({name}, never trained on)"] = rate(
            detector, [r.text for r in test_chat if r.source.startswith(name)])
    for source in sorted({r.source for r in test_chat}):
        report[f"chat test FPR: {source}"] = rate(
            detector, [r.text for r in test_chat if r.source == source])
    report["CLINC/GSM8K test FPR"] = rate(detector, [
        r.text for r in rows if r.label == "benign" and not r.chat and r.split == "test"
        and not r.source.startswith("synthetic")])
    report["synthetic look-alike test FPR"] = rate(detector, [
        r.text for r in rows if r.label == "benign" and r.split == "test"
        and r.source.startswith("synthetic")])
    report["tensor-trust recall (never trained on)"] = rate(detector, [
        r.text for r in rows if r.source == "tensor-trust"])
    return report


def rate(detector: JailbreakDetector, texts: list[str], name: str | None = None) -> float:
    """Share of texts flagged (by any name, or by `name` only)."""
    if not texts:
        return 0.0
    hits = (detector.detect(t).matches for t in texts)
    return round(sum(bool(m) if name is None else name in m for m in hits) / len(texts), 4)


def calibrate(detector: JailbreakDetector, benign: list[str]) -> tuple[float, float]:
    """The lowest thresholds whose combined false positives (patterns + both names) on
    the chat rows stay within TARGET_FPR; the harmful name gets a quarter of the budget."""
    classifier = detector.classifier
    probs = [(classifier.probabilities(detector.embed(t), t), detector.pattern(t))
             for t in benign]
    budget = int(TARGET_FPR * len(benign))
    pattern_hits = sum(hit is not None for _, hit in probs)
    harm = sorted((p["harmful"] for p, hit in probs if hit is None), reverse=True)
    harm_allowed = max(0, (budget - pattern_hits) // 4)
    harmful_threshold = max(0.5, float(harm[harm_allowed]) + 1e-4 if harm else 0.5)
    rest = sorted((jailbreak_score(p) for p, hit in probs
                   if hit is None and p["harmful"] < harmful_threshold), reverse=True)
    allowed = max(0, budget - pattern_hits - sum(p["harmful"] >= harmful_threshold
                                                 for p, hit in probs if hit is None))
    threshold = float(rest[allowed]) + 1e-4 if len(rest) > allowed else 0.5
    return round(min(threshold, 0.99999), 6), round(min(harmful_threshold, 0.99999), 6)


def write_provenance(path: Path, recipe: str, encoder: str, rows: list[LabelledRow],
                     train: list[LabelledRow], threshold: float, harmful_threshold: float,
                     report: dict[str, float], n_calib: int) -> None:
    counts = Counter((r.source, r.licence, r.label) for r in train)
    lines = ["# Jailbreak classifier: provenance", "",
             f"Trained {datetime.date.today().isoformat()} by `scripts/train_jailbreak.py` "
             f"(recipe `{recipe}`, encoder `{encoder}`) from `shared/data/safety/` and "
             "`scripts/jailbreak_synthetic.py`: a 4-class logistic regression (benign / "
             "jailbreak / injection / harmful) on the dense embedding + hashed word 1-2-gram "
             "and char 3-5-gram buckets. The `jailbreak` name scores P(jailbreak) + "
             "P(injection).", "",
             "## Rows that trained the weights (shippable licences only)", "",
             "| source | licence | label | rows |", "|---|---|---|---|"]
    lines += [f"| {s} | {lic} | {lab} | {n} |" for (s, lic, lab), n in sorted(counts.items())]
    lines += ["", f"In all: {dict(Counter(r.label for r in train))}. Benign rows: the train "
              "split (60% by text hash; CLINC150 subsampled); attack and harmful rows: all.", "",
              "## Not used for the weights", "",
              "- HumanCompatibleAI/tensor-trust-data hijacks: licence not verified; evaluation "
              "only.",
              "- ShareGPT (ml-energy sample) and AlpacaEval (tatsu-lab, CC-BY-NC): never trained "
              "on; their calibration split helps set the two thresholds below.",
              "- benign rows flagged `suspect_jailbreak`: excluded.", "",
              "## Thresholds", "",
              f"- jailbreak: {threshold}, harmful: {harmful_threshold} (combined family FPR "
              f"<= {TARGET_FPR:.1%} on {n_calib} calibration chat rows, patterns included, in "
              "each group: the trainable sources' rows and the ShareGPT + AlpacaEval samples; "
              "the higher group's thresholds are kept)", "",
              "## Figures at training time (held-out rows)", ""]
    lines += [f"- {k}: {v}" for k, v in report.items()]
    lines += ["", "Leave-one-source-out recall: `python scripts/jailbreak_loso.py` "
              "(docs/signals.md, `jailbreak`)."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
