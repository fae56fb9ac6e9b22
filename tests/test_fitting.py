"""Fitting the domain and complexity signals: the CLI, the task map and the labels from data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from routeyard.config.signals import ClassifierFamily
from routeyard.signals import fitting
from routeyard.signals.base import RequestContext
from routeyard.signals.embedder import load_embedder
from routeyard.signals.semantic_signals import ComplexitySignals, DomainSignals, LinearClassifier

ROOT = Path(__file__).resolve().parents[1]

CODE = ["Write a Python function that reverses a linked list.",
        "Fix the TypeError in my JavaScript fetch call.",
        "Implement binary search in Rust and explain its complexity.",
        "Why does my SQL query with a LEFT JOIN return duplicate rows?",
        "Refactor this Java class to use dependency injection.",
        "Write a bash script that renames every .txt file in a folder.",
        "How do I read a CSV file with pandas and drop empty columns?",
        "Write unit tests for a Go HTTP handler."]
COOKING = ["How long should I roast a whole chicken at 200 degrees?",
           "Give me a recipe for vegetarian lasagna.",
           "What can I use instead of eggs when baking a cake?",
           "How do I make a sourdough starter from scratch?",
           "Which spices go well with roasted carrots?",
           "How do I keep risotto creamy without adding cream?",
           "What is the best way to cook rice so it is fluffy?",
           "Suggest a marinade for grilled salmon."]


def fit_signal_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeyard", "fit-signal", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def test_fit_signal_cli_round_trip(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "domains.jsonl",
                       [{"text": t, "label": "code"} for t in CODE]
                       + [{"text": t, "label": "cooking"} for t in COOKING])
    out = tmp_path / "domain.npz"
    result = fit_signal_cli("--family", "domain", "--data", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["examples"] == 16
    assert summary["labels"] == {"code": 8, "cooking": 8}
    assert summary["training_accuracy"] == 1.0

    # The artifact is what a config's `artifact:` loads; it must classify an unseen prompt.
    family = DomainSignals(ClassifierFamily(artifact=str(out)), load_embedder("builtin"),
                           LinearClassifier.load(out))
    for prompt, label in [("Write a C++ function that sorts an array of integers.", "code"),
                          ("How do I bake banana bread with brown sugar?", "cooking")]:
        ctx = RequestContext({"messages": [{"role": "user", "content": prompt}]},
                             embedder=load_embedder("builtin"))
        assert set(family.evaluate(ctx).matches) == {label}, prompt


def test_malformed_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "broken.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    with pytest.raises(ValueError, match=rf"{data}:3: invalid JSON"):
        fitting.read_labelled(data)

    result = fit_signal_cli("--family", "domain", "--data", str(data),
                            "--out", str(tmp_path / "x.npz"))
    assert result.returncode == 1
    assert f"{data}:3: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_missing_fields_and_files_are_clear(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "nolabel.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(ValueError, match=rf"{data}:2: needs string 'text' and 'label'"):
        fitting.read_labelled(data)
    result = fit_signal_cli("--family", "complexity", "--data", str(tmp_path / "absent.jsonl"),
                            "--routing", "--out", str(tmp_path / "x.npz"))
    assert result.returncode == 1
    assert "absent.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_complexity_labels_must_be_known(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "levels.jsonl", [{"text": "hi", "label": "trivial"},
                                                   {"text": "prove it", "label": "hard"}])
    with pytest.raises(ValueError, match="trivial"):
        fitting.fit_signal("complexity", data, tmp_path / "x.npz")


def test_unknown_task_is_named() -> None:
    rows = [{"task": "gsm8k", "prompt": "1+1?", "scores": {}},
            {"task": "cooking_qa", "prompt": "eggs?", "scores": {}}]
    with pytest.raises(ValueError, match="cooking_qa"):
        fitting.domain_labels_from_routing(rows)


def test_task_domains_cover_llmrouter(shared_data: Path) -> None:
    for split in ("train", "test"):
        rows = fitting.read_routing(shared_data / "llmrouter" / f"{split}.jsonl")
        labels = fitting.domain_labels_from_routing(rows)  # raises on an unmapped task
        assert set(labels) == set(fitting.DOMAINS), split
    assert set(fitting.TASK_DOMAINS.values()) == set(fitting.DOMAINS)


def test_complexity_labels_are_ordered(shared_data: Path) -> None:
    rows = fitting.read_routing(shared_data / "routerbench")  # the folder: its train.jsonl
    texts, counts, labels = fitting.complexity_from_routing(rows)
    assert len(texts) == len(counts) == len(labels) > 2000
    by_label = {label: [n for n, x in zip(counts, labels, strict=True) if x == label]
                for label in ("easy", "medium", "hard")}
    assert max(by_label["easy"]) < min(by_label["medium"])
    assert max(by_label["medium"]) < min(by_label["hard"])
    for label, members in by_label.items():  # terciles: no class near empty or dominant
        assert 0.2 < len(members) / len(labels) < 0.45, label
    assert np.mean(by_label["easy"]) < np.mean(by_label["medium"]) < np.mean(by_label["hard"])


def test_tercile_cuts_on_ties() -> None:
    # 1/3 falls between 20% of rows (<= 0) and 40% (<= 1): 40% is nearer, so easy is 0-1.
    assert fitting.tercile_cuts([0] * 2 + [1] * 2 + [2] * 3 + [3] * 3) == (1, 2)
    with pytest.raises(ValueError, match="three distinct"):
        fitting.tercile_cuts([0, 0, 1, 1])


def test_fit_complexity_from_routing_rows(shared_data: Path, tmp_path: Path) -> None:
    rows = (shared_data / "routerbench" / "train.jsonl").read_bytes().splitlines()[:400]
    data = tmp_path / "subset.jsonl"
    data.write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "complexity.npz"
    summary = fitting.fit_signal("complexity", data, out, source="routing")
    assert set(summary["labels"]) == {"easy", "medium", "hard"}
    assert set(summary["failure_cuts"]) == {"easy", "medium", "hard"}

    family = ComplexitySignals(ClassifierFamily(artifact=str(out)), load_embedder("builtin"),
                               LinearClassifier.load(out))
    ctx = RequestContext({"messages": [{"role": "user", "content": "What is 2 + 2?"}]},
                         embedder=load_embedder("builtin"))
    result = family.evaluate(ctx)
    assert 0.0 <= result.values["score"] <= 1.0
    assert set(result.values) == {"easy", "medium", "hard", "score"}
