"""Simulated embedding models: deterministic vectors in which similar texts lie close together.

A text becomes features (its lower-cased words, and the character 3-, 4- and 5-grams of its
whitespace-normalised form), each hashed to a slot and a sign of a fixed-size vector (signed
feature hashing), summed and L2-normalised. The cosine of two vectors therefore grows with the
features their texts share: a paraphrase scores far above an unrelated text. The hash is
blake2b, never Python's `hash()` (salted per process), so every process gives the same vector.
A list of token ids embeds its ids and id pairs the same way.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, NoReturn

import numpy as np
import orjson

from routeyard.simulator.engine import Plan
from routeyard.simulator.profiles import ModelProfile
from routeyard.simulator.wire import OpenAISurface

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096
MAX_INPUTS = 2048  # OpenAI's limit on the items of one request
_CHAR_NGRAMS = (3, 4, 5)
_SIGN_BIT = np.uint64(63)

EmbeddingInput = str | list[int]


def is_embedding_model(name: str, profile: ModelProfile | None) -> bool:
    """An embedding model: its profile says so, or its name contains "embed" (so clients'
    default names, `text-embedding-3-small`, work without a profile)."""
    return (profile is not None and profile.embedding) or "embed" in name.lower()


class EmbeddingInputError(ValueError):
    """The request's embeddings fields are wrong; the message says which and how."""


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """The fields of a `POST /v1/embeddings` body the simulator reads."""

    inputs: list[EmbeddingInput]
    dimensions: int
    base64: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> EmbeddingRequest:
        encoding = body.get("encoding_format")
        if encoding not in (None, "float", "base64"):
            raise EmbeddingInputError("encoding_format must be 'float' or 'base64'")
        dimensions = body.get("dimensions")
        if dimensions is None:
            dimensions = DEFAULT_DIMENSIONS
        elif isinstance(dimensions, bool) or not isinstance(dimensions, int) \
                or not 1 <= dimensions <= MAX_DIMENSIONS:
            raise EmbeddingInputError(f"dimensions must be an integer from 1 to {MAX_DIMENSIONS}")
        return cls(_inputs(body.get("input")), dimensions, encoding == "base64")

    def prompt_tokens(self) -> int:
        """Characters / 4 for texts (as for chat prompts), one per token id."""
        return sum(max(1, (len(item) + 3) // 4) if isinstance(item, str) else len(item)
                   for item in self.inputs)


def _inputs(value: Any) -> list[EmbeddingInput]:
    """`input` as a list of items: a string, strings, token ids or lists of token ids."""
    items = [value] if isinstance(value, str) or _is_tokens(value) else value
    if not (isinstance(items, list) and 0 < len(items) <= MAX_INPUTS and (
            all(isinstance(item, str) and item for item in items)
            or all(map(_is_tokens, items)))):
        raise EmbeddingInputError(
            f"input must be a non-empty string, or an array of at most {MAX_INPUTS} non-empty "
            "strings, token ids, or arrays of token ids (not a mix)")
    return items


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)


@lru_cache(maxsize=1 << 16)  # words and n-grams repeat across texts
def _feature_hash(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


def _features(item: EmbeddingInput) -> list[str]:
    if not isinstance(item, str):
        return [f"t:{t}" for t in item] + [f"p:{a},{b}" for a, b in pairwise(item)]
    words = item.lower().split()
    padded = f" {' '.join(words)} "  # word edges make n-grams of their own
    features = [f"w:{word}" for word in words]
    for n in _CHAR_NGRAMS:
        features += [f"c:{padded[i:i + n]}" for i in range(len(padded) - n + 1)]
    return features


def embed(item: EmbeddingInput, dimensions: int) -> np.ndarray:
    """The unit-length float32 vector of one input."""
    features = _features(item)
    hashes = np.fromiter((_feature_hash(f) for f in features), dtype=np.uint64,
                         count=len(features))
    slots = (hashes % np.uint64(dimensions)).astype(np.intp)
    signs = np.where(hashes >> _SIGN_BIT, -1.0, 1.0)
    vector = np.bincount(slots, weights=signs, minlength=dimensions)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else vector).astype(np.float32)


def _encoded(vector: np.ndarray, as_base64: bool) -> Any:
    if as_base64:  # OpenAI's form: the little-endian float32 bytes
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector


class EmbeddingsAnswer:
    """One embeddings request as the runner's `Surface`: the runner applies the profile's
    latency (`ttft_ms`) and faults, and `completion` renders the vectors."""

    content_type = b"application/json"
    sse_content_type = b"text/event-stream"

    def __init__(self, errors: OpenAISurface, request: EmbeddingRequest) -> None:
        self._errors = errors
        self.request = request

    def error(self, status: int, message: str, code: str | None = None) -> bytes:
        return self._errors.error(status, message, code)

    def completion(self, plan: Plan) -> bytes:
        request = self.request
        data = [{"object": "embedding", "index": index,
                 "embedding": _encoded(embed(item, request.dimensions), request.base64)}
                for index, item in enumerate(request.inputs)]
        body: dict[str, Any] = {"object": "list", "data": data, "model": plan.model}
        if not plan.profile.omit_usage:
            body["usage"] = {"prompt_tokens": plan.prompt_tokens,
                             "total_tokens": plan.prompt_tokens}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def stream(self, plan: Plan, include_usage: bool) -> NoReturn:
        raise TypeError("embeddings are never streamed")
