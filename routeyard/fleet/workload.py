"""Workloads: a trace file (JSONL or CSV) or a synthetic generator, as numpy arrays.

A trace row has `arrival` (seconds, any origin; `time` is accepted too), `input_tokens`,
`output_tokens` and optionally `session`. Errors name the line and the field. The generator
samples everything up front with numpy (one seeded Generator): arrivals (Poisson, or bursty:
gamma inter-arrival times with a squared coefficient of variation of 4) and lengths by kind
(`KINDS`). `export_trace` writes Routeyard's decision log as a trace.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from routeyard.fleet.profiles import FleetInputError

BURSTY_CV2 = 4.0  # squared coefficient of variation of bursty inter-arrival times


@dataclass(slots=True)
class Workload:
    """Requests sorted by arrival; the lists mirror the arrays for fast scalar access."""

    arrival: np.ndarray  # seconds from the first arrival
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    session: list[str | None] | None = None
    arrival_list: list[float] = field(default_factory=list)
    input_list: list[int] = field(default_factory=list)
    output_list: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        order = np.argsort(self.arrival, kind="stable")
        self.arrival = np.asarray(self.arrival, dtype=float)[order]
        if len(self.arrival):
            self.arrival -= self.arrival[0]
        self.input_tokens = np.maximum(np.asarray(self.input_tokens, dtype=np.int64)[order], 1)
        self.output_tokens = np.maximum(np.asarray(self.output_tokens, dtype=np.int64)[order],
                                        1)
        if self.session is not None:
            self.session = [self.session[i] for i in order]
        self.arrival_list = self.arrival.tolist()
        self.input_list = self.input_tokens.tolist()
        self.output_list = self.output_tokens.tolist()

    def __len__(self) -> int:
        return len(self.arrival)


# -- traces -------------------------------------------------------------------------------------

def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, dict(row)
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise FleetInputError(f"{path.name}:{number}: not valid JSON") from None
            if not isinstance(row, dict):
                raise FleetInputError(f"{path.name}:{number}: must be a JSON object")
            yield number, row


def _field(row: dict[str, Any], names: tuple[str, ...], where: str, *, integer: bool) -> float:
    key = next((k for k in names if k in row and row[k] not in (None, "")), None)
    if key is None:
        raise FleetInputError(f"{where}: field {names[0]!r}: missing")
    raw = row[key]
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    bad = not math.isfinite(value) or value < 0 or (integer and (value != int(value)
                                                                 or value < 1))
    if bad:
        kind = "a positive integer" if integer else "a number >= 0"
        raise FleetInputError(f"{where}: field {key!r}: must be {kind}, got {raw!r}")
    return value


def read_trace(source: str) -> Workload:
    path = Path(source)
    if not path.is_file():
        raise FleetInputError(f"{source}: no such trace file")
    arrival: list[float] = []
    inputs: list[float] = []
    outputs: list[float] = []
    sessions: list[str | None] = []
    try:
        for number, row in _rows(path):
            where = f"{path.name}:{number}"
            arrival.append(_field(row, ("arrival", "time"), where, integer=False))
            inputs.append(_field(row, ("input_tokens",), where, integer=True))
            outputs.append(_field(row, ("output_tokens",), where, integer=True))
            session = row.get("session")
            sessions.append(None if session in (None, "") else str(session))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FleetInputError(f"{source}: cannot read ({exc})") from None
    if not arrival:
        raise FleetInputError(f"{source}: no requests")
    return Workload(np.array(arrival), np.array(inputs), np.array(outputs),
                    sessions if any(s is not None for s in sessions) else None)


def write_trace(work: Workload, path: Path) -> None:
    with path.open("wb") as handle:
        for i in range(len(work)):
            row: dict[str, Any] = {"arrival": round(work.arrival_list[i], 6),
                                   "input_tokens": work.input_list[i],
                                   "output_tokens": work.output_list[i]}
            if work.session is not None and work.session[i] is not None:
                row["session"] = work.session[i]
            handle.write(orjson.dumps(row) + b"\n")


def export_trace(log: str, out: Path, key_prefix: str = "routeyard") -> int:
    """Write the decision log's requests (prompt and completion tokens, time, session) as a
    trace; records without tokens (blocked, failed) are left out. Returns the count."""
    from routeyard.eval.policy import PolicyInputError, read_log

    try:
        records = read_log(log, key_prefix)
    except PolicyInputError as exc:
        raise FleetInputError(str(exc)) from None
    kept = [r for r in records if r.prompt_tokens > 0 and r.completion_tokens > 0]
    if not kept:
        raise FleetInputError(f"{log}: no request with token counts in the decision log")
    work = Workload(np.array([r.time for r in kept]), np.array([r.prompt_tokens for r in kept]),
                    np.array([r.completion_tokens for r in kept]), [r.session for r in kept])
    write_trace(work, out)
    return len(kept)


# -- synthetic ----------------------------------------------------------------------------------

def _lognormal(rng: np.random.Generator, median: float, sigma: float, low: int, high: int,
               n: int) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(median), sigma, n), low, high).astype(np.int64)


def _chat(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _lognormal(rng, 600, 1.0, 16, 16000, n), _lognormal(rng, 250, 0.8, 8, 4000, n)


def _rag(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _lognormal(rng, 6000, 0.5, 1000, 32000, n), _lognormal(rng, 200, 0.6, 16, 2000, n)


def _batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return _lognormal(rng, 1200, 0.7, 64, 16000, n), _lognormal(rng, 600, 0.6, 32, 4000, n)


def _longtail(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mostly short chat, a few long documents (~2%, 12k to 64k tokens, median 20k)."""
    inputs, outputs = _chat(rng, n)
    long = rng.random(n) < 0.02
    inputs[long] = _lognormal(rng, 20000, 0.4, 12000, 64000, int(long.sum()))
    return inputs, outputs


KINDS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "chat": _chat, "rag": _rag, "batch": _batch, "longtail": _longtail,
    # "agent" is built by _agent: sessions of turns whose context grows.
}


def _interarrivals(rng: np.random.Generator, arrivals: str, rate: float, n: int) -> np.ndarray:
    if arrivals == "poisson":
        return rng.exponential(1.0 / rate, n)
    if arrivals == "bursty":  # gamma: same mean, CV^2 = BURSTY_CV2
        shape = 1.0 / BURSTY_CV2
        return rng.gamma(shape, 1.0 / (rate * shape), n)
    raise FleetInputError(f"--arrivals must be poisson or bursty, got {arrivals!r}")


def _agent(rng: np.random.Generator, n: int, rate: float,
           arrivals: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """Sessions of ~8 turns (geometric); each turn's input is the whole conversation so far
    plus a new message (tool output or user turn); turns ~10 s apart (open loop)."""
    turns = rng.geometric(1 / 8, n)  # more sessions than needed; cut to n requests
    session_of = np.repeat(np.arange(n), turns)[:n]
    first = np.r_[True, session_of[1:] != session_of[:-1]]
    new = _lognormal(rng, 400, 0.9, 16, 8000, n)
    outputs = _lognormal(rng, 300, 0.7, 16, 4000, n)
    step = new + np.r_[0, outputs[:-1]] * ~first
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    cumulative = np.cumsum(step)
    inputs = np.minimum(cumulative - np.r_[0, cumulative][group_start] + 0, 128000)
    n_sessions = int(session_of[-1]) + 1
    starts = np.cumsum(_interarrivals(rng, arrivals, rate / max(n / n_sessions, 1),
                                      n_sessions))
    think = np.where(first, 0.0, rng.exponential(10.0, n))
    offset = np.cumsum(think) - np.cumsum(think)[group_start]
    arrival = starts[session_of] + offset
    return arrival, inputs, outputs, [f"s{s}" for s in session_of]


def synthetic(kind: str, n: int, rate: float, arrivals: str = "poisson",
              seed: int = 0) -> Workload:
    """`n` requests of `kind` arriving at `rate` per second on average."""
    if n < 1 or not rate > 0:
        raise FleetInputError("--requests must be >= 1 and --rate > 0")
    rng = np.random.default_rng(seed)
    if kind == "agent":
        arrival, inputs, outputs, sessions = _agent(rng, n, rate, arrivals)
        return Workload(arrival, inputs, outputs, sessions)
    if kind not in KINDS:
        raise FleetInputError(f"unknown workload {kind!r}: known "
                              f"{', '.join([*KINDS, 'agent'])}")
    inputs, outputs = KINDS[kind](rng, n)
    return Workload(np.cumsum(_interarrivals(rng, arrivals, rate, n)), inputs, outputs)
