"""`routeyard eval --ensembles`: vote, rank and synthesise scored offline on recorded answers,
checked on small synthetic datasets whose right answers are known."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routeyard.dataset import from_rows, load_dataset
from routeyard.eval import command, ensemble_sweep
from routeyard.eval import ensemble_eval as ens
from routeyard.serving.ensemble_judge import rank_messages, synthesis_messages
from routeyard.tokens import count_prompt_tokens, count_text_tokens

# dollars per input / output token; cheap models cost well under a tenth of "best"
PRICES = {"best": (1e-5, 3e-5), "mid": (2e-6, 4e-6), "low": (5e-7, 1e-6),
          "cheap": (2e-7, 4e-7), "tiny": (1e-7, 1e-7)}
SKILL = {"best": 0.9, "mid": 0.7, "low": 0.6, "cheap": 0.55, "tiny": 0.4}


def _row(i: int, answers: dict[str, str], scores: dict[str, float]) -> dict[str, Any]:
    prompt = f"question {i}: " + "which option is right " * (1 + i % 7)
    costs = {m: PRICES[m][0] * count_text_tokens(prompt)
             + PRICES[m][1] * count_text_tokens(answers[m]) for m in answers}
    return {"id": str(i), "task": "quiz", "prompt": prompt, "scores": scores, "costs": costs,
            "responses": answers}


def _random_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Multiple-choice rows: a model right with its SKILL answers "A", else a wrong letter."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        right = {m: bool(rng.random() < p) for m, p in SKILL.items()}
        answers = {m: "A" if ok else f"({'BCD'[int(rng.integers(3))]})"
                   for m, ok in right.items()}
        rows.append(_row(i, answers, {m: float(ok) for m, ok in right.items()}))
    return rows


def _write(folder: Path, train: int = 80, test: int = 40) -> Path:
    folder.mkdir()
    for name, n, seed in (("train", train, 1), ("test", test, 2)):
        lines = [json.dumps(r) for r in _random_rows(n, seed)]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _tables(rows: list[dict[str, Any]]) -> tuple[ens.Tables, list[str]]:
    data = from_rows("toy", rows)
    return ens.tables(data), data.models


def _columns(models: list[str], names: list[str]) -> tuple[int, ...]:
    return tuple(models.index(n) for n in names)


def test_vote_returns_the_majority_answer_of_its_best_prior_member() -> None:
    rows = [
        # two members agree on a wrong letter: the majority wins over the best member
        _row(0, {"best": "A", "mid": "['B']", "low": "b)", "cheap": "C", "tiny": "D"},
             {"best": 1.0, "mid": 0.0, "low": 0.0, "cheap": 0.0, "tiny": 0.0}),
        # free text agrees only when equal after stripping and lower-casing; the group's
        # best-prior member ("mid") is the one returned, so its score counts
        _row(1, {"best": "foo", "mid": "Bar ", "low": "bar", "cheap": "x", "tiny": "y"},
             {"best": 1.0, "mid": 0.4, "low": 0.2, "cheap": 0.0, "tiny": 0.0}),
        # no two agree: the tie goes to the best prior member
        _row(2, {"best": "A", "mid": "B", "low": "C", "cheap": "D", "tiny": "E"},
             {"best": 0.7, "mid": 0.0, "low": 1.0, "cheap": 0.0, "tiny": 0.0}),
    ]
    t, models = _tables(rows)
    config = ens.Config("vote", _columns(models, ["best", "mid", "low"]))
    out = ens.score_vote(config, t, np.zeros((len(models), 2)), np.zeros((1, 3, 5, 5)))
    assert out.quality.tolist() == [0.0, 0.4, 0.7]
    members = list(config.members)
    assert out.cost.tolist() == pytest.approx(t.costs[:, members].sum(axis=1).tolist())
    assert out.judge_cost.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("size", [3, 4, 5])
def test_an_oracle_judge_ranks_the_best_answer_first_and_a_contrary_one_the_worst(
        size: int) -> None:
    rng = np.random.default_rng(size)
    rows = []
    for i in range(120):
        scores = {m: float(rng.choice([0.0, 0.25, 0.5, 1.0])) for m in PRICES}
        rows.append(_row(i, {m: "A" for m in PRICES}, scores))
    t, models = _tables(rows)
    members = list(range(size))
    prices = ens.fit_prices(t)
    coins = ens.draw_coins(len(t), len(models), 3, seed=0)
    oracle = ens.score_rank(ens.Config("rank", tuple(members), 0, 1.0), t, prices, coins)
    assert oracle.quality.tolist() == t.scores[:, members].max(axis=1).tolist()
    contrary = ens.score_rank(ens.Config("rank", tuple(members), 0, 0.0), t, prices, coins)
    assert contrary.quality.tolist() == t.scores[:, members].min(axis=1).tolist()
    # a coin-flip judge lands in between, on average
    half = ens.score_rank(ens.Config("rank", tuple(members), 0, 0.5), t, prices, coins)
    assert contrary.quality.mean() < half.quality.mean() < oracle.quality.mean()


def test_a_judge_by_its_own_answer_prefers_the_members_that_agree_with_it() -> None:
    rows = [
        # the judge ("tiny") answers A, which one member shares: that member wins
        _row(0, {"best": "B", "mid": "C", "low": "A", "cheap": "D", "tiny": "A"},
             {"best": 0.0, "mid": 0.0, "low": 1.0, "cheap": 0.0, "tiny": 1.0}),
        # the judge is wrong with the majority's wrong answer: a real judge's mistake
        _row(1, {"best": "A", "mid": "B", "low": "B", "cheap": "D", "tiny": "B"},
             {"best": 1.0, "mid": 0.0, "low": 0.0, "cheap": 0.0, "tiny": 0.0}),
        # nobody shares the judge's answer: coin flips, then BT, so any member may win
        _row(2, {"best": "A", "mid": "A", "low": "A", "cheap": "D", "tiny": "C"},
             {"best": 1.0, "mid": 1.0, "low": 1.0, "cheap": 0.0, "tiny": 0.0}),
    ]
    t, models = _tables(rows)
    members = _columns(models, ["best", "mid", "low"])
    config = ens.Config("rank", members, models.index("tiny"), None)
    coins = ens.draw_coins(len(t), len(models), 4, seed=0)
    out = ens.score_rank(config, t, ens.fit_prices(t), coins)
    assert out.quality.tolist() == [1.0, 0.0, 1.0]
    assert config.describe(models)["judge_mode"] == "own-answer"


def test_bradley_terry_orders_a_round_robin_by_wins() -> None:
    wins = np.zeros((1, 4, 4))
    for i, j in itertools.combinations(range(4), 2):  # 0 beats everyone, 1 beats 2 and 3 ...
        wins[0, i, j] = 1
    strength = ens.bradley_terry(wins)[0]
    assert np.all(np.isfinite(strength)) and list(np.argsort(-strength)) == [0, 1, 2, 3]


def test_every_call_is_counted_at_its_price() -> None:
    t, models = _tables(_random_rows(30, seed=3))
    prices = ens.fit_prices(t)
    for m, (price_in, price_out) in PRICES.items():  # costs are exactly linear in tokens
        assert prices[models.index(m)][0] == pytest.approx(price_in, rel=1e-6)
        assert prices[models.index(m)][1] == pytest.approx(price_out, rel=1e-6)
    members = _columns(models, ["best", "mid", "low", "cheap"])
    judge = models.index("cheap")
    coins = ens.draw_coins(len(t), len(models), 1, seed=0)
    rank = ens.score_rank(ens.Config("rank", members, judge, 0.75), t, prices, coins)
    price_in, price_out = PRICES["cheap"]
    for row in range(len(t)):
        calls = 0.0
        for a, b in itertools.combinations(members, 2):  # 6 judge calls, one per pair
            read = ens.rank_overhead() + t.prompt_tokens[row] + t.answer_tokens[row, a] \
                + t.answer_tokens[row, b]
            calls += price_in * read + price_out * ens.VERDICT_TOKENS
        assert rank.judge_cost[row] == pytest.approx(calls, rel=1e-6)
        assert rank.cost[row] == pytest.approx(t.costs[row, list(members)].sum() + calls,
                                               rel=1e-6)
    synth = ens.score_synthesis(ens.Config("synthesise", members, judge, 0.75), t, prices,
                                coins)
    answers = t.answer_tokens[:, list(members)]
    read = ens.synthesis_overhead(4) + t.prompt_tokens + answers.sum(axis=1)
    expected = price_in * read + price_out * answers.mean(axis=1)
    assert synth.judge_cost.tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_judge_tokens_add_up_to_the_live_judge_prompt() -> None:
    """Counting the parts apart is within two tokens a part (merges at their joins) of
    counting the prompt the live ensemble sends to its judge."""
    asked = "Which gas do plants take in for photosynthesis? A) oxygen B) carbon dioxide"
    first, second = "B) carbon dioxide, which they fix into sugars", "A"
    exact = count_prompt_tokens(rank_messages(asked, first, second))
    parts = ens.rank_overhead() + sum(count_text_tokens(x) for x in (asked, first, second))
    assert abs(parts - exact) <= 2 * 3
    answers = [first, second, "carbon dioxide"]
    exact = count_prompt_tokens(synthesis_messages(asked, answers))
    parts = ens.synthesis_overhead(3) + sum(count_text_tokens(x) for x in (asked, *answers))
    assert abs(parts - exact) <= 2 * 4


def test_synthesis_is_the_stated_mix_of_best_member_and_vote() -> None:
    t, models = _tables(_random_rows(50, seed=4))
    members = _columns(models, ["best", "mid", "low"])
    prices, coins = ens.fit_prices(t), ens.draw_coins(len(t), len(models), 1, seed=0)
    voted = ens.score_vote(ens.Config("vote", members), t, prices, coins).quality
    best = t.scores[:, list(members)].max(axis=1)
    for accuracy in (0.0, 0.6, 1.0):
        out = ens.score_synthesis(ens.Config("synthesise", members, 0, accuracy), t, prices,
                                  coins)
        assert out.quality.tolist() == pytest.approx(
            (accuracy * best + (1 - accuracy) * voted).tolist())


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = command.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_eval_reports_ensembles_beside_the_cascade(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write(tmp_path / "toy")
    status, out, err = _run(["eval", "--data", str(folder), "--algorithms", "cascade",
                             "--ensembles", "--judge-accuracy", "0.75,1", "--judge-repeats",
                             "2", "--members", "mid,low,cheap", "--json", "--quiet"], capsys)
    assert status == 0, err
    result = json.loads(out)
    assert "cascade" in result["algorithms"]
    report = result["ensembles"]
    assert report["judge_accuracies"] == [0.75, 1.0]
    cheap_judge, best_judge = report["judges"]  # a model under a tenth of best's cost, best
    assert cheap_judge in {"low", "cheap", "tiny"} and best_judge == "best"
    best = result["best_single"]
    _, test = load_dataset(folder)
    rows = report["configurations"]
    assert {r["method"] for r in rows} == {"vote", "rank", "synthesise"}
    assert any(r["family"] == "custom1" and r["members"] == ["mid", "low", "cheap"]
               for r in rows)
    for row in rows:
        assert row["test"]["cost_ratio"] == pytest.approx(row["test"]["cost"] / best["cost"])
        columns = [test.models.index(m) for m in row["members"]]
        assert row["test"]["cost"] >= test.costs[:, columns].sum(axis=1).mean() - 1e-12
        if row["method"] == "rank" and row["judge_accuracy"] == 1.0:
            oracle = test.scores[:, columns].max(axis=1).mean()
            assert row["test"]["quality"] == pytest.approx(oracle)
    chosen = [r for r in rows if r["chosen_on_validation"]]
    # vote, then per judge: rank at 2 accuracies and by its own answers, synthesise at 2
    assert len(chosen) == 1 + 2 * (3 + 2)
    for label in ("vote", "rank@0.75", "rank@1", "rank@own-answer", "synthesise@0.75",
                  "synthesise@1"):
        curve = report["curves"][label]
        assert 0.0 <= curve["aiq"] <= 1.0 and curve["max_quality"] <= 1.0


def test_the_test_split_does_not_choose_the_members(tmp_path: Path) -> None:
    train, test = load_dataset(_write(tmp_path / "toy"))
    first = ensemble_sweep.evaluate(train, test, accuracies=(0.9,), repeats=1)
    test.scores = 1.0 - test.scores  # a test split that rewards the opposite answers
    second = ensemble_sweep.evaluate(train, test, accuracies=(0.9,), repeats=1)

    def chosen(report: dict[str, Any]) -> list[tuple[str, list[str], str | None]]:
        return [(r["method"], r["members"], r["judge"]) for r in report["configurations"]
                if r["chosen_on_validation"]]

    assert chosen(first) == chosen(second)
    assert first["configurations"][0]["test"] != second["configurations"][0]["test"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--members", "best,nope"], "error: unknown member model 'nope'; known: best, "),
    (["--judges", "oracle"], "error: unknown judge model 'oracle'; known: best, "),
    (["--judge-accuracy", "0.5,1.5"], "error: judge accuracy must be in [0, 1], got 1.5"),
    (["--judge-accuracy", "high"], "error: --judge-accuracy: not a list of numbers: high"),
    (["--members", "best"], "error: an ensemble needs at least two different members"),
    (["--members", "best,best"], "error: an ensemble needs at least two different members"),
])
def test_bad_options_fail_in_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    folder = _write(tmp_path / "toy", train=12, test=6)
    result = subprocess.run([sys.executable, "-m", "routeyard.eval.command", "eval", "--data",
                             str(folder), "--algorithms", "cascade", "--ensembles", "--quiet",
                             *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_a_dataset_without_answers_is_a_clear_error(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for name, seed in (("train", 1), ("test", 2)):
        rows = [{k: v for k, v in r.items() if k != "responses"} for r in _random_rows(20, seed)]
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    status, out, err = _run(["eval", "--data", str(folder), "--algorithms", "cascade",
                             "--ensembles", "--quiet"], capsys)
    assert status == 1 and out == ""
    assert err == "error: plain: no recorded responses; ensembles cannot be scored offline\n"


def test_judge_prices_fitted_on_routerbench_are_the_list_prices(shared_data: Path) -> None:
    folder = shared_data / "routerbench"
    if not (folder / "train.jsonl").is_file():
        pytest.skip(f"{folder} is absent")
    train, _ = load_dataset(folder)
    data = train.restrict_models(["gpt-4-1106-preview", "gpt-3.5-turbo-1106"])
    prices = ens.fit_prices(ens.tables(data)) * 1e6
    assert prices[0] == pytest.approx([10.0, 30.0], rel=0.1)  # gpt-4-1106 list price
    assert prices[1] == pytest.approx([1.0, 2.0], rel=0.1)  # gpt-3.5-turbo-1106
