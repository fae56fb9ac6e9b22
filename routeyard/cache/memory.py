"""The in-process cache: LRU over all scopes, TTL per entry, and per (scope, prefix) the unit
vectors of its entries, searched for the best match at or above the similarity threshold.

The default `brute` index is exact. It scans a narrow copy of the vectors' first `HEAD_DIMS`
components to rule rows out, then scores the survivors in full: a projection never lengthens a
distance, so a row whose projected distance already exceeds the threshold's distance cannot
match (see `_Group.best`). At 100k entries of 256 dims that reads a quarter of the memory a
full scan would. `index="hnsw"` uses a usearch HNSW graph instead (approximate; inserts cost
~0.5 ms each at 100k; needs `pip install usearch`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True, eq=False)
class Entry:
    id: str  # = the exact hash within its scope (one entry per exact request)
    scope: str
    prefix: str
    response: bytes  # the completion as JSON
    expires: float  # wall-clock time (shared with Redis)
    vector: np.ndarray | None = None  # unit float32; None: exact matches only
    row: int = field(default=-1)  # its row in its group's matrix (its key in an HNSW graph)


# Components the brute-force prefilter scans. The bundled model2vec embedder is PCA-ordered,
# so its first components carry most of the variance and rule out most rows.
HEAD_DIMS = 64


class _Group:
    """The vectors of one (scope, prefix): rows 0..n-1 of a growing matrix, plus a contiguous
    copy of their first `HEAD_DIMS` components and those components' squared norms."""

    __slots__ = ("entries", "head", "head_sq", "matrix")

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.head = np.empty((16, min(dim, HEAD_DIMS)), dtype=np.float32)
        self.head_sq = np.empty(16, dtype=np.float32)
        self.entries: list[Entry] = []

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> None:
        n = len(self.entries)
        if n == len(self.matrix):
            self.matrix = _grown(self.matrix, n)
            self.head = _grown(self.head, n)
            self.head_sq = _grown(self.head_sq, n)
        self._set_row(n, entry.vector)
        entry.row = n
        self.entries.append(entry)

    def _set_row(self, row: int, vector: np.ndarray | None) -> None:
        assert vector is not None
        self.matrix[row] = vector
        head = vector[: self.head.shape[1]]
        self.head[row] = head
        self.head_sq[row] = float(head @ head)

    def remove(self, entry: Entry) -> None:
        last = self.entries.pop()
        if last is not entry:  # move the last row into the hole
            self._set_row(entry.row, last.vector)
            self.entries[entry.row] = last
            last.row = entry.row
        entry.row = -1

    def best(self, query: np.ndarray, threshold: float) -> tuple[float, Entry] | None:
        """The highest-scoring row with score >= threshold, exactly.

        For unit vectors, score >= t means |q - x|^2 <= 2 - 2t, and the first components of
        q - x are no longer than all of it; rows whose head distance exceeds the bound are out.
        """
        n = len(self.entries)
        if n == 0:
            return None
        width = self.head.shape[1]
        if n < 2048 or width == self.dim:  # small: a full scan is as cheap as the filter
            return self._scan(query, threshold)
        query_head = query[:width]
        head_distance = self.head_sq[:n] - 2.0 * (self.head[:n] @ query_head)
        bound = 2.0 - 2.0 * threshold - float(query_head @ query_head) + 1e-4  # float slack
        rows = np.flatnonzero(head_distance <= bound)
        if rows.size == 0:
            return None
        if rows.size > n // 4:  # a low threshold: a contiguous scan beats gathering the rows
            return self._scan(query, threshold)
        scores = self.matrix[rows] @ query
        i = int(np.argmax(scores))
        if scores[i] < threshold:
            return None
        return float(scores[i]), self.entries[int(rows[i])]


    def _scan(self, query: np.ndarray, threshold: float) -> tuple[float, Entry] | None:
        scores = self.matrix[: len(self.entries)] @ query
        i = int(np.argmax(scores))
        return (float(scores[i]), self.entries[i]) if scores[i] >= threshold else None


def _grown(array: np.ndarray, n: int) -> np.ndarray:
    grown = np.empty((2 * n, *array.shape[1:]), dtype=array.dtype)
    grown[:n] = array[:n]
    return grown


class _HnswGroup:
    """The same, as a usearch HNSW graph (inner product over unit vectors)."""

    __slots__ = ("by_key", "dim", "index", "next_key")

    def __init__(self, dim: int) -> None:
        from usearch.index import Index

        self.dim = dim
        self.index = Index(ndim=dim, metric="ip", dtype="f16")
        self.by_key: dict[int, Entry] = {}
        self.next_key = 0

    def __len__(self) -> int:
        return len(self.by_key)

    def add(self, entry: Entry) -> None:
        entry.row, self.next_key = self.next_key, self.next_key + 1
        self.index.add(entry.row, entry.vector)
        self.by_key[entry.row] = entry

    def remove(self, entry: Entry) -> None:
        self.index.remove(entry.row)
        del self.by_key[entry.row]
        entry.row = -1

    def best(self, query: np.ndarray, threshold: float) -> tuple[float, Entry] | None:
        if not self.by_key:
            return None
        found = self.index.search(query, 1)
        if len(found) == 0:
            return None
        entry = self.by_key[int(found.keys[0])]
        assert entry.vector is not None
        score = float(entry.vector @ query)  # exact, not the graph's f16 distance
        return (score, entry) if score >= threshold else None


class MemoryCache:
    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.time,
                 index: str = "brute") -> None:
        if index not in ("brute", "hnsw"):
            raise ValueError("index must be 'brute' or 'hnsw'")
        self.max_entries = max_entries
        self.clock = clock
        self._group_type: type[_Group] | type[_HnswGroup] = (
            _HnswGroup if index == "hnsw" else _Group)
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()  # LRU order
        self._groups: dict[tuple[str, str], _Group | _HnswGroup] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def get_exact(self, scope: str, exact: str) -> Entry | None:
        entry = self._entries.get((scope, exact))
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self.remove(entry)
            return None
        self._entries.move_to_end((scope, exact))
        return entry

    def get_similar(self, scope: str, prefix: str, vector: np.ndarray, threshold: float
                    ) -> tuple[float, Entry] | None:
        group = self._groups.get((scope, prefix))
        if group is None or group.dim != vector.shape[0]:
            return None
        now = self.clock()
        while (found := group.best(vector, threshold)) is not None:
            score, entry = found
            if entry.expires > now:
                self._entries.move_to_end((scope, entry.id))
                return score, entry
            self.remove(entry)  # expired: drop it and look again
        return None

    def put(self, entry: Entry) -> None:
        key = (entry.scope, entry.id)
        old = self._entries.get(key)
        if old is not None:
            self.remove(old)
        self._entries[key] = entry
        if entry.vector is not None:
            group_key = (entry.scope, entry.prefix)
            group = self._groups.get(group_key)
            if group is None:
                group = self._groups[group_key] = self._group_type(entry.vector.shape[0])
            if group.dim == entry.vector.shape[0]:
                group.add(entry)
            else:  # another embedding model's vector: exact matches only
                entry.vector = None
        while len(self._entries) > self.max_entries:
            self.remove(next(iter(self._entries.values())))  # least recently used

    def remove(self, entry: Entry) -> None:
        if self._entries.get((entry.scope, entry.id)) is entry:
            del self._entries[(entry.scope, entry.id)]
        if entry.row >= 0:
            group_key = (entry.scope, entry.prefix)
            group = self._groups[group_key]
            group.remove(entry)
            if not len(group):
                del self._groups[group_key]
