"""Logged events and candidate policies for `routeyard evaluate-policy`.

`read_log` reads a decision log (a SQLite file, opened read-only, or a Redis or PostgreSQL URL)
through the store's query API, feedback joined. `events_of` keeps the routed records (those with
a `detail.selection`) as `Event`s: the decision, its candidates, the chosen model (the first
attempt's, before any failover), its logged probability, and the outcomes.

A candidate policy gives, for each event, a probability per candidate (`POLICIES`, a registry):
`static` (the first candidate), `cheapest` (the candidate with the lowest mean cost in the log),
and every trainable router's kind with `--artifact` and `--lambda` (it needs the prompt's text,
logged with `state.log_content`). `--epsilon` mixes any of them with a uniform choice.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.state.query import DecisionQuery, decode_cursor
from routeyard.state.record import DecisionRecord

PAGE = 1000


class PolicyInputError(ValueError):
    """Input that cannot be evaluated: the CLI prints it on one line and exits with 2."""


# -- reading the log ----------------------------------------------------------------------------

def _read_sqlite(path: Path) -> list[DecisionRecord]:
    from routeyard.state.sqlite_query import query_page

    if not path.is_file():
        raise PolicyInputError(f"{path}: no such decision log")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            records: list[DecisionRecord] = []
            after = None
            while True:
                page = query_page(conn, DecisionQuery(limit=PAGE, after=after))
                records += page.records
                if page.cursor is None:
                    return records
                after = decode_cursor(page.cursor)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise PolicyInputError(f"{path}: not a Routeyard decision log ({exc})") from None


async def _read_store(url: str, key_prefix: str) -> list[DecisionRecord]:
    from routeyard.state import make_store

    backend = "redis" if url.startswith(("redis://", "rediss://", "unix://")) else "postgres"
    store = make_store(backend, redis_url=url if backend == "redis" else None,
                       postgres_url=url if backend == "postgres" else None,
                       key_prefix=key_prefix)
    records: list[DecisionRecord] = []
    try:
        after = None
        while True:
            page = await store.query_decisions(DecisionQuery(limit=PAGE, after=after))
            records += page.records
            if page.cursor is None:
                return records
            after = decode_cursor(page.cursor)
    finally:
        await store.close()


def read_log(source: str, key_prefix: str = "routeyard") -> list[DecisionRecord]:
    """Every record of the log, newest first, with feedback joined (`key_prefix`: Redis's)."""
    if source.startswith(("redis://", "rediss://", "unix://", "postgres://", "postgresql://")):
        try:
            return asyncio.run(_read_store(source, key_prefix))
        except (OSError, RuntimeError, ConnectionError) as exc:
            raise PolicyInputError(f"cannot read the decision log at {source.split('@')[-1]}: "
                                   f"{exc}") from None
    return _read_sqlite(Path(source))


# -- implicit feedback --------------------------------------------------------------------------

# What the offline commands do with implicit feedback (inferred from a regeneration or an
# abandoned stream, docs/learning.md): count it as the request's quality, or treat the request
# as one without feedback. Explicit feedback given for the same request replaced it already.
IMPLICIT_MODES = ("include", "exclude")


def add_implicit_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--implicit", choices=IMPLICIT_MODES, default="include",
                        help="implicit feedback (regenerations, abandoned streams): count it "
                             "(include, the default) or leave those requests without "
                             "feedback (exclude)")


def with_implicit(records: Sequence[DecisionRecord], mode: str) -> list[DecisionRecord]:
    """The records, their implicit feedback dropped when `mode` is "exclude"."""
    if mode not in IMPLICIT_MODES:
        raise PolicyInputError(f"--implicit must be one of {', '.join(IMPLICIT_MODES)}")
    if mode == "include":
        return list(records)
    return [replace(r, feedback=None, feedback_implicit=False) if r.feedback_implicit else r
            for r in records]


# -- events -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Event:
    decision: str
    candidates: tuple[str, ...]
    model: str  # the logged choice
    propensity: float  # NaN when none was logged
    quality: float | None  # the joined feedback
    cost: float
    latency: float
    signals: dict[str, float]
    prompt: str | None  # the last user turn, when content was logged
    prompt_tokens: int = 0
    implicit: bool = False  # the quality is implicit feedback (a regeneration, an abandon)
    messages: Any = None  # the messages sent, when content was logged (rules re-run on them)


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return None


def _event(record: DecisionRecord) -> Event | None:
    detail = record.detail or {}
    selection = detail.get("selection")
    candidates = tuple(detail.get("candidates") or ())
    if not isinstance(selection, dict) or not candidates or record.decision in (None, "direct"):
        return None
    attempts = detail.get("attempts") or []
    chosen = attempts[0].get("model") if attempts and isinstance(attempts[0], dict) else None
    chosen = chosen or record.model
    if chosen not in candidates:
        return None
    p = selection.get("probability")
    propensity = float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else math.nan
    content = detail.get("content") or {}
    prompt = content.get("prompt") if isinstance(content, dict) else None
    return Event(str(record.decision), candidates, chosen, propensity, record.feedback,
                 float(record.cost_usd or 0.0), float(record.latency_ms or 0.0),
                 dict(detail.get("signals") or {}),
                 _last_user_text(prompt), int(record.prompt_tokens or 0),
                 record.feedback_implicit, prompt if isinstance(prompt, list) else None)


def events_of(records: Sequence[DecisionRecord]) -> list[Event]:
    """The routed records as events; raises `PolicyInputError` for a log that has none, or
    whose records carry no propensities at all."""
    if not records:
        raise PolicyInputError("the decision log is empty")
    events = [e for e in map(_event, records) if e is not None]
    if not events:
        raise PolicyInputError(f"none of the log's {len(records)} records was routed by a "
                               "decision (all direct, or without detail.selection)")
    if all(math.isnan(e.propensity) for e in events):
        raise PolicyInputError("the decision log carries no propensities "
                               "(detail.selection.probability): it cannot be evaluated "
                               "off-policy; log with a Routeyard that records them")
    return events


# -- candidate policies ------------------------------------------------------------------------

# A policy maps the events to one {model: probability} per event, over its candidates.
Policy = Callable[[list[Event]], list[dict[str, float]]]


@dataclass(frozen=True, slots=True)
class PolicySpec:
    algorithm: str
    artifact: str | None = None
    lam: float = 1.0
    epsilon: float = 0.0


def _static(events: list[Event], spec: PolicySpec) -> list[dict[str, float]]:
    return [{e.candidates[0]: 1.0} for e in events]


def _cheapest(events: list[Event], spec: PolicySpec) -> list[dict[str, float]]:
    costs: dict[str, list[float]] = defaultdict(list)
    for e in events:
        costs[e.model].append(e.cost)
    mean = {m: float(np.mean(c)) for m, c in costs.items()}
    return [{min(e.candidates, key=lambda m: mean.get(m, math.inf)): 1.0} for e in events]


def learned_choices(events: list[Event], algorithm: str, artifact: str | None, lam: float,
                    candidates: Callable[[Event], Sequence[str]] = lambda e: e.candidates,
                    model_map: dict[str, str] | None = None) -> list[dict[str, float]]:
    """A trained router's choice per event among `candidates(event)`, from the logged prompt.
    `model_map` names the artifact's (dataset) models as the config's models."""
    from routeyard.eval.runner import embed
    from routeyard.selection.learned import load_router

    if artifact is None:
        raise PolicyInputError(f"--algorithm {algorithm} needs --artifact PATH")
    if any(e.prompt is None for e in events):
        raise PolicyInputError(f"algorithm '{algorithm}' reads the prompt, but the log holds "
                               "no prompt text for some records: log with "
                               "state.log_content: true, or evaluate another algorithm")
    try:
        router = load_router(artifact)
    except (OSError, ValueError, KeyError) as exc:
        raise PolicyInputError(f"{artifact}: cannot load the artifact ({exc})") from None
    if router.kind != algorithm and algorithm != "learned":
        raise PolicyInputError(f"{artifact} holds a '{router.kind}' router, not '{algorithm}'")
    texts = [e.prompt or "" for e in events]
    quality, cost = router.predict_with_costs(embed(texts), texts)
    score = quality - lam * cost / router.cost_scale
    names = model_map or {}
    column = {names.get(m, m): i for i, m in enumerate(router.models)}
    out = []
    for row, e in enumerate(events):
        known = [m for m in candidates(e) if m in column]
        if not known:
            raise PolicyInputError(f"decision '{e.decision}': none of its candidates "
                                   f"({', '.join(candidates(e))}) is a model of the artifact")
        out.append({max(known, key=lambda m: score[row, column[m]]): 1.0})
    return out


def _learned(events: list[Event], spec: PolicySpec) -> list[dict[str, float]]:
    return learned_choices(events, spec.algorithm, spec.artifact, spec.lam)


PolicyBuilder = Callable[[list[Event], PolicySpec], list[dict[str, float]]]
POLICIES: dict[str, PolicyBuilder] = {"static": _static, "cheapest": _cheapest}


def known_algorithms() -> list[str]:
    from routeyard.selection.learned import TRAINABLE_ROUTERS

    return sorted({*POLICIES, *TRAINABLE_ROUTERS})


def target_probabilities(events: list[Event], spec: PolicySpec) -> list[dict[str, float]]:
    """The candidate's probability of each model per event (ε mixes in a uniform choice)."""
    from routeyard.selection.learned import TRAINABLE_ROUTERS

    if spec.algorithm in POLICIES:
        chosen = POLICIES[spec.algorithm](events, spec)
    elif spec.algorithm in TRAINABLE_ROUTERS:
        chosen = _learned(events, spec)
    else:
        raise PolicyInputError(f"unknown algorithm '{spec.algorithm}' "
                               f"(known: {', '.join(known_algorithms())})")
    return explore(events, chosen, spec.epsilon)


def explore(events: list[Event], chosen: list[dict[str, float]], epsilon: float,
            candidates: Callable[[Event], Sequence[str]] = lambda e: e.candidates
            ) -> list[dict[str, float]]:
    """Mix each event's choice with a uniform one over its candidates, with weight ε."""
    if not 0.0 <= epsilon <= 1.0:
        raise PolicyInputError("--epsilon must be in [0, 1]")
    if epsilon == 0:
        return chosen
    mixed = []
    for e, probs in zip(events, chosen, strict=True):
        names = list(candidates(e))
        share = epsilon / len(names)
        mixed.append({m: probs.get(m, 0.0) * (1 - epsilon) + share * names.count(m)
                      for m in {*names, *probs}})
    return mixed
