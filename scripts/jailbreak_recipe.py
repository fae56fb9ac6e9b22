"""Features and fitting of the jailbreak classifier, shared by training and the LOSO evaluation.

A recipe is a dense block (the builtin static embedding, the int8 MiniLM encoder, or none)
next to hashed word 1-2-grams and char 3-5-grams (routeyard.signals.jailbreak's features, so
training and serving hash alike), fed to a 4-class logistic regression.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from routeyard.safety.jailbreak_eval import Fitter, LabelledRow, Scorer
from routeyard.signals.jailbreak import (
    DEFAULT_PATTERNS,
    JailbreakClassifier,
    sparse_features,
)

WORD_BUCKETS = 2**15
CHAR_BUCKETS = 2**16
CACHE = Path("/tmp/routeyard-jailbreak-cache")


@dataclass(frozen=True)
class Recipe:
    name: str
    dense: str | None = "static"  # static / minilm / None
    word_buckets: int = WORD_BUCKETS
    char_buckets: int = CHAR_BUCKETS
    power: float = 0.5
    c: float = 4.0
    dense_weight: float = 1.0  # scales the dense block against the hashed ones
    score: str = "jailbreak"  # LOSO score: P(jailbreak) + P(injection), or "any": 1 - P(benign)


RECIPES = {
    r.name: r for r in (
        Recipe("static+ngrams"),
        Recipe("static+ngrams-c1", c=1.0),
        Recipe("static+ngrams-any", score="any"),
        Recipe("static+ngrams-p1", power=1.0),
        Recipe("static+char", word_buckets=0),
        Recipe("ngrams-only", dense=None),
        Recipe("static-only", word_buckets=0, char_buckets=0),
        Recipe("minilm-only", dense="minilm", word_buckets=0, char_buckets=0),
        Recipe("minilm+ngrams", dense="minilm"),
        Recipe("minilm+ngrams-c1", dense="minilm", c=1.0),
        Recipe("minilm2+ngrams", dense="minilm", dense_weight=2.0),
        Recipe("static+minilm+ngrams", dense="static+minilm"),
    )
}


def text_key(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


def embed(kind: str, texts: list[str]) -> np.ndarray:
    if kind == "static":
        from routeyard.signals.embedder import load_embedder

        return load_embedder("builtin").embed(texts)
    if kind == "minilm":
        from routeyard.signals.encoder_onnx import OnnxEncoder

        return OnnxEncoder.load(threads=1).embed(texts, batch_size=16)
    raise ValueError(f"unknown dense block {kind!r}")


def dense_matrix(kind: str, texts: list[str], cache: Path | None = CACHE) -> np.ndarray:
    """Unit rows from the static embedder or the int8 MiniLM encoder; rows are cached on
    disk by text hash (only new texts are embedded)."""
    if cache is None:
        return embed(kind, texts)
    keys = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    store: dict[str, np.ndarray] = {}
    for path in sorted(cache.glob(f"{kind}-*.npz")):
        with np.load(path) as data:
            store.update(zip(data["keys"].tolist(), data["rows"], strict=True))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in store}.items())
    if missing:
        rows = embed(kind, [t for _, t in missing])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / f"{kind}-{text_key([t for _, t in missing])}.npz",
                 keys=np.array([k for k, _ in missing]), rows=rows)
        store.update(zip([k for k, _ in missing], rows, strict=True))
    return np.stack([store[k] for k in keys]).astype(np.float32)


def hashed_matrix(texts: list[str], word_buckets: int, char_buckets: int, power: float
                  ) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        index, values = sparse_features(text, word_buckets, char_buckets, power)
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(values)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(texts), word_buckets + char_buckets))


def feature_matrix(recipe: Recipe, texts: list[str]) -> sparse.csr_matrix:
    blocks = []
    for kind in (recipe.dense or "").split("+"):
        if kind:
            blocks.append(sparse.csr_matrix(dense_matrix(kind, texts) * recipe.dense_weight))
    if recipe.word_buckets or recipe.char_buckets:
        blocks.append(hashed_matrix(texts, recipe.word_buckets, recipe.char_buckets,
                                    recipe.power))
    return sparse.hstack(blocks).tocsr()


def fit_model(recipe: Recipe, x: sparse.csr_matrix, labels: Sequence[str]) -> Any:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(C=recipe.c, max_iter=3000, class_weight="balanced")
    with threadpool_limits(1):
        model.fit(x, list(labels))
    return model


def attack_scores(model: Any, x: sparse.csr_matrix, score: str = "jailbreak") -> np.ndarray:
    probs = model.predict_proba(x)
    classes = list(model.classes_)
    if score == "any":
        return 1.0 - probs[:, classes.index("benign")]
    return sum((probs[:, classes.index(c)] for c in ("jailbreak", "injection")
                if c in classes), np.zeros(x.shape[0]))


def pattern_hits(texts: list[str]) -> np.ndarray:
    """Texts the default patterns flag (they force a score of 1.0, as in serving)."""
    patterns = [re.compile(p, re.IGNORECASE) for p in DEFAULT_PATTERNS]
    return np.array([any(p.search(t) for p in patterns) for t in texts])


def loso_fitter(recipe: Recipe, rows: Sequence[LabelledRow], x: sparse.csr_matrix,
                hits: np.ndarray) -> Fitter:
    """A Fitter for leave_one_source_out: patterns force a score of 1.0, as in serving."""
    labels = [r.label for r in rows]

    def fit(train: Sequence[int]) -> Scorer:
        model = fit_model(recipe, x[list(train)], [labels[i] for i in train])

        def score(index: Sequence[int]) -> np.ndarray:
            index = list(index)
            return np.where(hits[index], 1.0, attack_scores(model, x[index], recipe.score))

        return score

    return fit


def to_classifier(recipe: Recipe, model: Any, dims: int, meta: dict[str, Any]
                  ) -> JailbreakClassifier:
    """The fitted model as shipped arrays (float16 hashed weights, as stored)."""
    coef = model.coef_.astype(np.float32)
    dense = coef[:, :dims] * recipe.dense_weight
    hashed = coef[:, dims:].astype(np.float16).astype(np.float32)
    return JailbreakClassifier([str(c) for c in model.classes_], dense, hashed,
                               model.intercept_,
                               {"buckets": recipe.word_buckets,
                                "char_buckets": recipe.char_buckets,
                                "norm_power": recipe.power, **meta})
