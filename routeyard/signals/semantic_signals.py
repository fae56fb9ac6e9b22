"""Families over prompt embeddings: embedding (similarity to example sets), domain and
complexity (linear classifiers fit from labelled examples)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from routeyard.config.signals import ClassifierFamily, EmbeddingFamily
from routeyard.jsonl import read_labelled
from routeyard.signals.base import (
    Family,
    FamilyBuild,
    FamilyResult,
    Match,
    RequestContext,
    register,
)
from routeyard.signals.embedder import Embedder

COMPLEXITY_LABELS = ("easy", "medium", "hard")


@register
class EmbeddingSignals(Family):
    name = "embedding"
    needs_embedder = True

    def __init__(self, config: EmbeddingFamily, embedder: Embedder | None = None) -> None:
        super().__init__(config, embedder)
        if embedder is None:
            raise RuntimeError("the embedding family needs an embedding model")
        self.sets = {name: (spec, embedder.embed(spec.examples))
                     for name, spec in config.sets.items()}

    def declared_names(self) -> set[str]:
        return set(self.sets)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        query = ctx.embedding()
        result = FamilyResult()
        for name, (spec, examples) in self.sets.items():
            similarities = examples @ query
            best = float(similarities.max())
            score = float(similarities.mean()) if spec.aggregate == "mean" else best
            result.values[name] = round(score, 3)
            if score >= spec.threshold:
                confidence = 1.0 if spec.aggregate == "any" else score
                result.matches[name] = Match(confidence, round(score, 3))
        return result


class LinearClassifier:
    """Softmax over a linear map of embeddings; stored as plain arrays (no pickle)."""

    def __init__(self, labels: list[str], weights: np.ndarray, bias: np.ndarray) -> None:
        self.labels = labels
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: list[str], *, c: float = 4.0) -> LinearClassifier:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        model = LogisticRegression(C=c, max_iter=3000)
        # One BLAS thread: on a busy 2-core host, competing BLAS threads made fits 20x slower.
        with threadpool_limits(1):
            model.fit(vectors, labels)
        classes = [str(label) for label in model.classes_]
        weights, bias = model.coef_, model.intercept_
        if len(classes) == 2:  # sklearn keeps one row for two classes; make it symmetric
            weights = np.vstack([-weights[0] / 2, weights[0] / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        return cls(classes, np.asarray(weights), np.asarray(bias))

    def probabilities(self, vector: np.ndarray) -> np.ndarray:
        logits = self.weights @ vector + self.bias
        logits -= logits.max()
        exp = np.exp(logits)
        return exp / exp.sum()

    def save(self, path: str | Path, **meta: str) -> None:
        np.savez(path, labels=np.array(self.labels), weights=self.weights, bias=self.bias,
                 meta=np.array(orjson.dumps(meta).decode()))

    @classmethod
    def load(cls, path: str | Path) -> LinearClassifier:
        with np.load(path, allow_pickle=False) as data:
            return cls([str(x) for x in data["labels"]], data["weights"], data["bias"])


def build_classifier(config: ClassifierFamily, embedder: Embedder,
                     base_dir: Path | None = None) -> LinearClassifier:
    def resolve(name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() or base_dir is None else base_dir / path

    if config.artifact:
        return LinearClassifier.load(resolve(config.artifact))
    texts: list[str] = []
    labels: list[str] = []
    for label, examples in config.examples.items():
        texts += examples
        labels += [label] * len(examples)
    if config.file:
        more_texts, more_labels = read_labelled(resolve(config.file))
        texts += more_texts
        labels += more_labels
    if len(set(labels)) < 2:
        raise ValueError("a classifier needs examples of at least two labels")
    return LinearClassifier.fit(embedder.embed(texts), labels)


class _ClassifierSignals(Family):
    needs_embedder = True

    @classmethod
    def build(cls, config: ClassifierFamily, build: FamilyBuild) -> Family:
        if build.embedder is None:
            raise RuntimeError(f"the {cls.name} family needs an embedding model")
        return cls(config, build.embedder,
                   build_classifier(config, build.embedder, build.base_dir))

    def __init__(self, config: ClassifierFamily, embedder: Embedder | None = None,
                 classifier: LinearClassifier | None = None) -> None:
        super().__init__(config, embedder)
        if embedder is None:
            raise RuntimeError(f"the {self.name} family needs an embedding model")
        self.classifier = classifier or build_classifier(config, embedder)

    def declared_names(self) -> set[str]:
        return set(self.classifier.labels)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        probabilities = self.classifier.probabilities(ctx.embedding())
        labels = self.classifier.labels
        best = int(probabilities.argmax())
        values: dict[str, Any] = {label: round(float(p), 3)
                                  for label, p in zip(labels, probabilities, strict=True)}
        result = FamilyResult(values=values)
        self.describe(values, probabilities)
        if probabilities[best] >= self.config.min_confidence:
            result.matches[labels[best]] = Match(float(probabilities[best]), labels[best])
        return result

    def describe(self, values: dict[str, Any], probabilities: np.ndarray) -> None:
        """Add family-specific summaries to the values."""


@register
class DomainSignals(_ClassifierSignals):
    name = "domain"


@register
class ComplexitySignals(_ClassifierSignals):
    """Labels easy / medium / hard; `score` is the expected difficulty in [0, 1]."""

    name = "complexity"

    def describe(self, values: dict[str, Any], probabilities: np.ndarray) -> None:
        ranks = [COMPLEXITY_LABELS.index(x) if x in COMPLEXITY_LABELS else 1
                 for x in self.classifier.labels]
        values["score"] = round(float(np.dot(probabilities, ranks)) / 2, 3)
