"""Export the decision log to a file for analysis elsewhere: JSONL or Parquet, from SQLite or
PostgreSQL, streamed in batches (rows never all in memory).

Every format has the same columns: the `DecisionRecord` fields in order, with `stream` a bool
and `detail` as JSON text (or null), so a JSONL and a Parquet export load into the same table.
Rows come oldest first. Parquet needs pyarrow (the `export` extra); JSONL needs nothing more.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from routeyard.state.base import DECISION_FIELDS

BATCH_ROWS = 10_000
Row = tuple[Any, ...]  # DECISION_FIELDS in order; detail as JSON text


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Records with since <= time < until (unix seconds; None: unbounded)."""

    since: float | None = None
    until: float | None = None

    def sql(self, mark: Callable[[int], str]) -> tuple[str, list[float]]:
        """A WHERE clause (or "") and its parameters; `mark(n)` spells the n-th placeholder."""
        terms, args = [], []
        for bound, op in ((self.since, ">="), (self.until, "<")):
            if bound is not None:
                args.append(bound)
                terms.append(f"time {op} {mark(len(args))}")
        return (" WHERE " + " AND ".join(terms)) if terms else "", args


# -- sources ----------------------------------------------------------------------------


async def sqlite_rows(path: str | os.PathLike[str], span: TimeRange,
                      batch: int = BATCH_ROWS) -> AsyncIterator[list[Row]]:
    """Batches of rows from a SQLite state file, opened read-only (a running server may keep
    writing: WAL lets both go on)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no SQLite state file at {path}")
    with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as conn:
        present = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        if not present:
            raise FileNotFoundError(f"{path} has no decision log (no `decisions` table)")
        # A file from before `detail` existed has no such column: export it as null.
        columns = ", ".join(f if f in present else f"NULL AS {f}" for f in DECISION_FIELDS)
        where, args = span.sql(lambda _: "?")
        cursor = conn.execute(f"SELECT {columns} FROM decisions{where} "
                              "ORDER BY time, request_id", args)
        stream = DECISION_FIELDS.index("stream")
        while rows := cursor.fetchmany(batch):
            yield [(*row[:stream], bool(row[stream]), *row[stream + 1:]) for row in rows]


async def postgres_rows(url: str, span: TimeRange,
                        batch: int = BATCH_ROWS) -> AsyncIterator[list[Row]]:
    """Batches of rows from PostgreSQL, through a server-side cursor in one read-only,
    repeatable-read transaction (one consistent snapshot, however long the export runs)."""
    from routeyard.state.pg_schema import connect

    columns = ", ".join("detail::text" if f == "detail" else f for f in DECISION_FIELDS)
    where, args = span.sql(lambda n: f"${n}")
    conn = await connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(f"SELECT {columns} FROM decisions{where} "
                                       "ORDER BY time, request_id", *args)
            while rows := await cursor.fetch(batch):
                yield [tuple(row) for row in rows]
    finally:
        await conn.close()


# -- sinks ------------------------------------------------------------------------------


class Sink(Protocol):
    def write(self, rows: list[Row]) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, keys in field order."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, rows: list[Row]) -> None:
        self.out.write(b"".join(orjson.dumps(dict(zip(DECISION_FIELDS, row, strict=True)))
                                + b"\n" for row in rows))

    def close(self) -> None:
        self.out.flush()


class ParquetSink:
    """One row group per batch, zstd-compressed."""

    def __init__(self, out: IO[bytes]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("Parquet export needs pyarrow: pip install "
                               "'routeyard[export]' (or use --format jsonl)") from exc
        self._pa = pa
        self.schema = pa.schema([(name, _ARROW_TYPES[name](pa)) for name in DECISION_FIELDS])
        self._writer = pq.ParquetWriter(out, self.schema, compression="zstd")

    def write(self, rows: list[Row]) -> None:
        columns = list(zip(*rows, strict=True))
        arrays = [self._pa.array(column, type=field.type)
                  for column, field in zip(columns, self.schema, strict=True)]
        self._writer.write_batch(self._pa.record_batch(arrays, schema=self.schema))

    def close(self) -> None:
        self._writer.close()


_ARROW_TYPES: dict[str, Callable[[Any], Any]] = {
    "request_id": lambda pa: pa.string(), "time": lambda pa: pa.float64(),
    "decision": lambda pa: pa.string(), "model": lambda pa: pa.string(),
    "endpoint": lambda pa: pa.string(), "latency_ms": lambda pa: pa.float64(),
    "prompt_tokens": lambda pa: pa.int64(), "completion_tokens": lambda pa: pa.int64(),
    "cost_usd": lambda pa: pa.float64(), "status": lambda pa: pa.string(),
    "stream": lambda pa: pa.bool_(), "detail": lambda pa: pa.string(),  # JSON text
    "surface": lambda pa: pa.string(), "key_id": lambda pa: pa.string(),
    "tenant": lambda pa: pa.string(), "ttft_ms": lambda pa: pa.float64(),
    "cache": lambda pa: pa.string(), "dearest_cost_usd": lambda pa: pa.float64(),
    "session": lambda pa: pa.string(), "energy_j": lambda pa: pa.float64(),
}
SINKS: dict[str, Callable[[IO[bytes]], Sink]] = {"jsonl": JsonlSink, "parquet": ParquetSink}
EXPORT_FORMATS = tuple(SINKS)


async def export(rows: AsyncIterator[list[Row]], fmt: str, out: str) -> int:
    """Write every batch of `rows` to `out` ("-": stdout, JSONL only) as `fmt`; the row count.

    A file is written beside `out` and renamed at the end, so a failed export leaves no
    half-written file where a finished one is expected.
    """
    make_sink = SINKS[fmt]
    if out == "-":
        if fmt != "jsonl":
            raise ValueError(f"{fmt} cannot go to stdout: give --out a file")
        return await _drain(rows, make_sink(sys.stdout.buffer))
    target = Path(out)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as handle:
            count = await _drain(rows, make_sink(handle))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return count


async def _drain(rows: AsyncIterator[list[Row]], sink: Sink) -> int:
    count = 0
    try:
        async for batch in rows:
            sink.write(batch)
            count += len(batch)
    finally:
        sink.close()
    return count
