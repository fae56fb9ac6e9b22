"""The jailbreak detector's rows: which file and source trains, calibrates or only evaluates.

Shared by scripts/train_jailbreak.py and scripts/jailbreak_loso.py, so that the evaluation
measures exactly the recipe that ships. Each row gets:
- `label`: benign / jailbreak (wrapper templates, persuasion) / injection / harmful;
- `trainable`: its licence allows shipping weights trained on it (MIT, Apache-2.0, CC0-1.0,
  CC-BY; see ../shared/data/README.md); the others (Tensor Trust hijacks, ShareGPT, AlpacaEval)
  only evaluate or set thresholds;
- `chat`: a chat-like benign prompt (benign_train.jsonl, ShareGPT, AlpacaEval): thresholds are
  set for false positives on these, never on the short CLINC150 intents;
- `split`: train / calib / test by a hash of the text (60/20/20).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from jailbreak_synthetic import generate

from routeyard.safety.jailbreak_eval import LabelledRow, read_rows

SYNTHETIC = (3000, 6000)  # injections, benign look-alikes (before the 60/20/20 split)
SYNTHETIC_SOURCE = "synthetic (scripts/jailbreak_synthetic.py)"
DOC_INJECTIONS = 2400  # synthetic injections inside chat-like benign text, split over its sources
DOC_FILLER_CHARS = (80, 4000)
MAX_CLINC_TRAIN = 6000  # short intents: more of them adds nothing but fit time
# attacks.jsonl and harmful_requests.jsonl: source prefix → (label, licence); others: eval only
OLD_SOURCES = {
    "verazuo/jailbreak_llms": ("jailbreak", "MIT"),
    "sherdencooper/GPTFuzz": ("jailbreak", "MIT"),
    "AdvBench": ("harmful", "MIT"),
    "GPTFuzz question_list": ("harmful", "MIT"),
    "jailbreak_llms forbidden_question_set": ("harmful", "MIT (verazuo/jailbreak_llms)"),
    "clinc150": ("benign", "CC-BY-3.0"),
    "gsm8k": ("benign", "MIT"),
}
EVAL_ONLY = {"HumanCompatibleAI/tensor-trust-data": "injection"}
CHAT_CALIBRATION = ("sharegpt", "alpaca_eval")  # licence unclear: thresholds only
SHIPPABLE = {"MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0", "CC-BY-3.0"}
TEMPLATE_SOURCES = {"persuasive_jailbreaker", "awesome-chatgpt-prompts-zh"}  # jailbreak class
SHORT_NAMES = {"verazuo/jailbreak_llms": "jailbreak_llms", "sherdencooper/GPTFuzz": "GPTFuzz",
               "HumanCompatibleAI/tensor-trust-data": "tensor-trust"}


def part(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "calib" if bucket < 8 else "test"


def short_source(source: str) -> str:
    for prefix, name in SHORT_NAMES.items():
        if source.startswith(prefix):
            return name
    return source


def load_rows(data: Path, synthetic: bool = True, doc_injections: int = DOC_INJECTIONS
              ) -> list[LabelledRow]:
    """Every usable row once (first occurrence of a text wins; `suspect_jailbreak` skipped)."""
    rows: list[LabelledRow] = []
    seen: set[str] = set()

    def add(text: str, label: str, source: str, licence: str, trainable: bool,
            chat: bool, context: str = "", split: str = "") -> None:
        if text in seen:
            return
        seen.add(text)
        rows.append(LabelledRow(text, label, short_source(source), split or part(text),
                                trainable, chat, licence, context))

    for name in ("attacks.jsonl", "harmful_requests.jsonl", "benign.jsonl"):
        for row in read_rows(data / name):
            text, source = row["text"], row["source"]
            if row.get("suspect_jailbreak"):
                continue
            found = next((v for k, v in OLD_SOURCES.items() if source.startswith(k)), None)
            if found is not None:
                add(text, found[0], source, found[1], True, False)
            elif source.startswith(CHAT_CALIBRATION):  # never trained on: 80% calibrate
                add(text, "benign", source.split("(")[0], "unclear", False, True,
                    split="calib" if part(text) != "test" else "test")
            else:
                label = next((v for k, v in EVAL_ONLY.items() if source.startswith(k)), None)
                if label is not None:
                    add(text, label, source, "unverified", False, False)
    for name in ("benign_train.jsonl", "attacks_train_extra.jsonl"):
        path = data / name
        if not path.is_file():
            continue
        for row in read_rows(path):
            source, licence = row["source"], row.get("license", "")
            if row["label"] == "benign":
                label = "benign"
            else:
                label = "jailbreak" if source in TEMPLATE_SOURCES else "injection"
            add(row["text"], label, source, licence, licence in SHIPPABLE,
                row["label"] == "benign")
    if synthetic:
        fillers = [r.text for r in rows if r.trainable and r.label == "benign"
                   and r.split == "train" and not r.chat]
        attacks, benign = generate(fillers, *SYNTHETIC)
        for label, texts in (("injection", attacks), ("benign", benign)):
            for text in texts:
                add(text, label, SYNTHETIC_SOURCE, "Apache-2.0 (this repo)", True, False)
        add_doc_injections(rows, add, doc_injections)
    return rows


def add_doc_injections(rows: list[LabelledRow], add: Any, total: int) -> None:
    """Synthetic injections wrapped around train-split chat-like benign rows (documents, system
    prompts, e-mails): teaches that an order hidden in a long benign text is the signal, not the
    text's length or style. Each batch draws on one benign source only, and its rows name that
    source as `context`, so a leave-one-source-out fold holds them out with it."""
    if total <= 0:
        return
    by_source: dict[str, list[str]] = {}
    for r in rows:
        if (r.chat and r.trainable and r.label == "benign" and r.split == "train"
                and DOC_FILLER_CHARS[0] <= len(r.text) <= DOC_FILLER_CHARS[1]):
            by_source.setdefault(r.source, []).append(r.text)
    pool = sum(len(v) for v in by_source.values())
    for seed, (source, fillers) in enumerate(sorted(by_source.items()), start=1):
        n = max(5, round(total * len(fillers) / pool)) if pool else 0
        attacks, _ = generate(fillers, n, 0, seed=seed, doc_only=True)
        for text in attacks:
            add(text, "injection", f"{SYNTHETIC_SOURCE} in {source}", "Apache-2.0 (this repo)",
                True, False, source)


def subsample_clinc(rows: list[LabelledRow], limit: int = MAX_CLINC_TRAIN,
                    seed: int = 0) -> list[LabelledRow]:
    """Drop train-split CLINC150 rows beyond `limit` (seeded)."""
    clinc = [i for i, r in enumerate(rows) if r.source.startswith("clinc150")
             and r.split == "train"]
    rng = np.random.default_rng(seed)
    drop = set(rng.choice(clinc, max(0, len(clinc) - limit), replace=False).tolist())
    return [r for i, r in enumerate(rows) if i not in drop]
