"""The semantic cache plugin: exact and paraphrase hits, tenant and conversation scoping,
bypass, streaming replay, TTL/LRU, and the Redis-shared backend."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import redis
from echo_backend import echo_backend
from routerproc import start_router
from simproc import SimulatorProcess, start_simulator
from stores import REDIS_URL, needs_redis

from routeyard.cache import Entry, MemoryCache, request_key, tenant_of
from routeyard.catalog import build_config
from routeyard.plugins import PLUGINS
from routeyard.plugins.cache_plugin import SemanticCachePlugin
from routeyard.router import Router
from routeyard.state import MemoryStore, Store
from routeyard.state.redis_store import RedisStore

SIM_MODEL = "sim-model"
QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = "How can I reverse a Python list?"  # cosine 0.93 with the builtin embedder
OTHER = "What is the capital of France?"


def ask(text: str, *earlier: dict[str, str]) -> list[dict[str, str]]:
    return [*earlier, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", SIM_MODEL, "--ttft-ms", "0", "--tpot-ms", "0",
                         "--output-tokens", "8", "--seed", "1") as proc:
        yield proc


def test_cache_through_the_gateway(sim: SimulatorProcess, tmp_path: Path) -> None:
    config = {"models": [{"name": SIM_MODEL, "endpoints": [{"base_url": sim.base_url}]}],
              "default": {"candidates": [SIM_MODEL],
                          "plugins": [{"type": "semantic_cache", "threshold": 0.92}]},
              "pool": {"health_check": {"interval_s": 0}}}
    with start_router(config, tmp_path) as gateway:
        def client(key: str = "key-a") -> openai.OpenAI:
            return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0,
                                 timeout=10)

        def calls() -> int:
            return int(sim.stats()["requests"].get(SIM_MODEL, 0))

        def send(text: str, *earlier: dict[str, str], key: str = "key-a",
                 **extra: Any) -> tuple[str, str, str]:
            raw = client(key).chat.completions.with_raw_response.create(
                model="auto", messages=ask(text, *earlier), **extra)
            reply = raw.parse()
            return raw.headers["x-routeyard-cache"], reply.choices[0].message.content, reply.id

        sim.reset()
        # miss, then an exact hit that never reaches the backend, with a fresh id
        status, first, first_id = send(QUESTION)
        assert status == "miss" and first and calls() == 1
        status, text, hit_id = send(QUESTION)
        assert (status, text) == ("hit", first) and hit_id != first_id and calls() == 1
        # a paraphrase is a semantic hit; an unrelated question is not
        assert send(PARAPHRASE)[:2] == ("hit", first)
        assert send(OTHER)[0] == "miss" and calls() == 2
        # another API key is another tenant: both of its requests start with a miss
        assert send(QUESTION, key="key-b")[0] == "miss"
        assert send(PARAPHRASE, key="key-c")[0] == "miss"
        assert calls() == 4
        # the same last question after different earlier turns is another conversation
        earlier = ({"role": "user", "content": "Let's talk about Rust."},
                   {"role": "assistant", "content": "Sure."})
        assert send(QUESTION, *earlier)[0] == "miss"
        assert send(QUESTION, *earlier)[0] == "hit"
        other = (earlier[0], {"role": "assistant", "content": "No."})
        assert send(QUESTION, *other)[0] == "miss"
        # parameters that change the answer are part of the key
        assert send(QUESTION, temperature=0.1)[0] == "miss"
        assert calls() == 7
        # bypass: the backend answers and the header says so
        assert send(QUESTION, extra_headers={"x-routeyard-cache-bypass": "1"})[0] == "bypass"
        assert calls() == 8

        # streaming: a streamed miss fills the cache, a stream hit replays it as SSE
        def stream(text: str) -> tuple[str, str, list[Any]]:
            with client().chat.completions.with_streaming_response.create(
                    model="auto", messages=ask(text), stream=True,
                    stream_options={"include_usage": True}) as response:
                chunks = list(response.parse())
                status = response.headers["x-routeyard-cache"]
            return status, "".join(c.choices[0].delta.content or "" for c in chunks
                                   if c.choices), chunks

        status, streamed, _ = stream("Explain streaming in one line.")
        assert status == "miss" and streamed and calls() == 9
        status, replayed, chunks = stream("Explain streaming in one line.")
        assert (status, replayed) == ("hit", streamed) and calls() == 9
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None
        # a non-streamed fill replays as a stream too, and the other way round
        assert stream(QUESTION)[:2] == ("hit", first)
        assert send("Explain streaming in one line.")[:2] == ("hit", streamed)
        assert calls() == 9


# -- in process ---------------------------------------------------------------------------------

def unit(seed: int, dim: int = 8) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def entry(i: int, expires: float, scope: str = "s", vector: np.ndarray | None = None) -> Entry:
    return Entry(f"e{i}", scope, "p", b"{}", expires, unit(i) if vector is None else vector)


def has_usearch() -> bool:
    try:
        import usearch.index  # noqa: F401
    except ImportError:
        return False
    return True


INDEXES = ["brute", pytest.param("hnsw", marks=pytest.mark.skipif(
    not has_usearch(), reason="usearch is not installed"))]


@pytest.mark.parametrize("index", INDEXES)
def test_ttl_expiry_and_lru_eviction(index: str) -> None:
    now = [1000.0]
    cache = MemoryCache(max_entries=3, clock=lambda: now[0], index=index)
    for i in range(3):
        cache.put(entry(i, expires=1010.0))
    assert cache.get_exact("s", "e0") is not None  # e0 is now the most recently used
    cache.put(entry(3, expires=1010.0))  # evicts e1, the least recently used
    assert len(cache) == 3 and cache.get_exact("s", "e1") is None
    assert cache.get_similar("s", "p", unit(1), 0.99) is None  # gone from the index too
    assert cache.get_similar("s", "p", unit(2), 0.99)[1].id == "e2"  # type: ignore[index]
    assert cache.get_similar("t", "p", unit(2), 0.99) is None  # another scope
    assert cache.get_similar("s", "q", unit(2), 0.99) is None  # another prefix
    now[0] = 1011.0  # past every TTL
    assert cache.get_exact("s", "e0") is None
    assert cache.get_similar("s", "p", unit(3), 0.5) is None
    assert len(cache) == 1  # e2 is dropped lazily, on its next lookup
    # the index keeps its rows consistent through swap-removal
    cache = MemoryCache(max_entries=100, index=index)
    for i in range(50):
        cache.put(entry(i, expires=1e12))
    for i in range(0, 50, 3):
        cache.remove(cache.get_exact("s", f"e{i}"))  # type: ignore[arg-type]
    for i in range(50):
        found = cache.get_similar("s", "p", unit(i), 0.999)
        assert (found is None) == (i % 3 == 0)
        assert found is None or found[1].id == f"e{i}"


def test_brute_prefilter_finds_exactly_what_a_full_scan_finds() -> None:
    """Past 2,048 rows the brute index rules rows out on their first components; the answer
    must be the full scan's at every threshold, through swap-removals too."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((6000, 256)).astype(np.float32)
    vectors[:, :32] *= 4.0  # PCA-like: the first components carry most of the variance
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = MemoryCache(max_entries=10_000)
    for i, vector in enumerate(vectors):
        cache.put(Entry(f"e{i}", "s", "p", b"{}", 1e12, vector))
    for i in range(0, 6000, 5):
        cache.remove(cache.get_exact("s", f"e{i}"))  # type: ignore[arg-type]
    alive = np.array([i % 5 != 0 for i in range(6000)])
    noise = np.linspace(0.005, 0.06, 300, dtype=np.float32)[:, None]  # cosine ~0.998 to ~0.7
    noisy = vectors[:300] + noise * rng.standard_normal((300, 256)).astype(np.float32)
    queries = np.concatenate([noisy, rng.standard_normal((100, 256)).astype(np.float32)])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = 0
    for threshold in (0.5, 0.8, 0.92, 0.97):
        for query in queries:
            scores = np.where(alive, vectors @ query, -np.inf)
            best = int(np.argmax(scores))
            found = cache.get_similar("s", "p", query, threshold)
            if scores[best] >= threshold:
                hits += 1
                assert found is not None and found[1].id == f"e{best}"
                assert found[0] == pytest.approx(float(scores[best]), abs=1e-5)
            else:
                assert found is None
    assert hits > 300  # the check covered hits, not only misses


def test_keys_scope_tenants_and_conversations() -> None:
    assert tenant_of("k1", {}) != tenant_of("k2", {}) != tenant_of(None, {"user": "k1"})
    assert tenant_of(None, {}) == "anonymous"
    base = {"model": "auto", "messages": ask("hi there")}
    key = request_key(base)
    assert request_key({**base, "messages": ask("  hi   there ")}).exact == key.exact
    assert request_key({**base, "stream": True}).exact == key.exact
    assert request_key({**base, "temperature": 0}).prefix != key.prefix
    assert request_key({**base, "tools": [{"type": "function"}]}).prefix != key.prefix
    assert request_key({**base, "messages": ask("hi there", {"role": "system",
                                                             "content": "x"})}).prefix != key.prefix
    image = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {}}]}]}
    assert request_key(image).text is None  # exact match only


def test_options_are_checked() -> None:
    for options in ({"threshold": 2}, {"ttl_s": 0}, {"max_entries": 0}, {"backend": "disk"},
                    {"redis_url": REDIS_URL}, {"bypass_header": ""}, {"size": 1}, {"index": "ivf"}):
        with pytest.raises(ValueError):
            PLUGINS["semantic_cache"](options)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with echo_backend() as backend:
        yield backend


def cache_router(url: str, store: Store | None = None, **options: Any) -> Router:
    config = build_config({
        "models": [{"name": "m", "endpoints": [{"base_url": url}]}],
        "default": {"candidates": ["m"], "plugins": [{"type": "semantic_cache", **options}]},
        "pool": {"health_check": {"interval_s": 0}},
    })
    return Router(config, store=store or MemoryStore())


def plugin_of(router: Router) -> SemanticCachePlugin:
    (chain,) = router.plugins.values()
    return chain[0]  # type: ignore[return-value]


async def ask_router(router: Router, text: str, key: str = "k") -> str:
    plan = await router.plan({"model": "auto", "messages": ask(text)},
                             {"authorization": f"Bearer {key}"})
    answer = await router.complete({"model": "auto", "messages": ask(text)}, plan)
    await asyncio.sleep(0)  # the fill runs just after the on_response hooks
    assert answer.headers is not None
    return answer.headers["x-routeyard-cache"]


async def test_memory_ttl_through_the_router(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    async with cache_router(url, ttl_s=60) as router:
        assert await ask_router(router, QUESTION) == "miss"
        filled = time.time()  # the entry expires at its fill time + 60 s, so after this + 60
        memory = plugin_of(router).memory
        memory.clock = lambda: filled + 30  # within the TTL
        assert await ask_router(router, QUESTION) == "hit"
        memory.clock = lambda: filled + 61  # past it
        assert await ask_router(router, QUESTION) == "miss"
        assert len(received) == 2
        await router.store.flush()
        records = await router.store.recent_decisions()
    assert sorted(r.status for r in records) == ["cache_hit", "ok", "ok"]


@needs_redis
async def test_redis_shared_between_routers(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    prefix = f"routeyard-test-{uuid.uuid4().hex[:8]}"
    # a: the Router's own Redis store (URL and prefix); b: an explicit redis_url
    store = RedisStore(REDIS_URL, key_prefix=prefix)
    try:
        async with cache_router(url, store, backend="redis") as a, cache_router(
                url, backend="redis", redis_url=REDIS_URL, key_prefix=prefix) as b:
            assert await ask_router(a, QUESTION) == "miss"
            await plugin_of(a).drain()
            assert await ask_router(b, QUESTION) == "hit"  # filled on a, found on b
            assert await ask_router(b, PARAPHRASE) == "hit"  # semantic, from the mirror
            assert await ask_router(b, QUESTION, key="other") == "miss"  # another tenant
            assert await ask_router(b, OTHER) == "miss"
            await plugin_of(b).drain()
            assert await ask_router(a, OTHER) == "hit"  # and back, incrementally
            assert len(received) == 3
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


async def test_redis_down_is_a_miss_not_an_error(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    async with cache_router(url, backend="redis", redis_url="redis://127.0.0.1:1/0") as router:
        assert await ask_router(router, QUESTION) == "miss"
        await plugin_of(router).drain()
        assert await ask_router(router, OTHER) == "miss"
        assert await ask_router(router, QUESTION) == "hit"  # the local mirror still serves
    assert len(received) == 2
