"""Routing datasets: one prompt a line, with every model's score and cost on it.

Format (see ../shared/data/README.md): {"id", "task", "prompt", "scores": {model: float},
"costs": {model: float}, "responses": {model: str}}. Models missing from some rows are dropped
from the whole dataset (rows missing a kept model are dropped too), so that every algorithm is
scored on the same complete matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routeyard.jsonl import jsonl_objects


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


def load_split(path: str | Path, *, models: list[str] | None = None,
               min_coverage: float = 0.99) -> RoutingDataset:
    """Read one JSONL split. `models` fixes the columns (use train's for test)."""
    path = Path(path)
    rows = [row for _, row in jsonl_objects(path)]
    if not rows:
        raise ValueError(f"{path}: no rows")
    if models is None:
        counts: dict[str, int] = {}
        for row in rows:
            for model in row.get("scores") or {}:
                counts[model] = counts.get(model, 0) + 1
        models = sorted(m for m, n in counts.items() if n >= min_coverage * len(rows))
    kept = [r for r in rows if all(m in (r.get("scores") or {}) and m in (r.get("costs") or {})
                                   for m in models)]
    if not kept:
        raise ValueError(f"{path}: no row has every model of {models}")
    return RoutingDataset(
        name=path.parent.name,
        ids=[str(r.get("id", i)) for i, r in enumerate(kept)],
        tasks=[str(r.get("task", "")) for r in kept],
        prompts=[str(r["prompt"]) for r in kept],
        models=list(models),
        scores=np.array([[float(r["scores"][m]) for m in models] for r in kept]),
        costs=np.array([[float(r["costs"][m]) for m in models] for r in kept]),
        responses=[dict(r.get("responses") or {}) for r in kept],
        dropped_rows=len(rows) - len(kept),
    )


def load_dataset(folder: str | Path) -> tuple[RoutingDataset, RoutingDataset]:
    """train.jsonl and test.jsonl of a dataset folder, on train's models."""
    folder = Path(folder)
    train = load_split(folder / "train.jsonl")
    test = load_split(folder / "test.jsonl", models=train.models)
    return train, test
