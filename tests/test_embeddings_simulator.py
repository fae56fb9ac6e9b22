"""The simulator's embedding models: deterministic vectors where similar texts lie close, in
OpenAI's shape (float or base64), with the profile's latency and faults."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from simproc import SimulatorProcess, start_simulator

from routeyard.simulator.embeddings import DEFAULT_DIMENSIONS, embed


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "sim-embed", "--model", "chat-m") as process:
        yield process


@pytest.fixture
def client(sim: SimulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0)


def test_openai_shape_float_and_base64(client: openai.OpenAI, sim: SimulatorProcess) -> None:
    reply = client.embeddings.create(model="sim-embed", input=["alpha beta", "gamma"],
                                     encoding_format="float")
    assert reply.object == "list" and reply.model == "sim-embed"
    assert [(d.object, d.index) for d in reply.data] == [("embedding", 0), ("embedding", 1)]
    assert len(reply.data[0].embedding) == DEFAULT_DIMENSIONS
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 3 + 2  # characters / 4
    raw = httpx.post(f"{sim.base_url}/embeddings", json={
        "model": "sim-embed", "input": "alpha beta", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), "<f4")
    assert np.allclose(decoded, reply.data[0].embedding)
    short = client.embeddings.create(model="sim-embed", input="alpha beta", dimensions=32)
    assert len(short.data[0].embedding) == 32
    assert abs(np.linalg.norm(short.data[0].embedding) - 1) < 1e-5


def test_vectors_are_the_same_in_every_process(client: openai.OpenAI) -> None:
    text = "deterministic across processes"
    here = embed(text, 64)
    script = ("from routeyard.simulator.embeddings import embed; "
              f"print(embed({text!r}, 64).tobytes().hex())")
    elsewhere = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               check=True).stdout.strip()
    assert here.tobytes().hex() == elsewhere  # PYTHONHASHSEED differs; blake2b does not
    served = client.embeddings.create(model="sim-embed", input=text, dimensions=64)
    assert np.allclose(served.data[0].embedding, here)


def test_similarity_tracks_shared_text() -> None:
    def cosine(a: str, b: str) -> float:
        return float(embed(a, DEFAULT_DIMENSIONS) @ embed(b, DEFAULT_DIMENSIONS))

    base = "How do I reset my router password?"
    assert cosine(base, base) == pytest.approx(1.0, abs=1e-6)
    same = cosine(base, "how do I reset my router password")  # case and punctuation aside
    related = cosine(base, "How do I reset my printer?")
    unrelated = [cosine(base, "The mitochondria is the powerhouse of the cell."),
                 cosine(base, "Bake the bread for forty minutes.")]
    assert same > 0.9 and 0.3 < related < same
    assert all(abs(score) < 0.15 for score in unrelated)
    ids = embed([1, 2, 3, 4], 64) @ embed([1, 2, 3, 5], 64)
    assert ids > embed([1, 2, 3, 4], 64) @ embed([9, 8, 7, 6], 64)


def test_kind_by_name_or_profile(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="chat-m", input="x")
    assert caught.value.code == "model_not_supported"
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model="sim-embed",
                                       messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "model_not_supported"
    sim.set_profile("vectors-only", embedding=True)  # no "embed" in the name: its profile
    assert client.embeddings.create(model="vectors-only", input="x").data
    # Clients' default embedding names are served without configuration; others are not.
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="unknown-model", input="x")


@pytest.mark.parametrize("body", [
    {"input": 3}, {"input": []}, {"input": [""]}, {"input": ["a", [1]]}, {"input": [[1, -1]]},
    {"input": "x", "dimensions": 0}, {"input": "x", "dimensions": True},
    {"input": "x", "encoding_format": "hex"}, {"model": None, "input": "x"},
])
def test_bad_requests_are_400s(sim: SimulatorProcess, body: dict[str, object]) -> None:
    reply = httpx.post(f"{sim.base_url}/embeddings", json={"model": "sim-embed", **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_latency_faults_and_omitted_usage(sim: SimulatorProcess, client: openai.OpenAI) -> None:
    sim.set_profile("slow-embed", ttft_ms=150, omit_usage=True)
    started = time.monotonic()
    reply = httpx.post(f"{sim.base_url}/embeddings", json={"model": "slow-embed", "input": "x"})
    assert time.monotonic() - started >= 0.15
    assert reply.status_code == 200 and "usage" not in reply.json()
    failed = httpx.post(f"{sim.base_url}/embeddings", headers={"x-sim-fault": "503"},
                        json={"model": "sim-embed", "input": "x"})
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "service_unavailable"
    outcomes = sim.stats()["outcomes"]
    assert outcomes["sim-embed"]["5xx"] >= 1 and outcomes["slow-embed"]["ok"] == 1
