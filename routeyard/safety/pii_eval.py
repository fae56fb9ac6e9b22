"""Span-level evaluation of `find_pii` on a labelled JSONL file.

Rows are `{"text", "spans": [{"start", "end", "label", "value"}], ...}`. Gold labels are mapped
onto the detector's types (`LABEL_MAP`); others (ORGANIZATION, DATE_TIME, STREET_ADDRESS, ...)
are ignored. A predicted span is a true positive when it overlaps a gold span of the same label
that no earlier prediction has claimed; a gold span with no such prediction is a false negative.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from routeyard.signals.pii import ALL_PII_ENTITIES, find_pii

LABEL_MAP = {
    "EMAIL_ADDRESS": "EMAIL_ADDRESS", "EMAIL": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER", "PHONE": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE", "IBAN": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "PERSON": "PERSON", "person": "PERSON",
    "LOCATION": "LOCATION", "location": "LOCATION", "GPE": "LOCATION",
}


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def evaluate_pii(path: str | Path, entities: Iterable[str] | None = None) -> dict[str, Any]:
    """Per-label precision/recall/F1 over the labels the detector covers (default: all of
    them, PERSON and LOCATION included), and p50 latency."""
    wanted = list(ALL_PII_ENTITIES if entities is None else entities)
    counts = {label: [0, 0, 0] for label in wanted}  # tp, fp, fn
    latencies: list[float] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            gold = [(s["start"], s["end"], LABEL_MAP[s["label"]]) for s in row["spans"]
                    if LABEL_MAP.get(s["label"]) in counts]
            t0 = time.perf_counter()
            predicted = find_pii(row["text"], wanted)
            latencies.append((time.perf_counter() - t0) * 1000)
            claimed: set[int] = set()
            for p in predicted:
                hit = next((i for i, (start, end, label) in enumerate(gold)
                            if i not in claimed and label == p.label
                            and p.start < end and start < p.end), None)
                if hit is None:
                    counts[p.label][1] += 1
                else:
                    claimed.add(hit)
                    counts[p.label][0] += 1
            for i, (_, _, label) in enumerate(gold):
                if i not in claimed:
                    counts[label][2] += 1
    return {"per_label": {label: _prf(*c) for label, c in counts.items()},
            "p50_ms": statistics.median(latencies) if latencies else 0.0,
            "texts": len(latencies)}


if __name__ == "__main__":  # pragma: no cover - a measuring aid
    import sys

    report = evaluate_pii(sys.argv[1])
    for label, m in report["per_label"].items():
        print(f"{label:14} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} "
              f"tp={m['tp']} fp={m['fp']} fn={m['fn']}")
    print(f"p50 {report['p50_ms']:.3f} ms over {report['texts']} texts")
