"""The `ensemble` router: richer prompt features (hashed n-grams, text signals, the dataset's
tasks), members chosen and weighted on folds of train, served from one .npz artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from routeyard import Router
from routeyard.catalog import build_config
from routeyard.dataset import RoutingDataset
from routeyard.selection.learned import TRAINABLE_ROUTERS, load_router
from routeyard.selection.learned.ensemble import (
    MEMBERS,
    EnsembleRouter,
    MemberSpec,
    fold_rows,
    forward_selection,
)
from routeyard.selection.learned.features import FEATURE_BLOCKS, Featurizer, text_signals
from routeyard.selection.learned.predictors import PREDICTORS
from routeyard.signals.embedder import load_embedder
from routeyard.state import MemoryStore

MODELS = ["cheap", "coder", "reasoner"]
# Each task has its own words; the cheap model (a tenth of the price) is right on chat only.
TASKS = {
    "code": ("def function return python list loop variable", [0.1, 0.95, 0.3]),
    "proof": ("prove theorem lemma induction integer prime", [0.1, 0.2, 0.9]),
    "chat": ("hello thanks weather weekend friend coffee", [0.9, 0.9, 0.9]),
}
COSTS = {"code": [0.1, 3.0, 1.0], "proof": [0.1, 1.0, 1.0], "chat": [0.1, 1.0, 1.0]}


def synthetic(n: int, seed: int) -> RoutingDataset:
    rng = np.random.default_rng(seed)
    names = list(TASKS)
    tasks = [names[i] for i in rng.integers(0, len(names), n)]
    prompts, scores, costs = [], [], []
    for i, task in enumerate(tasks):
        words, quality = TASKS[task]
        vocabulary = words.split()
        prompts.append(" ".join(rng.choice(vocabulary, 6)) + f" item {i}")
        scores.append((rng.random(3) < np.array(quality)).astype(float))
        costs.append(COSTS[task])
    ids = [str(i) for i in range(n)]
    return RoutingDataset("synthetic", ids, tasks, prompts, list(MODELS), np.array(scores),
                          np.array(costs))


@pytest.fixture(scope="module")
def fitted() -> tuple[EnsembleRouter, RoutingDataset, np.ndarray]:
    embedder = load_embedder()
    train, test = synthetic(300, seed=1), synthetic(90, seed=2)
    router = EnsembleRouter()
    router.fit(train, embedder.embed(train.prompts))
    return router, test, embedder.embed(test.prompts)


def test_registered_with_its_blocks_and_predictors() -> None:
    assert TRAINABLE_ROUTERS["ensemble"] is EnsembleRouter and EnsembleRouter.uses_text
    assert {"embedding", "words", "chars", "signals"} <= set(FEATURE_BLOCKS)
    assert {"ridge", "logistic", "knn", "mlp", "task", "irt", "mf"} <= set(PREDICTORS)
    assert {m.predictor for m in MEMBERS} <= set(PREDICTORS)
    assert {b for m in MEMBERS for b in m.blocks} <= set(FEATURE_BLOCKS)


def test_hashed_blocks_give_unit_rows_and_signals_are_standardised() -> None:
    texts = ["def f(x):\n    return x + 1", "What is the capital of France?", "Prove 2 > 1."]
    embeddings = np.eye(3, 8, dtype=np.float32)
    featurizer = Featurizer(["embedding", "words", "chars", "signals"]).fit(texts, embeddings)
    x = featurizer.transform(texts, embeddings)
    assert sp.issparse(x) and x.shape[0] == 3
    words = FEATURE_BLOCKS["words"]()
    words.fit(texts, embeddings)
    norms = np.sqrt(np.asarray(words.transform(texts, embeddings).multiply(
        words.transform(texts, embeddings)).sum(axis=1)).ravel())
    assert np.allclose(norms, 1.0, atol=1e-5)
    signals = FEATURE_BLOCKS["signals"]()
    signals.fit(texts, embeddings)
    standardised = signals.transform(texts, embeddings)
    assert np.allclose(standardised.mean(axis=0), 0.0, atol=1e-5)
    code, question = text_signals(texts[0]), text_signals(texts[1])
    assert code[3] > question[3]  # more code symbols
    again = Featurizer.from_parameters(featurizer.parameters())
    assert abs(again.transform(texts, embeddings) - x).max() < 1e-2  # float16 idf


def test_forward_selection_weights_sum_to_one_and_prefer_the_better_member() -> None:
    target = np.array([1.0, 0.0, 1.0])
    good, bad = target * 0.9, 1 - target

    def score(p: np.ndarray) -> float:
        return -float(np.abs(p - target).sum())

    weights = forward_selection([bad, good], score)
    assert weights.sum() == pytest.approx(1.0) and weights[1] > weights[0]


def test_folds_cover_every_row_once() -> None:
    folds = fold_rows(23, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))


def test_learns_each_tasks_model_and_the_cheapest_at_high_lambda(fitted: tuple) -> None:
    router, test, test_x = fitted
    best = router.choose(test_x, 0.0, texts=test.prompts)
    wanted = {"code": 1, "proof": 2}
    hits = [best[i] == wanted[t] for i, t in enumerate(test.tasks) if t in wanted]
    assert np.mean(hits) >= 0.9
    assert np.all(router.choose(test_x, 1000.0, texts=test.prompts) == 0)
    assert router.chosen and sum(w for _, w, _ in router.chosen) == pytest.approx(1.0)
    assert "ensemble" in router.validation


def test_expected_costs_follow_the_prompts_task(fitted: tuple) -> None:
    router, test, test_x = fitted
    if router.cost_model is None:
        pytest.skip("mean costs were chosen on this train's folds")
    costs = router.expected_costs(test_x, test.prompts)
    code = [i for i, t in enumerate(test.tasks) if t == "code"]
    other = [i for i, t in enumerate(test.tasks) if t != "code"]
    assert costs[code, 1].mean() > 2.0 > costs[other, 1].mean()


def test_needs_the_texts(fitted: tuple) -> None:
    router, _, test_x = fitted
    with pytest.raises(ValueError, match="text"):
        router.predict(test_x)
    with pytest.raises(ValueError, match="text"):
        router.predict_quality(test_x)


def test_artifact_round_trip(fitted: tuple, tmp_path: Path) -> None:
    router, test, test_x = fitted
    router.save(tmp_path / "ensemble.npz")
    loaded = load_router(tmp_path / "ensemble.npz")
    assert isinstance(loaded, EnsembleRouter)
    before = router.predict(test_x, test.prompts)
    after = loaded.predict(test_x, test.prompts)
    assert np.abs(before - after).max() < 0.02  # float16 storage
    assert np.array_equal(router.choose(test_x, 0.0, texts=test.prompts),
                          loaded.choose(test_x, 0.0, texts=test.prompts))
    assert np.allclose(router.expected_costs(test_x, test.prompts),
                       loaded.expected_costs(test_x, test.prompts), rtol=0.02)


def test_without_task_labels_it_uses_the_other_members() -> None:
    embedder = load_embedder()
    train = synthetic(120, seed=3)
    train.tasks = [""] * len(train)
    router = EnsembleRouter(members=[MemberSpec("task", ("words",), "task"),
                                     MemberSpec("knn", ("words",), "knn", ({"k": 10},))])
    router.fit(train, embedder.embed(train.prompts))
    assert [name for name, _, _ in router.chosen] == ["knn"] and router.cost_model is None


async def test_serves_through_the_learned_algorithm(fitted: tuple, tmp_path: Path) -> None:
    router, _, _ = fitted
    artifact = tmp_path / "ensemble.npz"
    router.save(artifact)
    endpoint = [{"base_url": "http://127.0.0.1:9/v1"}]
    config = {"models": [{"name": m, "endpoints": endpoint} for m in MODELS],
              "default": {"candidates": list(MODELS), "algorithm": "learned",
                          "algorithm_options": {"artifact": str(artifact), "lambda": 0.0}}}
    served = Router(build_config(config), store=MemoryStore())
    result = await served.route("prove theorem lemma induction integer prime")
    assert result["model"] == "reasoner"
    assert "ensemble: predicted quality" in result["reason"]
