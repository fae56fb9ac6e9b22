"""Learned routers: each learns which model is best where, and trades it against cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from routeyard.dataset import RoutingDataset, load_dataset
from routeyard.selection.learned import TRAINABLE_ROUTERS, load_router
from routeyard.selection.learned.knn import KnnRouter
from routeyard.selection.learned.tuning import routing_area

LEARNED = ["irt", "knn", "mf", "mlp"]
MODELS = ["cheap", "expert-a", "expert-b"]
LAMBDAS = [0.0, 0.01, 0.1, 1.0, 10.0, 1000.0]


def clustered(n: int, seed: int) -> tuple[RoutingDataset, np.ndarray, np.ndarray]:
    """Two clusters of prompts: expert-a is right on cluster 0, expert-b on cluster 1, the
    cheap model (1/10 the price) is right 30% of the time anywhere."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 2, n)
    centres = np.zeros((2, 16))
    centres[0, 0] = centres[1, 1] = 1.0
    x = centres[cluster] + rng.normal(0, 0.15, (n, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    scores = np.stack([rng.random(n) < 0.3,
                       (cluster == 0) & (rng.random(n) < 0.95),
                       (cluster == 1) & (rng.random(n) < 0.95)], axis=1).astype(float)
    costs = np.tile([0.1, 1.0, 1.0], (n, 1))
    ids = [str(i) for i in range(n)]
    data = RoutingDataset("synthetic", ids, ["t"] * n, ids, list(MODELS), scores, costs)
    return data, x, cluster


@pytest.fixture(scope="module")
def synthetic() -> tuple[RoutingDataset, np.ndarray, np.ndarray, np.ndarray]:
    train, train_x, _ = clustered(300, seed=1)
    _, test_x, test_cluster = clustered(100, seed=2)
    return train, train_x, test_x, test_cluster


def test_every_algorithm_is_registered() -> None:
    assert {"prior", "cheapest", *LEARNED} <= set(TRAINABLE_ROUTERS)


@pytest.mark.parametrize("name", LEARNED)
def test_learns_the_expert_per_cluster_and_the_cheapest_at_high_lambda(
        name: str, synthetic: tuple, tmp_path: Path) -> None:
    train, train_x, test_x, test_cluster = synthetic
    router = TRAINABLE_ROUTERS[name]()
    router.fit(train, train_x)
    best = router.choose(test_x, 0.0)
    # expert-a (index 1) on cluster 0, expert-b (index 2) on cluster 1
    assert np.mean(best == test_cluster + 1) >= 0.95
    assert np.all(router.choose(test_x, 1000.0) == 0)

    router.save(tmp_path / "router.npz")
    loaded = load_router(tmp_path / "router.npz")
    assert type(loaded) is type(router) and loaded.models == MODELS
    for lam in LAMBDAS:
        assert np.array_equal(loaded.choose(test_x, lam), router.choose(test_x, lam))


def test_prior_and_cheapest_ignore_the_prompt(synthetic: tuple, tmp_path: Path) -> None:
    train, train_x, test_x, _ = synthetic
    prior = TRAINABLE_ROUTERS["prior"]()
    prior.fit(train, train_x)
    top = int(np.argmax(train.scores.mean(axis=0)))
    assert np.all(prior.choose(test_x, 0.0) == top)
    assert np.all(prior.choose(test_x, 1000.0) == 0)
    cheapest = TRAINABLE_ROUTERS["cheapest"]()
    cheapest.fit(train, train_x)
    cheapest.save(tmp_path / "cheapest.npz")
    for lam in LAMBDAS:
        assert np.all(load_router(tmp_path / "cheapest.npz").choose(test_x, lam) == 0)


def test_knn_stores_float16_and_serves_float32(synthetic: tuple, tmp_path: Path) -> None:
    train, train_x, _, _ = synthetic
    router = KnnRouter(k=10)
    router.fit(train, train_x)
    assert router.parameters()["embeddings"].dtype == np.float16
    router.save(tmp_path / "knn.npz")
    loaded = load_router(tmp_path / "knn.npz")
    assert isinstance(loaded, KnnRouter) and loaded.k == 10
    assert loaded.train_embeddings.dtype == np.float32


def test_routing_area_rewards_knowing_the_best_model(synthetic: tuple) -> None:
    train, _, _, _ = synthetic
    informed = routing_area(train.scores, train.scores, train.costs)
    blind = routing_area(np.zeros_like(train.scores), train.scores, train.costs)
    assert informed > blind


def test_knn_beats_random_routing_on_routerbench(shared_data: Path) -> None:
    from routeyard.signals.embedder import load_embedder

    folder = shared_data / "routerbench"
    if not (folder / "train.jsonl").is_file():
        pytest.skip(f"{folder} is absent")
    train, test = load_dataset(folder)
    embedder = load_embedder("builtin")
    router = KnnRouter(k=40)
    router.fit(train, embedder.embed(train.prompts))
    test_x = embedder.embed(test.prompts)
    best = int(np.argmax(test.scores.mean(axis=0)))
    best_cost = test.costs.mean(axis=0)[best]
    rows = np.arange(len(test))
    affordable = []
    for lam in [0.0, *np.geomspace(1e-3, 1e3, 20)]:
        chosen = router.choose(test_x, lam)
        if test.costs[rows, chosen].mean() <= best_cost:
            affordable.append(test.scores[rows, chosen].mean())
    random_quality = test.scores.mean()  # a uniform random pick, in expectation
    assert affordable and max(affordable) > random_quality + 0.1
