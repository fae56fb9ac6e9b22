"""`routeyard fleet-sim` (issue 19): the SimPy model of a GPU pool.

Queueing is checked against closed forms on a degenerate profile (one request at a time, the
service time set by the output length), the run is deterministic under a seed, bad traces and
profiles get located errors, and the CLI prints its table, JSON, plots and install hint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("simpy", reason="fleet-sim needs the `fleet` extra (SimPy)")

from routeyard.cli import main
from routeyard.fleet.engine import simulate
from routeyard.fleet.policies import POLICIES, make_policy
from routeyard.fleet.profiles import (
    FleetInputError,
    PoolSpec,
    load_profiles,
    parse_profile,
)
from routeyard.fleet.report import Slo, summarise
from routeyard.fleet.workload import Workload, read_trace, synthetic

STEP_S = 1e-6  # the degenerate profile's decode step: service time = (output - 1) steps


def one_at_a_time() -> PoolSpec:
    """A single server: batch of one, free prefill, every decode step STEP_S."""
    data = {"name": "M1", "power_w": {"idle": 0, "peak": 1}, "price_per_hour": 1,
            "models": {"m": {"tensor_parallel": 1, "prefill_tokens_per_s": 1e15,
                             "prefill_overhead_ms": 0,
                             "decode": {"base_ms": STEP_S * 1e3, "per_seq_ms": 0,
                                        "per_context_token_us": 0},
                             "kv_capacity_tokens": 10**12, "max_batch": 1}}}
    return PoolSpec(name="single", profile=parse_profile(data, "M1.yaml")["m"], count=1)


def mean_wait(service_s: np.ndarray, rate: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    n = len(service_s)
    outputs = np.maximum(np.rint(service_s / STEP_S), 1).astype(np.int64) + 1
    work = Workload(np.cumsum(rng.exponential(1 / rate, n)), np.ones(n), outputs)
    out = simulate(work, [one_at_a_time()], POLICIES["round_robin"])
    return float(np.mean(out.admitted - work.arrival))


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_waiting_time_matches_the_closed_form(rho: float) -> None:
    mu, n = 1.0, 60_000
    service = np.random.default_rng(1).exponential(1 / mu, n)
    expected = rho / (mu - rho * mu)  # Wq = rho / (mu - lambda)
    assert mean_wait(service, rho * mu, seed=2) == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_waiting_time_matches_the_closed_form(rho: float) -> None:
    mu, n = 1.0, 60_000
    expected = rho / (2 * mu * (1 - rho))  # Wq = rho / (2 mu (1 - rho))
    got = mean_wait(np.full(n, 1 / mu), rho * mu, seed=3)
    assert got == pytest.approx(expected, rel=0.1)
    # and it is half the M/M/1 wait at the same load, as the forms say
    assert got < 0.6 * rho / (mu - rho * mu)


def shipped_pool(count: int = 2, max_context: int | None = None) -> PoolSpec:
    return PoolSpec(name=f"h100-{max_context}", profile=load_profiles()["H100"]["llama-3.1-8b"],
                    count=count, max_context=max_context)


def test_the_run_is_deterministic_under_a_seed() -> None:
    def run(seed: int) -> dict:
        work = synthetic("chat", 3000, 30.0, "bursty", seed=seed)
        out = simulate(work, [shipped_pool()], POLICIES["least_loaded"])
        return summarise(work, out, [shipped_pool()], Slo(ttft_ms=500))["overall"]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first["ttft_p99_ms"] != other["ttft_p99_ms"]


def test_every_request_finishes_with_sane_times() -> None:
    work = synthetic("agent", 2000, 10.0, seed=1)
    out = simulate(work, [shipped_pool(3)], POLICIES["round_robin"])
    assert np.all(out.admitted >= work.arrival)
    assert np.all(out.first_token > out.admitted)
    assert np.all(out.finished >= out.first_token)
    # a request's decode lasts at least output-1 unbatched steps of the profile
    assert np.all(out.finished - out.first_token >= (work.output_tokens - 1) * 6.5e-3 - 1e-9)
    # agent turns grow: later turns of a session carry the earlier ones as context
    sessions = np.array(work.session)
    first_session = work.input_tokens[sessions == sessions[0]]
    assert len(first_session) > 1 and np.all(np.diff(first_session) > 0)


def test_load_slows_everything_down() -> None:
    light = synthetic("chat", 3000, 10.0, seed=4)
    heavy = synthetic("chat", 3000, 80.0, seed=4)
    pools = [shipped_pool(2)]
    figures = [summarise(w, simulate(w, pools, POLICIES["least_loaded"]), pools, Slo())
               ["overall"] for w in (light, heavy)]
    assert figures[1]["ttft_p99_ms"] > 2 * figures[0]["ttft_p99_ms"]
    assert figures[1]["tpot_p50_ms"] > figures[0]["tpot_p50_ms"]
    assert figures[1]["output_tokens_per_s"] > 1.5 * figures[0]["output_tokens_per_s"]
    # a bigger batch spreads the same step over more tokens
    assert figures[1]["energy_j_per_output_token"] < figures[0]["energy_j_per_output_token"]


def test_context_pools_route_by_length() -> None:
    work = synthetic("longtail", 3000, 20.0, seed=5)
    pools = [shipped_pool(3, 8192), shipped_pool(2)]
    out = simulate(work, pools, POLICIES["context_pools"])
    long = (work.input_tokens + work.output_tokens) > 8192
    assert long.any() and (~long).any()
    assert np.all(out.replica_of[long] >= 3) and np.all(out.replica_of[~long] < 3)


def test_disaggregated_prefill_hands_requests_to_decoders() -> None:
    work = synthetic("rag", 1000, 5.0, seed=6)
    prefill = PoolSpec("p", shipped_pool().profile, 1, role="prefill")
    decode = PoolSpec("d", shipped_pool().profile, 2, role="decode")
    out = simulate(work, [prefill, decode], POLICIES["least_loaded"])
    assert np.all(out.replica_of >= 1)  # decoded in the decode pool
    assert np.all(np.isfinite(out.finished)) and out.busy[0] > 0
    summary = summarise(work, out, [prefill, decode], Slo())
    # the prefill pool decodes nothing, yet its GPU's energy and cost are counted
    assert summary["pools"]["p"]["requests"] == 0
    assert summary["overall"]["energy_j"] == pytest.approx(
        summary["pools"]["p"]["energy_j"] + summary["pools"]["d"]["energy_j"])
    assert summary["pools"]["p"]["energy_j"] > 0 and summary["overall"]["gpus"] == 3


@pytest.mark.parametrize(("text", "located"), [
    ('{"arrival": 0, "input_tokens": 5, "output_tokens": 3}\n{"arrival": 1, "input_tokens": '
     '"x", "output_tokens": 3}\n', "t.jsonl:2: field 'input_tokens'"),
    ('{"arrival": 0, "input_tokens": 5}\n', "t.jsonl:1: field 'output_tokens': missing"),
    ('{"arrival": -1, "input_tokens": 5, "output_tokens": 1}\n', "t.jsonl:1: field 'arrival'"),
    ("not json\n", "t.jsonl:1: not valid JSON"),
])
def test_a_bad_jsonl_trace_gets_a_located_error(tmp_path: Path, text: str,
                                                located: str) -> None:
    (tmp_path / "t.jsonl").write_text(text)
    with pytest.raises(FleetInputError, match=located):
        read_trace(str(tmp_path / "t.jsonl"))


def test_a_csv_trace_reads_and_a_bad_row_is_located(tmp_path: Path) -> None:
    good = tmp_path / "t.csv"
    good.write_text("arrival,input_tokens,output_tokens,session\n2,10,5,a\n1,20,6,\n")
    work = read_trace(str(good))
    assert work.input_list == [20, 10] and work.arrival_list == [0.0, 1.0]
    assert work.session == [None, "a"]
    good.write_text("arrival,input_tokens,output_tokens\n0,10,5\n1,10,2.5\n")
    with pytest.raises(FleetInputError, match=r"t.csv:3: field 'output_tokens'"):
        read_trace(str(good))


@pytest.mark.parametrize(("edit", "located"), [
    (lambda d: d["models"]["m"]["decode"].pop("base_ms"), r"models.m.decode.base_ms: missing"),
    (lambda d: d["models"]["m"].update(max_batch=0), r"models.m.max_batch: must be"),
    (lambda d: d["power_w"].update(peak=-3), r"power_w.peak: must be"),
    (lambda d: d.update(models=[]), r"models: must be a mapping"),
])
def test_a_bad_profile_gets_a_located_error(edit, located: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps({
        "name": "X", "power_w": {"idle": 1, "peak": 2}, "price_per_hour": 1,
        "models": {"m": {"tensor_parallel": 1, "prefill_tokens_per_s": 1,
                         "prefill_overhead_ms": 0, "kv_capacity_tokens": 10, "max_batch": 1,
                         "decode": {"base_ms": 1, "per_seq_ms": 0,
                                    "per_context_token_us": 0}}}}))
    edit(data)
    with pytest.raises(FleetInputError, match="X.yaml: " + located):
        parse_profile(data, "X.yaml")


def test_the_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert {"H100", "A100", "L4", "B200"} <= set(profiles)
    assert profiles["H100"]["llama-3.1-70b"].tensor_parallel == 4


def test_cli_table_json_plots_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         ) -> None:
    argv = ["fleet-sim", "--workload", "chat", "--requests", "2000", "--rate", "20",
            "--pool", "H100:2", "--slo-ttft-ms", "500"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "TTFT p99 ms" in table and "H100-0" in table
    assert main([*argv, "--json", "--out", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert 0 < figures["overall"]["slo_attainment"] <= 1
    assert figures["overall"]["energy_j_per_output_token"] > 0
    assert (tmp_path / "fleet_latency.png").stat().st_size > 1000
    assert "plotly" in (tmp_path / "fleet_latency.html").read_text()[:100000]
    assert main(["fleet-sim", "--pool", "H999:2"]) == 2
    assert "unknown GPU 'H999'" in capsys.readouterr().err
    bad = tmp_path / "profiles"
    bad.mkdir()
    (bad / "Z.yaml").write_text("name: Z\npower_w: {idle: 1, peak: 2}\nprice_per_hour: x\n")
    assert main(["fleet-sim", "--profiles", str(bad)]) == 2
    assert "Z.yaml: price_per_hour: must be a number" in capsys.readouterr().err


def test_find_min_gpus_finds_the_boundary(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fleet-sim", "--workload", "chat", "--requests", "3000", "--rate", "40",
            "--pool", "H100:1", "--find-min-gpus", "400", "--json"]
    assert main(argv) == 0
    found = json.loads(capsys.readouterr().out)
    count = found["min_pools"]["H100-0"]
    assert found["overall"]["ttft_p99_ms"] <= 400
    fewer = ["fleet-sim", "--workload", "chat", "--requests", "3000", "--rate", "40",
             "--pool", f"H100:{count - 1}", "--json"]
    assert main(fewer) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["ttft_p99_ms"] > 400


def test_a_config_routes_by_token_count(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n  - {name: llama-3.1-8b, endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
        "  - {name: llama-3.1-70b, endpoints: [{base_url: 'http://127.0.0.1:1/v1'}]}\n"
        "decisions:\n  - name: long\n    when: {min_prompt_tokens: 2000}\n"
        "    candidates: [llama-3.1-70b]\n"
        "default: {candidates: [llama-3.1-8b]}\n")
    profiles = load_profiles()["H100"]
    pools = [PoolSpec("small", profiles["llama-3.1-8b"], 2),
             PoolSpec("big", profiles["llama-3.1-70b"], 1)]
    work = synthetic("chat", 2000, 10.0, seed=9)
    out = simulate(work, pools, make_policy(f"config:{config}"))
    long = work.input_tokens >= 2000
    assert long.any() and np.all(out.replica_of[long] == 2)
    assert np.all(out.replica_of[~long] < 2)


def test_without_simpy_the_command_prints_an_install_hint() -> None:
    code = ("import sys; sys.modules['simpy'] = None\n"
            "from routeyard.cli import main\nsys.exit(main(['fleet-sim']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "fleet-sim needs SimPy: pip install 'routeyard[fleet]'"


def test_a_decision_log_exports_as_a_trace_and_simulates(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    import asyncio

    from routeyard.state import DecisionRecord, SQLiteStore

    records = [DecisionRecord(request_id=f"r{i}", time=1_700_000_000 + 2.5 * i,
                              decision="default", model="m", endpoint="e", latency_ms=10,
                              prompt_tokens=100 + i, completion_tokens=20 + i, cost_usd=0,
                              status="ok", session="s1" if i % 2 else None)
               for i in range(6)]
    records.append(DecisionRecord(request_id="blocked", time=1_700_000_001, decision="d",
                                  model=None, endpoint=None, latency_ms=1, prompt_tokens=5,
                                  completion_tokens=0, cost_usd=0, status="blocked"))

    async def write() -> None:
        store = SQLiteStore(tmp_path / "log.db")
        await store.start()
        for record in records:
            store.record_decision(record)
        await store.flush()
        await store.close()

    asyncio.run(write())
    trace = tmp_path / "trace.jsonl"
    assert main(["fleet-sim", "export-trace", str(tmp_path / "log.db"), "--out", str(trace)]) == 0
    assert "6 requests" in capsys.readouterr().out
    work = read_trace(str(trace))
    assert work.arrival_list == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]
    assert work.input_list == [100, 101, 102, 103, 104, 105]
    assert work.session == [None, "s1", None, "s1", None, "s1"]
    assert main(["fleet-sim", "--trace", str(trace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["requests"] == 6
    assert main(["fleet-sim", "export-trace", str(tmp_path / "none.db"), "--out",
                 str(trace)]) == 2
    assert "no such decision log" in capsys.readouterr().err


def test_a_request_larger_than_the_kv_cache_runs_alone_and_frees_it() -> None:
    l4 = load_profiles()["L4"]["llama-3.1-8b"]  # 40,000 tokens of KV
    pool = PoolSpec("l4", l4, 1)
    inputs = np.array([60_000, 100, 100, 100])
    work = Workload(np.array([0.0, 0.1, 0.2, 0.3]), inputs, np.full(4, 50))
    out = simulate(work, [pool], POLICIES["round_robin"])
    assert np.all(np.isfinite(out.finished))
    # the small ones wait for the big one, then run together
    assert np.all(out.admitted[1:] >= out.finished[0])
    replica = out.replicas[0]
    assert replica.kv_free == l4.kv_capacity_tokens and replica.load == 0


def test_an_arrival_joins_the_running_batch_at_the_next_step_boundary() -> None:
    data = {"name": "S", "power_w": {"idle": 0, "peak": 1}, "price_per_hour": 1,
            "models": {"m": {"tensor_parallel": 1, "prefill_tokens_per_s": 1e15,
                             "prefill_overhead_ms": 0,
                             "decode": {"base_ms": 10, "per_seq_ms": 0,
                                        "per_context_token_us": 0},
                             "kv_capacity_tokens": 10**6, "max_batch": 8}}}
    pool = PoolSpec("s", parse_profile(data, "S.yaml")["m"], 1)
    work = Workload(np.array([0.0, 0.1234]), np.array([10, 10]), np.array([1000, 11]))
    out = simulate(work, [pool], POLICIES["round_robin"])
    assert out.admitted[1] == pytest.approx(0.13)  # 13 steps of 10 ms, not 12.34
    assert out.finished[1] == pytest.approx(0.13 + 10 * 0.01)
    assert out.finished[0] == pytest.approx(999 * 0.01)  # batching cost it nothing here
