"""`routeyard serve` with no config serves every surface: embeddings on the simulated
`sim-embed`, legacy completions and chat, and agents' default model names routed through the
decisions, while a discovered real model's name still goes straight to it."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from routerproc import start_router

USER = [{"role": "user", "content": "hello"}]


def test_every_surface_without_a_config(tmp_path: Path) -> None:
    with start_router(None, tmp_path, "--no-discover") as gateway:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="k", max_retries=0)
        for name in ("sim-embed", "auto", "text-embedding-3-small"):
            raw = client.embeddings.with_raw_response.create(model=name, input=["a", "b"])
            assert raw.headers["x-routeyard-model"] == "sim-embed", name
            assert len(raw.parse().data) == 2
        completion = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct",
                                                                 prompt="hi")
        assert completion.headers["x-routeyard-decision"] == "everyday"
        assert completion.parse().choices[0].text
        # Agents' names go through the decisions: a hard prompt reaches the large model.
        for name in ("claude-sonnet-4-5", "gpt-5-codex", "o3-mini"):
            raw = client.chat.completions.with_raw_response.create(
                model=name, messages=[{"role": "user", "content": "prove this theorem"}])
            assert raw.headers["x-routeyard-decision"] == "reasoning", name
            assert raw.headers["x-routeyard-model"] == "sim-large"
        with pytest.raises(openai.NotFoundError):  # other names are not routed
            client.chat.completions.create(model="mistral-large", messages=USER)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="sim-embed", messages=USER)
        assert caught.value.code == "model_not_supported"

        listing = {m["id"]: m["routeyard"] for m in
                   httpx.get(f"{gateway.base_url}/models").json()["data"]}
        assert listing["sim-embed"]["model_kind"] == "embedding"
        assert listing["sim-embed"]["surfaces"] == ["embeddings"]
        assert listing["sim-small"]["surfaces"] == ["chat.completions", "messages", "responses",
                                                   "completions"]
        routes = {name for name, about in listing.items() if about["kind"] == "model_route"}
        assert routes == {"claude-*", "gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"}


def test_a_discovered_model_is_served_by_its_own_name(tmp_path: Path) -> None:
    """A configured model's own name wins over a `model_routes` pattern that also matches it:
    gpt-4o-mini, once discovered, is served direct, while other gpt-* names are routed."""
    with start_router(None, tmp_path, "--no-discover",
                      env={"OPENAI_API_KEY": "sk-test-not-real"}) as gateway:

        def dry_run(model: str) -> httpx.Response:
            return httpx.post(f"{gateway.base_url}/route", json={"model": model,
                                                                  "messages": USER})

        for name in ("gpt-4o-mini", "gpt-4o"):
            plan = dry_run(name).json()
            assert (plan["decision"], plan["model"]) == ("direct", name)
        assert dry_run("claude-sonnet-4-5").json()["decision"] == "everyday"
        assert dry_run("gpt-5").json()["decision"] == "everyday"
