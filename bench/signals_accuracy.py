"""Accuracy of the domain and complexity signals: fit on the train splits, score on test.

    python bench/signals_accuracy.py            # markdown, ~1 min, offline
    python bench/signals_accuracy.py --json     # [--shared DIR | --data DIR]

Domain: llmrouter, labels from routeyard.signals.fitting.TASK_DOMAINS. Complexity: routerbench,
difficulty = how many of its 11 models fail the prompt. Every choice (C, ridge alpha, tercile
cuts, IDF) is made on train only; test is read once, for the figures.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from paths import add_shared_option, shared_dir

from routeyard.signals import fitting
from routeyard.signals.embedder import Embedder, load_embedder
from routeyard.signals.semantic_signals import COMPLEXITY_LABELS

DOMAIN_GOAL = 0.85
LATENCY_GOAL_MS = 3.0


def load(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.open("rb") if line.strip()]


def snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


# ---- domain -------------------------------------------------------------------------------

def domain_report(data: Path, embedder: Embedder, n_errors: int) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    train, test = load(data / "llmrouter" / "train.jsonl"), load(data / "llmrouter" / "test.jsonl")
    y_train = fitting.domain_labels_from_routing(train)
    y_test = fitting.domain_labels_from_routing(test)
    x_train = embedder.embed([r["prompt"] for r in train])
    x_test = embedder.embed([r["prompt"] for r in test])

    # The extra block: hashed word TF-IDF, IDF from train; both blocks are unit rows.
    counts_train = fitting.hashed_counts([r["prompt"] for r in train])
    idf = fitting.fit_idf(counts_train)
    h_train = np.hstack([x_train, fitting.tfidf(counts_train, idf)])
    h_test = np.hstack([x_test, fitting.tfidf(fitting.hashed_counts(
        [r["prompt"] for r in test]), idf)])

    variants = {}
    for name, (a, b, tune) in {
        "embedding, C=4": (x_train, x_test, False),
        "embedding, C by 5-fold CV on train": (x_train, x_test, True),
        f"embedding + hashed words ({fitting.HASHED_FEATURES}), C by CV": (h_train, h_test, True),
    }.items():
        classifier, c = fitting.fit_vectors(a, y_train, tune=tune)
        probabilities = fitting.predict(classifier, b)
        predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
        labels = classifier.labels
        precision, recall, _, support = precision_recall_fscore_support(
            y_test, predicted, labels=labels, zero_division=0)
        per_task: dict[str, list[bool]] = {}
        for row, p, y in zip(test, predicted, y_test, strict=True):
            per_task.setdefault(row["task"], []).append(p == y)
        variants[name] = {
            "c": c,
            "accuracy": round(float(np.mean([p == y for p, y in zip(predicted, y_test,
                                                                      strict=True)])), 4),
            "per_class": {label: {"precision": round(float(pr), 3), "recall": round(float(rc), 3),
                                  "support": int(n)}
                          for label, pr, rc, n in zip(labels, precision, recall, support,
                                                      strict=True)},
            "per_task_accuracy": {t: round(float(np.mean(v)), 3)
                                  for t, v in sorted(per_task.items())},
            "labels": labels,
            "confusion": confusion_matrix(y_test, predicted, labels=labels).tolist(),
            "errors": pick_errors(test, y_test, predicted, probabilities.max(axis=1), n_errors),
        }
    return {"train": len(train), "test": len(test),
            "train_labels": dict(Counter(y_train)), "test_labels": dict(Counter(y_test)),
            "variants": variants}


def pick_errors(rows: list[dict[str, Any]], truth: list[str], predicted: list[str],
                confidence: np.ndarray, n: int) -> list[dict[str, Any]]:
    """Up to n errors, spread across (task, predicted) pairs, most confident first."""
    wrong = sorted((i for i, (p, y) in enumerate(zip(predicted, truth, strict=True)) if p != y),
                   key=lambda i: -confidence[i])
    chosen: list[int] = []
    seen: Counter[tuple[str, str]] = Counter()
    for round_ in range(n):
        for i in wrong:
            key = (rows[i]["task"], predicted[i])
            if i not in chosen and seen[key] == round_ and len(chosen) < n:
                chosen.append(i)
                seen[key] += 1
    return [{"task": rows[i]["task"], "truth": truth[i], "predicted": predicted[i],
             "confidence": round(float(confidence[i]), 2), "prompt": snippet(rows[i]["prompt"])}
            for i in chosen]


# ---- complexity ---------------------------------------------------------------------------

def complexity_report(data: Path, embedder: Embedder) -> dict[str, Any]:
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV

    train, test = (load(data / "routerbench" / "train.jsonl"),
                   load(data / "routerbench" / "test.jsonl"))
    models = max(len(r["scores"]) for r in train)
    train_counts, train_kept = fitting.failure_counts(train, models)
    cuts = fitting.tercile_cuts(train_counts)
    texts, counts, labels = fitting.complexity_from_routing(train, cuts, models)
    test_texts, test_counts, test_labels = fitting.complexity_from_routing(test, cuts, models)
    _, kept = fitting.failure_counts(test, models)
    test_tasks = [test[i]["task"] for i in kept]
    x_train, x_test = embedder.embed(texts), embedder.embed(test_texts)

    classifier, c = fitting.fit_vectors(x_train, labels)
    probabilities = fitting.predict(classifier, x_test)
    ranks = np.array([COMPLEXITY_LABELS.index(label) for label in classifier.labels]) / 2
    score = probabilities @ ranks  # what ComplexitySignals reports as `score`
    predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]

    ridge = RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0)).fit(x_train, counts)
    regressed = ridge.predict(x_test)

    # Reference: predicting each prompt's task mean (how much is just "which benchmark").
    train_tasks = [train[i]["task"] for i in train_kept]
    task_mean = {t: float(np.mean([n for n, task in zip(train_counts, train_tasks, strict=True)
                                   if task == t])) for t in set(test_tasks)}

    def rho(values: np.ndarray | list[float]) -> float:
        return round(float(spearmanr(values, test_counts).statistic), 3)

    def within_task(values: np.ndarray) -> dict[str, float]:
        out = {}
        for task in sorted(set(test_tasks)):
            idx = [i for i, t in enumerate(test_tasks) if t == task]
            out[task] = round(float(spearmanr(values[idx],
                                              np.asarray(test_counts)[idx]).statistic), 3)
        return out

    return {
        "train": len(texts), "test": len(test_texts), "models": models,
        "rows_dropped": {"train": len(train) - len(texts), "test": len(test) - len(test_texts)},
        "cuts": {"easy": f"0-{cuts[0]}", "medium": f"{cuts[0] + 1}-{cuts[1]}",
                 "hard": f"{cuts[1] + 1}-{models}"},
        "train_labels": {k: Counter(labels)[k] for k in COMPLEXITY_LABELS},
        "test_labels": {k: Counter(test_labels)[k] for k in COMPLEXITY_LABELS},
        "classifier": {"c": c, "spearman": rho(score),
                       "accuracy": round(float(np.mean([p == y for p, y in zip(
                           predicted, test_labels, strict=True)])), 4),
                       "within_task_spearman": within_task(score)},
        "ridge": {"alpha": float(ridge.alpha_), "spearman": rho(regressed),
                  "within_task_spearman": within_task(regressed)},
        "task_mean_spearman": rho([task_mean[t] for t in test_tasks]),
    }


# ---- run-time cost ------------------------------------------------------------------------

def latency_report(data: Path, embedder: Embedder, runs: int = 300) -> dict[str, Any]:
    """p50 per request on a 500-token prompt: embed + domain probabilities, with and
    without the hashed-word block."""
    from routeyard.tokens import count_text_tokens

    rows = load(data / "llmrouter" / "test.jsonl")
    words = " ".join(r["prompt"] for r in rows).split()
    low, high = 1, len(words)
    while low < high:  # fewest words reaching 500 tokens
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count_text_tokens(" ".join(words[:middle])) < 500 \
            else (low, middle)
    prompt = " ".join(words[:low])
    texts = [r["prompt"] for r in rows]  # any fit will do: only the timing is measured
    labels = fitting.domain_labels_from_routing(rows)
    plain, _ = fitting.fit_vectors(embedder.embed(texts), labels, tune=False)
    counts = fitting.hashed_counts(texts)
    idf = fitting.fit_idf(counts)
    wide, _ = fitting.fit_vectors(np.hstack([embedder.embed(texts), fitting.tfidf(counts, idf)]),
                                  labels, tune=False)

    def p50(step: Any) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000)
        return round(statistics.median(times), 3)

    def with_block() -> None:
        block = fitting.tfidf(fitting.hashed_counts([prompt]), idf)[0]
        wide.probabilities(np.concatenate([embedder.embed_one(prompt), block]))

    return {"prompt_tokens": count_text_tokens(prompt),
            "embedding_plus_domain_ms": p50(lambda: plain.probabilities(
                embedder.embed_one(prompt))),
            "with_hashed_words_ms": p50(with_block)}


# ---- output -------------------------------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    domain, complexity, latency = result["domain"], result["complexity"], result["latency"]
    out = [f"`{result['command']}` · {result['date']} · {result['machine']}", "",
           f"## Domain (llmrouter: {domain['train']} train / {domain['test']} test; "
           f"goal ≥ {DOMAIN_GOAL})", "", "| variant | C | accuracy | " +
           " | ".join(f"{k} P/R" for k in fitting.DOMAINS) + " |",
           "|---|---|---|" + "---|" * len(fitting.DOMAINS)]
    for name, v in domain["variants"].items():
        cells = [f"{v['per_class'][k]['precision']:.2f} / {v['per_class'][k]['recall']:.2f}"
                 for k in fitting.DOMAINS]
        out.append(f"| {name} | {v['c']:g} | **{v['accuracy']:.3f}** | " + " | ".join(cells)
                   + " |")
    name, shipped = next((k, v) for k, v in domain["variants"].items() if "CV on train" in k)
    out += ["", f"Confusion ({name}; rows: truth, columns: predicted)", "",
            "| | " + " | ".join(shipped["labels"]) + " |",
            "|---|" + "---|" * len(shipped["labels"])]
    for label, row in zip(shipped["labels"], shipped["confusion"], strict=True):
        out.append(f"| **{label}** | " + " | ".join(str(n) for n in row) + " |")
    out += ["", "Per-task accuracy: " + ", ".join(
        f"{t} {a:.2f}" for t, a in shipped["per_task_accuracy"].items()), "",
        "| task | truth → predicted | p | prompt |", "|---|---|---|---|"]
    for e in shipped["errors"]:
        prompt = e["prompt"].replace("|", "\\|")
        out.append(f"| {e['task']} | {e['truth']} → {e['predicted']} | {e['confidence']:.2f} | "
                   f"{prompt} |")
    cx = complexity
    out += ["", f"## Complexity (routerbench: {cx['train']} train / {cx['test']} test; "
            f"{cx['models']} models)", "",
            f"Failure-count cuts from train terciles: easy {cx['cuts']['easy']}, "
            f"medium {cx['cuts']['medium']}, hard {cx['cuts']['hard']} "
            f"(train {cx['train_labels']}, test {cx['test_labels']})", "",
            "| variant | Spearman vs failures | 3-way accuracy | within task |",
            "|---|---|---|---|",
            f"| classifier score (C={cx['classifier']['c']:g}) | **{cx['classifier']['spearman']}**"
            f" | {cx['classifier']['accuracy']:.3f} | "
            + ", ".join(f"{t} {r}" for t, r in cx["classifier"]["within_task_spearman"].items())
            + " |",
            f"| ridge on failure count (alpha={cx['ridge']['alpha']:g}) | "
            f"**{cx['ridge']['spearman']}** | - | "
            + ", ".join(f"{t} {r}" for t, r in cx["ridge"]["within_task_spearman"].items()) + " |",
            f"| reference: the task's mean failure count | {cx['task_mean_spearman']} | - | - |",
            "", f"## Run-time cost ({latency['prompt_tokens']}-token prompt, p50)", "",
            f"- embedding + domain: {latency['embedding_plus_domain_ms']:.3f} ms",
            f"- with the hashed-word block: {latency['with_hashed_words_ms']:.3f} ms "
            f"(goal < {LATENCY_GOAL_MS} ms)"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="the data sets (default: data/ in the shared folder)")
    parser.add_argument("--errors", type=int, default=8, help="example errors to show")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    add_shared_option(parser)
    args = parser.parse_args(argv)
    args.data = args.data or shared_dir(args.shared) / "data"
    if not (args.data / "llmrouter").is_dir() or not (args.data / "routerbench").is_dir():
        print(f"error: {args.data} needs llmrouter/ and routerbench/", file=sys.stderr)
        return 1
    started = time.perf_counter()
    embedder = load_embedder("builtin")
    result: dict[str, Any] = {
        "command": "python bench/signals_accuracy.py" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "domain": domain_report(args.data, embedder, args.errors),
        "complexity": complexity_report(args.data, embedder),
        "latency": latency_report(args.data, embedder),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(markdown(result) + f"\n\n({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
