"""`routeyard advise`'s outputs: the text report, JSON, a PNG of each group's (cost, quality)
with intervals and frontier, and one self-contained HTML file (the same figure as inline SVG,
the tables, the suggestions; no script, no external resource). matplotlib (the `eval` extra)
is imported on use only.
"""

from __future__ import annotations

import html
import importlib.util
import io
import math
import re
from pathlib import Path
from typing import Any

import orjson

from routeyard.eval.plots import PlotsUnavailable

MISSING = "--out needs matplotlib, in the eval extra: pip install 'routeyard[eval]'"

__all__ = ["PlotsUnavailable", "check_plots", "render_text", "to_json", "write_all"]


def check_plots() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotsUnavailable(MISSING)


def to_json(report: dict[str, Any]) -> str:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()


def _money(value: float) -> str:
    return f"${value:.3g}"


def _interval(entry: dict[str, float], money: bool = False) -> str:
    show = _money if money else (lambda v: f"{v:.3f}")
    return f"{show(entry['value'])} [{show(entry['low'])}, {show(entry['high'])}]"


def render_text(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"routeyard advise: {report['records']} routed requests, {report['feedback']} "
             f"with feedback ({int(s['confidence'] * 100)}% {s['interval']} intervals, "
             f"{s['n_resamples']} resamples, seed {s['seed']}; estimated from "
             f"{s['min_feedback']} feedback)", ""]
    for group in report["groups"]:
        lines.append(f"{group['label']}: {group['requests']} requests, {group['feedback']} "
                     "with feedback")
        lines.append(f"  {'model':<24} {'requests':>8} {'feedback':>8}  {'estimator':<9} "
                     f"{'cost per request':<32} quality")
        for m in group["models"]:
            head = (f"  {m['model']:<24} {m['requests']:>8} {m['feedback']:>8}  "
                    f"{m['estimator']:<9} ")
            if m["status"] != "estimated":
                lines.append(head + "not enough data")
                continue
            star = " *" if m["model"] in group["frontier"] else ""
            lines.append(head + f"{_interval(m['cost'], True):<32} {_interval(m['quality'])}"
                         + star)
        lines.append(f"  frontier (*), cheapest first: {', '.join(group['frontier']) or '-'}")
        for suggestion in group["suggestions"]:
            lines.append(f"  suggestion: {suggestion['text']}")
        if not group["suggestions"]:
            lines.append("  no suggestion: no cheaper model's kept quality is supported at "
                         f"{s['min_keep']:.0%} by its interval")
        lines.append("")
    lines.append("snips: self-normalised inverse-propensity mean (weights 1/p of the logged "
                 "choice probability); mean: plain mean (no probability logged)")
    return "\n".join(lines) + "\n"


# -- figures -------------------------------------------------------------------------------


def _figure(report: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    groups = [g for g in report["groups"]
              if any(m["status"] == "estimated" for m in g["models"])] or report["groups"]
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows),
                                     dpi=110, squeeze=False)
    for axes in axes_grid.flat[len(groups):]:
        axes.set_visible(False)
    for axes, group in zip(axes_grid.flat, groups, strict=False):
        estimated = [m for m in group["models"] if m["status"] == "estimated"]
        for m in estimated:
            on = m["model"] in group["frontier"]
            c, q = m["cost"], m["quality"]
            axes.errorbar([c["value"]], [q["value"]],
                          xerr=[[c["value"] - c["low"]], [c["high"] - c["value"]]],
                          yerr=[[q["value"] - q["low"]], [q["high"] - q["value"]]],
                          fmt="o" if on else "s", color="tab:blue" if on else "0.55",
                          capsize=3, markersize=6)
            axes.annotate(m["model"], (c["value"], q["value"]), textcoords="offset points",
                          xytext=(6, 4), fontsize=8)
        line = sorted((m["cost"]["value"], m["quality"]["value"]) for m in estimated
                      if m["model"] in group["frontier"])
        if len(line) > 1:
            axes.plot(*zip(*line, strict=True), color="tab:blue", linewidth=1, alpha=0.6)
        axes.set_title(group["label"], fontsize=9)
        axes.set_xlabel("mean cost per request ($)", fontsize=8)
        axes.set_ylabel("mean feedback (quality)", fontsize=8)
        axes.grid(True, alpha=0.3)
    figure.suptitle("routeyard advise: cost and quality per model, 95% intervals; frontier "
                    "in blue", fontsize=10)
    figure.tight_layout()
    return figure


def write_png(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = _figure(report)
    try:
        figure.savefig(path)
    finally:
        plt.close(figure)


def _svg(report: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    figure = _figure(report)
    buffer = io.StringIO()
    try:
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # without the XML declaration and the DTD's URL
    # Without the RDF metadata block: only the SVG and XLink namespace names stay (never
    # fetched), so the page names no URL at all.
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)


def _table(group: dict[str, Any]) -> str:
    rows = []
    for m in group["models"]:
        cells = [m["model"] + (" ★" if m["model"] in group["frontier"] else ""),
                 str(m["requests"]), str(m["feedback"]), m["estimator"]]
        if m["status"] == "estimated":
            cells += [_interval(m["cost"], True), _interval(m["quality"])]
        else:
            cells += ["not enough data", ""]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("model", "requests", "feedback", "estimator",
                                             "cost per request", "quality"))
    suggestions = "".join(f"<li>{html.escape(s['text'])}</li>" for s in group["suggestions"])
    return (f"<h2>{html.escape(group['label'])}</h2><p>{group['requests']} requests, "
            f"{group['feedback']} with feedback; frontier: "
            f"{html.escape(', '.join(group['frontier']) or '-')}</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            + (f"<ul class=s>{suggestions}</ul>" if suggestions else
               "<p>No suggestion is supported by the intervals.</p>"))


def write_html(report: dict[str, Any], path: Path) -> None:
    style = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             ".s li{margin:.3em 0;color:#064}svg{max-width:100%;height:auto}")
    body = "".join(_table(g) for g in report["groups"])
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>routeyard advise"
            f"</title><style>{style}</style></head><body><h1>routeyard advise</h1>"
            f"<p>{report['records']} routed requests, {report['feedback']} with feedback. "
            f"Intervals: 95% {html.escape(report['settings']['interval'])}.</p>"
            f"{_svg(report)}{body}</body></html>")
    path.write_text(text, encoding="utf-8")


def write_all(report: dict[str, Any], folder: str | Path) -> list[Path]:
    """advise.json, advise.png and advise.html in folder."""
    check_plots()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "advise.json", out / "advise.png", out / "advise.html"]
    paths[0].write_text(to_json(report) + "\n", encoding="utf-8")
    write_png(report, paths[1])
    write_html(report, paths[2])
    return paths
