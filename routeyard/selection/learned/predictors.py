"""Per-model quality predictors over a feature matrix (dense or CSR), served in numpy.

A registry (`PREDICTORS`): each fits (features, scores) -> predicted scores, and saves what it
learned as numpy arrays. scikit-learn is imported only to train; serving is matrix products.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from routeyard.selection.learned.optim import sigmoid

Matrix = Any  # a numpy array or a scipy CSR matrix


class Predictor(ABC):
    kind: ClassVar[str]
    dense_only: ClassVar[bool] = False  # needs a dense feature matrix

    def __init__(self, **hyper: Any) -> None:
        self.hyper = hyper

    needs_tasks: ClassVar[bool] = False  # fit() reads each training row's task label

    @abstractmethod
    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None: ...

    @abstractmethod
    def predict(self, x: Matrix) -> np.ndarray:
        """(n, n_models) predicted quality in [0, 1]."""

    def expected_costs(self, x: Matrix) -> np.ndarray | None:
        """(n, n_models) estimated cost per prompt, for predictors that estimate it."""
        return None

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None: ...


PREDICTORS: dict[str, type[Predictor]] = {}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    PREDICTORS[cls.kind] = cls
    return cls


def _dot(x: Matrix, w: np.ndarray) -> np.ndarray:
    out = x @ w
    return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=float)


class _Linear(Predictor):
    """A weight matrix (features x models) and a bias: quality = link(x·W + b)."""

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.coef = np.zeros((0, 0), dtype=np.float32)
        self.intercept = np.zeros(0)

    def link(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, 0.0, 1.0)

    def predict(self, x: Matrix) -> np.ndarray:
        return self.link(_dot(x, self.coef) + self.intercept)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.astype(np.float16), "intercept": self.intercept}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.coef = np.ascontiguousarray(parameters["coef"], dtype=np.float32)
        self.intercept = np.asarray(parameters["intercept"], dtype=float)


@register_predictor
class RidgePredictor(_Linear):
    """Multi-output ridge regression on the scores (one solve for every model)."""

    kind = "ridge"

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=float(self.hyper.get("alpha", 1.0)), random_state=seed)
        model.fit(x, y)
        self.coef = np.asarray(model.coef_, dtype=np.float32).T.reshape(x.shape[1], -1)
        self.intercept = np.asarray(model.intercept_, dtype=float).reshape(-1)


@register_predictor
class LogisticPredictor(_Linear):
    """One logistic regression per model; a soft score s counts as s successes and 1 - s
    failures (each row is given twice, weighted), so soft scores are fitted exactly."""

    kind = "logistic"

    def link(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z)

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        from sklearn.linear_model import LogisticRegression

        n, m = y.shape
        doubled = sp.vstack([x, x], format="csr") if sp.issparse(x) else np.vstack([x, x])
        labels = np.concatenate([np.ones(n), np.zeros(n)])
        self.coef = np.zeros((x.shape[1], m), dtype=np.float32)
        self.intercept = np.zeros(m)
        for j in range(m):
            weight = np.concatenate([y[:, j], 1.0 - y[:, j]])
            if weight[:n].sum() == 0 or weight[n:].sum() == 0:  # one class only: a constant
                self.intercept[j] = 10.0 if weight[:n].sum() else -10.0
                continue
            model = LogisticRegression(C=float(self.hyper.get("C", 1.0)), max_iter=1000)
            model.fit(doubled, labels, sample_weight=weight)
            self.coef[:, j], self.intercept[j] = model.coef_[0], model.intercept_[0]


@register_predictor
class KnnPredictor(Predictor):
    """Mean score of the k most similar training rows (dot product of unit-scaled rows)."""

    kind = "knn"

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.keys: Matrix = np.zeros((0, 0), dtype=np.float32)
        self.scores = np.zeros((0, 0), dtype=np.float32)

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        # Stored transposed (features x rows) in CSR: a query row times it adds up the rows
        # (posting lists) of the query's features only, 6x faster than CSC here.
        self.keys = sp.csr_matrix(x.T, dtype=np.float32) if sp.issparse(x) \
            else np.ascontiguousarray(np.asarray(x, dtype=np.float32).T)
        self.scores = np.asarray(y, dtype=np.float32)

    def predict(self, x: Matrix) -> np.ndarray:
        similarity = _dot(x, self.keys)
        n = similarity.shape[1]
        k = max(1, min(int(self.hyper.get("k", 40)), n))
        nearest = (np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < n
                   else np.broadcast_to(np.arange(n), similarity.shape))
        return self.scores[nearest].mean(axis=1).astype(float)

    def parameters(self) -> dict[str, np.ndarray]:
        out = {"scores": self.scores.astype(np.float16), "k": np.array(self.hyper.get("k", 40))}
        if sp.issparse(self.keys):
            keys = sp.csr_matrix(self.keys)
            return out | {"data": keys.data.astype(np.float16), "indices": keys.indices,
                          "indptr": keys.indptr, "shape": np.array(keys.shape)}
        return out | {"dense": self.keys.astype(np.float16)}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.hyper["k"] = int(parameters["k"])
        self.scores = np.asarray(parameters["scores"], dtype=np.float32)
        if "dense" in parameters:
            self.keys = np.ascontiguousarray(parameters["dense"], dtype=np.float32)
        else:
            self.keys = sp.csr_matrix(
                (np.asarray(parameters["data"], dtype=np.float32), parameters["indices"],
                 parameters["indptr"]), shape=tuple(int(s) for s in parameters["shape"]))


@register_predictor
class MlpPredictor(Predictor):
    """scikit-learn's MLPRegressor (one hidden ReLU layer, early stopping), served in numpy."""

    kind = "mlp"
    dense_only = True

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.weights: dict[str, np.ndarray] = {}

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        from sklearn.neural_network import MLPRegressor

        model = MLPRegressor(hidden_layer_sizes=(int(self.hyper.get("hidden", 128)),),
                             alpha=float(self.hyper.get("alpha", 1e-2)), early_stopping=True,
                             max_iter=300, random_state=seed)
        model.fit(np.asarray(x), y)
        self.weights = {}
        for layer, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
            self.weights[f"W{layer}"] = np.asarray(w, dtype=np.float32)
            self.weights[f"b{layer}"] = np.asarray(b, dtype=np.float32)

    def predict(self, x: Matrix) -> np.ndarray:
        h = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)
        layers = sum(1 for k in self.weights if k.startswith("W"))
        for layer in range(layers):
            h = h @ self.weights[f"W{layer}"] + self.weights[f"b{layer}"]
            if layer < layers - 1:
                h = np.maximum(h, 0.0)
        return np.clip(h, 0.0, 1.0).astype(float)

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.weights)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in parameters.items()}


@register_predictor
class TaskPredictor(Predictor):
    """The dataset's own task labels as a learned domain signal: a linear classifier (SGD on
    the log loss) gives P(task | prompt), and a model's quality is its mean train score on each
    task weighted by those probabilities. It also prices a prompt: each model's mean cost on
    each task, weighted the same way (code answers are longer, so dearer, than a letter)."""

    kind = "task"
    needs_tasks = True

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.coef = np.zeros((0, 0), dtype=np.float32)  # features x tasks
        self.intercept = np.zeros(0)
        self.task_scores = np.zeros((0, 0))  # tasks x models
        self.task_costs = np.zeros((0, 0))
        self.tasks: list[str] = []

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        from sklearn.linear_model import SGDClassifier

        labels = sorted(set(tasks or []))
        if len(labels) < 2:
            raise ValueError("the task predictor needs at least two task labels in train")
        index = {t: i for i, t in enumerate(labels)}
        target = np.array([index[t] for t in tasks or []])
        model = SGDClassifier(loss="log_loss", alpha=float(self.hyper.get("alpha", 1e-5)),
                              max_iter=50, tol=1e-3, random_state=seed)
        model.fit(x, target)
        coef = np.asarray(model.coef_, dtype=np.float32)
        intercept = np.asarray(model.intercept_, dtype=float)
        if len(labels) == 2:  # sklearn keeps one row for two classes: make both explicit
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        self.coef, self.intercept, self.tasks = coef.T.copy(), intercept, labels
        self.task_scores = np.stack([y[target == i].mean(axis=0) for i in range(len(labels))])
        if costs is not None:
            self.task_costs = np.stack([costs[target == i].mean(axis=0)
                                        for i in range(len(labels))])

    def probabilities(self, x: Matrix) -> np.ndarray:
        """P(task | prompt), as scikit-learn's one-vs-rest log-loss classifier gives it."""
        p = sigmoid(_dot(x, self.coef) + self.intercept)
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)

    def predict(self, x: Matrix) -> np.ndarray:
        return self.probabilities(x) @ self.task_scores

    def expected_costs(self, x: Matrix) -> np.ndarray | None:
        return self.probabilities(x) @ self.task_costs if self.task_costs.size else None

    def parameters(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.astype(np.float16), "intercept": self.intercept,
                "task_scores": self.task_scores, "task_costs": self.task_costs,
                "tasks": np.array(self.tasks)}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.coef = np.ascontiguousarray(parameters["coef"], dtype=np.float32)
        self.intercept = np.asarray(parameters["intercept"], dtype=float)
        self.task_scores = np.asarray(parameters["task_scores"], dtype=float)
        self.task_costs = np.asarray(parameters["task_costs"], dtype=float)
        self.tasks = [str(t) for t in parameters["tasks"]]


class _Latent(Predictor):
    """The latent routers (IRT, MF) of irt.py and mf.py over any dense feature matrix."""

    dense_only = True
    module: ClassVar[str]

    def __init__(self, **hyper: Any) -> None:
        super().__init__(**hyper)
        self.params: dict[str, np.ndarray] = {}

    def _functions(self) -> Any:
        import importlib

        return importlib.import_module(f"routeyard.selection.learned.{self.module}")

    def fit(self, x: Matrix, y: np.ndarray, seed: int = 0,
            tasks: Sequence[str] | None = None, costs: np.ndarray | None = None) -> None:
        self.params = self._functions()._train(
            np.asarray(x, dtype=float), y, int(self.hyper.get("dim", 8)),
            float(self.hyper.get("weight_decay", 1e-2)), seed)

    def predict(self, x: Matrix) -> np.ndarray:
        return np.asarray(self._functions()._predict(self.params, np.asarray(x, dtype=float)))

    def parameters(self) -> dict[str, np.ndarray]:
        return dict(self.params)

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.params = {k: np.asarray(v, dtype=float) for k, v in parameters.items()}


@register_predictor
class IrtPredictor(_Latent):
    kind = "irt"
    module = "irt"


@register_predictor
class MfPredictor(_Latent):
    kind = "mf"
    module = "mf"
