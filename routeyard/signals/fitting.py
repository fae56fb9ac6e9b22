"""Fit the `domain` and `complexity` classifiers offline: `routeyard fit-signal`.

Training data is either labelled prompts (JSONL lines of {"text", "label"}) or a routing dataset
(JSONL lines of {"task", "prompt", "scores"}, see the dataset README, shared/data/README.md beside
the repository). From a routing dataset, domain labels come from the task (TASK_DOMAINS) and
complexity labels from how many models fail the prompt. The result is a .npz artifact that a
family loads with `artifact:`.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from routeyard.jsonl import jsonl_objects, read_labelled
from routeyard.signals.embedder import Embedder
from routeyard.signals.semantic_signals import COMPLEXITY_LABELS, LinearClassifier

DOMAINS = ("math", "code", "knowledge", "reasoning")

# Task of a routing dataset → domain: what the prompt asks for, as read off the prompt.
# - math: computing a number (competition maths, grade-school and multilingual word problems).
# - code: writing a function from a description or a signature with a docstring.
# - knowledge: recalling facts, from trivia to graduate science, including multiple-choice exam
#   questions (ARC and OpenBookQA are science exams; CommonsenseQA, by its own paper, targets
#   commonsense *knowledge* and reads like them).
# - reasoning: working a puzzle or constraint out rather than recalling it (logic grids,
#   CommonGen's "generative commonsense reasoning", WinoGrande's pronoun resolution).
TASK_DOMAINS: dict[str, str] = {
    # llmrouter's 14 tasks
    "math": "math",
    "gsm8k": "math",
    "agentverse-mgsm": "math",
    "mbpp": "code",
    "human_eval": "code",
    "mmlu": "knowledge",
    "gpqa": "knowledge",
    "trivia_qa": "knowledge",
    "natural_qa": "knowledge",
    "arc_challenge": "knowledge",
    "openbook_qa": "knowledge",
    "commonsense_qa": "knowledge",
    "agentverse-logicgrid": "reasoning",
    "commongen": "reasoning",
    # routerbench's names (mbpp is shared)
    "arc-challenge": "knowledge",
    "winogrande": "reasoning",
}

FAIL_BELOW = 0.5  # a score under this is a failed answer
C_GRID = (1.0, 4.0, 16.0, 64.0)
DEFAULT_C = 4.0  # LinearClassifier.fit's default, kept when there is too little data to tune
CV_FOLDS = 5
HASHED_FEATURES = 1024
_WORD = re.compile(r"\w\w+")

Source = Literal["labelled", "routing"]


# ---- reading ----------------------------------------------------------------------------



def read_routing(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a routing dataset: a .jsonl file, or a folder's train.jsonl (never its test)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "train.jsonl").is_file():
            raise ValueError(f"{path}: no train.jsonl in this folder; give the .jsonl file")
        path = path / "train.jsonl"
    rows = []
    for number, row in jsonl_objects(path):
        scores = row.get("scores")
        if not isinstance(row.get("prompt"), str) or not isinstance(scores, dict):
            raise ValueError(f"{path}:{number}: needs string 'prompt' and object 'scores'")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


# ---- labels from routing data -----------------------------------------------------------

def domain_labels_from_routing(rows: Sequence[dict[str, Any]]) -> list[str]:
    labels = []
    for row in rows:
        task = row.get("task")
        if task not in TASK_DOMAINS:
            raise ValueError(f"task {task!r} has no domain in TASK_DOMAINS; "
                             "label the prompts yourself and fit from a labelled JSONL")
        labels.append(TASK_DOMAINS[task])
    return labels


def failure_counts(rows: Sequence[dict[str, Any]],
                   models: int | None = None) -> tuple[list[int], list[int]]:
    """(failures, indices of the rows kept), failures scaled to `models` (default: the most
    models any row has). A few rows were scored by fewer models; their counts are rescaled, and
    rows scored by under half the models are dropped, since one model's result says little."""
    models = models or max(len(row["scores"]) for row in rows)
    counts, kept = [], []
    for index, row in enumerate(rows):
        scores = [float(s) for s in row["scores"].values() if isinstance(s, int | float)]
        if not scores or 2 * len(scores) < models:
            continue
        failed = sum(1 for s in scores if s < FAIL_BELOW)
        counts.append(round(failed * models / len(scores)))
        kept.append(index)
    return counts, kept


def tercile_cuts(counts: Sequence[int]) -> tuple[int, int]:
    """(easy_max, medium_max): easy is count <= easy_max, medium up to medium_max, hard above.

    Counts are small integers with many ties, so each cut is the value whose cumulative share
    of rows lies nearest to 1/3 (and 2/3); plain quantiles could leave a third of the rows tied
    on one side.
    """
    values, frequencies = np.unique(np.asarray(counts), return_counts=True)
    if len(values) < 3:
        raise ValueError("complexity needs at least three distinct failure counts")
    share = np.cumsum(frequencies) / frequencies.sum()
    low = int(np.argmin(np.abs(share[:-2] - 1 / 3)))  # leave room for two classes above
    high = low + 1 + int(np.argmin(np.abs(share[low + 1:-1] - 2 / 3)))
    return int(values[low]), int(values[high])


def complexity_from_routing(rows: Sequence[dict[str, Any]], cuts: tuple[int, int] | None = None,
                            models: int | None = None,
                            ) -> tuple[list[str], list[int], list[str]]:
    """(texts, failure counts, easy/medium/hard labels); cuts default to these rows' terciles
    (pass the training cuts when labelling a test split)."""
    counts, kept = failure_counts(rows, models)
    easy_max, medium_max = cuts or tercile_cuts(counts)
    labels = [COMPLEXITY_LABELS[0] if n <= easy_max else
              COMPLEXITY_LABELS[1] if n <= medium_max else COMPLEXITY_LABELS[2] for n in counts]
    return [rows[i]["prompt"] for i in kept], counts, labels


# ---- fitting ----------------------------------------------------------------------------

def tune_c(vectors: np.ndarray, labels: Sequence[str], grid: Sequence[float] = C_GRID) -> float:
    """The C with the best stratified cross-validated accuracy on these (training) examples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = min(CV_FOLDS, min(Counter(labels).values()))
    if folds < 2:
        return DEFAULT_C
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = [cross_val_score(LogisticRegression(C=c, max_iter=3000), vectors, list(labels),
                              cv=splitter).mean() for c in grid]
    return float(grid[int(np.argmax(scores))])


def fit_vectors(vectors: np.ndarray, labels: Sequence[str], *, tune: bool = True,
                ) -> tuple[LinearClassifier, float]:
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # One BLAS thread: these problems are small, and OpenBLAS threads spinning against other
    # processes on a busy 2-core machine made the fits 20-50x slower (3 s instead of 0.06 s).
    with threadpool_limits(limits=1, user_api="blas"):
        c = tune_c(vectors, labels) if tune else DEFAULT_C
        return LinearClassifier.fit(vectors, list(labels), c=c), c


def fit_from_labelled(texts: Sequence[str], labels: Sequence[str], embedder: Embedder, *,
                      tune: bool = True) -> LinearClassifier:
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError("a classifier needs examples of at least two labels")
    return fit_vectors(embedder.embed(list(texts)), labels, tune=tune)[0]


def predict(classifier: LinearClassifier, vectors: np.ndarray) -> np.ndarray:
    """Row-wise probabilities, the same softmax as LinearClassifier.probabilities."""
    logits = vectors @ classifier.weights.T + classifier.bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def hashed_counts(texts: Sequence[str], n_features: int = HASHED_FEATURES) -> np.ndarray:
    """Lower-cased word counts hashed into n_features buckets (crc32: stable across runs and
    processes, unlike hash()). An extra feature block for the domain classifier: it sees words
    like `def`, `return` and `str` that the static embedding averages away."""
    out = np.zeros((len(texts), n_features), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            out[row, zlib.crc32(word.encode()) % n_features] += 1.0
    return out


def tfidf(counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """Sublinear tf times idf, unit rows (what would run per request)."""
    weighted = np.log1p(counts) * idf
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    return weighted / np.maximum(norms, 1e-12)


def fit_idf(counts: np.ndarray) -> np.ndarray:
    documents = (counts > 0).sum(axis=0)
    return (np.log((1 + len(counts)) / (1 + documents)) + 1).astype(np.float32)


def training_data(family: str, data_path: str | Path, source: Source,
                  ) -> tuple[list[str], list[str], dict[str, Any]]:
    """(texts, labels, extra summary fields) for a family from a file or dataset."""
    if family not in ("domain", "complexity"):
        raise ValueError(f"unknown family {family!r}: use domain or complexity")
    if source == "labelled":
        texts, labels = read_labelled(data_path)
        if family == "complexity" and not set(labels) <= set(COMPLEXITY_LABELS):
            unknown = sorted(set(labels) - set(COMPLEXITY_LABELS))
            raise ValueError(f"complexity labels must be easy, medium or hard; got {unknown}")
        return texts, labels, {}
    if source != "routing":
        raise ValueError(f"unknown source {source!r}: use labelled or routing")
    rows = read_routing(data_path)
    if family == "domain":
        return [row["prompt"] for row in rows], domain_labels_from_routing(rows), {}
    texts, counts, labels = complexity_from_routing(rows)
    easy_max, medium_max = tercile_cuts(counts)
    return texts, labels, {"failure_cuts": {"easy": f"0-{easy_max}",
                                            "medium": f"{easy_max + 1}-{medium_max}",
                                            "hard": f"{medium_max + 1}+"},
                           "rows_dropped": len(rows) - len(texts)}


def fit_signal(family: str, data_path: str | Path, out_path: str | Path, *,
               source: Source = "labelled", embedder: Embedder | None = None) -> dict[str, Any]:
    """Fit a family's classifier, write its artifact, and summarise what was learned."""
    texts, labels, extra = training_data(family, data_path, source)
    if len(set(labels)) < 2:
        raise ValueError("a classifier needs examples of at least two labels")
    if embedder is None:
        from routeyard.signals.embedder import load_embedder

        embedder = load_embedder("builtin")
    vectors = embedder.embed(texts)
    classifier, c = fit_vectors(vectors, labels)
    predicted = predict(classifier, vectors).argmax(axis=1)
    accuracy = float(np.mean([classifier.labels[p] == y for p, y in zip(predicted, labels,
                                                                        strict=True)]))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save(out, model="builtin", family=family, source=source)
    if out.suffix != ".npz":  # np.savez appends .npz to other names
        out = out.with_name(out.name + ".npz")
    return {"family": family, "source": source, "data": str(data_path), "artifact": str(out),
            "examples": len(texts), "labels": dict(sorted(Counter(labels).items())),
            "c": c, "training_accuracy": round(accuracy, 4), **extra}


# ---- command line -----------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, choices=("domain", "complexity"))
    parser.add_argument("--data", required=True, metavar="PATH",
                        help="labelled JSONL of {text, label}; with --routing, a routing "
                             "dataset .jsonl or folder (its train.jsonl)")
    parser.add_argument("--routing", action="store_true",
                        help="derive labels from a routing dataset: domain from the task, "
                             "complexity from how many models fail the prompt")
    parser.add_argument("--out", required=True, metavar="FILE", help="the .npz to write")


def run_command(args: argparse.Namespace) -> int:
    source: Source = "routing" if args.routing else "labelled"
    try:
        summary = fit_signal(args.family, args.data, args.out, source=source)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
