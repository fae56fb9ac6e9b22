"""Measure the jailbreak family on labelled prompt files: recall, false positives, latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routeyard.jsonl import jsonl_objects
from routeyard.signals.embedder import load_embedder
from routeyard.signals.jailbreak import DEFAULT_PATTERNS, JailbreakDetector, load_builtin

Prompts = str | Path | Sequence[str]


def read_prompts(source: Prompts) -> list[str]:
    """Texts from a JSONL file of {"text": ...} lines, or a list of texts."""
    if not isinstance(source, str | Path):
        return list(source)
    texts = []
    for number, row in jsonl_objects(Path(source)):
        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError(f"{source}:{number}: no \"text\" string")
        texts.append(text)
    return texts


def evaluate_jailbreak(attacks: Prompts, benign: Prompts, harmful: Prompts | None = None,
                       threshold: float | None = None) -> dict[str, float]:
    """The shipped family (patterns included) as a detector: a prompt is flagged when it
    matches `jailbreak` or `harmful`. Recall is over the attacks, FPR over the benign prompts,
    precision over all flagged prompts (attacks and harmful requests count as positives)."""
    detector = JailbreakDetector(load_builtin(), load_embedder("builtin"), DEFAULT_PATTERNS,
                                 threshold)
    positives = read_prompts(attacks)
    negatives = read_prompts(benign)
    extra = read_prompts(harmful) if harmful is not None else []
    if not positives or not negatives:
        raise ValueError("need at least one attack and one benign prompt")
    detector.detect("warm up")
    timings: list[float] = []

    def flagged(texts: list[str]) -> int:
        hits = 0
        for text in texts:
            start = time.perf_counter()
            hits += bool(detector.detect(text).matches)
            timings.append((time.perf_counter() - start) * 1000)
        return hits

    caught, false_alarms, harmful_caught = flagged(positives), flagged(negatives), flagged(extra)
    total_flagged = caught + false_alarms + harmful_caught
    return {
        "recall": round(caught / len(positives), 4),
        "fpr": round(false_alarms / len(negatives), 4),
        "precision": round((caught + harmful_caught) / total_flagged, 4) if total_flagged else 0.0,
        "threshold": round(detector.threshold, 6),
        "p50_ms": round(statistics.median(timings), 4),
    }


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return [row for _, row in jsonl_objects(Path(path))]


def evaluate_by_source(attacks: str | Path, benign: str | Path, harmful: str | Path | None = None,
                       detector: JailbreakDetector | None = None) -> dict[str, dict[str, float]]:
    """Share of each file's rows flagged, per `source` (recall for attacks and harmful
    requests, FPR for benign prompts), plus the share that got the `harmful` name."""
    detector = detector or JailbreakDetector(load_builtin(), load_embedder("builtin"))
    report: dict[str, dict[str, float]] = {}
    files = [("attacks", attacks), ("benign", benign)]
    if harmful is not None:
        files.append(("harmful", harmful))
    for kind, path in files:
        counts: dict[str, list[int]] = {}
        for row in read_rows(path):
            if row.get("suspect_jailbreak"):
                continue  # labelled benign but awaiting a human look
            matches = detector.detect(row["text"]).matches
            tally = counts.setdefault(row.get("source", "?"), [0, 0, 0])
            tally[0] += 1
            tally[1] += bool(matches)
            tally[2] += "harmful" in matches
        for source, (n, flagged, harmful_name) in sorted(counts.items()):
            report[f"{kind}: {source}"] = {"rows": n, "flagged": round(flagged / n, 4),
                                           "harmful_name": round(harmful_name / n, 4)}
    return report
