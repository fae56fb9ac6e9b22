"""Pareto plots of an Eval JSON: cost on x, quality on y; every curve, the single models
(labelled), the oracle and random routing. With `eval --energy`, the energy-quality frontier
beside it (energy.png, energy.html). PNG through matplotlib, one self-contained HTML
file through plotly. Both libraries are optional (the `eval` extra): imported on use only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

LOG_SPAN = 20.0  # dearest / cheapest cost beyond which the cost axis goes logarithmic

MISSING = ("plots need matplotlib and plotly: pip install 'routeyard[eval]' "
           "(or use --json / --no-plots)")


class PlotsUnavailable(RuntimeError):
    pass


def _costs(result: dict[str, Any]) -> list[float]:
    costs = [s["cost"] for s in result.get("single_models", [])]
    costs += [result["oracle"]["cost"], result["best_single"]["cost"]]
    if "random" in result:
        costs.append(result["random"]["cost"])
    for entry in result["algorithms"].values():
        costs += [c for c, _ in entry["curve"]]
    return costs


def log_scale(result: dict[str, Any]) -> bool:
    positive = [c for c in _costs(result) if c > 0]
    # A zero cost cannot sit on a log axis; keep linear then.
    return (len(positive) == len(_costs(result)) and bool(positive)
            and max(positive) / min(positive) > LOG_SPAN)


def _title(result: dict[str, Any]) -> str:
    return f"{result['dataset']}: quality vs cost on test (n={result['n_test']})"


def _label(name: str, entry: dict[str, Any]) -> str:
    aiq = entry.get("aiq")
    return f"{name} (AIQ {aiq:.3f})" if aiq is not None else name


def pareto_png(result: dict[str, Any], path: str | Path) -> None:
    try:
        import matplotlib
    except ImportError as error:
        raise PlotsUnavailable(MISSING) from error
    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(12, 6.5), dpi=120)
    try:
        for name, entry in sorted(result["algorithms"].items()):
            xs = [c for c, _ in entry["curve"]]
            ys = [q for _, q in entry["curve"]]
            axes.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.4,
                      label=_label(name, entry))
        singles = result.get("single_models", [])
        axes.scatter([s["cost"] for s in singles], [s["quality"] for s in singles],
                     color="black", marker="s", s=22, zorder=5, label="single models")
        for single in singles:
            axes.annotate(single["model"].rsplit("/", 1)[-1], (single["cost"], single["quality"]),
                          textcoords="offset points", xytext=(5, -3), fontsize=7, color="0.25")
        oracle = result["oracle"]
        axes.scatter([oracle["cost"]], [oracle["quality"]], color="gold", edgecolor="black",
                     marker="*", s=180, zorder=6, label="oracle")
        if "random" in result:
            axes.scatter([result["random"]["cost"]], [result["random"]["quality"]],
                         color="grey", marker="X", s=70, zorder=6, label="random")
        if log_scale(result):
            axes.set_xscale("log")
        axes.set_xlabel("mean cost per prompt ($)")
        axes.set_ylabel("mean quality")
        axes.set_title(_title(result))
        axes.grid(True, which="both", alpha=0.3)
        # Outside the axes: inside, it hides the cheap-and-bad corner where single models sit.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def pareto_html(result: dict[str, Any], path: str | Path) -> None:
    try:
        import plotly.graph_objects as go
    except ImportError as error:
        raise PlotsUnavailable(MISSING) from error

    figure = go.Figure()
    for name, entry in sorted(result["algorithms"].items()):
        lambdas = entry.get("lambdas") or [None] * len(entry["curve"])
        figure.add_trace(go.Scatter(
            x=[c for c, _ in entry["curve"]], y=[q for _, q in entry["curve"]],
            mode="lines+markers", name=_label(name, entry),
            text=[f"λ={lam:.3g}" if lam is not None else "" for lam in lambdas],
            hovertemplate="%{text}<br>cost $%{x:.3g}<br>quality %{y:.4f}<extra>"
                          + name + "</extra>"))
    singles = result.get("single_models", [])
    figure.add_trace(go.Scatter(
        x=[s["cost"] for s in singles], y=[s["quality"] for s in singles],
        mode="markers+text", name="single models", text=[s["model"] for s in singles],
        textposition="middle right", textfont={"size": 9},
        marker={"symbol": "square", "color": "black", "size": 8},
        hovertemplate="%{text}<br>cost $%{x:.3g}<br>quality %{y:.4f}<extra></extra>"))
    references = [("oracle", result["oracle"], "star", "gold", 16)]
    if "random" in result:
        references.append(("random", result["random"], "x", "grey", 11))
    for name, point, symbol, colour, size in references:
        figure.add_trace(go.Scatter(
            x=[point["cost"]], y=[point["quality"]], mode="markers", name=name,
            marker={"symbol": symbol, "color": colour, "size": size,
                    "line": {"color": "black", "width": 1}},
            hovertemplate=name + "<br>cost $%{x:.3g}<br>quality %{y:.4f}<extra></extra>"))
    figure.update_layout(title=_title(result), xaxis_title="mean cost per prompt ($)",
                         yaxis_title="mean quality", template="plotly_white",
                         xaxis_type="log" if log_scale(result) else "linear")
    # include_plotlyjs=True inlines plotly.js: one file that opens offline.
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)


def _energy_title(result: dict[str, Any]) -> str:
    gpu = result["energy"].get("gpu", "")
    return (f"{result['dataset']}: quality vs estimated energy on test (n={result['n_test']}; "
            f"{gpu}, sizes of closed models assumed)")


def energy_png(result: dict[str, Any], path: str | Path) -> None:
    """The energy-quality frontier: each router's curve and the single models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energy = result["energy"]
    figure, axes = plt.subplots(figsize=(12, 6.5), dpi=120)
    try:
        for name, entry in sorted(energy["algorithms"].items()):
            axes.plot([e for e, _ in entry["curve"]], [q for _, q in entry["curve"]],
                      marker="o", markersize=3.5, linewidth=1.4, label=_label(name, entry))
        singles = energy["single_models"]
        axes.scatter([s["energy_j"] for s in singles], [s["quality"] for s in singles],
                     color="black", marker="s", s=22, zorder=5, label="single models")
        for single in singles:
            label = single["model"].rsplit("/", 1)[-1] + ("*" if single["assumed"] else "")
            axes.annotate(label, (single["energy_j"], single["quality"]),
                          textcoords="offset points", xytext=(5, -3), fontsize=7, color="0.25")
        axes.set_xscale("log")  # sizes span two orders of magnitude
        axes.set_xlabel("mean estimated energy per prompt (J); * size assumed")
        axes.set_ylabel("mean quality")
        axes.set_title(_energy_title(result))
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def energy_html(result: dict[str, Any], path: str | Path) -> None:
    import plotly.graph_objects as go

    energy = result["energy"]
    figure = go.Figure()
    for name, entry in sorted(energy["algorithms"].items()):
        figure.add_trace(go.Scatter(
            x=[e for e, _ in entry["curve"]], y=[q for _, q in entry["curve"]],
            mode="lines+markers", name=_label(name, entry),
            text=[f"λ_energy={lam:.3g}" for lam in entry["lambdas"]],
            hovertemplate="%{text}<br>%{x:.3g} J<br>quality %{y:.4f}<extra>" + name
                          + "</extra>"))
    singles = energy["single_models"]
    figure.add_trace(go.Scatter(
        x=[s["energy_j"] for s in singles], y=[s["quality"] for s in singles],
        mode="markers+text", name="single models",
        text=[s["model"] + (" (size assumed)" if s["assumed"] else "") for s in singles],
        textposition="middle right", textfont={"size": 9},
        marker={"symbol": "square", "color": "black", "size": 8}))
    figure.update_layout(title=_energy_title(result), xaxis_type="log",
                         xaxis_title="mean estimated energy per prompt (J)",
                         yaxis_title="mean quality", template="plotly_white")
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)


def write_plots(result: dict[str, Any], folder: str | Path) -> list[Path]:
    """pareto.png and pareto.html in `folder`, and energy.png and energy.html when the result
    has an energy frontier. Raises PlotsUnavailable if a library is missing."""
    missing = [name for name in ("matplotlib", "plotly") if importlib.util.find_spec(name) is None]
    if missing:  # check both first, so a missing one never leaves half the output
        raise PlotsUnavailable(MISSING)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, html = folder / "pareto.png", folder / "pareto.html"
    pareto_png(result, png)
    pareto_html(result, html)
    written = [png, html]
    if (result.get("energy") or {}).get("algorithms"):
        written += [folder / "energy.png", folder / "energy.html"]
        energy_png(result, written[2])
        energy_html(result, written[3])
    return written
