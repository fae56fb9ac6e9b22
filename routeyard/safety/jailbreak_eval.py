"""Measure the jailbreak family on labelled prompt files: recall, false positives, latency;
and the leave-one-source-out evaluation of a training recipe (scripts/jailbreak_loso.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.jsonl import jsonl_objects
from routeyard.signals.jailbreak import (
    DEFAULT_PATTERNS,
    JailbreakDetector,
    load_builtin,
    make_detector,
)

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
                       threshold: float | None = None, tier: str = "fast") -> dict[str, float]:
    """The shipped family (patterns included) as a detector: a prompt is flagged when it
    matches `jailbreak` or `harmful`. Recall is over the attacks, FPR over the benign prompts,
    precision over all flagged prompts (attacks and harmful requests count as positives)."""
    detector = make_detector(load_builtin(tier), DEFAULT_PATTERNS, threshold)
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
                       detector: JailbreakDetector | None = None, tier: str = "fast"
                       ) -> dict[str, dict[str, float]]:
    """Share of each file's rows flagged, per `source` (recall for attacks and harmful
    requests, FPR for benign prompts), plus the share that got the `harmful` name."""
    detector = detector or make_detector(load_builtin(tier))
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


# ---- Leave-one-source-out evaluation -------------------------------------------------------

ATTACK_LABELS = frozenset({"jailbreak", "injection"})
SMALL_FOLD = "small sources"


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """One prompt of the training / evaluation pool (see scripts/jailbreak_data.py)."""

    text: str
    label: str  # benign / jailbreak / injection / harmful
    source: str
    split: str  # train / calib / test (by a hash of the text)
    trainable: bool  # its licence allows shipping weights trained on it
    chat: bool  # a chat-like benign prompt: false positives are counted on these
    licence: str = ""
    context: str = ""  # a synthetic row: the source whose benign text it wraps (held out too)

    @property
    def is_attack(self) -> bool:
        return self.label in ATTACK_LABELS


# A scorer maps row indices to attack scores (higher: more likely an attack); a fitter trains
# one on the given row indices. Indices let a recipe precompute features once for all folds.
Scorer = Callable[[Sequence[int]], np.ndarray]
Fitter = Callable[[Sequence[int]], Scorer]


@dataclass(frozen=True, slots=True)
class FoldResult:
    fold: str  # the held-out attack source (or the merged small ones)
    rows: int
    recall: float  # share of the held-out source's rows at or above the threshold
    threshold: float  # chosen on the calibration chat rows of the training sources
    calib_fpr: float
    test_fpr: float  # held-out chat rows (test split), never trained on nor calibrated on
    trainable: bool  # False: an evaluation-only source (never in any fold's training)
    source_fpr: float | None = None  # on the held-out source's own benign rows, if it has any


def threshold_at_fpr(benign_scores: Sequence[float] | np.ndarray, max_fpr: float) -> float:
    """The lowest threshold t (a prompt is flagged when its score >= t) that flags at most
    `max_fpr` of the benign scores (ties are never split: all tied scores stay below t)."""
    scores = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    if not len(scores):
        raise ValueError("no benign scores to set a threshold on")
    allowed = int(np.floor(max_fpr * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1])
    return float(np.nextafter(scores[allowed], np.inf))


def threshold_for_groups(scores: np.ndarray, groups: Sequence[str], max_fpr: float) -> float:
    """The highest of the groups' `threshold_at_fpr`: every group of benign rows (the
    licensed training pool, the real chat samples) stays within `max_fpr` on its own."""
    scores, keys = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    return max(threshold_at_fpr(scores[keys == g], max_fpr) for g in sorted(set(groups)))


def calibration_group(row: LabelledRow) -> str:
    """Benign calibration rows fall in two groups: trainable sources and the never-trained
    chat samples (ShareGPT, AlpacaEval)."""
    return "trainable" if row.trainable else "chat samples"


def attack_folds(rows: Sequence[LabelledRow], min_rows: int = 20) -> dict[str, list[int]]:
    """Attack row indices by source; sources with fewer than `min_rows` rows share one fold."""
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.is_attack and not row.source.startswith("synthetic"):
            by_source.setdefault(row.source, []).append(i)
    folds: dict[str, list[int]] = {}
    for source, members in sorted(by_source.items()):
        key = source if len(members) >= min_rows else SMALL_FOLD
        folds.setdefault(key, []).extend(members)
    return folds


def is_training_row(row: LabelledRow) -> bool:
    """Shippable rows train; benign ones only from the train split (the rest calibrate/test)."""
    return row.trainable and (row.label != "benign" or row.split == "train")


def leave_one_source_out(rows: Sequence[LabelledRow], fit: Fitter, max_fpr: float = 0.01,
                         min_rows: int = 20, only: set[str] | None = None,
                         progress: Callable[[FoldResult], None] | None = None
                         ) -> list[FoldResult]:
    """For every attack source: fit on the training rows of all the other sources (the held-out
    source's benign rows are held out too), set the threshold for <= `max_fpr` false positives
    on the calibration chat rows of the other sources (in each `calibration_group`), and
    measure the held-out source's recall,
    the false positives on the test chat rows of the other sources and on the held-out source's
    own benign rows."""
    chat = [i for i, r in enumerate(rows) if r.chat and r.label == "benign"]
    results = []
    for fold, members in attack_folds(rows, min_rows).items():
        if only is not None and fold not in only:
            continue
        held = {rows[i].source for i in members}
        train = [i for i, r in enumerate(rows) if is_training_row(r) and r.source not in held
                 and r.context not in held]
        calib = [i for i in chat if rows[i].split == "calib" and rows[i].source not in held]
        test = [i for i in chat if rows[i].split == "test" and rows[i].source not in held]
        own = [i for i, r in enumerate(rows) if r.source in held and r.label == "benign"]
        if not calib or not test:
            raise ValueError("need chat-like benign rows in both the calib and test splits")
        score = fit(train)
        calib_scores = score(calib)
        threshold = threshold_for_groups(calib_scores,
                                         [calibration_group(rows[i]) for i in calib], max_fpr)
        result = FoldResult(
            fold, len(members), float(np.mean(score(members) >= threshold)), threshold,
            float(np.mean(calib_scores >= threshold)),
            float(np.mean(score(test) >= threshold)),
            any(rows[i].trainable for i in members),
            float(np.mean(score(own) >= threshold)) if own else None)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def summarise(results: Sequence[FoldResult]) -> dict[str, Any]:
    """Worst fold and mean recall (unweighted over folds), and the worst test FPR."""
    if not results:
        raise ValueError("no folds")
    worst = min(results, key=lambda r: r.recall)
    return {"mean_recall": round(float(np.mean([r.recall for r in results])), 4),
            "worst_recall": round(worst.recall, 4), "worst_source": worst.fold,
            "max_test_fpr": round(max(r.test_fpr for r in results), 4),
            "folds": len(results)}


def format_table(results: Sequence[FoldResult], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'held-out source':<28} {'rows':>5} {'recall':>7} {'thresh':>8} "
                 f"{'calibFPR':>8} {'testFPR':>8} {'ownFPR':>7}")
    for r in results:
        name = r.fold + ("" if r.trainable else " (eval only)")
        own = "-" if r.source_fpr is None else f"{r.source_fpr:.4f}"
        lines.append(f"{name:<28} {r.rows:>5} {r.recall:>7.3f} {r.threshold:>8.4f} "
                     f"{r.calib_fpr:>8.4f} {r.test_fpr:>8.4f} {own:>7}")
    s = summarise(results)
    lines.append(f"mean recall {s['mean_recall']:.3f}, worst {s['worst_recall']:.3f} "
                 f"({s['worst_source']}), max test FPR {s['max_test_fpr']:.4f}")
    return "\n".join(lines)
