"""Span-level evaluation of `find_pii` on a labelled JSONL file.

Rows are `{"text", "spans": [{"start", "end", "label", "value"}], "source"?, ...}`. Gold labels
are mapped onto the detector's types (`LABEL_MAP`); others (ORGANIZATION, DATE_TIME, ZIP_CODE,
...) are ignored. A predicted span is a true positive when it overlaps a gold span of the same
label that no earlier prediction has claimed; a gold span with no such prediction is a false
negative. Each label also gets `labelled_rows_precision`: its precision on the rows that carry
at least one gold span of that label (the rows a data set annotated for it), and `row_recall`:
the share of those rows where at least one of its gold spans was found (one predicted address
may cover several gold fragments of one address, which span recall counts as misses).

    python -m routeyard.safety.pii_eval FILE [--by-source] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from routeyard.signals.pii import DETECTABLE_ENTITIES, find_pii

LABEL_MAP = {
    "EMAIL_ADDRESS": "EMAIL_ADDRESS", "EMAIL": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER", "PHONE": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE", "IBAN": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "PERSON": "PERSON", "person": "PERSON",
    "LOCATION": "LOCATION", "location": "LOCATION", "GPE": "LOCATION",
    "STREET_ADDRESS": "STREET_ADDRESS", "ADDRESS": "STREET_ADDRESS",
}


class _Span(Protocol):
    start: int
    end: int
    label: str


Detector = Callable[[str, Sequence[str]], Sequence[_Span]]


class _Tally:
    """tp, fp, fn per label, and the false positives on rows that carry the label."""

    def __init__(self, labels: Iterable[str]) -> None:
        self.counts = {label: [0, 0, 0, 0] for label in labels}  # tp, fp, fn, fp on its rows
        self.rows = {label: [0, 0] for label in self.counts}  # rows carrying it, rows found

    def add(self, gold: list[tuple[int, int, str]], predicted: Sequence[_Span]) -> None:
        carried = {label for _, _, label in gold}
        claimed: set[int] = set()
        for p in predicted:
            hit = next((i for i, (start, end, label) in enumerate(gold)
                        if i not in claimed and label == p.label
                        and p.start < end and start < p.end), None)
            if hit is None:
                self.counts[p.label][1] += 1
                self.counts[p.label][3] += p.label in carried
            else:
                claimed.add(hit)
                self.counts[p.label][0] += 1
        for i, (_, _, label) in enumerate(gold):
            if i not in claimed:
                self.counts[label][2] += 1
        for label in carried:
            self.rows[label][0] += 1
            self.rows[label][1] += any(gold[i][2] == label for i in claimed)

    def report(self) -> dict[str, dict[str, float]]:
        out = {label: _prf(*c) for label, c in self.counts.items()}
        for label, (carrying, found) in self.rows.items():
            out[label]["row_recall"] = found / carrying if carrying else 0.0
        return out


def _prf(tp: int, fp: int, fn: int, fp_labelled: int = 0) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    labelled = tp / (tp + fp_labelled) if tp + fp_labelled else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "labelled_rows_precision": labelled}


def _rows(path: str | Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def evaluate_pii(path: str | Path, entities: Iterable[str] | None = None, *,
                 detector: Detector = find_pii, by_source: bool = False) -> dict[str, Any]:
    """Per-label precision/recall/F1 over the labels the detector covers (default: all of
    them, PERSON, LOCATION and STREET_ADDRESS included), and p50 latency. `by_source` adds the
    same per-label figures for each row `source`."""
    wanted = list(DETECTABLE_ENTITIES if entities is None else entities)
    total = _Tally(wanted)
    sources: dict[str, _Tally] = {}
    texts: dict[str, int] = {}
    latencies: list[float] = []
    for row in _rows(path):
        gold = [(s["start"], s["end"], LABEL_MAP[s["label"]]) for s in row["spans"]
                if LABEL_MAP.get(s["label"]) in total.counts]
        t0 = time.perf_counter()
        predicted = detector(row["text"], wanted)
        latencies.append((time.perf_counter() - t0) * 1000)
        total.add(gold, predicted)
        if by_source:
            source = str(row.get("source", "unknown"))
            sources.setdefault(source, _Tally(wanted)).add(gold, predicted)
            texts[source] = texts.get(source, 0) + 1
    report: dict[str, Any] = {"per_label": total.report(),
                              "p50_ms": statistics.median(latencies) if latencies else 0.0,
                              "texts": len(latencies)}
    if by_source:
        report["by_source"] = {source: {"per_label": tally.report(), "texts": texts[source]}
                               for source, tally in sorted(sources.items())}
    return report


def format_table(per_label: dict[str, dict[str, float]], title: str = "all rows") -> list[str]:
    """A markdown table of one per-label report."""
    lines = ["| rows | label | P | R | F1 | tp | fp | fn | P on its rows | rows found |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, m in per_label.items():
        lines.append(f"| {title} | {label} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['f1']:.3f} | {m['tp']} | {m['fp']} | {m['fn']} | "
                     f"{m['labelled_rows_precision']:.3f} | {m['row_recall']:.3f} |")
    return lines


def format_report(report: dict[str, Any]) -> str:
    lines = format_table(report["per_label"])
    for source, part in report.get("by_source", {}).items():
        lines += format_table(part["per_label"], f"{source} ({part['texts']})")[2:]
    lines.append(f"p50 {report['p50_ms']:.3f} ms over {report['texts']} texts")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - a measuring aid
    parser = argparse.ArgumentParser(prog="python -m routeyard.safety.pii_eval",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="JSONL of texts with labelled PII spans")
    parser.add_argument("--entities", help="comma-separated types (default: every type)")
    parser.add_argument("--by-source", action="store_true", help="also score each `source`")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    entities = args.entities.split(",") if args.entities else None
    report = evaluate_pii(args.file, entities, by_source=args.by_source)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
