"""`ensemble`: quality predictors over richer prompt features, averaged with weights chosen on
validation folds carved from train.

Each member reads some feature blocks (features.py: the static embedding, hashed word and
character n-grams, cheap text signals) and one predictor (predictors.py: the dataset's tasks as
a learned domain signal, kNN, ridge, MLP). Training, with nothing read from test:
1. split train into 5 seeded folds; fit every member's hyper-parameter candidates on 4 folds
   and predict the fifth, so that every train row gets an out-of-fold prediction;
2. keep each member's best candidate by the out-of-fold routing area (the area under its
   λ-swept cost/quality hull, tuning.py);
3. choose the ensemble's weights by greedy forward selection with replacement (Caruana et al.,
   2004) on those out-of-fold predictions, by the same area;
4. choose, by the same area, whether to price prompts by their expected cost (each model's
   mean train cost on each task, weighted by P(task | prompt)) or by each model's mean cost;
5. refit the chosen members, with their chosen hyper-parameters, on all of train.

Serving computes each needed block once per prompt and takes the weighted mean of the
members' predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routeyard.dataset import RoutingDataset
from routeyard.selection.learned.base import TrainableRouter, register_trainable
from routeyard.selection.learned.features import FEATURE_BLOCKS, FeatureBlock
from routeyard.selection.learned.predictors import PREDICTORS, Predictor, TaskPredictor
from routeyard.selection.learned.tuning import routing_area


@dataclass(frozen=True, slots=True)
class MemberSpec:
    name: str
    blocks: tuple[str, ...]
    predictor: str
    candidates: tuple[dict[str, Any], ...] = field(default_factory=lambda: ({},))


E, W, C, S = "embedding", "words", "chars", "signals"
# Candidates were narrowed on validation splits of the two shared datasets' train files
# (docs/evaluation.md); each router still picks among them on its own train's folds.
MEMBERS: tuple[MemberSpec, ...] = (
    MemberSpec("task", (W, C), "task", ({"alpha": 1e-5},)),
    MemberSpec("knn-embedding", (E,), "knn", ({"k": 40}, {"k": 80})),
    MemberSpec("knn-words", (W,), "knn", ({"k": 40},)),
    MemberSpec("ridge-text", (E, W, C, S), "ridge", ({"alpha": 10.0},)),
    MemberSpec("mlp", (E, S), "mlp", ({"hidden": 256, "alpha": 0.1},)),
    MemberSpec("irt", (E,), "irt", ({"dim": 32, "weight_decay": 1e-3},)),
    MemberSpec("mf", (E,), "mf", ({"dim": 64, "weight_decay": 1e-3},)),
)
COST_SPEC = MemberSpec("costs", (W, C), "task", ({"alpha": 1e-5},))
FOLDS = 5
ENSEMBLE_STEPS = 20


def fold_rows(n: int, folds: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """Seeded, disjoint row sets covering 0..n-1."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[i::folds]) for i in range(min(folds, n))]


class _Blocks:
    """Fitted feature blocks by name, each transformed once per call."""

    def __init__(self, blocks: dict[str, FeatureBlock]) -> None:
        self.blocks = blocks

    @staticmethod
    def raw(names: Sequence[str], texts: Sequence[str],
            embeddings: np.ndarray) -> dict[str, Any]:
        """Every block's raw features (stateless): computed once, then subset by rows."""
        return {name: FEATURE_BLOCKS[name]().raw(texts, embeddings) for name in names}

    @classmethod
    def fit_raw(cls, raws: dict[str, Any], rows: np.ndarray | None = None) -> _Blocks:
        blocks = {}
        for name, raw in raws.items():
            block = FEATURE_BLOCKS[name]()
            block.fit_raw(raw if rows is None else raw[rows])
            blocks[name] = block
        return cls(blocks)

    def weigh(self, raws: dict[str, Any], rows: np.ndarray | None = None) -> dict[str, Any]:
        return {name: block.weigh(raws[name] if rows is None else raws[name][rows])
                for name, block in self.blocks.items()}

    def transform(self, texts: Sequence[str], embeddings: np.ndarray) -> dict[str, Any]:
        return {name: block.transform(texts, embeddings) for name, block in self.blocks.items()}


def _stack(parts: dict[str, Any], names: Sequence[str], dense: bool) -> Any:
    import scipy.sparse as sp

    chosen = [parts[n] for n in names]
    if not any(sp.issparse(p) for p in chosen):
        return np.hstack(chosen).astype(np.float32)
    if dense:
        raise ValueError(f"a dense-only predictor cannot read sparse blocks {list(names)}")
    return sp.hstack([sp.csr_matrix(p) for p in chosen], format="csr", dtype=np.float32)


def forward_selection(predictions: list[np.ndarray], score: Callable[[np.ndarray], float],
                      steps: int = ENSEMBLE_STEPS) -> np.ndarray:
    """Caruana's greedy selection with replacement: `steps` additions, each the member whose
    addition scores best; returns the weights (summing to 1) of the best-scoring prefix."""
    counts = np.zeros(len(predictions))
    total = np.zeros_like(predictions[0])
    best_score, best_counts = -np.inf, counts.copy()
    for _ in range(steps):
        n = counts.sum()
        trials = [score((total * n + p) / (n + 1)) for p in predictions]
        pick = int(np.argmax(trials))
        counts[pick] += 1
        total = (total * n + predictions[pick]) / (n + 1)
        if trials[pick] > best_score:
            best_score, best_counts = trials[pick], counts.copy()
    return best_counts / best_counts.sum()


Choice = tuple[str, float, dict[str, Any]]  # (member, weight, hyper-parameters)


@register_trainable
class EnsembleRouter(TrainableRouter):
    kind = "ensemble"
    uses_text = True

    def __init__(self, members: Sequence[MemberSpec] = MEMBERS, seed: int = 0,
                 folds: int = FOLDS) -> None:
        super().__init__()
        self.specs = {m.name: m for m in members}
        self.seed, self.folds = seed, folds
        self.chosen: list[Choice] = []
        self.predictors: dict[str, Predictor] = {}
        self.cost_model: TaskPredictor | None = None  # prices prompts, when chosen
        self.blocks = _Blocks({})
        self.validation: dict[str, float] = {}

    # -- training -------------------------------------------------------------------------------

    def _fit(self, train: RoutingDataset, embeddings: np.ndarray) -> None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # BLAS threads fight on a busy 2-core box
            self.chosen, priced = self._choose(train, embeddings)
            specs = [self.specs[name] for name, _, _ in self.chosen]
            if priced:
                specs.append(COST_SPEC)
            needed = sorted({b for spec in specs for b in spec.blocks})
            raws = _Blocks.raw(needed, train.prompts, embeddings)
            self.blocks = _Blocks.fit_raw(raws)
            parts = self.blocks.weigh(raws)
            self.predictors = {name: self._fit_member(self.specs[name], hyper, parts, train)
                               for name, _, hyper in self.chosen}
            self.cost_model = None
            if priced:
                reuse = [self.predictors[name] for name, _, hyper in self.chosen
                         if self.specs[name].predictor == COST_SPEC.predictor
                         and self.specs[name].blocks == COST_SPEC.blocks
                         and hyper == COST_SPEC.candidates[0]]
                model = reuse[0] if reuse else self._fit_member(
                    COST_SPEC, COST_SPEC.candidates[0], parts, train)
                assert isinstance(model, TaskPredictor)
                self.cost_model = model

    def _fit_member(self, spec: MemberSpec, hyper: dict[str, Any], parts: dict[str, Any],
                    data: RoutingDataset) -> Predictor:
        predictor = PREDICTORS[spec.predictor](**hyper)
        predictor.fit(_stack(parts, spec.blocks, predictor.dense_only), data.scores, self.seed,
                      tasks=data.tasks, costs=data.costs)
        return predictor

    def _out_of_fold(self, train: RoutingDataset, embeddings: np.ndarray
                     ) -> tuple[dict[tuple[str, int], np.ndarray], np.ndarray | None]:
        """Out-of-fold predictions of every (member, candidate), and expected costs."""
        specs = [*self.specs.values(), COST_SPEC]
        needed = sorted({b for spec in specs for b in spec.blocks})
        predictions: dict[tuple[str, int], np.ndarray] = {}
        costs: np.ndarray | None = np.zeros_like(train.costs)
        failed: set[tuple[str, int]] = set()
        raws = _Blocks.raw(needed, train.prompts, embeddings)
        for held in fold_rows(len(train), self.folds, self.seed):
            rest = np.setdiff1d(np.arange(len(train)), held)
            fit = train.subset(rest)
            blocks = _Blocks.fit_raw(raws, rest)
            fit_parts, val_parts = blocks.weigh(raws, rest), blocks.weigh(raws, held)
            fitted: dict[str, Predictor] = {}  # one fit per (predictor, blocks, hyper)
            for spec in specs:
                for index, hyper in enumerate(spec.candidates):
                    key = (spec.name, index)
                    if key in failed:
                        continue
                    same = f"{spec.predictor} {spec.blocks} {sorted(hyper.items())}"
                    try:
                        predictor = fitted.get(same) or self._fit_member(spec, hyper,
                                                                         fit_parts, fit)
                    except ValueError:  # e.g. no task labels, or too few rows for it
                        failed.add(key)
                        continue
                    fitted[same] = predictor
                    x = _stack(val_parts, spec.blocks, predictor.dense_only)
                    if spec is COST_SPEC:
                        estimate = predictor.expected_costs(x)
                        if costs is not None and estimate is not None:
                            costs[held] = estimate
                        continue
                    predictions.setdefault(key, np.zeros_like(train.scores))[held] = \
                        predictor.predict(x)
        if (COST_SPEC.name, 0) in failed:
            costs = None
        return {k: v for k, v in predictions.items() if k not in failed}, costs

    def _choose(self, train: RoutingDataset, embeddings: np.ndarray
                ) -> tuple[list[Choice], bool]:
        """(members with weights and hyper-parameters, whether to price by expected cost)."""
        predictions, expected = self._out_of_fold(train, embeddings)
        if not predictions:
            raise ValueError("no ensemble member could be fitted on this train split")

        def area_with(costs: np.ndarray | None) -> Callable[[np.ndarray], float]:
            return lambda predicted: routing_area(predicted, train.scores, train.costs, costs)

        best: dict[str, tuple[float, int]] = {}
        for (name, index), predicted in predictions.items():
            score = area_with(expected)(predicted)
            self.validation[f"{name} {self.specs[name].candidates[index]}"] = round(score, 5)
            if name not in best or score > best[name][0]:
                best[name] = (score, index)
        names = list(best)
        chosen_predictions = [predictions[(n, best[n][1])] for n in names]
        options = [None] if expected is None else [None, expected]
        results = []
        for costs in options:
            weights = forward_selection(chosen_predictions, area_with(costs))
            blend = sum(w * p for w, p in zip(weights, chosen_predictions, strict=True))
            results.append((area_with(costs)(np.asarray(blend)), costs is not None, weights))
            self.validation["ensemble" + (" (expected costs)" if costs is not None else "")] = \
                round(results[-1][0], 5)
        _, priced, weights = max(results, key=lambda r: r[0])
        return [(n, float(w), self.specs[n].candidates[best[n][1]])
                for n, w in zip(names, weights, strict=True) if w > 0], priced

    # -- prediction -----------------------------------------------------------------------------

    def _parts(self, embeddings: np.ndarray, texts: Sequence[str] | None) -> dict[str, Any]:
        if texts is None:
            raise ValueError("the ensemble router reads the prompts' text: pass texts")
        if len(texts) != len(embeddings):
            raise ValueError("one text per embedding row is needed")
        return self.blocks.transform(texts, embeddings)

    def predict(self, embeddings: np.ndarray,
                texts: Sequence[str] | None = None) -> np.ndarray:
        return self._quality(self._parts(embeddings, texts), len(embeddings))

    def expected_costs(self, embeddings: np.ndarray,
                       texts: Sequence[str] | None = None) -> np.ndarray:
        if self.cost_model is None:
            return super().expected_costs(embeddings, texts)
        return self._costs(self._parts(embeddings, texts), embeddings)

    def predict_with_costs(self, embeddings: np.ndarray, texts: Sequence[str] | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        parts = self._parts(embeddings, texts)  # each block computed once for both
        return self._quality(parts, len(embeddings)), self._costs(parts, embeddings)

    def _quality(self, parts: dict[str, Any], n: int) -> np.ndarray:
        total = np.zeros((n, len(self.models)))
        for name, weight, _ in self.chosen:
            predictor = self.predictors[name]
            total += weight * predictor.predict(
                _stack(parts, self.specs[name].blocks, predictor.dense_only))
        return total

    def _costs(self, parts: dict[str, Any], embeddings: np.ndarray) -> np.ndarray:
        estimate = None
        if self.cost_model is not None:
            estimate = self.cost_model.expected_costs(_stack(parts, COST_SPEC.blocks, False))
        return super().expected_costs(embeddings) if estimate is None else estimate

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        raise ValueError("the ensemble router reads the prompts' text: use predict("
                         "embeddings, texts)")

    # -- artifacts ------------------------------------------------------------------------------

    def parameters(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "members": np.array([n for n, _, _ in self.chosen]),
            "weights": np.array([w for _, w, _ in self.chosen]),
            "member_blocks": np.array(["+".join(self.specs[n].blocks)
                                       for n, _, _ in self.chosen]),
            "member_predictors": np.array([self.specs[n].predictor for n, _, _ in self.chosen]),
            "blocks": np.array(sorted(self.blocks.blocks)),
        }
        for name, block in self.blocks.blocks.items():
            out |= {f"block.{name}.{k}": v for k, v in block.parameters().items()}
        for index, (name, _, _) in enumerate(self.chosen):
            out |= {f"member{index}.{k}": v
                    for k, v in self.predictors[name].parameters().items()}
        if self.cost_model is not None:
            out |= {f"costs.{k}": v for k, v in self.cost_model.parameters().items()}
        return out

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        members = [str(m) for m in parameters["members"]]
        blocks = [str(b).split("+") for b in parameters["member_blocks"]]
        kinds = [str(p) for p in parameters["member_predictors"]]
        self.specs = {m: MemberSpec(m, tuple(b), k)
                      for m, b, k in zip(members, blocks, kinds, strict=True)}
        self.chosen = [(m, float(w), {})
                       for m, w in zip(members, parameters["weights"], strict=True)]
        fitted = {}
        for name in (str(b) for b in parameters["blocks"]):
            block = FEATURE_BLOCKS[name]()
            block.load_parameters(_prefixed(parameters, f"block.{name}."))
            fitted[name] = block
        self.blocks = _Blocks(fitted)
        self.predictors = {}
        for index, (name, kind) in enumerate(zip(members, kinds, strict=True)):
            predictor = PREDICTORS[kind]()
            predictor.load_parameters(_prefixed(parameters, f"member{index}."))
            self.predictors[name] = predictor
        costs = _prefixed(parameters, "costs.")
        self.cost_model = None
        if costs:
            self.cost_model = TaskPredictor()
            self.cost_model.load_parameters(costs)


def _prefixed(parameters: dict[str, np.ndarray], head: str) -> dict[str, np.ndarray]:
    return {k[len(head):]: v for k, v in parameters.items() if k.startswith(head)}
