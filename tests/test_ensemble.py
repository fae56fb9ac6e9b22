"""Ensembles: normal forms and votes, tool-call keys, judge pairs, verdicts and Bradley-Terry,
config checks, and (in process, against the replaying simulator) how members are chosen."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simproc import SimulatorProcess, start_simulator
from test_ensemble_e2e import ANSWERS, VOTE_Q, model, write_replay

from routeyard.answers import normalise_exact, normalise_number
from routeyard.catalog import build_config
from routeyard.config import ConfigError, RouteyardConfig
from routeyard.router import Router
from routeyard.serving.ensemble import ENSEMBLE_HEADER, EnsembleHandler
from routeyard.serving.ensemble_aggregate import (
    LazyEmbedder,
    auto_mode,
    clusters,
    tool_call_key,
    tool_vote,
    vote,
)
from routeyard.serving.ensemble_judge import (
    bradley_terry,
    judge_pairs,
    parse_preference,
    question,
)
from routeyard.state import MemoryStore

# -- normal forms and votes -------------------------------------------------------------------


def test_number_and_exact_normal_forms() -> None:
    assert [normalise_number(t) for t in ("42", "42.0", "The answer is 42.", "1,000 apples",
                                          "-3.5", "from 2 to 7")] == \
        ["42", "42", "42", "1000", "-3.5", "7"]
    assert normalise_number("no digits") is None
    assert normalise_exact("  Paris,  France.\n") == normalise_exact("paris, france") \
        == "paris, france"


def test_auto_reads_letters_then_numbers_then_text() -> None:
    assert auto_mode(["B", "(b)", "Answer: C"]) == "choice"
    assert auto_mode(["42", "It is 42."]) == "number"
    assert auto_mode(["B", "42"]) == "exact"  # not all letters, not all numbers
    assert auto_mode(["Paris", "It is 42."]) == "exact"
    assert auto_mode(["word " * 30 + "42", "42"]) == "exact"  # a long answer is not a number


async def test_vote_majority_and_ties_to_the_best_prior() -> None:
    tally = await vote(["41", "42", "The answer is 42."], "auto", similarity=0.9, embedder=None)
    assert (tally.winner, tally.votes, tally.normalise) == (1, 2, "number")
    tally = await vote(["C", "(a)", "A"], "choice", similarity=0.9, embedder=None)
    assert (tally.winner, tally.votes) == (1, 2)
    # No two agree: the first answer (the best prior) wins with one vote.
    tally = await vote(["x", "y", "z"], "exact", similarity=0.9, embedder=None)
    assert (tally.winner, tally.votes) == (0, 1)
    # A tie between two pairs goes to the pair whose first member comes first.
    tally = await vote(["y", "x", "x", "y"], "exact", similarity=0.9, embedder=None)
    assert (tally.winner, tally.votes, tally.keys) == (0, 2, ("y", "x", "x", "y"))


def test_clusters_by_cosine_leader() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.96, 0.28], [0.6, 0.8]])
    assert clusters(vectors, 0.9) == ["0", "1", "0", "3"]
    assert clusters(vectors, 0.5) == ["0", "1", "0", "0"]


async def test_free_text_is_clustered_by_the_static_embedding() -> None:
    embedder = LazyEmbedder("builtin")
    texts = ["Photosynthesis makes sugar.",
             "The capital of France is Paris.",
             "Paris is the capital of France."]
    tally = await vote(texts, "auto", similarity=0.8, embedder=embedder)
    assert tally.normalise == "embedding"
    assert (tally.winner, tally.votes) == (1, 2)
    # Exact agreement needs no embedding: a fresh embedder stays unloaded.
    idle = LazyEmbedder("builtin")
    tally = await vote(["Paris.", "paris", "Lyon"], "auto", similarity=0.8, embedder=idle)
    assert (tally.normalise, tally.winner, tally.votes) == ("exact", 0, 2)
    assert idle._embedder is None


def test_tool_calls_compare_by_name_and_parsed_arguments() -> None:
    def message(name: str, arguments: str) -> dict[str, Any]:
        return {"tool_calls": [{"id": "x", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}

    same = message("f", '{"a": 1, "b": [1, 2]}'), message("f", '{"b":[1,2],"a":1}')
    assert tool_call_key(same[0]) == tool_call_key(same[1])
    assert tool_call_key(message("g", '{"a": 1, "b": [1, 2]}')) != tool_call_key(same[0])
    assert tool_call_key({"content": "text"}) is None
    assert tool_vote([{"content": "a"}, {"content": "b"}]) is None  # text: voted as text
    tally = tool_vote([{"content": "no"}, *same])
    assert tally is not None and (tally.winner, tally.votes) == (1, 2)
    tally = tool_vote([message("f", "{}"), message("g", "{}"), {"content": "no"}])
    assert tally is not None and (tally.winner, tally.votes) == (0, 0)  # no majority


# -- the judge --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(2, 9))
def test_judge_pairs_are_few_connected_and_balanced(k: int) -> None:
    pairs = judge_pairs(k)
    assert len(pairs) < k * k and len({frozenset(p) for p in pairs}) == len(pairs)
    if k <= 4:
        assert len(pairs) == k * (k - 1) // 2
    reached, frontier = {0}, [0]
    while frontier:
        node = frontier.pop()
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                if x == node and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert reached == set(range(k))
    firsts = [sum(1 for a, _ in pairs if a == i) for i in range(k)]
    seconds = [sum(1 for _, b in pairs if b == i) for i in range(k)]
    if k > 2:  # each answer is shown in both places
        assert all(f > 0 and s > 0 for f, s in zip(firsts, seconds, strict=True))


def test_verdicts_are_read_strictly() -> None:
    assert [parse_preference(t) for t in ("A", " b ", "B.", "**A**", "Answer A", "(b)")] \
        == [0, 1, 1, 0, 0, 1]
    for garbage in ("", "Both", "A or B", "I prefer answer A because", "C", "AB"):
        assert parse_preference(garbage) is None


def test_bradley_terry_recovers_the_order() -> None:
    truth = np.array([0.5, 2.0, 1.0, 4.0])
    rng = np.random.default_rng(0)
    wins = []
    for a, b in itertools.combinations(range(4), 2):
        for _ in range(40):
            won = rng.random() < truth[a] / (truth[a] + truth[b])
            wins.append((a, b) if won else (b, a))
    strength = bradley_terry(4, wins)
    assert list(np.argsort(-strength)) == [3, 1, 2, 0]
    assert strength.sum() == pytest.approx(1.0)
    # One comparison each way in a cycle: no answer stands out.
    even = bradley_terry(3, [(0, 1), (1, 2), (2, 0)])
    assert np.allclose(even, 1 / 3)
    assert bradley_terry(2, [(1, 0)])[1] > 0.5


def test_the_judge_sees_the_question() -> None:
    assert question({"messages": [{"role": "user", "content": "Why?"}]}) == "Why?"
    assert question({"messages": [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Why?"}]}) == "Why?"
    asked = question({"messages": [{"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello"},
                                   {"role": "user", "content": "Why?"}]})
    assert asked == "user: Hi\n\nassistant: Hello\n\nuser: Why?"


# -- config ----------------------------------------------------------------------------------


def base_config(**default: Any) -> dict[str, Any]:
    endpoint = [{"base_url": "http://127.0.0.1:9/v1"}]
    return {"models": [{"name": n, "endpoints": endpoint} for n in ("a", "b", "j")]
            + [{"name": "vec", "kind": "embedding", "endpoints": endpoint}],
            "default": {"candidates": ["a"], **default}}


def test_unknown_members_and_judges_are_located_errors() -> None:
    build_config(base_config(ensemble={"members": ["a", "b"]}))  # a valid ensemble
    with pytest.raises(ConfigError) as caught:
        build_config(base_config(ensemble={"members": ["a", "nope"], "judge": "vec",
                                           "aggregate": "rank"}))
    text = caught.value.render()
    assert "default.ensemble.members[1]: unknown model 'nope'" in text
    assert "default.ensemble.judge: 'vec' is an embedding model" in text
    with pytest.raises(ConfigError) as caught:
        build_config(base_config(ensemble={"members": ["a", "b"], "aggregate": "rank"}))
    assert "needs a judge model" in caught.value.render()


# -- members, in process ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    replay = write_replay(tmp_path_factory.mktemp("ensemble") / "replay.jsonl")
    with start_simulator("--replay", str(replay), "--ttft-ms", "0", "--tpot-ms", "0") as process:
        yield process


def router_config(sim: SimulatorProcess, tmp_path: Path, **default: Any) -> RouteyardConfig:
    return RouteyardConfig.model_validate({
        "models": [model(sim, "a"), model(sim, "b"), model(sim, "c"),
                   {**model(sim, "small"), "context_window": 8}],
        "default": {"candidates": ["a", "b", "c"], **default},
        "pool": {"health_check": {"interval_s": 0}},
    })


async def test_top_k_takes_the_best_scored_candidates(sim: SimulatorProcess,
                                                      tmp_path: Path) -> None:
    config = router_config(sim, tmp_path, algorithm="quality_cost", algorithm_options={
        "lambda": 0, "priors": {"a": 0.5, "b": 0.9, "c": 0.7}}, ensemble={"top_k": 2})
    async with Router(config, store=MemoryStore()) as router:
        answer = await router.complete({"model": "auto", "messages": [
            {"role": "user", "content": VOTE_Q}]})
        # b and c, best first; they agree on 42 (a, which says 41, was not asked).
        assert answer.headers[ENSEMBLE_HEADER] == "b,c"
        assert answer.response["choices"][0]["message"]["content"] == ANSWERS[VOTE_Q][1]
        assert answer.model == "b"
        ensemble = answer.plan.handled["ensemble"]
        assert ensemble["vote"]["votes"] == 2 and ensemble["winner"] == "b"


async def test_members_that_cannot_serve_are_skipped(sim: SimulatorProcess,
                                                     tmp_path: Path) -> None:
    config = router_config(sim, tmp_path, ensemble={"members": ["small", "c", "b"]})
    async with Router(config, store=MemoryStore()) as router:
        handler = router.stacks["default"].inner
        assert isinstance(handler, EnsembleHandler) and handler.embedder is not None
        answer = await router.complete({"model": "auto", "messages": [
            {"role": "user", "content": VOTE_Q}]})
        assert answer.headers[ENSEMBLE_HEADER] == "c,b"  # small's window is too small
        assert [s["model"] for s in answer.plan.skipped] == ["small"]
        assert answer.response["choices"][0]["message"]["content"] == ANSWERS[VOTE_Q][2]
        assert handler.embedder._embedder is None  # numbers: nothing was embedded
