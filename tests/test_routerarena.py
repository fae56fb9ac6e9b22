"""`routeyard export`: a trained router's choices in RouterArena's submission format.

The checks below restate what RouterArena's README and its
router_inference/check_config_prediction_files.py (RouteWorks/RouterArena at 4714a9a) require
of a submission: the config's shape, one prediction entry per dataset prompt with its
`global index` and its prompt verbatim, and every prediction among the config's models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routeyard.dataset import RoutingDataset
from routeyard.eval.routerarena import (
    PREDICTION_FIELDS,
    parse_map,
    read_arena_prompts,
    submission,
    write_submission,
)
from routeyard.selection.learned.baselines import PriorRouter

ARENA = [
    {"prompt_formatted": "Solve: 2 + 2 = ?", "global index": "GSM8K_1"},
    {"prompt_formatted": "Which planet is largest?\nA) Mars B) Jupiter", "global index": "MMLU_7"},
    {"prompt_formatted": "", "global index": "empty_prompt"},        # skipped, as RouterArena does
    {"prompt_formatted": "no index here"},                            # skipped
    {"prompt": "Translate 'hallo' into English.", "global index": "WMT19-de-en_3"},
]


def arena_check(config: dict[str, Any], entries: list[dict[str, Any]],
                dataset: list[dict[str, Any]]) -> list[str]:
    """The checks of RouterArena's check_config_prediction_files.py, restated."""
    errors = []
    params = config.get("pipeline_params")
    if not isinstance(params, dict) or not isinstance(params.get("models"), list):
        return ["config: missing pipeline_params.models"]
    valid = set(params["models"])
    by_index = {e["global index"]: e for e in dataset if e.get("global index")}
    for i, entry in enumerate(entries):
        index = entry.get("global index") or entry.get("global_index")
        if not index or index not in by_index:
            errors.append(f"entry {i}: global index {index!r} not in the dataset")
            continue
        source = by_index[index]
        if entry.get("prompt") != (source.get("prompt_formatted") or source.get("prompt")):
            errors.append(f"entry {i}: prompt mismatch")
        if entry.get("prediction") not in valid:
            errors.append(f"entry {i}: prediction {entry.get('prediction')!r} not in config")
    return errors


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    n = 20
    scores = np.tile([0.4, 0.9], (n, 1))
    costs = np.tile([0.001, 0.01], (n, 1))
    ids = [str(i) for i in range(n)]
    train = RoutingDataset("t", ids, ["t"] * n, ids, ["small-7b", "large-70b"], scores, costs)
    router = PriorRouter()
    router.fit(train, np.zeros((n, 4), dtype=np.float32))
    path = tmp_path / "prior.npz"
    router.save(path)
    return path


def test_read_arena_prompts_skips_entries_as_routerarena_does(tmp_path: Path) -> None:
    path = tmp_path / "router_data_10.json"
    path.write_text(json.dumps(ARENA))
    assert read_arena_prompts(path) == [
        ("GSM8K_1", "Solve: 2 + 2 = ?"),
        ("MMLU_7", "Which planet is largest?\nA) Mars B) Jupiter"),
        ("WMT19-de-en_3", "Translate 'hallo' into English."),
    ]


def test_submission_shape_round_trips(tmp_path: Path) -> None:
    prompts = [("a_1", "first"), ("b_2", "second")]
    config, entries = submission("my-router", ["gpt-4o-mini", "gpt-4o"], prompts,
                                 ["gpt-4o", "gpt-4o-mini"])
    config_path, predictions_path = write_submission(tmp_path, "my-router", config, entries)
    assert config_path == tmp_path / "router_inference" / "config" / "my-router.json"
    assert predictions_path == tmp_path / "router_inference" / "predictions" / "my-router.json"
    loaded = json.loads(predictions_path.read_text())
    assert loaded == entries and isinstance(loaded, list)
    assert [tuple(e) for e in loaded] == [PREDICTION_FIELDS] * 2  # key order as RouterArena's
    assert loaded[0] == {"global index": "a_1", "prompt": "first", "prediction": "gpt-4o",
                         "generated_result": None, "cost": None, "accuracy": None}
    assert json.loads(config_path.read_text()) == {
        "pipeline_params": {"router_name": "my-router", "models": ["gpt-4o-mini", "gpt-4o"]}}
    with pytest.raises(ValueError, match="outside the config"):
        submission("r", ["a"], prompts, ["a", "b"])


def test_parse_map_names_bad_pairs() -> None:
    assert parse_map(["x=y", " a = b "]) == {"x": "y", "a": "b"}
    with pytest.raises(ValueError, match="DATASET_MODEL=ARENA_MODEL"):
        parse_map(["nonsense"])


@pytest.mark.parametrize(("lam", "expected"), [(0.0, "gpt-4o"), (1000.0, "gpt-4o-mini")])
def test_export_command_writes_a_submission_routerarena_accepts(
        artifact: Path, tmp_path: Path, lam: float, expected: str) -> None:
    dataset = tmp_path / "router_data_10.json"
    dataset.write_text(json.dumps(ARENA))
    out = tmp_path / "submission"
    result = subprocess.run(
        [sys.executable, "-m", "routeyard", "export", "--format", "routerarena",
         "--router", str(artifact), "--prompts", str(dataset), "--name", "routeyard-prior",
         "--map", "small-7b=gpt-4o-mini", "--map", "large-70b=gpt-4o", "--lambda", str(lam),
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["entries"] == 3
    config = json.loads((out / "router_inference/config/routeyard-prior.json").read_text())
    entries = json.loads((out / "router_inference/predictions/routeyard-prior.json").read_text())
    assert config["pipeline_params"]["models"] == ["gpt-4o-mini", "gpt-4o"]
    assert arena_check(config, entries, ARENA) == []
    assert len(entries) == 3 and {e["prediction"] for e in entries} == {expected}


def test_export_refuses_a_map_of_unknown_models(artifact: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "router_data_10.json"
    dataset.write_text(json.dumps(ARENA))
    result = subprocess.run(
        [sys.executable, "-m", "routeyard", "export", "--router", str(artifact),
         "--prompts", str(dataset), "--name", "r", "--map", "gpt-5=gpt-5",
         "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not know" in result.stderr
