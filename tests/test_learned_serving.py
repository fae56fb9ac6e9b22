"""A trained router serves live: `routeyard train` writes an artifact, a decision with
`algorithm: learned` loads it, and λ moves choices between quality and cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.preflight import preflight
from routeyard.state import MemoryStore

MODELS = {"gpt-4-1106-preview": "gpt4", "mistralai/mistral-7b-chat": "mistral",
          "meta/llama-2-70b-chat": "llama"}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "routerbench"
    if not data.is_dir():
        pytest.skip(f"{data} is absent")
    out = tmp_path_factory.mktemp("learned") / "knn.npz"
    result = subprocess.run([sys.executable, "-m", "routeyard", "train", "--data", str(data),
                             "--algorithm", "knn", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    return out


def config(artifact: Path, lam: float) -> dict[str, Any]:
    endpoint = [{"base_url": "http://127.0.0.1:9/v1"}]
    return {
        "models": [{"name": name, "endpoints": endpoint} for name in MODELS.values()],
        "default": {"candidates": list(MODELS.values()), "algorithm": "learned",
                    "algorithm_options": {"artifact": str(artifact), "lambda": lam,
                                          "model_map": MODELS}},
    }


async def test_lambda_trades_quality_for_cost(artifact: Path) -> None:
    prompt = ("Which of the following is a property of a covalent bond? A) electrons are "
              "transferred B) electrons are shared C) ions attract D) metals bond")
    quality_first = Router(build_config(config(artifact, 0.0)), store=MemoryStore())
    cost_first = Router(build_config(config(artifact, 1000.0)), store=MemoryStore())
    chosen_q = (await quality_first.route(prompt))
    chosen_c = (await cost_first.route(prompt))
    assert chosen_q["model"] == "gpt4"  # the best model on routerbench by far
    assert chosen_c["model"] == "mistral"  # the cheapest
    assert "knn: predicted quality" in chosen_q["reason"]


def test_learned_without_an_artifact_is_a_located_error(tmp_path: Path) -> None:
    raw = config(tmp_path / "missing.npz", 1.0)
    problems = preflight(build_config(raw), tmp_path)
    assert problems and problems[0][0] == "default.algorithm_options"
    assert "missing.npz" in problems[0][1]
    raw["default"]["algorithm_options"] = {}
    problems = preflight(build_config(raw), tmp_path)
    assert "needs algorithm_options.artifact" in problems[0][1]
    with pytest.raises(ConfigError):
        build_config({**raw, "default": {**raw["default"], "algorithm": "nope"}})
