"""`routeyard advise` on a real SQLite decision log written through the store, with known
synthetic traffic: estimates near the truth with covering intervals, the frontier, suggestions
only where the interval supports them, inverse-propensity weighting against a routing bias,
the PNG and self-contained HTML, and one-line errors for bad input."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routeyard.cli import main
from routeyard.eval import advise_report
from routeyard.eval.advise import AdviseError, Settings, advise, frontier, load
from routeyard.state import DecisionRecord, SQLiteStore

NOW = time.time()
COST = {"small": 0.001, "mid": 0.005, "large": 0.01, "tiny": 0.0002}
# decision "chat": no routing bias (uniform choice), small nearly as good as large.
CHAT_QUALITY = {"small": 0.79, "mid": 0.70, "large": 0.80, "tiny": 0.5}
# decision "code": easy prompts go to small (p=0.9), hard ones (domain:code) to large (p=0.9).
CODE_QUALITY = {"small": {"easy": 0.9, "hard": 0.3}, "large": {"easy": 0.95, "hard": 0.85}}
CODE_TRUTH = {m: (q["easy"] + q["hard"]) / 2 for m, q in CODE_QUALITY.items()}  # 0.6, 0.9
SETTINGS = Settings(n_resamples=1000, seed=1)


def _score(rng: np.random.Generator, mean: float) -> float:
    k = 20.0  # Beta with this mean: scores in [0, 1], mean exactly `mean`
    return float(rng.beta(mean * k, (1 - mean) * k))


def _record(i: int, decision: str, model: str, p: float | None, signals: dict[str, float],
            rng: np.random.Generator, when: float) -> DecisionRecord:
    selection = None if p is None else {"algorithm": "ema", "lambda": 0.3, "probability": p}
    return DecisionRecord(
        request_id=f"req_{i:06d}", time=when, decision=decision, model=model,
        endpoint=f"{model}#0", latency_ms=100.0, prompt_tokens=100, completion_tokens=50,
        cost_usd=COST[model] * float(rng.uniform(0.8, 1.2)), status="ok",
        detail={"signals": signals, "selection": selection,
                "candidates": sorted(COST) if decision == "chat" else ["small", "large"]})


def traffic(propensities: bool = True, seed: int = 7) -> list[tuple[DecisionRecord, float | None]]:
    rng = np.random.default_rng(seed)
    out: list[tuple[DecisionRecord, float | None]] = []
    for i in range(1200):  # chat: small 45%, large 45%, mid 8%, tiny 2% (too little feedback)
        model = str(rng.choice(["small", "large", "mid", "tiny"], p=[0.45, 0.45, 0.08, 0.02]))
        p = {"small": 0.45, "large": 0.45, "mid": 0.08, "tiny": 0.02}[model]
        record = _record(i, "chat", model, p if propensities else None, {"domain:chat": 0.9},
                         rng, NOW - 3600 - i)
        feedback = _score(rng, CHAT_QUALITY[model]) if rng.random() < 0.8 else None
        if model == "tiny" and sum(r.model == "tiny" and f is not None
                                   for r, f in out) >= 10:
            feedback = None
        out.append((record, feedback))
    for i in range(2000):
        hard = bool(rng.random() < 0.5)
        preferred = "large" if hard else "small"
        model = preferred if rng.random() < 0.9 else ("small" if hard else "large")
        p = 0.9 if model == preferred else 0.1
        signals = {"domain:code": 0.8} if hard else {"domain:chat": 0.7}
        record = _record(10_000 + i, "code", model, p if propensities else None, signals, rng,
                         NOW - 3600 - i)
        quality = CODE_QUALITY[model]["hard" if hard else "easy"]
        out.append((record, _score(rng, quality) if rng.random() < 0.6 else None))
    return out


def write_log(path: Path, items: list[tuple[DecisionRecord, float | None]]) -> Path:
    async def run() -> None:
        store = SQLiteStore(path)
        await store.start()
        for record, _ in items:
            store.record_decision(record)
        await store.flush()
        for record, score in items:
            if score is not None:
                await store.record_feedback(record.request_id, score)
        await store.close()

    asyncio.run(run())
    return path


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("advise") / "log.db", traffic())


@pytest.fixture(scope="module")
def report(log: Path) -> dict[str, Any]:
    return advise(load({"sqlite": str(log)}, None, None), ("domain:code",), SETTINGS)


def _group(report: dict[str, Any], decision: str, slice_: str | None = None) -> dict[str, Any]:
    return next(g for g in report["groups"] if g["decision"] == decision
                and g["slice"] == slice_)


def _model(group: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in group["models"] if m["model"] == name)


def _covers(interval: dict[str, float], truth: float) -> bool:
    return interval["low"] <= truth <= interval["high"]


def test_estimates_near_truth_with_covering_intervals(report: dict[str, Any]) -> None:
    chat = _group(report, "chat")
    for name in ("small", "mid", "large"):
        m = _model(chat, name)
        assert m["status"] == "estimated" and m["estimator"] == "snips"
        assert abs(m["quality"]["value"] - CHAT_QUALITY[name]) < 0.03
        assert _covers(m["quality"], CHAT_QUALITY[name]), m
        # Costs vary ±20% around their base: near it (a 95% interval misses now and then).
        assert abs(m["cost"]["value"] / COST[name] - 1) < 0.03
        assert m["cost"]["low"] <= m["cost"]["value"] <= m["cost"]["high"]
        assert m["feedback"] >= 20 and m["requests"] > m["feedback"]
    tiny = _model(chat, "tiny")
    assert tiny["status"] == "not enough data" and tiny["feedback"] == 10
    assert "quality" not in tiny


def test_frontier(report: dict[str, Any]) -> None:
    assert _group(report, "chat")["frontier"] == ["small", "large"]  # mid is dominated
    models = [{"model": n, "status": "estimated", "cost": {"value": c}, "quality": {"value": q}}
              for n, c, q in (("a", 1, 0.5), ("b", 2, 0.7), ("c", 3, 0.6), ("d", 2, 0.7))]
    assert frontier(models) == ["a", "b", "d"]  # c costs more than b for less; b, d tie


def test_suggestion_when_warranted(report: dict[str, Any]) -> None:
    chat = _group(report, "chat")
    found = [s for s in chat["suggestions"] if s["model"] == "small"]
    assert found, chat["suggestions"]
    s = found[0]
    assert s["baseline"] == "large" and s["kept_quality"]["low"] >= 0.95
    assert _covers(s["kept_quality"], CHAT_QUALITY["small"] / CHAT_QUALITY["large"])
    assert _covers(s["cost_share"], COST["small"] / COST["large"])
    assert s["cost_share"]["high"] < 0.2
    assert s["requests"]["small"] > 400 and s["feedback"]["large"] > 300
    assert s["text"].startswith("for decision 'chat', small would keep 9")


def test_no_suggestion_when_data_does_not_support_it(report: dict[str, Any],
                                                     log: Path) -> None:
    assert _group(report, "code")["suggestions"] == []  # small keeps ~67% of large's quality
    assert _group(report, "code", "domain:code")["suggestions"] == []
    # Kept quality near 99% but the bar set above what the interval supports: no suggestion.
    strict = advise(load({"sqlite": str(log)}, None, None), (),
                    Settings(min_keep=1.0, n_resamples=500, seed=1))
    assert _group(strict, "chat")["suggestions"] == []


def test_propensity_weighting_corrects_routing_bias(report: dict[str, Any], log: Path,
                                                    tmp_path: Path) -> None:
    code = _group(report, "code")
    for name, truth in CODE_TRUTH.items():
        m = _model(code, name)
        assert m["estimator"] == "snips"
        assert abs(m["quality"]["value"] - truth) < 0.04, m
        assert _covers(m["quality"], truth), m
        assert m["effective_feedback"] < m["feedback"]
    # The same traffic logged without probabilities: the plain mean, biased by routing
    # (small is mostly asked easy prompts: ~0.84 against a true 0.6).
    loose = Settings(min_keep=0.9, n_resamples=500, seed=1)
    plain = advise(load({"sqlite": str(write_log(tmp_path / "plain.db", traffic(False)))},
                        None, None), (), loose)
    small = _model(_group(plain, "code"), "small")
    assert small["estimator"] == "mean"
    assert small["quality"]["value"] > 0.8 and not _covers(small["quality"], CODE_TRUTH["small"])
    # ... so the plain mean would wrongly advise small; the weighted estimate does not.
    assert [s["model"] for s in _group(plain, "code")["suggestions"]] == ["small"]
    weighted = advise(load({"sqlite": str(log)}, None, None), (), loose)
    assert _group(weighted, "code")["suggestions"] == []
    # The slice: only hard prompts.
    sliced = _model(_group(report, "code", "domain:code"), "small")
    assert abs(sliced["quality"]["value"] - 0.3) < 0.05


def test_cli_text_json_and_files(log: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", str(log), "--slice", "domain:code", "--resamples", "500"]) == 0
    text = capsys.readouterr().out
    assert "decision 'chat'" in text and "suggestion: for decision 'chat', small" in text
    assert "not enough data" in text and "decision 'code', slice domain:code" in text
    assert main(["advise", str(log), "--json", "--resamples", "500", "--since", "1d"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 3200 and {g["decision"] for g in data["groups"]} == {"chat",
                                                                                  "code"}
    assert main(["advise", str(log), "--json", "--resamples", "200", "--decision", "code"]) == 0
    assert [g["decision"] for g in json.loads(capsys.readouterr().out)["groups"]] == ["code"]
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("the eval extra is not installed")
    out = tmp_path / "out"
    assert main(["advise", str(log), "--out", str(out), "--resamples", "200"]) == 0
    assert (out / "advise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "advise.html").read_text()
    assert "<svg" in page and "small would keep" in page
    assert "src=" not in page and "<link" not in page and "<script" not in page
    # No URL but the SVG and XLink namespace names (identifiers, never fetched).
    assert set(re.findall(r"https?://[^\"'\s<>)]*", page)) <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert json.loads((out / "advise.json").read_text())["groups"]


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["advise", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    return captured.err


def test_bad_input(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no SQLite decision log" in _error([str(tmp_path / "missing.db")], capsys)
    empty = write_log(tmp_path / "empty.db", [])
    assert "no routed request" in _error([str(empty)], capsys)
    bare = write_log(tmp_path / "bare.db", [(r, None) for r, _ in traffic()[:50]])
    assert "no feedback" in _error([str(bare)], capsys)
    assert "unknown slice 'domain:maths'" in _error([str(log), "--slice", "domain:maths"],
                                                    capsys)
    assert "no routed request" in _error([str(log), "--until", "2001-01-01"], capsys)
    assert "not a time" in _error([str(log), "--since", "yesterday"], capsys)
    assert "exactly one" in _error([], capsys)
    monkeypatch.setattr(advise_report.importlib.util, "find_spec", lambda name: None)
    assert "routeyard[eval]" in _error([str(log), "--out", str(tmp_path / "x")], capsys)
    assert not (tmp_path / "x").exists()
    with pytest.raises(AdviseError):
        advise([], ())
