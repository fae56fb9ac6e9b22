"""Semantic cache lookup latency in process: `MemoryCache.get_similar` (the default exact
`brute` index, or `hnsw`) and `get_exact`, with N entries in one scope (goal: similar-lookup
p50 <= 2 ms at 100k entries, 256-dim vectors as the builtin embedder makes).

    python bench/cache_speed.py [--entries 100000] [--repeats 500] [--threshold 0.92]

Vectors are random unit vectors: unlike the PCA-ordered builtin embedder, their first
components carry only their share of the variance, the hard case for the brute prefilter.

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
    parser.add_argument("--threshold", type=float, default=0.92,
                        help="similarity threshold of the lookups (the plugin's default)")
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
    near = vectors[:64] + 0.02 * rng.standard_normal((64, dim)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    state = {"i": 0}

    def query() -> np.ndarray:
        state["i"] = (state["i"] + 1) % len(queries)
        return queries[state["i"]]

    def similar() -> None:  # a miss: every row is ruled out or scored, as on each semantic miss
        cache.get_similar("scope", "prefix", query(), args.threshold)

    def near_hit() -> None:  # a stored vector plus a little noise: found above the threshold
        state["i"] = (state["i"] + 1) % len(near)
        assert cache.get_similar("scope", "prefix", near[state["i"]], args.threshold)

    def bare() -> None:
        int(np.argmax(vectors @ query()))

    def exact() -> None:
        cache.get_exact("scope", f"e{state['i']}")

    rows = [(f"get_similar ({args.index}), miss", p50_ms(similar, args.repeats)),
            (f"get_similar ({args.index}), hit", p50_ms(near_hit, args.repeats)),
            ("baseline: numpy matvec + argmax", p50_ms(bare, args.repeats)),
            ("get_exact", p50_ms(exact, args.repeats * 10)),
            ("baseline: embed_one (short prompt)",
             p50_ms(lambda: embedder.embed_one("How do I reverse a list in Python?"),
                    args.repeats))]
    print(f"{args.entries} entries x {dim} dims in one scope (filled in {fill_s:.1f} s), "
          f"threshold {args.threshold}")
    for name, ms in rows:
        print(f"  {name:38s} p50 {ms:8.3f} ms")


if __name__ == "__main__":
    main()
