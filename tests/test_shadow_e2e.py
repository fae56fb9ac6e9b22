"""Shadow traffic end to end (issue 16): a real `routeyard serve` with `shadow:` on its default
decision, the real simulator as every backend, the openai SDK as the client, and
`routeyard shadow-report` run as a subprocess on the router's SQLite file.

- Scored: the simulator replays recorded answers (a choice letter per model and prompt); each
  request carries `metadata.reference`, so the report's win/tie/loss counts are known exactly.
  Half the requests stream, so the streamed text reaches the scorer too.
- A judge decision: the judge model is called once per mirrored request and its cost recorded.
- Faults: a shadow model that hangs or answers 503 leaves the client's answers as they are,
  in status and text, and as fast as a run without shadow traffic (a generous margin)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

SERVED, SHADOW, JUDGE = "served", "challenger", "judge"
REFERENCE = "B"
# (served answer, shadow answer) per prompt: 2 shadow wins, 5 ties (one both wrong), 3 losses.
ANSWERS = [("B", "The answer is B."), ("(B)", "B"), ("B", "b"), ("B.", "Answer: B"),
           ("B", "(A)"), ("B", "C"), ("B", "D"), ("C", "B"), ("A", "(B)"), ("E", "D")]
WINS, TIES, LOSSES = 2, 5, 3
PRICES = {SERVED: 1.0, SHADOW: 5.0, JUDGE: 2.0}  # USD per million tokens, in and out


def _prompt(index: int) -> str:
    return f"Question {index}: which option is right, A, B, C, D or E?"


@pytest.fixture(scope="module")
def replay_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    data = tmp_path_factory.mktemp("replay") / "answers.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": _prompt(i), "responses": {
        SERVED: served, SHADOW: shadow}}) + "\n" for i, (served, shadow) in enumerate(ANSWERS)))
    with start_simulator("--replay", str(data), "--model", JUDGE) as sim:
        yield sim


def _model(name: str, sim: SimulatorProcess) -> dict[str, Any]:
    return {"name": name, "endpoints": [{"base_url": sim.base_url}],
            "pricing": {"input_per_mtok": PRICES[name], "output_per_mtok": PRICES[name]}}


def _config(sim: SimulatorProcess, shadow: dict[str, Any] | None,
            decisions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "models": [_model(name, sim) for name in PRICES],
        "decisions": decisions or [],
        "default": {"candidates": [SERVED], **({"shadow": shadow} if shadow else {})},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
    }


def _shadow_report(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeyard", "shadow-report", str(db), *args],
                          capture_output=True, text=True, timeout=60)


def _report_when(db: Path, n: int, *args: str) -> dict[str, Any]:
    """The JSON report once it counts `n` mirrored requests (mirrors run after the answers)."""
    deadline = time.monotonic() + 30
    while True:
        done = _shadow_report(db, "--json", *args)
        if done.returncode == 0:
            found = json.loads(done.stdout)
            if sum(g["n"] for g in found["groups"]) >= n:
                return found
        assert time.monotonic() < deadline, f"no {n} shadow records: {done.stderr}"
        time.sleep(0.2)


def _ask(client: openai.OpenAI, prompt: str, *, stream: bool, **extra: Any) -> str:
    if stream:
        chunks = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True, **extra)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": prompt}], **extra)
    return reply.choices[0].message.content or ""


def test_shadow_records_and_report_with_a_reference_scorer(replay_sim: SimulatorProcess,
                                                           tmp_path: Path) -> None:
    config = _config(replay_sim, {"model": SHADOW, "sample": 1.0, "scorer": "choice"}, [
        {"name": "judged", "when": {"keywords_any": ["judge"]}, "candidates": [SERVED],
         "shadow": {"model": SHADOW, "sample": 1.0, "scorer": "judge", "judge": JUDGE}}])
    with start_router(config, tmp_path) as router:
        client = openai.OpenAI(base_url=router.base_url, api_key="x", max_retries=0)
        for index, (served, _) in enumerate(ANSWERS):
            answer = _ask(client, _prompt(index), stream=index % 2 == 1,
                          metadata={"reference": REFERENCE})
            assert answer == served  # the client gets the served model's recorded answer
        for index in range(3):
            _ask(client, f"please judge this, number {index}", stream=index == 1)
        found = _report_when(tmp_path / "state.db", len(ANSWERS) + 3)
    groups = {g["decision"]: g for g in found["groups"]}
    scored = groups["default"]
    assert (scored["shadow_model"], scored["scorer"]) == (SHADOW, "choice")
    assert (scored["n"], scored["failed"], scored["scored"]) == (len(ANSWERS), 0, len(ANSWERS))
    assert (scored["win"]["count"], scored["tie"]["count"], scored["loss"]["count"]) == \
        (WINS, TIES, LOSSES)
    assert scored["win"]["low"] < WINS / len(ANSWERS) < scored["win"]["high"]
    # The shadow is dearer per token: each request's delta is positive.
    assert scored["cost_delta_usd"]["mean"] > 0 and scored["cost_delta_usd"]["low"] > 0
    assert scored["judge_cost_usd"] == 0
    judged = groups["judged"]
    assert (judged["n"], judged["failed"], judged["scorer"]) == (3, 0, "judge")
    assert judged["judge_cost_usd"] > 0
    assert replay_sim.stats()["requests"][JUDGE] == 3

    text = _shadow_report(tmp_path / "state.db", "--decision", "default")
    assert text.returncode == 0, text.stderr
    assert "decision default: shadow challenger (scorer choice)" in text.stdout
    assert "win 20.0% [" in text.stdout and "loss 30.0% [" in text.stdout
    empty = _shadow_report(tmp_path / "state.db", "--decision", "nope")
    assert empty.returncode == 2
    assert "no shadow traffic recorded for decision 'nope'" in empty.stderr


# -- faults ----------------------------------------------------------------------------------

N_FAULT = 8


@pytest.fixture
def fault_sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", SERVED, "--model", SHADOW, "--model", JUDGE,
                         "--ttft-ms", "30", "--output-tokens", "12") as sim:
        yield sim


def _timed_run(router: RouterProcess) -> list[tuple[int, str, float]]:
    """(status, text, seconds) per request, streamed and not in turn."""
    client = openai.OpenAI(base_url=router.base_url, api_key="x", max_retries=0)
    _ask(client, "warm up", stream=False)
    results = []
    for index in range(N_FAULT):
        started = time.perf_counter()
        if index % 2:
            text = _ask(client, f"tell me about routing {index}", stream=True)
            status = 200
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user",
                                         "content": f"tell me about routing {index}"}])
            status, text = raw.status_code, raw.parse().choices[0].message.content or ""
        results.append((status, text, time.perf_counter() - started))
    return results


@pytest.mark.parametrize("fault", ["hang", "error"])
def test_a_failing_or_slow_shadow_never_touches_the_client(fault_sim: SimulatorProcess,
                                                           tmp_path: Path, fault: str) -> None:
    (tmp_path / "baseline").mkdir()
    with start_router(_config(fault_sim, None), tmp_path / "baseline") as router:
        baseline = _timed_run(router)
    if fault == "hang":  # far slower than the client's answers, and than the shadow's timeout
        fault_sim.set_profile(SHADOW, hang_rate=1.0, hang_s=4.0)
    else:
        fault_sim.set_profile(SHADOW, error_5xx_rate=1.0)
    shadow = {"model": SHADOW, "sample": 1.0, "scorer": "judge", "judge": JUDGE,
              "timeout_s": 1.5}
    (tmp_path / "shadowed").mkdir()
    with start_router(_config(fault_sim, shadow), tmp_path / "shadowed") as router:
        mirrored = _timed_run(router)
        found = _report_when(tmp_path / "shadowed" / "state.db", N_FAULT + 1)
        log = "".join(router.output)
    assert [(s, t) for s, t, _ in mirrored] == [(s, t) for s, t, _ in baseline]
    assert {s for s, _, _ in mirrored} == {200}
    slowest_base = max(t for _, _, t in baseline)
    slowest = max(t for _, _, t in mirrored)
    # The hang lasts 4 s and the timeout 1.5 s: a client that waited for either would show it.
    assert slowest < slowest_base + 0.75, (baseline, mirrored)
    [group] = found["groups"]
    assert group["failed"] == group["n"] == N_FAULT + 1
    assert group["failure_rate"]["rate"] == 1.0
    assert fault_sim.stats()["requests"].get(JUDGE, 0) == 0  # nothing to judge
    assert "Traceback" not in log
