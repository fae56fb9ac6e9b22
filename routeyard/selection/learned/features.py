"""Prompt features beyond the static embedding, for the learned routers.

Blocks (a registry, `FEATURE_BLOCKS`); a router names the ones it reads:
- `embedding`: the bundled static embedding (unit rows), as every router sees prompts;
- `words`: hashed word 1-2-grams, sublinear tf-idf (idf fitted on train), unit rows;
- `chars`: hashed character 2-4-grams inside word boundaries, the same weighting;
- `signals`: cheap text signals, standardised on train: length (characters, words, lines),
  code-ness (code symbols, indentation, fences, keywords), digits, maths markup, multiple-
  choice options, question marks, non-ASCII share (a script/language proxy).

Hashing needs no vocabulary, so a block's learned state is small (the idf vector, the signals'
mean and spread) and is saved as numpy arrays; nothing is pickled. scikit-learn's
HashingVectorizer (a core dependency) is imported on first use.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

Matrix = Any  # a numpy array or a scipy CSR matrix


class FeatureBlock(ABC):
    """Features in two steps: `raw` (stateless, the costly part: hashing, counting) and
    `weigh` (what was learned on train: idf, standardisation). Raw rows can be subset, so
    cross-validation computes them once for every fold."""

    name: ClassVar[str]
    sparse: ClassVar[bool] = False

    @abstractmethod
    def raw(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix: ...

    def fit_raw(self, raw: Matrix) -> None:
        return None

    def weigh(self, raw: Matrix) -> Matrix:
        return raw

    def fit(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        self.fit_raw(self.raw(texts, embeddings))

    def transform(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix:
        return self.weigh(self.raw(texts, embeddings))

    def parameters(self) -> dict[str, np.ndarray]:
        return {}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        return None


FEATURE_BLOCKS: dict[str, type[FeatureBlock]] = {}


def register_block(cls: type[FeatureBlock]) -> type[FeatureBlock]:
    FEATURE_BLOCKS[cls.name] = cls
    return cls


@register_block
class EmbeddingBlock(FeatureBlock):
    name = "embedding"

    def raw(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix:
        return np.asarray(embeddings, dtype=np.float32)


class _HashedBlock(FeatureBlock):
    """Hashed n-gram counts -> log(1 + tf) · idf -> unit rows."""

    sparse = True
    analyzer: ClassVar[str]
    ngram_range: ClassVar[tuple[int, int]]
    buckets: ClassVar[int] = 2 ** 17

    def __init__(self) -> None:
        self.idf = np.ones(self.buckets, dtype=np.float32)
        self._vectorizer: Any = None

    def raw(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix:
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                analyzer=self.analyzer, ngram_range=self.ngram_range, n_features=self.buckets,
                alternate_sign=False, norm=None, lowercase=True, dtype=np.float32)
        return sp.csr_matrix(self._vectorizer.transform(list(texts)))

    def fit_raw(self, raw: Matrix) -> None:
        counts = sp.csr_matrix(raw)
        document_frequency = np.bincount(counts.indices, minlength=self.buckets)
        n = counts.shape[0]
        self.idf = (np.log((1 + n) / (1 + document_frequency)) + 1).astype(np.float32)

    def weigh(self, raw: Matrix) -> Matrix:
        counts = sp.csr_matrix(raw, dtype=np.float32, copy=True)
        counts.data = np.log1p(counts.data) * self.idf[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ counts,
                             dtype=np.float32)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"idf": self.idf.astype(np.float16)}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.idf = np.asarray(parameters["idf"], dtype=np.float32)


@register_block
class WordBlock(_HashedBlock):
    name = "words"
    analyzer = "word"
    ngram_range = (1, 2)


@register_block
class CharBlock(_HashedBlock):
    name = "chars"
    analyzer = "char_wb"
    ngram_range = (2, 4)


_CODE_SYMBOLS = frozenset("{}[]();=<>_#*/\\|&%")
_CODE_WORDS = re.compile(r"\b(?:def|return|import|class|function|const|var|int|void|print|"
                         r"for|while|elif|lambda|self|null|None|True|False)\b")
_OPTION = re.compile(r"(?:^|\s)\(?[A-Ea-e][\).:]\s")
_MATH = re.compile(r"[$^]|\\frac|\\sqrt|\\cdot|\d\s*[-+*/=]\s*\d")
_DIGIT = re.compile(r"\d")


def text_signals(text: str) -> list[float]:
    """Cheap per-prompt signals (raw values; the block standardises them)."""
    n = max(len(text), 1)
    lines = text.split("\n")
    words = text.split()
    return [
        np.log1p(len(text)), np.log1p(len(words)), np.log1p(len(lines)),
        sum(text.count(c) for c in _CODE_SYMBOLS) / n,
        sum(1 for line in lines if line.startswith(("    ", "\t"))) / len(lines),
        float("```" in text),
        np.log1p(len(_CODE_WORDS.findall(text))),
        len(_DIGIT.findall(text)) / n,
        np.log1p(len(_MATH.findall(text))),
        np.log1p(len(_OPTION.findall(text))),
        np.log1p(text.count("?")),
        sum(c.isupper() for c in text) / n,
        (len(text) - len(text.encode("ascii", "ignore"))) / n,
        np.log1p(np.mean([len(w) for w in words]) if words else 0.0),
    ]


@register_block
class SignalBlock(FeatureBlock):
    name = "signals"

    def __init__(self) -> None:
        self.mean = np.zeros(0, dtype=np.float32)
        self.scale = np.ones(0, dtype=np.float32)

    def raw(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix:
        return np.array([text_signals(t) for t in texts], dtype=np.float32).reshape(
            len(texts), -1)

    def fit_raw(self, raw: Matrix) -> None:
        self.mean = raw.mean(axis=0)
        self.scale = np.maximum(raw.std(axis=0), 1e-6)

    def weigh(self, raw: Matrix) -> Matrix:
        # Clipped: a prompt far outside train's range must not dominate a linear score.
        return np.clip((raw - self.mean) / self.scale, -5, 5).astype(np.float32)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "scale": self.scale}

    def load_parameters(self, parameters: dict[str, np.ndarray]) -> None:
        self.mean = np.asarray(parameters["mean"], dtype=np.float32)
        self.scale = np.asarray(parameters["scale"], dtype=np.float32)


class Featurizer:
    """Named blocks, each scaled by a weight, side by side (CSR when any block is sparse)."""

    def __init__(self, blocks: Sequence[str], weights: Sequence[float] | None = None) -> None:
        unknown = [b for b in blocks if b not in FEATURE_BLOCKS]
        if unknown:
            raise ValueError(f"unknown feature block(s) {unknown}; known: "
                             f"{sorted(FEATURE_BLOCKS)}")
        self.names = list(blocks)
        self.weights = [1.0] * len(self.names) if weights is None else [float(w) for w in weights]
        self.blocks = [FEATURE_BLOCKS[name]() for name in self.names]

    @property
    def sparse(self) -> bool:
        return any(block.sparse for block in self.blocks)

    def fit(self, texts: Sequence[str], embeddings: np.ndarray) -> Featurizer:
        for block in self.blocks:
            block.fit(texts, embeddings)
        return self

    def transform(self, texts: Sequence[str], embeddings: np.ndarray) -> Matrix:
        parts = [block.transform(texts, embeddings) * weight
                 for block, weight in zip(self.blocks, self.weights, strict=True)]
        if not self.sparse:
            return np.hstack(parts).astype(np.float32)
        return sp.hstack([sp.csr_matrix(p) for p in parts], format="csr", dtype=np.float32)

    def parameters(self, prefix: str = "f") -> dict[str, np.ndarray]:
        out = {f"{prefix}_blocks": np.array(self.names),
               f"{prefix}_weights": np.array(self.weights, dtype=float)}
        for index, block in enumerate(self.blocks):
            out |= {f"{prefix}{index}_{k}": v for k, v in block.parameters().items()}
        return out

    @classmethod
    def from_parameters(cls, parameters: dict[str, np.ndarray], prefix: str = "f") -> Featurizer:
        featurizer = cls([str(b) for b in parameters[f"{prefix}_blocks"]],
                         [float(w) for w in parameters[f"{prefix}_weights"]])
        for index, block in enumerate(featurizer.blocks):
            head = f"{prefix}{index}_"
            block.load_parameters({k[len(head):]: v for k, v in parameters.items()
                                   if k.startswith(head)})
        return featurizer
