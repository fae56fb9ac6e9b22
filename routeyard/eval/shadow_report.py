"""`routeyard shadow-report`: how each decision's shadow model did against the served one.

    routeyard shadow-report state.db --since 7d
    routeyard shadow-report --redis redis://127.0.0.1:6379/0 --decision general --json

Reads the records the shadow mirror wrote (`serving/shadow.py`) from the store's key-value
space and gives, per decision and shadow model: how many requests were mirrored, the shadow's
failure rate, its win, tie and loss rates over the scored ones (Wilson 95% intervals), the
agreement of the two answers where no reference decided, and the mean cost delta per request
(shadow - served, with a Student-t 95% interval; the judge's cost is shown apart).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import sys
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson

from routeyard.eval.advise import AdviseError, open_store, parse_time
from routeyard.serving.shadow import SHADOW_PREFIX, shadow_key
from routeyard.state import Store, StoreUnavailable

PAGE = 5000  # keys read per scan; a fuller prefix is split by its next hex digit
_TIME_DIGITS = 13  # the hex digits of a key's time (shadow_key)
_HEX = "0123456789abcdef"
Z95 = 1.959963984540054
OUTCOMES = ("win", "tie", "loss")


# -- reading ---------------------------------------------------------------------------------


async def scan_all(store: Store, prefix: str = SHADOW_PREFIX, floor: str | None = None,
                   page: int = PAGE) -> list[tuple[str, bytes]]:
    """Every (key, value) under `prefix`. `scan_values` gives the first `page` keys in order and
    has no cursor: a prefix that fills a page is read again as its 16 sub-prefixes (the keys'
    time digits), skipping those wholly before `floor` (a key's time prefix)."""
    found = await store.scan_values(prefix, page)
    digits = len(prefix) - len(SHADOW_PREFIX)
    if len(found) < page or digits >= _TIME_DIGITS:
        return found
    pairs: list[tuple[str, bytes]] = []
    for digit in _HEX:
        sub = prefix + digit
        if floor is not None and sub < floor[:len(sub)]:
            continue
        pairs += await scan_all(store, sub, floor, page)
    return pairs


async def read_shadow_records(store: Store, since: float | None = None,
                              decision: str | None = None, page: int = PAGE
                              ) -> list[dict[str, Any]]:
    floor = shadow_key(since, "")[:len(SHADOW_PREFIX) + _TIME_DIGITS] if since else None
    await store.start()
    try:
        pairs = await scan_all(store, SHADOW_PREFIX, floor, page)
    finally:
        await store.close()
    records = []
    for _, value in pairs:
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # not ours, or damaged: never stops the report
        if not isinstance(record, dict):
            continue
        if since is not None and float(record.get("time") or 0) < since:
            continue
        if decision is not None and record.get("decision") != decision:
            continue
        records.append(record)
    return records


def load(source: dict[str, Any], since: float | None, decision: str | None
         ) -> list[dict[str, Any]]:
    store = open_store(**source)
    try:
        return asyncio.run(read_shadow_records(store, since, decision))
    except (StoreUnavailable, sqlite3.Error, OSError, ValueError, ConnectionError,
            TimeoutError) as error:
        raise AdviseError(f"cannot read the store: {type(error).__name__}: {error}") from None


# -- statistics ------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> dict[str, float] | None:
    """A proportion with its Wilson score interval (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return {"rate": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half)}


def mean_interval(values: list[float]) -> dict[str, float | None] | None:
    """The mean with a Student-t 95% interval (None bounds below two values)."""
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    if n < 2:
        return {"mean": mean, "low": None, "high": None}
    from scipy.stats import t  # lazy: the CLI's other commands never pay for it

    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One group's numbers (its records share a decision and a shadow model)."""
    n = len(records)
    ok = [r for r in records if r.get("status") == "ok"]
    scored = [r for r in ok if r.get("outcome") in OUTCOMES]
    counts = {o: sum(1 for r in scored if r["outcome"] == o) for o in OUTCOMES}
    compared = [r for r in ok if r.get("outcome") is None and r.get("agree") is not None]
    latencies = sorted(float(r["shadow_latency_ms"]) for r in ok
                       if r.get("shadow_latency_ms") is not None)
    return {
        "n": n,
        "ok": len(ok),
        "failed": n - len(ok),
        "failure_rate": wilson(n - len(ok), n),
        "scored": len(scored),
        "undecided": len(ok) - len(scored),
        **{o: {"count": counts[o], **(wilson(counts[o], len(scored)) or {})}
           if scored else None for o in OUTCOMES},
        "agreement": {"n": len(compared),
                      **(wilson(sum(1 for r in compared if r["agree"]), len(compared)) or {})}
        if compared else None,
        "cost_delta_usd": mean_interval([float(r.get("shadow_cost_usd") or 0)
                                         - float(r.get("served_cost_usd") or 0) for r in ok]),
        "served_cost_usd": math.fsum(float(r.get("served_cost_usd") or 0) for r in ok),
        "shadow_cost_usd": math.fsum(float(r.get("shadow_cost_usd") or 0) for r in records),
        "judge_cost_usd": math.fsum(float(r.get("judge_cost_usd") or 0) for r in records),
        "shadow_latency_ms_p50": latencies[len(latencies) // 2] if latencies else None,
    }


def report(records: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(str(record.get("decision")), str(record.get("shadow_model")),
                str(record.get("scorer")))].append(record)
    return {"groups": [{"decision": decision, "shadow_model": model, "scorer": scorer,
                        **summarise(group)}
                       for (decision, model, scorer), group in sorted(groups.items())]}


# -- output ----------------------------------------------------------------------------------


def _pct(value: dict[str, Any] | None) -> str:
    if not value:
        return "n/a"
    return f"{value['rate']:.1%} [{value['low']:.1%}, {value['high']:.1%}]"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.6f}"


def render_text(found: dict[str, Any]) -> str:
    since = found.get("since")
    window = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds") if since else None
    lines = [f"shadow traffic in {found['source']}"
             + (f" since {window}" if window else "")]
    for g in found["groups"]:
        lines.append("")
        lines.append(f"decision {g['decision']}: shadow {g['shadow_model']} "
                     f"(scorer {g['scorer']})")
        lines.append(f"  mirrored {g['n']}, shadow failures {g['failed']}: "
                     f"{_pct(g['failure_rate'])}")
        lines.append(f"  scored {g['scored']}: " + "  ".join(
            f"{o} {_pct(g[o])}" for o in OUTCOMES) if g["scored"] else
            f"  scored 0 ({g['undecided']} undecided: no reference, or no verdict)")
        if g["agreement"]:
            lines.append(f"  agreement without a verdict: {g['agreement']['n']} compared, "
                         f"{_pct(g['agreement'])}")
        delta = g["cost_delta_usd"]
        if delta:
            bounds = "" if delta["low"] is None else \
                f" [{_usd(delta['low'])}, {_usd(delta['high'])}]"
            lines.append(f"  cost delta per request (shadow - served): "
                         f"{_usd(delta['mean'])} USD{bounds}")
        lines.append(f"  spent: shadow {g['shadow_cost_usd']:.6f} USD, judge "
                     f"{g['judge_cost_usd']:.6f} USD (served {g['served_cost_usd']:.6f} USD)")
    return "\n".join(lines) + "\n"


# -- the command -----------------------------------------------------------------------------


def configure_shadow_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", nargs="?", metavar="FILE", help="the SQLite store's file")
    parser.add_argument("--redis", metavar="URL", help="read from Redis instead")
    parser.add_argument("--postgres", metavar="URL", help="read from PostgreSQL instead")
    parser.add_argument("--key-prefix", default="routeyard", metavar="PREFIX",
                        help="with --redis: the store's key prefix (default routeyard)")
    parser.add_argument("--since", metavar="TIME", help="ISO 8601, or 7d / 24h / 30m ago")
    parser.add_argument("--decision", metavar="NAME", help="only this decision")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_shadow_report(args: argparse.Namespace) -> int:
    try:
        sources = [s for s in (args.log, args.redis, args.postgres) if s]
        if len(sources) != 1:
            raise AdviseError("give exactly one store: FILE, --redis URL or --postgres URL")
        since = parse_time(args.since) if args.since else None
        records = load({"sqlite": args.log, "redis": args.redis, "postgres": args.postgres,
                        "key_prefix": args.key_prefix}, since, args.decision)
        if not records:
            raise AdviseError("no shadow traffic recorded" + (
                f" for decision '{args.decision}'" if args.decision else "")
                + (" in this window" if since else "")
                + " (is `shadow:` set on a decision, with a sample above 0?)")
    except AdviseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = report(records)
    found["source"] = sources[0] if args.log else ("redis" if args.redis else "postgres")
    found["since"] = since
    if args.json:
        sys.stdout.write(orjson.dumps(found).decode() + "\n")
    else:
        sys.stdout.write(render_text(found))
    return 0
