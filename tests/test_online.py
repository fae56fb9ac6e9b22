"""Online learners (ema, thompson, linucb, elo) and `replay` on synthetic streams."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routeyard.eval.replay import main as replay_main
from routeyard.eval.replay import replay
from routeyard.selection.base import AlgorithmBuild, make_algorithm
from routeyard.selection.online import OnlineAlgorithm

ALGORITHMS = ["ema", "thompson", "linucb", "elo"]
MODELS = ["weak", "good", "mid"]
MEANS = {"weak": 0.3, "good": 0.85, "mid": 0.55}


def stream(algorithm: OnlineAlgorithm, events: int, rng: np.random.Generator,
           models: list[str] = MODELS, means: dict[str, float] = MEANS) -> list[str]:
    chosen = []
    costs = [1.0] * len(models)
    for _ in range(events):
        model = models[algorithm.choose_index(models, costs, None)]
        algorithm.update(model, float(rng.random() < means.get(model, 0.5)))
        chosen.append(model)
    return chosen


@pytest.mark.parametrize("name", ALGORITHMS)
def test_converges_to_the_best_model(name: str) -> None:
    algorithm = make_algorithm(name, {"seed": 1})
    assert isinstance(algorithm, OnlineAlgorithm)
    chosen = stream(algorithm, 1500, np.random.default_rng(2))
    assert chosen[-500:].count("good") / 500 > 0.85


@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_new_model_joining_mid_stream_is_tried(name: str) -> None:
    algorithm = make_algorithm(name, {"seed": 3})
    rng = np.random.default_rng(4)
    stream(algorithm, 400, rng)
    means = {**MEANS, "newcomer": 0.97}
    chosen = stream(algorithm, 1200, rng, [*MODELS, "newcomer"], means)
    assert "newcomer" in chosen[:100]
    if name == "elo":  # greedy: rated above the field and the mid model, overtakes slowly
        assert algorithm.normalised("newcomer") > max(0.5, algorithm.normalised("mid"))
    else:
        assert chosen[-300:].count("newcomer") / 300 > 0.75  # and, being better, takes over


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_round_trip_gives_identical_learning(name: str) -> None:
    algorithm = make_algorithm(name, {"seed": 5})
    contexts = np.random.default_rng(6).standard_normal((400, 16))
    for i in range(300):
        model = MODELS[algorithm.choose_index(MODELS, [1.0, 2.0, 3.0], contexts[i])]
        algorithm.update(model, float(i % 3 == 0), contexts[i])
    state = algorithm.get_state()
    assert isinstance(state, bytes) and len(state) < 100_000
    copy = make_algorithm(name, {"seed": 5})
    copy.set_state(state)
    assert copy.get_state() == state
    for i in range(300, 400):  # the same feedback keeps the two in step
        model = MODELS[i % 3]
        algorithm.update(model, float(i % 2), contexts[i])
        copy.update(model, float(i % 2), contexts[i])
    assert copy.get_state() == algorithm.get_state()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_loading_state_does_not_rewind_the_random_stream(name: str) -> None:
    """The bug of issue 10: feedback reloads the stored state before each update, and that used
    to restore the stored generator too, so every selection after a feedback drew the same
    numbers. The generator is no longer part of the state."""
    algorithm = make_algorithm(name, {"seed": 5})
    stored = algorithm.get_state()
    draws = []
    for _ in range(40):
        algorithm.set_state(stored)  # what each feedback and each refresh does
        draws.append(float(algorithm.rng.random()))
    assert len(set(draws)) == 40
    assert b'"rng"' not in stored


def test_replicas_with_one_seed_draw_differently() -> None:
    """A serving Router passes random entropy, so two replicas with the same config (and the
    same stored state) do not make identical draws; offline, the seed alone reproduces."""
    replicas = [make_algorithm("ema", {"seed": 1, "epsilon": 0.5},
                               AlgorithmBuild(entropy=e)) for e in (11, 12)]
    picks = [[r.choose_index(["a", "b"], [1.0, 1.0]) for _ in range(64)] for r in replicas]
    assert picks[0] != picks[1]
    offline = [make_algorithm("ema", {"seed": 1, "epsilon": 0.5}) for _ in range(2)]
    runs = [[o.choose_index(["a", "b"], [1.0, 1.0]) for _ in range(64)] for o in offline]
    assert runs[0] == runs[1]


def test_state_of_another_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="ema"):
        make_algorithm("thompson").set_state(make_algorithm("ema").get_state())
    with pytest.raises(ValueError):
        make_algorithm("ema").set_state(b"not json")


def test_linucb_learns_which_model_suits_which_context() -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((2, 256))
    algorithm = make_algorithm("linucb", {"seed": 8})
    assert algorithm.needs_embedding
    best = {0: "weak", 1: "good"}  # the best model depends on the cluster
    hits = []
    for _ in range(1500):
        cluster = int(rng.integers(2))
        x = centres[cluster] + 0.3 * rng.standard_normal(256)
        x /= np.linalg.norm(x)
        model = MODELS[algorithm.choose_index(MODELS, [1.0] * 3, x)]
        p = 0.9 if model == best[cluster] else 0.2
        algorithm.update(model, float(rng.random() < p), x)
        hits.append(model == best[cluster])
    assert np.mean(hits[-500:]) > 0.85
    assert len(algorithm.get_state()) < 60_000  # 32x32 per model: small enough to store


@pytest.mark.parametrize("name", ALGORITHMS)
def test_lambda_prefers_the_cheaper_of_equals(name: str) -> None:
    algorithm = make_algorithm(name, {"seed": 9, "lambda": 0.5})
    rng = np.random.default_rng(10)
    chosen = []
    for _ in range(800):
        index = algorithm.choose_index(["dear", "cheap"], [10.0, 1.0], None)
        algorithm.update(["dear", "cheap"][index], float(rng.random() < 0.7))
        chosen.append(index)
    assert np.mean(chosen[-300:]) > 0.85


def test_elo_preferences_move_ratings_the_right_way() -> None:
    elo = make_algorithm("elo", {"epsilon": 0})
    elo.update_preference("a", "b")
    assert elo.ratings["a"] > 1500 > elo.ratings["b"]
    assert elo.ratings["a"] - 1500 == pytest.approx(16.0)  # K=32 between equals
    for _ in range(20):
        elo.update_preference("a", "b")
    assert elo.normalised("a") > 0.5 > elo.normalised("b")
    assert elo.choose_index(["b", "a"], [1.0, 1.0]) == 1
    gain = elo.ratings["a"]
    elo.update_preference("b", "a")  # an upset moves more than an expected win
    assert gain - elo.ratings["a"] > 16.0
    with pytest.raises(ValueError):
        elo.update_preference("a", "a")


def test_default_preference_is_a_win_and_a_loss() -> None:
    thompson = make_algorithm("thompson")
    thompson.update_preference("a", "b")
    assert thompson.params == {"a": [2.0, 1.0], "b": [1.0, 2.0]}


def test_rewards_are_checked() -> None:
    ema = make_algorithm("ema", {"epsilon": 0})
    ema.update("a", 7.0)  # clipped to 1
    assert ema.values["a"] == 1.0
    with pytest.raises(ValueError):
        ema.update("a", float("nan"))
    with pytest.raises(ValueError):
        make_algorithm("ema", {"alpha": 0})


class Candidate:
    def __init__(self, name: str, window: int = 10_000, available: bool = True) -> None:
        self.name, self.window, self.available = name, window, available

    def fits(self, tokens: int) -> bool:
        return tokens <= self.window

    def is_available(self) -> bool:
        return self.available


def test_select_on_candidates_skips_what_cannot_serve() -> None:
    ema = make_algorithm("ema", {"epsilon": 0})
    ema.update("big", 0.1)
    selection = ema.select([Candidate("small", window=10), Candidate("big"),
                            Candidate("down", available=False)], 100)
    assert selection is not None and selection.model == "big"
    assert selection.reason.startswith("ema:")
    assert ema.select([Candidate("small", window=10)], 100) is None


def write_dataset(folder: Path, rows: int = 300) -> Path:
    rng = np.random.default_rng(11)
    for split, n in (("train", rows), ("test", 50)):
        with open(folder / f"{split}.jsonl", "w") as handle:
            for i in range(n):
                scores = {"a": float(rng.random() < 0.8), "b": float(rng.random() < 0.4),
                          "c": float(rng.random() < 0.5)}
                handle.write(json.dumps({"id": f"{split}{i}", "task": "t",
                                         "prompt": f"question {i} about topic {i % 7}",
                                         "scores": scores,
                                         "costs": {"a": 0.01, "b": 0.001, "c": 0.002}}) + "\n")
    return folder


KEYS = {"algorithm", "events", "mean_quality", "best_fixed", "oracle_quality",
        "quality_last_1000", "within_5pct_of_best_fixed_after_2000", "regret_vs_best_fixed",
        "regret_vs_oracle", "last_1000", "after_2000", "choices"}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_replay_reports_the_documented_keys(name: str, tmp_path: Path) -> None:
    folder = write_dataset(tmp_path)
    result = replay(folder, name, limit=250)
    assert set(result) >= KEYS
    assert result["events"] == 250
    assert result["best_fixed"]["model"] == "a"
    assert result["oracle_quality"] >= result["best_fixed"]["quality"]
    assert result["after_2000"] is None and result["within_5pct_of_best_fixed_after_2000"] is False
    assert result["choices"]["a"] > 100


def test_replay_writes_regret_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    folder = write_dataset(tmp_path)
    out = tmp_path / "out"
    result = replay(folder, "thompson", split="test", out_dir=out)
    assert result["events"] == 50
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_dataset(tmp_path)
    assert replay_main(["--data", str(folder), "--algorithm", "ema", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 300
    assert replay_main(["--data", str(folder), "--algorithm", "static"]) == 1
    assert "does not learn online" in capsys.readouterr().err
    assert replay_main(["--data", str(tmp_path / "missing"), "--algorithm", "ema"]) == 1
    assert replay_main(["--data", str(folder), "--algorithm", "nope"]) == 1
    assert "unknown algorithm" in capsys.readouterr().err
