"""Train the shipped jailbreak classifier (routeyard/signals/models/jailbreak/).

    python scripts/train_jailbreak.py [--shared DIR | --data DIR] [--out DIR]

--data defaults to data/safety/ in the shared folder (see bench/paths.py).

Only MIT / CC-BY rows train the weights: verazuo/jailbreak_llms and GPTFuzz attacks (jailbreak),
AdvBench, GPTFuzz questions and the jailbreak_llms forbidden questions (harmful), CLINC150 and
GSM8K (benign), plus synthetic prompt injections and benign look-alikes written for this
project (scripts/jailbreak_synthetic.py). Every group is split 60/20/20 (train / calibration /
test) by a hash of the text.
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
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from jailbreak_synthetic import generate
from scipy import sparse

from routeyard.safety.jailbreak_eval import read_rows
from routeyard.signals.embedder import load_embedder
from routeyard.signals.jailbreak import (
    DEFAULT_PATTERNS,
    MODEL_DIR,
    JailbreakClassifier,
    JailbreakDetector,
    jailbreak_score,
    sparse_features,
)

# bench/paths.py is the one place that finds the shared folder beside the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paths import add_shared_option, shared_dir

BUCKETS = 2**15  # word 1-2-grams
CHAR_BUCKETS = 2**16  # char 3-5-grams
SYNTHETIC = (3000, 6000)  # injections, benign look-alikes (before the 60/20/20 split)
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
SYNTHETIC_SOURCE = "scripts/jailbreak_synthetic.py (written for this repo)"
LICENCE = "Apache-2.0 (this repo)"
CHAT_SOURCES = ("sharegpt", "alpaca_eval")  # calibration / test only
MAX_CLINC_TRAIN = 6000  # short intents: more of them adds nothing but fit time


def part(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "calib" if bucket < 8 else "test"


def train_label(source: str) -> tuple[str, str] | None:
    for prefix, value in TRAIN_SOURCES.items():
        if source.startswith(prefix):
            return value
    return None


def features(texts: list[str], embeddings: np.ndarray, char_buckets: int, power: float
             ) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        index, values = sparse_features(text, BUCKETS, char_buckets, power)
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(values)
    hashed = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(len(texts), BUCKETS + char_buckets))
    return sparse.hstack([sparse.csr_matrix(embeddings), hashed]).tocsr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="default: data/safety/ in the shared folder")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--c", type=float, default=4.0)
    parser.add_argument("--char-buckets", type=int, default=CHAR_BUCKETS, help="0: no char grams")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--power", type=float, default=0.5,
                        help="n-gram values are n ** -power (0.5: unit length)")
    add_shared_option(parser)
    args = parser.parse_args()
    args.data = args.data or shared_dir(args.shared) / "data" / "safety"
    rows = [(r, "attacks") for r in read_rows(args.data / "attacks.jsonl")]
    rows += [(r, "harmful") for r in read_rows(args.data / "harmful_requests.jsonl")]
    rows += [(r, "benign") for r in read_rows(args.data / "benign.jsonl")]
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
    made: set[str] = set()  # synthetic rows
    if not args.no_synthetic:
        # Fillers from train rows only, so no held-out text leaks into a synthetic train row.
        fillers = [t for t, lab in groups["train"] if lab == "benign"]
        attacks, benign = generate(fillers, *SYNTHETIC)
        for label, texts in (("injection", attacks), ("benign", benign)):
            for text in texts:
                if text not in seen:
                    seen.add(text)
                    made.add(text)
                    groups[part(text)].append((text, label))
                    counts[(SYNTHETIC_SOURCE, LICENCE, label)] += 1
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
        model.fit(features(texts, embedder.embed(texts), args.char_buckets, args.power), labels)
    dim = embedder.dimensions
    coef = model.coef_.astype(np.float32)
    meta = {"buckets": BUCKETS, "char_buckets": args.char_buckets, "norm_power": args.power,
            "trained": datetime.date.today().isoformat()}
    classifier = JailbreakClassifier([str(c) for c in model.classes_], coef[:, :dim],
                                     coef[:, dim:].astype(np.float16).astype(np.float32),
                                     model.intercept_, meta)
    threshold, harmful_threshold = calibrate(classifier, embedder, chat["calib"])
    classifier.meta = {"threshold": threshold, "harmful_threshold": harmful_threshold, **meta}
    args.out.mkdir(parents=True, exist_ok=True)
    classifier.save(args.out / "classifier.npz")
    detector = JailbreakDetector(classifier, embedder)
    report = {
        "chat calib FPR": rate(detector, chat["calib"]),
        "chat test FPR": rate(detector, chat["test"]),
        "CLINC/GSM8K calib FPR": rate(detector, [t for t, lab in groups["calib"]
                                                  if lab == "benign"]),
        "test attacks recall (real rows)": rate(detector, [t for t, lab in groups["test"]
                                                           if lab == "jailbreak"
                                                           and t not in made]),
        "test harmful recall": rate(detector, [t for t, lab in groups["test"]
                                               if lab == "harmful"]),
        "test harmful-name recall": rate(detector, [t for t, lab in groups["test"]
                                                    if lab == "harmful"], "harmful"),
        "test synthetic injection recall": rate(detector, [t for t, lab in groups["test"]
                                                           if lab == "injection"]),
        "test synthetic look-alike FPR": rate(detector, [t for t, lab in groups["test"]
                                                         if lab == "benign" and t in made]),
    }
    print(threshold, harmful_threshold, report)
    held = sorted(hashlib.sha256(t.encode()).hexdigest()[:16]
                  for t in [*chat["test"], *(t for t, _ in groups["test"])])
    (args.out / "split.json").write_bytes(orjson.dumps({"rule": "sha256(text)[:8] % 10: 0-5 "
                                                        "train, 6-7 calibration, 8-9 test",
                                                        "test_sha256_16": held}))
    write_provenance(args.out, counts, Counter(labels), threshold, harmful_threshold, report,
                     len(chat["calib"]))


def rate(detector: JailbreakDetector, texts: list[str], name: str | None = None) -> float:
    """Share of texts flagged (by any name, or by `name` only)."""
    if not texts:
        return 0.0
    hits = (detector.detect(t).matches for t in texts)
    return round(sum(bool(m) if name is None else name in m for m in hits) / len(texts), 4)


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
    rest = sorted((jailbreak_score(p) for p, hit in probs
                   if hit is None and p["harmful"] < harmful_threshold), reverse=True)
    allowed = max(0, budget - pattern_hits - sum(p["harmful"] >= harmful_threshold
                                                 for p, hit in probs if hit is None))
    threshold = float(rest[allowed]) + 1e-4 if len(rest) > allowed else 0.5
    return round(min(threshold, 0.99999), 6), round(min(harmful_threshold, 0.99999), 6)


def write_provenance(out: Path, counts: Counter, train: Counter, threshold: float,
                     harmful_threshold: float, report: dict[str, float], n_calib: int) -> None:
    lines = ["# Jailbreak classifier: provenance", "",
             f"Trained {datetime.date.today().isoformat()} by `scripts/train_jailbreak.py` from "
             "`shared/data/safety/` and `scripts/jailbreak_synthetic.py` (4-class logistic "
             "regression: benign / jailbreak / injection / harmful, on the 256-d builtin static "
             f"embedding + {BUCKETS} hashed word 1-2-gram buckets + {CHAR_BUCKETS} hashed char "
             "3-5-gram buckets). The `jailbreak` name scores P(jailbreak) + P(injection).",
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
              "- benign rows flagged `suspect_jailbreak`: excluded.",
              "- Synthetic rows: injection and benign look-alike phrases written for this repo "
              "(none copied or paraphrased from an evaluation file); fillers from train-split "
              "CLINC150/GSM8K rows and this repo's own docs and code.", "",
              "## Thresholds", "",
              f"- jailbreak: {threshold}, harmful: {harmful_threshold} (combined family FPR "
              f"<= {TARGET_FPR:.1%} on the calibration chat rows, patterns included)", "",
              "## Figures at training time", ""]
    lines += [f"- {k}: {v}" for k, v in report.items()]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
