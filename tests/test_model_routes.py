"""`model_routes`: model names that are not aliases (an agent's defaults, `claude-*`) routed to
a decision or through the decisions; embedding models are not chat models."""

from __future__ import annotations

from typing import Any

import pytest

from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.errors import InvalidRequest, ModelNotFound
from routeyard.router import Router
from routeyard.state import MemoryStore

EP = [{"base_url": "http://127.0.0.1:9/v1"}]


def config(**extra: Any) -> dict[str, Any]:
    return {"models": [{"name": "small", "endpoints": EP}, {"name": "large", "endpoints": EP},
                       {"name": "vec", "kind": "embedding", "endpoints": EP}],
            "signals": {"keyword": {"sets": {"hard": {"any": ["prove"]},
                                             "never-matches": {"any": ["zzzz-qqqq"]}}}},
            "decisions": [{"name": "hard", "rules": "keyword:hard", "candidates": ["large"]},
                          {"name": "coding", "candidates": ["large"], "priority": -1,
                           "rules": "keyword:never-matches"}],
            "default": {"name": "everyday", "candidates": ["small"]},
            "pool": {"health_check": {"interval_s": 0}}, **extra}


def body(model: str, text: str = "hello") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def test_glob_routes_to_a_decision_or_through_the_decisions() -> None:
    cfg = config(model_routes=[{"match": "claude-*", "decision": "coding"},
                               {"match": "gpt-5*"}])
    async with Router(build_config(cfg), store=MemoryStore()) as router:
        pinned = await router.plan(body("claude-sonnet-4-5", "prove it"))
        assert pinned.decision == "coding" and pinned.model == "large"
        routed = await router.plan(body("gpt-5-codex", "prove it"))
        assert routed.decision == "hard"
        plain = await router.plan(body("gpt-5-codex"))
        assert plain.decision == "everyday" and plain.model == "small"
        with pytest.raises(ModelNotFound):
            await router.plan(body("mistral-large"))


async def test_an_embedding_model_is_not_a_chat_model() -> None:
    async with Router(build_config(config()), store=MemoryStore()) as router:
        with pytest.raises(InvalidRequest, match="embedding"):
            await router.plan(body("vec"))
    bad = config()
    bad["default"]["candidates"] = ["vec"]
    bad["model_routes"] = [{"match": "x*", "decision": "nope"}]
    with pytest.raises(ConfigError) as caught:
        build_config(bad)
    text = caught.value.render()
    assert "default.candidates[0]: 'vec' is an embedding model" in text
    assert "model_routes[0].decision: unknown decision 'nope'" in text
