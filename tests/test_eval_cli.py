"""`routeyard eval` / `routeyard train` end to end on a small synthetic routing dataset."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routeyard.dataset import RoutingDataset
from routeyard.eval import command, runner
from routeyard.selection.learned.base import TRAINABLE_ROUTERS, TrainableRouter, load_router

MODELS = ("small", "medium", "large")
COSTS = {"small": 0.0001, "medium": 0.001, "large": 0.01}
# Each topic is solved by the cheapest model that can: a router that reads the prompt can
# match the large model's quality for much less.
TOPICS = {
    "arithmetic": ("add the numbers sum plus total", {"small": 1, "medium": 1, "large": 1}),
    "poetry": ("write a poem sonnet rhyme verse", {"small": 0, "medium": 1, "large": 1}),
    "proof": ("prove the theorem lemma induction", {"small": 0, "medium": 0, "large": 1}),
}


class PriorRouter(TrainableRouter):
    """Test-only: every prompt gets each model's mean train score (ignores the prompt)."""

    kind = "test-prior"

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        self.quality = train.scores.mean(axis=0)

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        return np.tile(self.quality, (len(embeddings), 1))

    def parameters(self) -> dict[str, np.ndarray]:
        return {"quality": self.quality}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.quality = parameters["quality"]


def _write_split(path: Path, n: int, seed: int, responses: bool = True) -> None:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    with path.open("w") as out:
        for i in range(n):
            topic = names[i % len(names)]
            words, scores = TOPICS[topic]
            prompt = f"{topic} {words} item {int(rng.integers(1000))}"
            # per-prompt cost jitter so costs are not constant across rows
            costs = {m: COSTS[m] * float(rng.uniform(0.8, 1.2)) for m in MODELS}
            row = {"id": f"{path.stem}.{i}", "task": topic, "prompt": prompt,
                   "scores": {m: float(scores[m]) for m in MODELS}, "costs": costs,
                   **({"responses": {m: "x" for m in MODELS}} if responses else {})}
            out.write(json.dumps(row) + "\n")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "toy"
    folder.mkdir()
    _write_split(folder / "train.jsonl", 60, seed=1)
    _write_split(folder / "test.jsonl", 30, seed=2)
    return folder


@pytest.fixture
def algorithms(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The test-only router, plus one real registered router when there is one."""
    real = [name for name in ("knn", *runner.available_algorithms()) if name in TRAINABLE_ROUTERS]
    monkeypatch.setitem(TRAINABLE_ROUTERS, PriorRouter.kind, PriorRouter)
    return [PriorRouter.kind, *real[:1]]


def _eval_args(data: Path, algorithms: list[str] | None, **extra: object) -> argparse.Namespace:
    options = {"data": str(data), "algorithms": ",".join(algorithms) if algorithms else None,
               "out": None, "json": False, "no_plots": False, "quiet": False, **extra}
    return argparse.Namespace(**options)


def test_eval_json_contract(dataset: Path, algorithms: list[str], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    status = command.run_eval(_eval_args(dataset, algorithms, json=True, out=str(out)))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout; progress went to stderr
    result = json.loads(lines[0])

    assert result["dataset"] == "toy"
    assert result["n_test"] == 30
    assert set(result["best_single"]) >= {"model", "cost", "quality"}
    assert result["best_single"]["model"] == "large"
    assert set(result["oracle"]) >= {"cost", "quality"}
    assert result["oracle"]["quality"] == pytest.approx(1.0)
    assert set(result["algorithms"]) == set(algorithms)
    for name, entry in result["algorithms"].items():
        assert isinstance(entry["aiq"], float), name
        assert 0.0 <= entry["aiq"] <= 1.0
        assert isinstance(entry["max_quality"], float)
        assert entry["cost_ratio_at_best"] is None or isinstance(entry["cost_ratio_at_best"], float)
        curve = entry["curve"]
        assert curve and all(len(p) == 2 and all(isinstance(v, float) for v in p) for p in curve)
        assert [p[0] for p in curve] == sorted(p[0] for p in curve)
        assert len({tuple(p) for p in curve}) == len(curve)
        assert all(q <= result["oracle"]["quality"] + 1e-12 for _, q in curve)
        assert entry["max_quality"] == max(q for _, q in curve)

    # The prompt-blind prior reaches the large model only by always calling it.
    assert result["algorithms"]["test-prior"]["cost_ratio_at_best"] == pytest.approx(1.0)

    assert json.loads((out / "eval.json").read_text()) == result
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "pareto.html").read_text()
    assert "<html" in html and "plotly" in html and 'src="http' not in html  # self-contained


def test_default_eval_skips_the_cascade_without_recorded_responses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    _write_split(folder / "train.jsonl", 60, seed=1, responses=False)
    _write_split(folder / "test.jsonl", 30, seed=2, responses=False)
    assert command.run_eval(_eval_args(folder, None, json=True, quiet=True)) == 0
    result = json.loads(capsys.readouterr().out)
    assert "cascade" not in result["algorithms"] and "knn" in result["algorithms"]
    assert "no recorded responses" in result["skipped"]["cascade"]
    # asked for by name, it is an error
    assert command.run_eval(_eval_args(folder, ["cascade"], json=True, quiet=True)) == 1
    assert "no recorded responses" in capsys.readouterr().err


def test_eval_summary_without_json(dataset: Path, algorithms: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert command.run_eval(_eval_args(dataset, algorithms[:1], quiet=True)) == 0
    captured = capsys.readouterr()
    assert "best single  large" in captured.out and "test-prior" in captured.out
    assert captured.err == ""


def test_eval_rejects_unknown_algorithm(dataset: Path, algorithms: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert command.run_eval(_eval_args(dataset, ["no-such-router"], json=True)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no-such-router" in captured.err


def test_train_writes_a_loadable_artifact(dataset: Path, algorithms: list[str],
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "artifacts" / "router.bin"  # not .npz: the name must be kept as given
    args = argparse.Namespace(data=str(dataset), algorithm=algorithms[-1], out=str(out))
    assert command.run_train(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] == 60 and summary["out"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["router.bin"]
    router = load_router(out)
    assert router.models == sorted(MODELS)


@pytest.mark.parametrize("argv", [
    ["eval", "--data", "/no/such/folder", "--json"],
    ["train", "--data", "/no/such/folder", "--algorithm", "x", "--out", "/tmp/never.npz"],
])
def test_cli_errors_are_one_line_without_traceback(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "routeyard.eval.command", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_out_without_plot_libraries_says_what_to_install(
        dataset: Path, algorithms: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "plotly" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    out = tmp_path / "report"
    status = command.run_eval(_eval_args(dataset, algorithms[:1], out=str(out), quiet=True))
    assert status == 1
    assert "pip install 'routeyard[eval]'" in capsys.readouterr().err
    assert (out / "eval.json").is_file() and not (out / "pareto.png").exists()
    # --no-plots: the same run succeeds
    assert command.run_eval(_eval_args(dataset, algorithms[:1], out=str(out), quiet=True,
                                       no_plots=True)) == 0
