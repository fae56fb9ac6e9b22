"""The in-process cache: LRU over all scopes, TTL per entry, and per (scope, prefix) a matrix
of unit vectors searched by brute-force dot product (~2.3 ms at 100k entries, 256 dims: the
memory-bandwidth floor), or, with `index="hnsw"`, a usearch HNSW graph (~0.3 ms at 100k, an
approximate search; inserts cost ~0.5 ms each at that size; needs `pip install usearch`)."""

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


class _Group:
    """The vectors of one (scope, prefix): rows 0..n-1 of a growing matrix."""

    __slots__ = ("entries", "matrix")

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.entries: list[Entry] = []

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> None:
        n = len(self.entries)
        if n == len(self.matrix):
            grown = np.empty((2 * n, self.matrix.shape[1]), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = entry.vector
        entry.row = n
        self.entries.append(entry)

    def remove(self, entry: Entry) -> None:
        last = self.entries.pop()
        if last is not entry:  # move the last row into the hole
            self.matrix[entry.row] = self.matrix[last.row]
            self.entries[entry.row] = last
            last.row = entry.row
        entry.row = -1

    def best(self, query: np.ndarray) -> tuple[float, Entry] | None:
        n = len(self.entries)
        if n == 0:
            return None
        scores = self.matrix[:n] @ query
        i = int(np.argmax(scores))
        return float(scores[i]), self.entries[i]


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

    def best(self, query: np.ndarray) -> tuple[float, Entry] | None:
        if not self.by_key:
            return None
        found = self.index.search(query, 1)
        if len(found) == 0:
            return None
        return 1.0 - float(found.distances[0]), self.by_key[int(found.keys[0])]


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
        while (found := group.best(vector)) is not None:
            score, entry = found
            if score < threshold:
                return None
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
