"""`routeyard advise`: per decision (and slice), each model's estimated (cost, quality) from the
decision log and its feedback, with bootstrap 95% intervals, the Pareto frontier, and
suggestions of cheaper models whose kept quality the interval supports.

Estimates: where every record of a model carries the chosen model's probability
(`detail.selection.probability`), the self-normalised inverse-propensity mean (`snips`): each
record weighs 1/p, so a model the router picks mostly on easy prompts (and rarely elsewhere,
by exploration) is estimated over the decision's whole traffic, not over its easy part. Else
the plain mean (`mean`). Intervals: scipy's percentile bootstrap over the records, seeded.
Ratios (kept quality, cost share) are bootstrapped as ratios, both models resampled at once.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.eval.policy import add_implicit_argument, with_implicit
from routeyard.state import SQLiteStore, Store, StoreUnavailable, make_store
from routeyard.state.base import DecisionRecord
from routeyard.state.query import DecisionQuery

PAGE = 1000
NO_ANSWER = frozenset({"blocked", "cache_hit"})  # no model answered these: not a model's traffic


class AdviseError(Exception):
    """Bad input: reported in one line, exit status 2."""


@dataclass(frozen=True, slots=True)
class Settings:
    min_feedback: int = 20
    min_keep: float = 0.95  # a suggestion's kept-quality lower bound must reach this
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0


@dataclass(slots=True)
class Sample:
    """One model's records in one group: cost and weight of each, feedback where it came."""

    costs: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    score_weights: list[float] = field(default_factory=list)
    propensities: int = 0  # records that carried the choice's probability


# -- reading the log ---------------------------------------------------------------------


class ReadOnlySQLiteStore(SQLiteStore):
    """The SQLite store with both connections read-only: advise never changes the file."""

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn


def open_store(sqlite: str | None = None, redis: str | None = None,
               postgres: str | None = None, key_prefix: str = "routeyard") -> Store:
    if sqlite is not None:
        path = Path(sqlite)
        if not path.is_file():
            raise AdviseError(f"no SQLite decision log at {sqlite}")
        return ReadOnlySQLiteStore(path)
    if redis is not None:
        return make_store("redis", redis_url=redis, key_prefix=key_prefix)
    if postgres is not None:
        try:
            store = make_store("postgres", postgres_url=postgres)
        except RuntimeError as error:
            raise AdviseError(str(error)) from None
        asyncio.run(_check_postgres(postgres))
        return store
    raise AdviseError("give a decision log: a SQLite file, --redis URL or --postgres URL")


async def _check_postgres(url: str) -> None:
    """The store migrates an old or empty schema when it starts: refuse those first, so that
    advise only ever reads (the store's other writes are its session's temporary table)."""
    from routeyard.state import pg_schema

    try:
        conn = await pg_schema.connect(url, timeout=10.0)
        try:
            applied = await pg_schema.applied_versions(conn)
        finally:
            await conn.close()
    except (*pg_schema.PG_ERRORS, OSError, ValueError) as error:
        raise AdviseError(f"PostgreSQL at {pg_schema.where(url)}: {type(error).__name__}: "
                          f"{error}") from None
    if not applied:
        raise AdviseError(f"PostgreSQL at {pg_schema.where(url)} has no decision log")
    if max(applied) != pg_schema.latest_version():
        raise AdviseError(f"PostgreSQL at {pg_schema.where(url)}: schema version "
                          f"{max(applied)}, this Routeyard reads {pg_schema.latest_version()} "
                          "(run `routeyard db upgrade`)")


async def read_records(store: Store, since: float | None, until: float | None,
                       decision: str | None = None) -> list[DecisionRecord]:
    """Every record of the window, page by page (newest first)."""
    filters = (("decision", decision),) if decision else ()
    found: list[DecisionRecord] = []
    after: tuple[float, str] | None = None
    await store.start()
    try:
        while True:
            page = await store.query_decisions(DecisionQuery(
                since=since, until=until, filters=filters, limit=PAGE, after=after))
            found += page.records
            if page.cursor is None or not page.records:
                return found
            last = page.records[-1]
            after = (last.time, last.request_id)
    finally:
        await store.close()


def load(source: dict[str, Any], since: float | None, until: float | None,
         decision: str | None = None) -> list[DecisionRecord]:
    store = open_store(**source)
    try:
        return asyncio.run(read_records(store, since, until, decision))
    except (StoreUnavailable, sqlite3.Error, OSError, ValueError, ConnectionError,
            TimeoutError) as error:
        raise AdviseError(f"cannot read the decision log: {type(error).__name__}: "
                          f"{error}") from None


# -- estimates -----------------------------------------------------------------------------


def propensity(record: DecisionRecord) -> float | None:
    selection = (record.detail or {}).get("selection")
    if not isinstance(selection, dict):
        return None
    p = selection.get("probability")
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
        return None
    return float(p)


def signals_of(record: DecisionRecord) -> dict[str, Any]:
    found = (record.detail or {}).get("signals")
    return found if isinstance(found, dict) else {}


def samples_of(records: list[DecisionRecord]) -> dict[str, Sample]:
    by_model: dict[str, Sample] = {}
    for r in records:
        if r.model is None or r.status in NO_ANSWER:
            continue
        sample = by_model.setdefault(r.model, Sample())
        p = propensity(r)
        sample.propensities += p is not None
        w = 1.0 / p if p is not None else 1.0
        sample.costs.append(r.cost_usd)
        sample.weights.append(w)
        if r.feedback is not None:
            sample.scores.append(float(r.feedback))
            sample.score_weights.append(w)
    return by_model


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, settings: Settings,
               value: float) -> dict[str, float]:
    """A percentile bootstrap interval of statistic over index arrays into each sample."""
    from scipy.stats import bootstrap

    indices = tuple(np.arange(len(d)) for d in data)
    result = bootstrap(indices, statistic, n_resamples=settings.n_resamples, vectorized=True,
                       paired=False, confidence_level=settings.confidence, method="percentile",
                       batch=max(1, 2_000_000 // max(1, sum(len(d) for d in data))),
                       **_seeded(settings.seed))
    low, high = result.confidence_interval
    return {"value": value, "low": float(low), "high": float(high)}


def _seeded(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 takes `rng`; older releases (scikit-learn's floor) `random_state`."""
    import inspect

    from scipy.stats import bootstrap

    name = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def _mean_stat(values: np.ndarray, weights: np.ndarray) -> Any:
    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        w = weights[idx]
        return np.sum(w * values[idx], axis=axis) / np.sum(w, axis=axis)
    return statistic


def estimate_model(model: str, sample: Sample, settings: Settings) -> dict[str, Any]:
    weighted = sample.propensities == len(sample.costs)
    costs, weights = np.asarray(sample.costs), np.asarray(sample.weights)
    scores, score_weights = np.asarray(sample.scores), np.asarray(sample.score_weights)
    ess = float(score_weights.sum() ** 2 / np.square(score_weights).sum()) if len(scores) \
        else 0.0
    entry: dict[str, Any] = {"model": model, "requests": len(costs), "feedback": len(scores),
                             "estimator": "snips" if weighted else "mean",
                             "effective_feedback": round(ess, 1)}
    if len(scores) < settings.min_feedback:
        entry["status"] = "not enough data"
        return entry
    if not weighted:
        weights, score_weights = np.ones_like(costs), np.ones_like(scores)
    entry["status"] = "estimated"
    entry["cost"] = _bootstrap((costs,), lambda i, axis=-1: _mean_stat(costs, weights)(i, axis),
                               settings, float(np.average(costs, weights=weights)))
    entry["quality"] = _bootstrap(
        (scores,), lambda i, axis=-1: _mean_stat(scores, score_weights)(i, axis), settings,
        float(np.average(scores, weights=score_weights)))
    return entry


def frontier(models: list[dict[str, Any]]) -> list[str]:
    """The estimated models no other beats on both cost and quality, cheapest first."""
    points = [(m["cost"]["value"], m["quality"]["value"], m["model"]) for m in models
              if m["status"] == "estimated"]
    kept = [(c, q, name) for c, q, name in points
            if not any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for c2, q2, _ in points)]
    return [name for _, _, name in sorted(kept)]


def _ratio(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
           settings: Settings) -> dict[str, float] | None:
    """mean(b) / mean(a) (weighted means), bootstrapped with both resampled at once."""
    (va, wa), (vb, wb) = a, b
    denominator = np.average(va, weights=wa)
    if denominator <= 0:
        return None
    stat_a, stat_b = _mean_stat(va, wa), _mean_stat(vb, wb)

    def statistic(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return stat_b(ib, axis) / stat_a(ia, axis)

    value = float(np.average(vb, weights=wb) / denominator)
    return _bootstrap((va, vb), statistic, settings, value)


def _arrays(sample: Sample, weighted: bool, quality: bool) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(sample.scores if quality else sample.costs)
    weights = np.asarray(sample.score_weights if quality else sample.weights)
    return values, (weights if weighted else np.ones_like(values))


def suggestions(group: str, models: list[dict[str, Any]], samples: dict[str, Sample],
                cheap: list[str], settings: Settings) -> list[dict[str, Any]]:
    estimated = {m["model"]: m for m in models if m["status"] == "estimated"}
    if len(estimated) < 2:
        return []
    busiest = max(estimated.values(), key=lambda m: (m["requests"], m["model"]))
    best = max(estimated.values(), key=lambda m: (m["quality"]["value"], m["model"]))
    baselines = [busiest] + ([best] if best is not busiest else [])
    found: list[dict[str, Any]] = []
    for baseline in baselines:
        a = baseline["model"]
        for b in cheap:
            if b == a or estimated[b]["cost"]["value"] >= baseline["cost"]["value"]:
                continue
            wa = estimated[a]["estimator"] == "snips" and estimated[b]["estimator"] == "snips"
            kept = _ratio(_arrays(samples[a], wa, True), _arrays(samples[b], wa, True), settings)
            share = _ratio(_arrays(samples[a], wa, False), _arrays(samples[b], wa, False),
                           settings)
            if kept is None or share is None or kept["low"] < settings.min_keep \
                    or not share["high"] < 1.0:
                continue
            role = "busiest" if baseline is busiest else "best quality"
            found.append({
                "baseline": a, "baseline_role": role, "model": b, "kept_quality": kept,
                "cost_share": share, "estimator": "snips" if wa else "mean",
                "requests": {a: baseline["requests"], b: estimated[b]["requests"]},
                "feedback": {a: baseline["feedback"], b: estimated[b]["feedback"]},
                "text": (f"for {group}, {b} would keep {_pct(kept)} of {a}'s quality at "
                         f"{_pct(share)} of its cost (from {baseline['requests']} + "
                         f"{estimated[b]['requests']} requests, {baseline['feedback']} + "
                         f"{estimated[b]['feedback']} with feedback)")})
    return found


def _pct(interval: dict[str, float]) -> str:
    """97% [94, 99]; with a decimal where whole percents would hide the interval."""
    value, low, high = (interval[k] * 100 for k in ("value", "low", "high"))
    digits = 1 if round(low) == round(high) else 0
    return f"{value:.{digits}f}% [{low:.{digits}f}, {high:.{digits}f}]"


def group_label(decision: str, slice_: str | None) -> str:
    return f"decision '{decision}'" + (f", slice {slice_}" if slice_ else "")


def analyse_group(decision: str, slice_: str | None, records: list[DecisionRecord],
                  settings: Settings) -> dict[str, Any]:
    samples = samples_of(records)
    models = [estimate_model(m, s, settings) for m, s in sorted(samples.items())]
    cheap = frontier(models)
    label = group_label(decision, slice_)
    return {"decision": decision, "slice": slice_, "label": label,
            "requests": sum(m["requests"] for m in models),
            "feedback": sum(m["feedback"] for m in models),
            "models": models, "frontier": cheap,
            "suggestions": suggestions(label, models, samples, cheap, settings)}


def advise(records: list[DecisionRecord], slices: tuple[str, ...] = (),
           settings: Settings | None = None) -> dict[str, Any]:
    """The advice report, as JSON-able data; AdviseError on an empty log, no feedback or a
    slice no record carries."""
    settings = settings or Settings()
    routed = [r for r in records if r.decision not in (None, "direct")]
    if not routed:
        raise AdviseError("the decision log has no routed request in this window")
    if not any(r.feedback is not None for r in routed):
        raise AdviseError(f"the decision log has no feedback in this window "
                          f"({len(routed)} routed requests, none with feedback)")
    seen = {leaf for r in routed for leaf in signals_of(r)}
    unknown = [s for s in slices if s not in seen]
    if unknown:
        raise AdviseError(f"unknown slice {unknown[0]!r}: no record in this window matched "
                          f"that signal (known: {', '.join(sorted(seen)) or 'none'})")
    by_decision: dict[str, list[DecisionRecord]] = {}
    for r in routed:
        by_decision.setdefault(str(r.decision), []).append(r)
    groups = []
    for decision, found in sorted(by_decision.items()):
        groups.append(analyse_group(decision, None, found, settings))
        for leaf in slices:
            part = [r for r in found if leaf in signals_of(r)]
            if part:
                groups.append(analyse_group(decision, leaf, part, settings))
    return {"records": len(routed), "feedback": sum(r.feedback is not None for r in routed),
            "settings": {"min_feedback": settings.min_feedback, "min_keep": settings.min_keep,
                         "confidence": settings.confidence,
                         "n_resamples": settings.n_resamples, "seed": settings.seed,
                         "interval": "percentile bootstrap"},
            "groups": groups}


# -- the command ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """ISO 8601 (UTC without a zone), or a duration back from now: 30m, 24h, 7d."""
    match = _DURATION.match(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNIT_S[match[2]]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AdviseError(f"not a time: {text!r} (ISO 8601, or 30m / 24h / 7d ago)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def configure_advise(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", nargs="?", metavar="FILE",
                        help="the SQLite decision log (the store's file)")
    parser.add_argument("--redis", metavar="URL", help="read the log from Redis instead")
    parser.add_argument("--postgres", metavar="URL", help="read the log from PostgreSQL instead")
    parser.add_argument("--key-prefix", default="routeyard", metavar="PREFIX",
                        help="with --redis: the store's key prefix (default routeyard)")
    parser.add_argument("--since", metavar="TIME", help="ISO 8601, or 7d / 24h / 30m ago")
    parser.add_argument("--until", metavar="TIME", help="ISO 8601, or 7d / 24h / 30m ago")
    parser.add_argument("--decision", metavar="NAME", help="only this decision")
    parser.add_argument("--slice", action="append", default=[], metavar="SIGNAL",
                        help="also break each decision down by a matched signal leaf, e.g. "
                             "domain:code (repeatable)")
    parser.add_argument("--min-feedback", type=int, default=20, metavar="N",
                        help="feedback a model needs to be estimated (default 20)")
    parser.add_argument("--min-keep", type=float, default=0.95, metavar="SHARE",
                        help="a suggestion's kept quality must have its lower bound at or "
                             "above this (default 0.95)")
    parser.add_argument("--resamples", type=int, default=2000, metavar="N",
                        help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", metavar="DIR",
                        help="write advise.json, advise.png and a self-contained advise.html "
                             "(needs the eval extra)")
    add_implicit_argument(parser)


def run_advise(args: argparse.Namespace) -> int:
    from routeyard.eval import advise_report

    try:
        sources = [s for s in (args.log, args.redis, args.postgres) if s]
        if len(sources) != 1:
            raise AdviseError("give exactly one decision log: FILE, --redis URL or "
                              "--postgres URL")
        if args.min_feedback < 2 or not 0 < args.min_keep <= 10 or args.resamples < 100:
            raise AdviseError("--min-feedback must be >= 2, --min-keep in (0, 10], "
                              "--resamples >= 100")
        if args.out:
            advise_report.check_plots()
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        records = with_implicit(load({"sqlite": args.log, "redis": args.redis,
                                      "postgres": args.postgres, "key_prefix": args.key_prefix},
                                     since, until, args.decision), args.implicit)
        settings = Settings(args.min_feedback, args.min_keep, 0.95, args.resamples, args.seed)
        report = advise(records, tuple(args.slice), settings)
        report["source"] = sources[0] if args.log else ("redis" if args.redis else "postgres")
        report["window"] = {"since": since, "until": until}
        report["implicit_feedback"] = args.implicit
        written = advise_report.write_all(report, args.out) if args.out else []
    except (AdviseError, advise_report.PlotsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(advise_report.to_json(report) + "\n")
    else:
        sys.stdout.write(advise_report.render_text(report))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
