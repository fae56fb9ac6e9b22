"""Turn gateway benchmark results into goal verdicts, a text table and a markdown table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PEERS = ("routeyard", "litellm")
TARGETS = ("direct", *PEERS)

# The speed contract (issue 2).
ADDED_LATENCY_MAX_MS = 1.0
THROUGHPUT_MIN_RPS = 2500.0
ADDED_TTFB_MAX_MS = 2.0
RSS_GROWTH_MAX_PCT = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    measure: str
    goal: str
    value: str
    met: bool

    def to_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "goal": self.goal, "value": self.value, "met": self.met}


def _get(results: dict[str, Any], measure: str, target: str, key: str) -> float:
    value = results.get(measure, {}).get(target, {}).get(key)
    return float(value) if value is not None else math.nan


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _rps(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _times(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value < 0.1:
        return f"{value:.4f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _peer_added(results: dict[str, Any], measure: str, key: str) -> str:
    peer = _get(results, measure, "litellm", key)
    if math.isnan(peer):
        return ""
    return f" (LiteLLM {peer - _get(results, measure, 'direct', key):+.2f} ms)"


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """Each goal of the speed contract, measured against the same run's direct baseline."""
    out: list[Verdict] = []
    added = (_get(results, "latency_c1", "routeyard", "p50_ms")
             - _get(results, "latency_c1", "direct", "p50_ms"))
    out.append(Verdict("added latency p50, c=1", f"<= {ADDED_LATENCY_MAX_MS:g} ms",
                       f"{added:+.3f} ms" + _peer_added(results, "latency_c1", "p50_ms"),
                       added <= ADDED_LATENCY_MAX_MS))
    rps = _get(results, "throughput_c64", "routeyard", "rps")
    direct_rps = _get(results, "throughput_c64", "direct", "rps")
    litellm_rps = _get(results, "throughput_c64", "litellm", "rps")
    detail = f"{_rps(rps)} req/s = {_times(rps / direct_rps)} direct"
    if not math.isnan(litellm_rps):
        detail += f"; {_times(rps / litellm_rps)} LiteLLM"
    out.append(Verdict("throughput, c=64", f">= {THROUGHPUT_MIN_RPS:,.0f} req/s", detail,
                       rps >= THROUGHPUT_MIN_RPS))
    ttfb = (_get(results, "stream_ttfb_c16", "routeyard", "ttfb_p50_ms")
            - _get(results, "stream_ttfb_c16", "direct", "ttfb_p50_ms"))
    out.append(Verdict("added stream TTFB p50, c=16", f"<= {ADDED_TTFB_MAX_MS:g} ms",
                       f"{ttfb:+.3f} ms" + _peer_added(results, "stream_ttfb_c16", "ttfb_p50_ms"),
                       ttfb <= ADDED_TTFB_MAX_MS))
    rss = results.get("rss", {})
    growth = float(rss.get("growth_pct", math.nan))
    out.append(Verdict(
        f"RSS after {rss.get('last_served', 0):,} vs after {rss.get('first_served', 0):,} requests",
        f"within {RSS_GROWTH_MAX_PCT:g}%",
        f"{rss.get('first_kib', 0) / 1024:.1f} -> {rss.get('last_kib', 0) / 1024:.1f} MiB "
        f"({growth:+.1f}%)", abs(growth) <= RSS_GROWTH_MAX_PCT))
    return out


def _with_delta(results: dict[str, Any], measure: str, key: str, target: str) -> str:
    value = _get(results, measure, target, key)
    if target == "direct" or math.isnan(value):
        return _ms(value)
    return f"{_ms(value)} (+{value - _get(results, measure, 'direct', key):.2f})"


def _with_ratio(results: dict[str, Any], measure: str, key: str, target: str) -> str:
    value = _get(results, measure, target, key)
    if target == "direct" or math.isnan(value):
        return _rps(value)
    return f"{_rps(value)} ({_times(value / _get(results, measure, 'direct', key))})"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """The comparison table: one row per figure, one column per target."""
    targets = [t for t in TARGETS if t in results.get("latency_c1", {})]
    table = [["measure", *targets]]

    def row(label: str, cell: Any) -> None:
        table.append([label, *(cell(t) for t in targets)])

    row("latency p50, c=1 (ms, +added)", lambda t: _with_delta(results, "latency_c1", "p50_ms", t))
    row("latency p99, c=1 (ms, +added)", lambda t: _with_delta(results, "latency_c1", "p99_ms", t))
    row("throughput, c=64 (req/s, x direct)",
        lambda t: _with_ratio(results, "throughput_c64", "rps", t))
    row("latency p50 at c=64 (ms)", lambda t: _ms(_get(results, "throughput_c64", t, "p50_ms")))
    row("stream TTFB p50, c=16 (ms, +added)",
        lambda t: _with_delta(results, "stream_ttfb_c16", "ttfb_p50_ms", t))
    row("stream TTFB p99, c=16 (ms, +added)",
        lambda t: _with_delta(results, "stream_ttfb_c16", "ttfb_p99_ms", t))
    row("server CPU per request at c=64 (ms)",
        lambda t: _ms(_get(results, "throughput_c64", t, "server_cpu_ms_per_req")))
    row("errors (all runs)", lambda t: str(sum(
        int(results.get(m, {}).get(t, {}).get("errors", 0))
        for m in ("latency_c1", "throughput_c64", "stream_ttfb_c16"))))
    rss = results.get("rss", {})
    label = (f"RSS MiB after {rss.get('first_served', 0):,} / "
             f"{rss.get('last_served', 0):,} requests")
    row(label, lambda t: (
        f"{rss['first_kib'] / 1024:.1f} / {rss['last_kib'] / 1024:.1f} "
        f"({rss['growth_pct']:+.1f}%)" if t == "routeyard" and rss else "-"))
    return table


def _align(table: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                      enumerate(zip(r, widths, strict=True))) for r in table]


def text_report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = _align(rows(results))
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", "speed contract (routeyard, vs direct in the same run):"]
    for v in verdicts(results):
        lines.append(f"  [{'MET ' if v.met else 'MISS'}] {v.measure}: {v.value}  (goal {v.goal})")
    lines += ["", _machine_line(meta), f"command: {meta['command']}"]
    return "\n".join(lines)


def _machine_line(meta: dict[str, Any]) -> str:
    machine = meta["machine"]
    return (f"{meta['date']} · {machine['nproc']} cores, {machine['cpu_model']}, "
            f"Python {machine['python']} · load generator, simulator and router share these "
            "cores (nothing is pinned)")


def markdown_report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    table = rows(results)
    out = ["| " + " | ".join(table[0]) + " |",
           "|---" + "|---:" * (len(table[0]) - 1) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in table[1:]]
    out += ["", "| goal (routeyard) | target | measured | met |", "|---|---|---|---|"]
    out += [f"| {v.measure} | {v.goal} | {v.value} | {'yes' if v.met else '**no**'} |"
            for v in verdicts(results)]
    versions = f"routeyard {meta.get('routeyard_version', '?')}"
    if meta.get("litellm_version"):
        versions += f", LiteLLM proxy {meta['litellm_version']} (1 worker)"
    out += ["", f"- Command: `{meta['command']}`",
            f"- Date: {meta['date']}",
            f"- Machine: {meta['machine']['nproc']} cores, {meta['machine']['cpu_model']}, "
            f"Linux {meta['machine']['kernel']}, Python {meta['machine']['python']}",
            f"- Versions: {versions}; routeyard 1 worker, heuristic routing (`model: auto`)",
            "- wrk (1 thread), the simulator and the router share the same cores; nothing is "
            "pinned, so every figure is read against the direct baseline of the same run.",
            f"- Workload: {meta['workload']}"]
    return "\n".join(out)
