"""Semantic cache lookup latency in process: `MemoryCache.get_similar` (brute-force dot
product) and `get_exact`, with N entries in one scope (goal: similar-lookup p50 <= 2 ms at
100k entries, 256-dim vectors as the builtin embedder makes).

    /work/venv/bin/python bench/cache_speed.py [--entries 100000] [--repeats 500]

Baselines in the same run: the bare numpy `matrix @ query` + argmax over the same rows (the
floor a brute-force index can reach) and `embed_one` of a short prompt (paid on every lookup
when no signal computed the embedding already).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from timing import p50_ms

from routeyard.cache import Entry, MemoryCache
from routeyard.signals.embedder import load_embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--dim", type=int, default=0, help="default: the builtin embedder's")
    parser.add_argument("--index", choices=("brute", "hnsw"), default="brute",
                        help="hnsw needs usearch; filling 100k takes ~30 s on 2 cores")
    args = parser.parse_args()

    embedder = load_embedder()
    dim = args.dim or int(embedder.embed_one("x").shape[0])
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.entries, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cache = MemoryCache(max_entries=args.entries, index=args.index)
    started = time.perf_counter()
    for i in range(args.entries):
        cache.put(Entry(f"e{i}", "scope", "prefix", b"{}", 1e12, vectors[i]))
        if i and i % 20_000 == 0 and args.index == "hnsw":
            print(f"  filled {i}...", flush=True)
    fill_s = time.perf_counter() - started
    queries = rng.standard_normal((64, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    state = {"i": 0}

    def query() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(queries)
        return queries[state["i"]]

    def similar() -> None:  # a miss: the whole matrix is scanned, as on every semantic miss
        cache.get_similar("scope", "prefix", query(), 0.99)

    def bare() -> None:
        int(np.argmax(vectors @ query()))

    def exact() -> None:
        cache.get_exact("scope", f"e{state['i']}")

    rows = [(f"get_similar ({args.index})", p50_ms(similar, args.repeats)),
            ("baseline: numpy matvec + argmax", p50_ms(bare, args.repeats)),
            ("get_exact", p50_ms(exact, args.repeats * 10)),
            ("baseline: embed_one (short prompt)",
             p50_ms(lambda: embedder.embed_one("How do I reverse a list in Python?"),
                    args.repeats))]
    print(f"{args.entries} entries x {dim} dims in one scope (filled in {fill_s:.1f} s)")
    for name, ms in rows:
        print(f"  {name:38s} p50 {ms:8.3f} ms")


if __name__ == "__main__":
    main()
