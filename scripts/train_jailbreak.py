"""Train the shipped jailbreak classifier (routeyard/signals/models/jailbreak/).

    /work/venv/bin/python scripts/train_jailbreak.py [--data ../shared/data/safety] [--out DIR]

Only MIT / CC-BY rows train the weights: verazuo/jailbreak_llms and GPTFuzz attacks (jailbreak),
AdvBench, GPTFuzz questions and the jailbreak_llms forbidden questions (harmful), CLINC150 and
GSM8K (benign). Every group is split 60/20/20 (train / calibration / test) by a hash of the text.
The thresholds are set on the calibration part of the ShareGPT + AlpacaEval rows (chat-like
traffic, licence unclear: they set two numbers, never the weights) for <= 1% false positives
of the whole family (patterns included); the other half of those rows, the test parts and the
Tensor Trust hijacks (never trained on) measure it. Writes classifier.npz, PROVENANCE.md and
split.json (which test rows were held out, by text hash).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from scipy import sparse

from routeyard.signals.embedder import load_embedder
from routeyard.signals.jailbreak import (
    DEFAULT_PATTERNS,
    MODEL_DIR,
    JailbreakClassifier,
    JailbreakDetector,
    hashed_features,
)

BUCKETS = 2**15
TARGET_FPR = 0.005  # on the calibration chat rows, leaving room for unseen traffic (goal: 1%)
TRAIN_SOURCES = {  # source prefix → (label, licence)
    "verazuo/jailbreak_llms": ("jailbreak", "MIT"),
    "sherdencooper/GPTFuzz": ("jailbreak", "MIT"),
    "AdvBench": ("harmful", "MIT"),
    "GPTFuzz question_list": ("harmful", "MIT"),
    "jailbreak_llms forbidden_question_set": ("harmful", "MIT (verazuo/jailbreak_llms)"),
    "clinc150": ("benign", "CC-BY-3.0"),
    "gsm8k": ("benign", "MIT"),
}
CHAT_SOURCES = ("sharegpt", "alpaca_eval")  # calibration / test only
MAX_CLINC_TRAIN = 6000  # short intents: more of them adds nothing but fit time


def read(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def part(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "calib" if bucket < 8 else "test"


def train_label(source: str) -> tuple[str, str] | None:
    for prefix, value in TRAIN_SOURCES.items():
        if source.startswith(prefix):
            return value
    return None


def features(texts: list[str], embeddings: np.ndarray) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        index, values = hashed_features(text, BUCKETS)
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(values)
    hashed = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(len(texts), BUCKETS))
    return sparse.hstack([sparse.csr_matrix(embeddings), hashed]).tocsr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/safety"))
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--c", type=float, default=4.0)
    args = parser.parse_args()
    rows = [(r, "attacks") for r in read(args.data / "attacks.jsonl")]
    rows += [(r, "harmful") for r in read(args.data / "harmful_requests.jsonl")]
    rows += [(r, "benign") for r in read(args.data / "benign.jsonl")]
    seen: set[str] = set()
    groups: dict[str, list[tuple[str, str]]] = {"train": [], "calib": [], "test": []}
    chat: dict[str, list[str]] = {"calib": [], "test": []}
    counts: Counter[tuple[str, str, str]] = Counter()
    for row, _file in rows:
        text, source = row["text"], row["source"]
        if text in seen or row.get("suspect_jailbreak"):
            continue
        seen.add(text)
        split = part(text)
        found = train_label(source)
        if found is not None:
            label, licence = found
            groups[split].append((text, label))
            counts[(source, licence, label)] += 1
        elif source.startswith(CHAT_SOURCES):
            chat["calib" if split != "test" else "test"].append(text)
    rng = np.random.default_rng(0)
    train = groups["train"]
    clinc = [i for i, (t, lab) in enumerate(train) if lab == "benign" and len(t) < 120]
    drop = set(rng.choice(clinc, max(0, len(clinc) - MAX_CLINC_TRAIN), replace=False).tolist())
    train = [x for i, x in enumerate(train) if i not in drop]
    embedder = load_embedder("builtin")
    texts = [t for t, _ in train]
    labels = [lab for _, lab in train]
    print("train:", Counter(labels))
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(C=args.c, max_iter=3000, class_weight="balanced")
    with threadpool_limits(1):
        model.fit(features(texts, embedder.embed(texts)), labels)
    dim = embedder.dimensions
    coef = model.coef_.astype(np.float32)
    classifier = JailbreakClassifier([str(c) for c in model.classes_], coef[:, :dim],
                                     coef[:, dim:].astype(np.float16).astype(np.float32),
                                     model.intercept_, {})
    threshold, harmful_threshold = calibrate(classifier, embedder, chat["calib"])
    classifier.meta = {"threshold": threshold, "harmful_threshold": harmful_threshold,
                       "buckets": BUCKETS, "trained": datetime.date.today().isoformat()}
    args.out.mkdir(parents=True, exist_ok=True)
    classifier.save(args.out / "classifier.npz")
    detector = JailbreakDetector(classifier, embedder)
    report = {
        "chat calib FPR": rate(detector, chat["calib"]),
        "chat test FPR": rate(detector, chat["test"]),
        "CLINC/GSM8K calib FPR": rate(detector, [t for t, lab in groups["calib"]
                                                  if lab == "benign"]),
        "test attacks recall": rate(detector, [t for t, lab in groups["test"]
                                               if lab == "jailbreak"]),
        "test harmful recall": rate(detector, [t for t, lab in groups["test"]
                                               if lab == "harmful"]),
    }
    print(threshold, harmful_threshold, report)
    held = sorted(hashlib.sha256(t.encode()).hexdigest()[:16]
                  for t in [*chat["test"], *(t for t, _ in groups["test"])])
    (args.out / "split.json").write_bytes(orjson.dumps({"rule": "sha256(text)[:8] % 10: 0-5 "
                                                        "train, 6-7 calibration, 8-9 test",
                                                        "test_sha256_16": held}))
    write_provenance(args.out, counts, Counter(labels), threshold, harmful_threshold, report,
                     len(chat["calib"]))


def rate(detector: JailbreakDetector, texts: list[str]) -> float:
    if not texts:
        return 0.0
    return round(sum(bool(detector.detect(t).matches) for t in texts) / len(texts), 4)


def calibrate(classifier: JailbreakClassifier, embedder: object, benign: list[str]
              ) -> tuple[float, float]:
    """The lowest thresholds whose combined false positives (patterns + both names) on
    the chat rows stay within TARGET_FPR; the harmful name gets a quarter of the budget."""
    detector = JailbreakDetector(classifier, embedder, DEFAULT_PATTERNS)  # type: ignore[arg-type]
    probs = [(classifier.probabilities(detector.embedder.embed_one(t), t), detector.pattern(t))
             for t in benign]
    budget = int(TARGET_FPR * len(benign))
    pattern_hits = sum(hit is not None for _, hit in probs)
    harm = sorted((p["harmful"] for p, hit in probs if hit is None), reverse=True)
    harm_allowed = max(0, (budget - pattern_hits) // 4)
    harmful_threshold = max(0.5, float(harm[harm_allowed]) + 1e-4 if harm else 0.5)
    rest = sorted((p["jailbreak"] for p, hit in probs
                   if hit is None and p["harmful"] < harmful_threshold), reverse=True)
    allowed = max(0, budget - pattern_hits - sum(p["harmful"] >= harmful_threshold
                                                 for p, hit in probs if hit is None))
    threshold = float(rest[allowed]) + 1e-4 if len(rest) > allowed else 0.5
    return round(min(threshold, 0.99999), 6), round(min(harmful_threshold, 0.99999), 6)


def write_provenance(out: Path, counts: Counter, train: Counter, threshold: float,
                     harmful_threshold: float, report: dict[str, float], n_calib: int) -> None:
    lines = ["# Jailbreak classifier: provenance", "",
             f"Trained {datetime.date.today().isoformat()} by `scripts/train_jailbreak.py` from "
             "`shared/data/safety/` (3-class logistic regression: benign / jailbreak / harmful, "
             f"on the 256-d builtin static embedding + {BUCKETS} hashed word 1-2-gram buckets).",
             "", "## Rows that trained the weights (MIT / CC-BY only)", "",
             "| source | licence | label | rows (all splits) |", "|---|---|---|---|"]
    lines += [f"| {s} | {lic} | {lab} | {n} |" for (s, lic, lab), n in sorted(counts.items())]
    lines += ["", f"Train split actually used: {dict(train)} (60% of each group by text hash; "
              f"CLINC150 subsampled to {MAX_CLINC_TRAIN}).", "",
              "## Not used for the weights", "",
              "- HumanCompatibleAI/tensor-trust-data hijacks: licence not verified; evaluation "
              "only.",
              "- ShareGPT (ml-energy sample) and AlpacaEval (tatsu-lab, CC-BY-NC): not trained on. "
              f"{n_calib} of those rows (80% by text hash) set the two thresholds below; the other "
              "20% are held out.",
              "- benign rows flagged `suspect_jailbreak`: excluded.", "",
              "## Thresholds", "",
              f"- jailbreak: {threshold}, harmful: {harmful_threshold} (combined family FPR "
              f"<= {TARGET_FPR:.1%} on the calibration chat rows, patterns included)", "",
              "## Figures at training time", ""]
    lines += [f"- {k}: {v}" for k, v in report.items()]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
