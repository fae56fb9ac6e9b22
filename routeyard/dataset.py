"""Routing datasets: one prompt a line, with every model's score and cost on it.

Format (see ../shared/data/README.md and docs/evaluation.md): {"id", "task", "prompt",
"scores": {model: float}, "costs": {model: float}, "responses": {model: str}}. Every file is
checked against that schema first (`check_rows`), and every problem is reported with its line
and field. Models missing from some rows are then dropped from the whole dataset (rows missing
a kept model are dropped too), so that every algorithm is scored on the same complete matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from routeyard.jsonl import jsonl_lines

MAX_REPORTED = 200  # problems listed in an error's message (all are kept on the error)


@dataclass(slots=True)
class RoutingDataset:
    name: str
    ids: list[str]
    tasks: list[str]
    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n_prompts, n_models), quality in [0, 1]
    costs: np.ndarray  # (n_prompts, n_models), dollars per call
    responses: list[dict[str, str]] = field(default_factory=list)
    dropped_rows: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray | list[int]) -> RoutingDataset:
        index = np.asarray(rows)
        return RoutingDataset(
            self.name, [self.ids[i] for i in index], [self.tasks[i] for i in index],
            [self.prompts[i] for i in index], list(self.models), self.scores[index],
            self.costs[index], [self.responses[i] for i in index] if self.responses else [])

    def restrict_models(self, models: list[str]) -> RoutingDataset:
        columns = [self.models.index(m) for m in models]
        return RoutingDataset(self.name, self.ids, self.tasks, self.prompts, list(models),
                              self.scores[:, columns], self.costs[:, columns], self.responses,
                              self.dropped_rows)


# -- the schema check ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Problem:
    """One schema violation: the line (1-based) and the field (`scores.gpt-4`, say)."""

    line: int
    field: str
    message: str

    def render(self, path: Path | str) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: {self.field}: {self.message}" if self.field \
            else f"{where}: {self.message}"


class DatasetError(ValueError):
    """A routing file that does not fit the schema; `problems` holds every violation."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        shown = [p.render(path) for p in problems[:MAX_REPORTED]]
        more = len(problems) - len(shown)
        tail = [f"... and {more} more"] if more > 0 else []
        super().__init__("\n".join([f"{path}: {len(problems)} schema problem(s)", *shown, *tail]))


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _check_map(row: dict[str, Any], name: str, line: int, low: float,
               high: float | None) -> tuple[set[str], list[Problem]]:
    """A {model: number} field: models named and the problems found."""
    value = row.get(name)
    if name not in row:
        return set(), [Problem(line, name, "missing (an object of model name -> number)")]
    if not isinstance(value, dict):
        return set(), [Problem(line, name, f"must be an object of model name -> number, "
                                           f"got {_type_name(value)}")]
    if not value:
        return set(), [Problem(line, name, "is empty (name at least one model)")]
    bounds = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
    problems = []
    for model, number in value.items():
        x = _number(number)
        if x is None or x < low or (high is not None and x > high):
            numeric = isinstance(number, int | float) and not isinstance(number, bool)
            got = repr(number) if numeric else _type_name(number)
            problems.append(Problem(line, f"{name}.{model}",
                                    f"must be a number {bounds}, got {got}"))
    return set(value), problems


def check_row(row: Any, line: int) -> list[Problem]:
    """Every schema problem of one parsed line."""
    if not isinstance(row, dict):
        return [Problem(line, "", f"expected a JSON object, got {_type_name(row)}")]
    problems: list[Problem] = []
    prompt = row.get("prompt")
    if "prompt" not in row:
        problems.append(Problem(line, "prompt", "missing (a non-empty string)"))
    elif not isinstance(prompt, str):
        problems.append(Problem(line, "prompt", f"must be a string, got {_type_name(prompt)}"))
    elif not prompt.strip():
        problems.append(Problem(line, "prompt", "is empty"))
    scored, score_problems = _check_map(row, "scores", line, 0.0, 1.0)
    priced, cost_problems = _check_map(row, "costs", line, 0.0, None)
    problems += score_problems + cost_problems
    if scored and priced:
        problems += [Problem(line, f"costs.{m}", "missing (scores has this model)")
                     for m in sorted(scored - priced)]
        problems += [Problem(line, f"scores.{m}", "missing (costs has this model)")
                     for m in sorted(priced - scored)]
    if "id" in row and (isinstance(row["id"], bool) or not isinstance(row["id"], str | int)):
        problems.append(Problem(line, "id", f"must be a string or an integer, got "
                                            f"{_type_name(row['id'])}"))
    if "task" in row and not isinstance(row["task"], str):
        problems.append(Problem(line, "task", f"must be a string, got {_type_name(row['task'])}"))
    responses = row.get("responses")
    if "responses" in row and responses is not None:
        if not isinstance(responses, dict):
            problems.append(Problem(line, "responses", f"must be an object of model name -> "
                                                       f"string, got {_type_name(responses)}"))
        else:
            problems += [Problem(line, f"responses.{m}", f"must be a string, got "
                                                         f"{_type_name(v)}")
                         for m, v in responses.items() if not isinstance(v, str)]
    return problems


def read_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a routing JSONL file; DatasetError lists every problem in it."""
    path = Path(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for number, line in jsonl_lines(path):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            problems.append(Problem(number, "", f"invalid JSON: {error}"))
            continue
        found = check_row(row, number)
        problems += found
        if not found:
            rows.append((number, row))
    if not rows and not problems:
        problems.append(Problem(0, "", "no rows"))
    models = {m for _, row in rows for m in row["scores"]}
    if rows and not problems and len(models) < 2:
        problems.append(Problem(0, "scores", f"a routing dataset needs at least two models, "
                                             f"found {sorted(models)}"))
    if problems:
        raise DatasetError(path, problems)
    return rows


# -- loading ------------------------------------------------------------------------------------

def from_rows(name: str, rows: Iterable[dict[str, Any]], *, models: list[str] | None = None,
              min_coverage: float = 0.99, source: str = "") -> RoutingDataset:
    """A dataset from checked rows. `models` fixes the columns (use train's for test)."""
    rows = list(rows)
    if models is None:
        counts: dict[str, int] = {}
        for row in rows:
            for model in row["scores"]:
                counts[model] = counts.get(model, 0) + 1
        models = sorted(m for m, n in counts.items() if n >= min_coverage * len(rows))
    kept = [r for r in rows if all(m in r["scores"] and m in r["costs"] for m in models)]
    if not kept or len(models) < 2:
        raise ValueError(f"{source or name}: no row has every model of {models}")
    return RoutingDataset(
        name=name,
        ids=[str(r.get("id", i)) for i, r in enumerate(kept)],
        tasks=[str(r.get("task", "")) for r in kept],
        prompts=[str(r["prompt"]) for r in kept],
        models=list(models),
        scores=np.array([[float(r["scores"][m]) for m in models] for r in kept]),
        costs=np.array([[float(r["costs"][m]) for m in models] for r in kept]),
        responses=[dict(r.get("responses") or {}) for r in kept],
        dropped_rows=len(rows) - len(kept),
    )


def load_split(path: str | Path, *, models: list[str] | None = None,
               min_coverage: float = 0.99) -> RoutingDataset:
    """Read and check one JSONL split. `models` fixes the columns (use train's for test)."""
    path = Path(path)
    rows = [row for _, row in read_rows(path)]
    return from_rows(path.parent.name, rows, models=models, min_coverage=min_coverage,
                     source=str(path))


def load_dataset(folder: str | Path) -> tuple[RoutingDataset, RoutingDataset]:
    """train.jsonl and test.jsonl of a dataset folder, on train's models."""
    folder = Path(folder)
    train = load_split(folder / "train.jsonl")
    test = load_split(folder / "test.jsonl", models=train.models)
    return train, test


def split_file(path: str | Path, *, test_fraction: float = 0.2,
               seed: int = 0) -> tuple[RoutingDataset, RoutingDataset]:
    """One user JSONL file, checked, then split into (train, test) by a seeded shuffle."""
    path = Path(path)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    rows = [row for _, row in read_rows(path)]
    if len(rows) < 4:
        raise ValueError(f"{path}: {len(rows)} row(s): too few to split into train and test")
    order = np.random.default_rng(seed).permutation(len(rows))
    n_test = min(max(1, round(len(rows) * test_fraction)), len(rows) - 2)
    train = from_rows(path.stem, [rows[i] for i in sorted(order[n_test:])], source=str(path))
    test = from_rows(path.stem, [rows[i] for i in sorted(order[:n_test])], models=train.models,
                     source=str(path))
    return train, test
