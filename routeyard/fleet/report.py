"""The figures of a run: latency percentiles, SLO attainment, utilisation, queueing, energy and
cost, overall and per pool; a rich table; PNG and HTML plots (the `eval` extra's matplotlib
and plotly, imported on use)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.fleet.engine import Outcome
from routeyard.fleet.profiles import PoolSpec
from routeyard.fleet.workload import Workload


@dataclass(frozen=True, slots=True)
class Slo:
    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def met(self, ttft_ms: np.ndarray, tpot_ms: np.ndarray) -> np.ndarray:
        ok = np.isfinite(ttft_ms)
        if self.ttft_ms is not None:
            ok &= ttft_ms <= self.ttft_ms
        if self.tpot_ms is not None:
            ok &= ~(tpot_ms > self.tpot_ms)  # NaN (a one-token answer) has no TPOT to miss
        return ok


def _pct(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _figures(work: Workload, out: Outcome, mask: np.ndarray, slo: Slo,
             gpus: int, busy: float, idle_w: float, peak_w: float, price: float,
             replicas: int) -> dict[str, Any]:
    arrival = work.arrival[mask]
    ttft = (out.first_token[mask] - arrival) * 1e3
    outputs = work.output_tokens[mask]
    decode_time = out.finished[mask] - out.first_token[mask]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(outputs > 1, decode_time * 1e3 / (outputs - 1), np.nan)
    queue = (out.admitted[mask] - arrival) * 1e3
    span = max(out.end, 1e-9)
    energy_j = busy * peak_w + (span * replicas - busy) * idle_w  # per-replica power sums
    tokens = float(outputs.sum())
    all_tokens = tokens + float(work.input_tokens[mask].sum())
    gpu_hours = gpus * span / 3600
    return {
        "requests": int(mask.sum()),
        "gpus": gpus,
        "ttft_p50_ms": _pct(ttft, 50), "ttft_p99_ms": _pct(ttft, 99),
        "tpot_p50_ms": _pct(tpot, 50), "tpot_p99_ms": _pct(tpot, 99),
        "queue_mean_ms": float(np.nanmean(queue)) if len(queue) else float("nan"),
        "queue_p99_ms": _pct(queue, 99),
        "slo_attainment": float(slo.met(ttft, tpot).mean()) if len(ttft) else float("nan"),
        "utilisation": busy / (span * replicas) if replicas else float("nan"),
        "output_tokens_per_s": tokens / span,
        "energy_j_per_output_token": energy_j / tokens if tokens else float("nan"),
        "energy_j_per_token": energy_j / all_tokens if all_tokens else float("nan"),
        "output_tokens_per_joule": tokens / energy_j if energy_j else float("nan"),
        "cost_per_m_output_tokens": gpu_hours * price / tokens * 1e6 if tokens else float("nan"),
        "makespan_s": span,
        "energy_j": energy_j,
        "cost_usd": gpu_hours * price,
    }


def summarise(work: Workload, out: Outcome, pools: list[PoolSpec], slo: Slo) -> dict[str, Any]:
    """Per pool (the replica that decoded each request) and overall."""
    per_pool: dict[str, Any] = {}
    total_energy_w = {"idle": 0.0, "peak": 0.0}
    start = 0
    for pool in pools:
        indices = np.arange(start, start + pool.count)
        start += pool.count
        mask = np.isin(out.replica_of, indices)
        tp = pool.profile.tensor_parallel
        idle_w, peak_w = pool.profile.idle_w * tp, pool.profile.peak_w * tp
        total_energy_w["idle"] += idle_w * pool.count
        total_energy_w["peak"] += peak_w * pool.count
        per_pool[pool.name] = _figures(
            work, out, mask, slo, pool.count * tp, float(out.busy[indices].sum()), idle_w,
            peak_w, pool.profile.price_per_hour, pool.count)
    overall = {key: value for key, value in _combine(per_pool, work, out, slo).items()}
    return {"overall": overall, "pools": per_pool,
            "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms}}


def _combine(per_pool: dict[str, Any], work: Workload, out: Outcome, slo: Slo) -> dict[str, Any]:
    """Latency over every request; energy, cost and utilisation summed over the pools."""
    everything = np.ones(len(work), dtype=bool)
    base = _figures(work, out, everything, slo, 1, 0.0, 0.0, 0.0, 0.0, 1)
    tokens = float(work.output_tokens.sum())
    all_tokens = tokens + float(work.input_tokens.sum())
    # a prefill pool decodes nothing, yet its energy and cost count
    energy = sum(p["energy_j"] for p in per_pool.values())
    cost = sum(p["cost_usd"] for p in per_pool.values())
    gpus = sum(p["gpus"] for p in per_pool.values())
    span = max(out.end, 1e-9)
    base.update(gpus=gpus, utilisation=float(out.busy.sum()) / (span * len(out.busy)),
                energy_j=energy, cost_usd=cost,
                energy_j_per_output_token=energy / tokens, energy_j_per_token=energy / all_tokens,
                output_tokens_per_joule=tokens / energy if energy else float("nan"),
                cost_per_m_output_tokens=cost / tokens * 1e6)
    return base


COLUMNS = [("requests", "requests", "{:,}"), ("gpus", "GPUs", "{}"),
           ("ttft_p50_ms", "TTFT p50 ms", "{:,.0f}"), ("ttft_p99_ms", "TTFT p99 ms", "{:,.0f}"),
           ("tpot_p50_ms", "TPOT p50 ms", "{:.1f}"), ("tpot_p99_ms", "TPOT p99 ms", "{:.1f}"),
           ("slo_attainment", "SLO met", "{:.1%}"), ("utilisation", "util", "{:.0%}"),
           ("queue_mean_ms", "queue mean ms", "{:,.0f}"),
           ("energy_j_per_output_token", "J/out tok", "{:.2f}"),
           ("cost_per_m_output_tokens", "$/M out tok", "{:.2f}")]


def render_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    slo = summary["slo"]
    caption = "SLO: " + ", ".join(
        f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in slo.items() if v is not None)
    table = Table(title="routeyard fleet-sim", caption=caption if "<=" in caption else None)
    table.add_column("pool")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    rows = [*summary["pools"].items(), ("all", summary["overall"])]
    for name, figures in rows:
        table.add_row(name, *[_cell(fmt, figures[key]) for key, _, fmt in COLUMNS])
    return table


def _cell(fmt: str, value: Any) -> str:
    if isinstance(value, float) and not np.isfinite(value):
        return "-"
    return fmt.format(value)


def write_plots(work: Workload, out: Outcome, directory: Path) -> list[Path]:
    """TTFT and TPOT distributions (CDFs) as a PNG and one self-contained HTML file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    directory.mkdir(parents=True, exist_ok=True)
    ttft = np.sort((out.first_token - work.arrival)[np.isfinite(out.first_token)] * 1e3)
    multi = work.output_tokens > 1
    tpot = np.sort((out.finished - out.first_token)[multi] * 1e3
                    / (work.output_tokens[multi] - 1))
    series = [("TTFT (ms)", ttft), ("time per output token (ms)", tpot)]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, (label, values) in zip(axes, series, strict=True):
        if len(values):
            axis.plot(values, np.linspace(0, 1, len(values)))
            axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("fraction of requests")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    png = directory / "fleet_latency.png"
    figure.savefig(png, dpi=110)
    plt.close(figure)
    html_figure = make_subplots(rows=1, cols=2, subplot_titles=[s[0] for s in series])
    for column, (label, values) in enumerate(series, 1):
        step = max(1, len(values) // 2000)  # keep the page small
        html_figure.add_trace(go.Scatter(x=values[::step], y=np.linspace(0, 1, len(values))[
            ::step], name=label), row=1, col=column)
        html_figure.update_xaxes(type="log", title_text=label, row=1, col=column)
    html = directory / "fleet_latency.html"
    html_figure.write_html(html, include_plotlyjs=True)
    return [png, html]
