"""`routeyard eval --data FILE`: a user's own JSONL, checked row by row against the schema."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routeyard.dataset import DatasetError, check_row, read_rows, split_file
from routeyard.eval import command

MODELS = {"small": 0.0001, "large": 0.01}


def good_row(i: int, rng: np.random.Generator) -> dict[str, object]:
    hard = bool(i % 2)
    return {"id": f"r{i}", "task": "hard" if hard else "easy",
            "prompt": ("prove the theorem by induction" if hard else "add two and three")
            + f" #{i}",
            "scores": {"small": float(not hard and rng.random() < 0.9), "large": 1.0},
            "costs": dict(MODELS)}


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_a_good_row_has_no_problem() -> None:
    assert check_row(good_row(1, np.random.default_rng(0)), 1) == []


def test_every_problem_is_reported_with_its_line_and_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows: list[object] = [good_row(i, rng) for i in range(3)]
    rows += [
        "{not json",                                                        # line 4
        {"prompt": 7, "scores": {"small": 1.2, "large": "high"},            # line 5
         "costs": {"small": -1, "large": 0.01}},
        {"prompt": "ok", "scores": {"small": 1, "large": 0},                # line 6
         "costs": {"small": 0.1}},
        {"scores": [], "costs": {"small": 0.1, "large": 1.0}},              # line 7
        [1, 2],                                                             # line 8
        {"prompt": "  ", "scores": {"small": 1, "large": True},             # line 9
         "costs": {"small": 0.1, "large": None}, "id": [1], "task": 3,
         "responses": {"small": 5}},
    ]
    path = write(tmp_path / "mine.jsonl", rows)
    with pytest.raises(DatasetError) as caught:
        read_rows(path)
    found = {(p.line, p.field) for p in caught.value.problems}
    assert found == {
        (4, ""), (5, "prompt"), (5, "scores.small"), (5, "scores.large"), (5, "costs.small"),
        (6, "costs.large"), (7, "prompt"), (7, "scores"), (8, ""), (9, "prompt"),
        (9, "scores.large"), (9, "costs.large"), (9, "id"), (9, "task"), (9, "responses.small"),
    }
    message = str(caught.value)
    assert f"{path}:5: scores.small: must be a number in [0, 1], got 1.2" in message
    assert f"{path}:5: scores.large: must be a number in [0, 1], got a string" in message
    assert f"{path}:6: costs.large: missing (scores has this model)" in message
    assert f"{path}:7: prompt: missing" in message
    assert f"{path}:8: expected a JSON object, got a list" in message
    assert f"{path}:9: scores.large: must be a number in [0, 1], got a boolean" in message
    assert f"{path}:9: costs.large: must be a number >= 0, got null" in message
    assert message.startswith(f"{path}: 15 schema problem(s)")


def test_a_file_with_one_model_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "one.jsonl", [{"prompt": "p", "scores": {"a": 1}, "costs": {"a": 1}}])
    with pytest.raises(DatasetError, match="at least two models"):
        read_rows(path)


def test_split_file_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write(tmp_path / "mine.jsonl", [good_row(i, rng) for i in range(50)])
    train, test = split_file(path, test_fraction=0.2, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert not set(train.ids) & set(test.ids)
    again, _ = split_file(path, test_fraction=0.2, seed=3)
    assert again.ids == train.ids
    assert split_file(path, test_fraction=0.2, seed=4)[0].ids != train.ids


def _args(data: Path, **extra: object) -> argparse.Namespace:
    base: dict[str, object] = {"data": str(data), "algorithms": "prior,knn", "out": None,
                               "json": True, "no_plots": True, "quiet": True,
                               "test_fraction": 0.25, "seed": 0}
    return argparse.Namespace(**(base | extra))


def test_eval_runs_on_a_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    path = write(tmp_path / "mine.jsonl", [good_row(i, rng) for i in range(80)])
    assert command.run_eval(_args(path)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "mine" and result["n_test"] == 20 and result["n_train"] == 60
    assert result["split"] == {"from_file": str(path.resolve()), "test_fraction": 0.25,
                               "seed": 0}
    assert set(result["algorithms"]) == {"prior", "knn"}


def test_eval_cli_lists_every_problem_without_a_traceback(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows: list[object] = [good_row(i, rng) for i in range(10)]
    rows[2] = {**good_row(2, rng), "scores": {"small": 2, "large": 1}}
    rows[6] = {**good_row(6, rng), "prompt": None}
    path = write(tmp_path / "bad.jsonl", rows)
    result = subprocess.run([sys.executable, "-m", "routeyard", "eval", "--data", str(path),
                             "--json", "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert f"{path}:3: scores.small: must be a number in [0, 1], got 2" in result.stderr
    assert f"{path}:7: prompt: must be a string, got null" in result.stderr
