"""`routeyard fleet-sim`: simulate a workload against a GPU pool; `--find-min-gpus`;
`routeyard fleet-sim export-trace LOG --out FILE`.

Needs SimPy (the `fleet` extra); without it the command prints one line saying how to
install it. Bad input (a trace, a profile, a pool) is one `error:` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

MISSING = "fleet-sim needs SimPy: pip install 'routeyard[fleet]'"
PROGRESS_FROM = 100_000  # requests: a progress bar from here on
SEARCH_CAP = 4096  # replicas per pool before --find-min-gpus gives up


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="fleet_action")
    export = actions.add_parser("export-trace", help="write a decision log as a trace (JSONL)")
    export.add_argument("log", help="a SQLite file, or a redis:// or postgres:// URL")
    export.add_argument("--out", required=True, help="the trace file to write (JSONL)")
    export.add_argument("--key-prefix", default="routeyard", help="Redis key prefix")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--trace", help="a trace: JSONL or CSV of arrival, input_tokens, "
                                        "output_tokens[, session]")
    source.add_argument("--workload", default="chat",
                        help="synthetic: chat, rag, agent, batch or longtail (default chat)")
    parser.add_argument("--requests", type=int, default=10_000, help="synthetic: how many")
    parser.add_argument("--rate", type=float, default=20.0, help="synthetic: arrivals per s")
    parser.add_argument("--arrivals", default="poisson", help="synthetic: poisson or bursty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", action="append", default=[],
                        help="GPU:COUNT[:MAX_CONTEXT[:ROLE]] (repeatable; default H100:4); "
                             "ROLE: mixed, prefill or decode")
    parser.add_argument("--model", default=None,
                        help="the model profile on every pool (default: each GPU's first)")
    parser.add_argument("--profiles", default=None, help="a directory of extra profiles")
    parser.add_argument("--policy", default="least_loaded",
                        help="round_robin, least_loaded, context_pools or config:FILE")
    parser.add_argument("--slo-ttft-ms", type=float, default=None)
    parser.add_argument("--slo-tpot-ms", type=float, default=None)
    parser.add_argument("--find-min-gpus", type=float, default=None, metavar="TTFT_P99_MS",
                        help="search the fewest replicas per pool with p99 TTFT <= this "
                             "(and p99 TPOT <= --slo-tpot-ms, if given)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--out", default=None, help="a directory for PNG and HTML plots")
    parser.add_argument("--no-progress", action="store_true")


def run_command(args: argparse.Namespace) -> int:
    from routeyard.fleet.profiles import FleetInputError

    if not _have_simpy() and args.fleet_action != "export-trace":
        print(MISSING, file=sys.stderr)
        return 2
    try:
        if args.fleet_action == "export-trace":
            return _export(args)
        return _simulate(args)
    except FleetInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _have_simpy() -> bool:
    try:
        import simpy  # noqa: F401
    except ImportError:
        return False
    return True


def _export(args: argparse.Namespace) -> int:
    from routeyard.fleet.workload import export_trace

    count = export_trace(args.log, Path(args.out), args.key_prefix)
    print(f"{args.out}: {count} requests")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from routeyard.fleet.policies import make_policy
    from routeyard.fleet.profiles import load_profiles, parse_pool
    from routeyard.fleet.report import Slo
    from routeyard.fleet.workload import read_trace, synthetic

    profiles = load_profiles(args.profiles)
    pools = [parse_pool(text, profiles, args.model, i)
             for i, text in enumerate(args.pool or ["H100:4"])]
    policy = make_policy(args.policy)
    work = (read_trace(args.trace) if args.trace else
            synthetic(args.workload, args.requests, args.rate, args.arrivals, args.seed))
    if args.find_min_gpus is not None:
        slo = Slo(ttft_ms=args.find_min_gpus, tpot_ms=args.slo_tpot_ms)
        pools = find_min_gpus(work, pools, policy, slo)
    else:
        slo = Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms)
    summary, outcome = run_once(work, pools, policy, slo,
                                progress=not args.no_progress and len(work) >= PROGRESS_FROM)
    if args.find_min_gpus is not None:
        summary["min_pools"] = {p.name: p.count for p in pools}
    if args.out:
        try:
            from routeyard.fleet.report import write_plots

            written = write_plots(work, outcome, Path(args.out))
        except ImportError:
            print("plots need matplotlib and plotly: pip install 'routeyard[eval]'",
                  file=sys.stderr)
            return 2
        summary["plots"] = [str(p) for p in written]
    _print(summary, args.json)
    return 0


def run_once(work: Any, pools: list[Any], policy: Any, slo: Any,
             progress: bool = False) -> tuple[dict[str, Any], Any]:
    from routeyard.fleet.engine import simulate
    from routeyard.fleet.report import summarise

    if not progress:
        outcome = simulate(work, pools, policy)
    else:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("simulating", total=len(work))
            outcome = simulate(work, pools, policy, progress=lambda n: bar.advance(task, n))
    return summarise(work, outcome, pools, slo), outcome


def _meets(figures: dict[str, Any], slo: Any) -> bool:
    ok = figures["ttft_p99_ms"] <= slo.ttft_ms
    if slo.tpot_ms is not None:
        ok = ok and not figures["tpot_p99_ms"] > slo.tpot_ms
    return bool(ok)


def find_min_gpus(work: Any, pools: list[Any], policy: Any, slo: Any) -> list[Any]:
    """The fewest replicas per pool for the whole workload to meet the SLO (its p99 TTFT,
    and p99 TPOT if given): first every pool at one common count, doubled until the SLO
    holds; then each pool in turn bisected down, the others held (coordinate descent). With
    one pool that is plain bisection; with several it is a valid answer, near the minimum
    (context pools share no requests, so one pool's count moves only its own requests)."""
    from routeyard.fleet.profiles import FleetInputError

    def meets(trial: list[Any]) -> bool:
        summary, _ = run_once(work, trial, policy, slo)
        return _meets(summary["overall"], slo)

    common = 1
    while not meets([replace(p, count=common) for p in pools]):
        common *= 2
        if common > SEARCH_CAP:
            raise FleetInputError(f"the SLO is not met even with {SEARCH_CAP} replicas a pool")
    found = [replace(p, count=common) for p in pools]
    for index in range(len(found)):
        low, high = 0, found[index].count  # high meets; low does not (0 cannot)
        while high - low > 1:
            middle = (low + high) // 2
            trial = [*found[:index], replace(found[index], count=middle), *found[index + 1:]]
            if meets(trial):
                high = middle
            else:
                low = middle
        found[index] = replace(found[index], count=high)
    return found


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        import orjson

        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2
                                      | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
        return
    from rich.console import Console

    from routeyard.fleet.report import render_table

    console = Console()
    if not console.is_terminal:
        console.width = 170  # a file or a pipe: the whole table, not an 80-column squeeze
    console.print(render_table(summary))
    if "min_pools" in summary:
        console.print("fewest replicas meeting the SLO: " + ", ".join(
            f"{name}: {count}" for name, count in summary["min_pools"].items()))
    for path in summary.get("plots", []):
        console.print(f"wrote {path}")
