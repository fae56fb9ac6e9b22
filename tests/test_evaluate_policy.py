"""`routeyard evaluate-policy` on real SQLite decision logs written through the store API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from stores import REDIS_URL, needs_redis, unique_prefix

from routeyard.cli import main
from routeyard.state import RedisStore, SQLiteStore, Store
from routeyard.state.record import DecisionRecord

QUALITY = {"small": 0.5, "large": 0.9}
COST = {"small": 0.001, "large": 0.01}
LATENCY = {"small": 100.0, "large": 400.0}


def _record(i: int, decision: str, candidates: list[str], model: str,
            probability: float | None, signals: dict[str, float]) -> DecisionRecord:
    selection = {"algorithm": "ema", "lambda": 0.3, "probability": probability}
    return DecisionRecord(
        request_id=f"req_{i:05d}", time=1_800_000_000.0 + i, decision=decision, model=model,
        endpoint=f"{model}#0", latency_ms=LATENCY[model], prompt_tokens=10,
        completion_tokens=5, cost_usd=COST[model], status="ok",
        detail={"signals": signals, "selection": selection, "candidates": candidates,
                "attempts": [{"model": model, "endpoint": f"{model}#0", "outcome": "ok"}]})


async def _write(path: Path | Store, records: list[DecisionRecord],
                 feedback: dict[str, float]) -> None:
    store = path if isinstance(path, Store) else SQLiteStore(path)
    await store.start()
    for record in records:
        store.record_decision(record)
    await store.flush()
    for request_id, score in feedback.items():
        await store.record_feedback(request_id, score)
    await store.close()


def _log(path: Path | Store, n: int = 600, *, epsilon: float = 0.5, seed: int = 0,
         probabilities: bool = True) -> Path | Store:
    """Two decisions, each ε-greedy over its candidates (greedy: the first); feedback on every
    record, Bernoulli with each model's quality."""
    rng = np.random.default_rng(seed)
    records, feedback = [], {}
    for i in range(n):
        code = i % 3 == 0
        decision, candidates = ("code", ["large", "small"]) if code else ("chat",
                                                                          ["small", "large"])
        explore = rng.random() < epsilon
        model = candidates[int(rng.integers(2))] if explore else candidates[0]
        p = (1 - epsilon) * (model == candidates[0]) + epsilon / 2
        signals = {"domain:code": 0.9} if code else {"domain:chat": 0.8}
        records.append(_record(i, decision, candidates, model, p if probabilities else None,
                               signals))
        feedback[records[-1].request_id] = float(rng.random() < QUALITY[model])
    asyncio.run(_write(path, records, feedback))
    return path


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "decisions.db"
    _log(path)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate-policy", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cheapest_is_estimated_near_its_truth(log_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, str(log_file), "--algorithm", "cheapest", "--json",
                        "--resamples", "300", "--slice", "domain:code")
    assert code == 0
    result: dict[str, Any] = orjson.loads(out)
    assert result["events"] == 600
    everything = result["groups"]["all"]
    quality = everything["quality"]
    assert quality["unsupported"] is None and quality["n"] == 600
    assert set(quality["estimates"]) == {"ips", "snips", "dm", "dr"}
    for est in quality["estimates"].values():
        assert est["low"] <= est["value"] <= est["high"]
        assert abs(est["value"] - QUALITY["small"]) < 0.1
    dr = quality["estimates"]["dr"]
    assert dr["low"] <= QUALITY["small"] <= dr["high"]
    # Cost and latency of "always small" are known exactly: every small call costs the same.
    assert everything["cost"]["estimates"]["snips"]["value"] == pytest.approx(COST["small"])
    assert everything["latency"]["estimates"]["dr"]["value"] == pytest.approx(LATENCY["small"])
    # The logging policy's own figures: realised means.
    assert 0.5 < quality["logging"] < 0.9
    assert set(result["groups"]) == {"all", "decision:code", "decision:chat",
                                     "slice:domain:code"}
    code_group = result["groups"]["decision:code"]
    assert code_group["events"] == 200
    assert result["groups"]["slice:domain:code"]["events"] == 200
    # On `code` the logging policy prefers large: the candidate costs less there.
    assert (code_group["cost"]["estimates"]["dr"]["value"]
            < code_group["cost"]["logging"])
    assert 0 < code_group["quality"]["estimates"]["ips"]["ess"] < 200


def test_the_logging_policy_estimates_its_realised_mean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A deterministic log (ε = 0, probability 1) evaluates the policy that wrote it exactly.
    path = tmp_path / "static.db"
    _log(path, 200, epsilon=0.0)
    code, out, _ = _run(capsys, str(path), "--algorithm", "static", "--json",
                        "--resamples", "200")
    assert code == 0
    quality = orjson.loads(out)["groups"]["all"]["quality"]
    assert quality["estimates"]["ips"]["value"] == pytest.approx(quality["logging"])
    assert quality["estimates"]["snips"]["ess"] == pytest.approx(200)


def test_text_table(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, str(log_file), "--algorithm", "static", "--epsilon", "0.2",
                        "--resamples", "100", "--slice", "domain:none")
    assert code == 0
    assert "decision:code  (200 events)" in out
    assert "95% interval" in out and " dr " in out
    assert "slice:domain:none  (0 events)" in out and "no logged event" in out


@pytest.mark.parametrize(("setup", "argv", "message"), [
    ("no_propensity", ["--algorithm", "cheapest"], "carries no propensities"),
    ("good", ["--algorithm", "magic"], "unknown algorithm 'magic'"),
    ("empty", ["--algorithm", "cheapest"], "the decision log is empty"),
    ("deterministic", ["--algorithm", "cheapest"], "missing support: on 67 of 200"),
    ("missing", ["--algorithm", "cheapest"], "no such decision log"),
    ("good", ["--algorithm", "knn"], "needs --artifact"),
    ("good", ["--algorithm", "knn", "--artifact", "x.npz"], "no prompt text"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     setup: str, argv: list[str], message: str) -> None:
    path = tmp_path / "log.db"
    if setup == "no_propensity":
        _log(path, 50, probabilities=False)
    elif setup == "good":
        _log(path, 30)
    elif setup == "empty":
        asyncio.run(_write(path, [], {}))
    elif setup == "deterministic":
        _log(path, 200, epsilon=0.0)  # greedy = first candidate: large on `code`
    code, out, err = _run(capsys, str(path), *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err


def _config(path: Path, code_algorithm: str = "static",
            code_candidates: str = "[small, large]") -> Path:
    path.write_text(f"""
models:
  - name: small
    pricing: {{input_per_mtok: 1, output_per_mtok: 2}}
    endpoints: [{{base_url: "http://127.0.0.1:9/v1"}}]
  - name: large
    pricing: {{input_per_mtok: 10, output_per_mtok: 20}}
    endpoints: [{{base_url: "http://127.0.0.1:9/v1"}}]
  - name: other
    endpoints: [{{base_url: "http://127.0.0.1:9/v1"}}]
decisions:
  - name: code
    when: {{keywords_any: [code]}}
    candidates: {code_candidates}
    algorithm: {code_algorithm}
default:
  name: chat
  candidates: [large, small]
  algorithm: cheapest
""")
    return path


def test_a_config_as_the_candidate(log_file: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    # code: static -> small; chat: cheapest by pricing -> small. So "always small".
    config = _config(tmp_path / "candidate.yaml")
    code, out, err = _run(capsys, str(log_file), "--config", str(config), "--json",
                          "--resamples", "200")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["policy"].startswith("config ")
    everything = result["groups"]["all"]
    assert everything["cost"]["estimates"]["dr"]["value"] == pytest.approx(COST["small"])
    dr = everything["quality"]["estimates"]["dr"]
    assert dr["low"] <= QUALITY["small"] <= dr["high"]


@pytest.mark.parametrize(("algorithm", "candidates", "message"), [
    ("ema", "[small, large]", "cannot be re-applied offline"),
    ("static", "[other, small]", "missing support: on 200 of 600"),
])
def test_a_config_that_cannot_be_evaluated(log_file: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], algorithm: str,
                                           candidates: str, message: str) -> None:
    config = _config(tmp_path / "candidate.yaml", algorithm, candidates)
    code, out, err = _run(capsys, str(log_file), "--config", str(config))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


@needs_redis
def test_a_redis_log(capsys: pytest.CaptureFixture[str]) -> None:
    with unique_prefix("evalpolicy") as prefix:
        _log(RedisStore(REDIS_URL, key_prefix=prefix), 120)
        code, out, err = _run(capsys, REDIS_URL, "--key-prefix", prefix, "--algorithm",
                              "cheapest", "--json", "--resamples", "100")
    assert code == 0, err
    assert orjson.loads(out)["groups"]["all"]["quality"]["n"] == 120


def test_a_trained_router_on_logged_prompts(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """With state.log_content, a kNN artifact re-chooses on each logged prompt: maths goes to
    large, greetings to small (it learned that from its train rows)."""
    from routeyard.dataset import from_rows
    from routeyard.eval.runner import embed
    from routeyard.selection.learned.knn import KnnRouter

    maths = [f"Solve the equation {i}x + {i + 1} = {2 * i}" for i in range(10)]
    hello = [f"Say hello to my friend number {i}" for i in range(10)]
    rows = [{"prompt": p, "scores": {"small": 0.0, "large": 1.0},
             "costs": {"small": 0.001, "large": 0.01}} for p in maths]
    rows += [{"prompt": p, "scores": {"small": 1.0, "large": 1.0},
              "costs": {"small": 0.001, "large": 0.01}} for p in hello]
    train = from_rows("toy", rows)
    router = KnnRouter(k=3)
    router.fit(train, embed(train.prompts))
    artifact = tmp_path / "knn.npz"
    router.save(artifact)
    rng = np.random.default_rng(0)
    records, feedback = [], {}
    for i in range(200):
        prompt = (maths + hello)[i % 20]
        model = "small" if rng.random() < 0.5 else "large"
        record = _record(i, "chat", ["small", "large"], model, 0.5, {})
        assert record.detail is not None
        record.detail["content"] = {"prompt": [{"role": "user", "content": prompt}],
                                    "answer": "..."}
        records.append(record)
        feedback[record.request_id] = 0.0 if (prompt in maths and model == "small") else 1.0
    path = tmp_path / "content.db"
    asyncio.run(_write(path, records, feedback))
    code, out, err = _run(capsys, str(path), "--algorithm", "knn", "--artifact", str(artifact),
                          "--lambda", "0.5", "--json", "--resamples", "100")
    assert code == 0, err
    everything = orjson.loads(out)["groups"]["all"]
    # The router's policy is right on every prompt: quality 1, half the calls on large.
    assert everything["quality"]["estimates"]["snips"]["value"] == pytest.approx(1.0)
    dr = everything["quality"]["estimates"]["dr"]
    assert dr["low"] <= 1.0 <= dr["high"] + 1e-9
    assert everything["cost"]["estimates"]["snips"]["value"] == pytest.approx(0.0055, abs=1e-3)
    assert everything["quality"]["logging"] < 0.9


def test_a_config_whose_rules_are_re_run_on_logged_prompts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The log has one decision, `chat`, that tried both models at random. The candidate config
    splits the traffic: its keyword rule sends Python questions to `large`, the rest to
    `small` through its default. Small fails Python questions and answers the rest: with its
    rules re-run, the candidate is right on every request; without, its decisions are not
    those of the log."""
    code_prompts = [f"Write a python function number {i}" for i in range(10)]
    chat_prompts = [f"Say hello to my friend number {i}" for i in range(10)]
    rng = np.random.default_rng(1)
    records, feedback = [], {}
    for i in range(200):
        prompt = (code_prompts + chat_prompts)[i % 20]
        model = "small" if rng.random() < 0.5 else "large"
        record = _record(i, "chat", ["small", "large"], model, 0.5, {})
        assert record.detail is not None
        record.detail["content"] = {"prompt": [{"role": "user", "content": prompt}],
                                    "answer": "..."}
        records.append(record)
        feedback[record.request_id] = 0.0 if (prompt in code_prompts and model == "small") \
            else 1.0
    path = tmp_path / "content.db"
    asyncio.run(_write(path, records, feedback))
    config = tmp_path / "split.yaml"
    config.write_text(
        "models:\n"
        "  - {name: small, pricing: {input_per_mtok: 1, output_per_mtok: 1},\n"
        "     endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
        "  - {name: large, pricing: {input_per_mtok: 10, output_per_mtok: 10},\n"
        "     endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
        "decisions:\n"
        "  - {name: code, when: {keywords_any: [python]}, candidates: [large, small]}\n"
        "default: {candidates: [small, large]}\n")
    code, out, err = _run(capsys, str(path), "--config", str(config), "--rerun-rules",
                          "--json", "--resamples", "100")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["policy"].endswith("(rules re-run)")
    everything = result["groups"]["all"]
    assert everything["quality"]["estimates"]["snips"]["value"] == pytest.approx(1.0)
    # Half the requests (the Python ones) on large: the mean of the two models' costs.
    assert everything["cost"]["estimates"]["snips"]["value"] == pytest.approx(
        (COST["small"] + COST["large"]) / 2, rel=0.15)
    code, out, err = _run(capsys, str(path), "--config", str(config))
    assert code == 2 and "decision 'chat' of the log is not in" in err


def test_rules_cannot_be_re_run_without_logged_prompts(
        log_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path / "candidate.yaml")
    code, out, err = _run(capsys, str(log_file), "--config", str(config), "--rerun-rules")
    assert code == 2 and out == ""
    assert "rules can only be re-run on logged prompts: 600 of 600 events" in err
    code, out, err = _run(capsys, str(log_file), "--algorithm", "static", "--rerun-rules")
    assert code == 2 and "--rerun-rules needs a candidate --config" in err
