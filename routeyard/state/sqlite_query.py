"""The SQLite store's query API: filtered pages, stats from hourly roll-ups, feedback, retention.

Stats over a million records must answer in well under a second, and SQLite has no hash
aggregation (a GROUP BY over a million rows sorts them). So the writer keeps
`decision_rollups`: per hour, per dimension (`all`, model, decision, key, tenant, surface,
status) and value, the summable `Aggregate` of the records written, histograms as JSON. A
stats query reads the roll-ups for the whole hours of its window and the records of the partial
hours at its edges. A query with two or more filters, or one filter and a group_by of another
dimension, reads the records themselves (through the filter's index). Feedback lives in
`decision_feedback`, joined by request id.

Every function here runs on the store's reader or writer thread, never on the event loop.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import numpy as np
import orjson

from routeyard.state.base import DECISION_FIELDS, ERROR_STATUSES, DecisionRecord
from routeyard.state.query import (
    BUCKETS_PER_E,
    FILTER_FIELDS,
    Aggregate,
    DecisionPage,
    DecisionQuery,
    StatsQuery,
    bucket,
    page_of,
)
from routeyard.state.record import FEEDBACK_FIELDS

SCHEMA_VERSION = 3  # 3: roll-ups made from the table, up to a mark
# Schema v2: the query API's tables and indexes (created at open; the columns are added by
# the store's _ADDED_COLUMNS).
V2_SCHEMA: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS decisions_time_id ON decisions (time, request_id)",
    "CREATE INDEX IF NOT EXISTS decisions_key ON decisions (key_id, time)",
    "CREATE INDEX IF NOT EXISTS decisions_tenant ON decisions (tenant, time)",
    "CREATE INDEX IF NOT EXISTS decisions_model ON decisions (model, time)",
    "CREATE INDEX IF NOT EXISTS decisions_decision ON decisions (decision, time)",
    # Sessions are too many to roll up: their stats read the records, through this index.
    # Partial: a record without a session (sessions off) costs the index nothing.
    "CREATE INDEX IF NOT EXISTS decisions_session ON decisions (session, time) "
    "WHERE session IS NOT NULL",
    # `time` is the record's (so retention and windows apply to feedback as to its record).
    """CREATE TABLE IF NOT EXISTS decision_feedback (
        request_id TEXT PRIMARY KEY,
        score REAL NOT NULL,
        time REAL NOT NULL,
        implicit INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS decision_feedback_time ON decision_feedback (time)",
    # The rowid of the last record the roll-ups count.
    """CREATE TABLE IF NOT EXISTS decision_rollup_mark (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        rolled INTEGER NOT NULL
    )""",
    # Histograms are packed little-endian uint32 (bucket, count) pairs.
    """CREATE TABLE IF NOT EXISTS decision_rollups (
        dim TEXT NOT NULL,
        hour INTEGER NOT NULL,
        value TEXT NOT NULL,
        requests INTEGER NOT NULL, errors INTEGER NOT NULL,
        cache_ran INTEGER NOT NULL, cache_hits INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL, dearest_cost_usd REAL NOT NULL, latency_sum REAL NOT NULL,
        feedback_count INTEGER NOT NULL, feedback_sum REAL NOT NULL,
        latency_hist BLOB NOT NULL, ttft_hist BLOB NOT NULL,
        energy_j REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (dim, hour, value)
    ) WITHOUT ROWID""",
)
# Roll-up dimensions: the record field each groups by ("all": one row per hour).
ROLLUP_DIMS: dict[str, str | None] = {"all": None, "model": "model", "decision": "decision",
                                      "key": "key_id", "tenant": "tenant",
                                      "surface": "surface", "status": "status"}
_FIELD_DIM = {f: d for d, f in ROLLUP_DIMS.items() if f is not None}
# One more roll-up "dimension", the cube: per hour, one row per distinct (model, decision,
# surface, status), its value those four joined by CUBE_SEP. It answers any filter and group_by
# over them (two filters, or status=ok grouped by model, say) from a few hundred rows an hour.
CUBE = "cube"
CUBE_SEP = "\x1f"
CUBE_FIELDS = ("model", "decision", "surface", "status")
_CUBE_GROUPS = (None, "hour", "model", "decision")
_DIM_FIELDS = "model, decision, key_id, tenant, surface, status"
_AGG_COLUMNS = ("requests, errors, cache_ran, cache_hits, prompt_tokens, completion_tokens, "
                "cost_usd, dearest_cost_usd, latency_sum, feedback_count, feedback_sum, "
                "latency_hist, ttft_hist, energy_j")
_ROLLUP_UPSERT = (f"INSERT OR REPLACE INTO decision_rollups (dim, hour, value, {_AGG_COLUMNS}) "
                  f"VALUES ({', '.join('?' * 17)})")
_ROLLUP_GET = (f"SELECT {_AGG_COLUMNS} FROM decision_rollups "
               "WHERE dim = ? AND hour = ? AND value = ?")
_ROLLUP_FEEDBACK = ("UPDATE decision_rollups SET feedback_count = feedback_count + ?, "
                    "feedback_sum = feedback_sum + ? WHERE dim = ? AND hour = ? AND value = ?")
# What the stats read of each record on the raw path (feedback comes from its own query).
_RAW_COLUMNS = ("d.status, d.latency_ms, d.ttft_ms, d.prompt_tokens, d.completion_tokens, "
                "d.cost_usd, d.dearest_cost_usd, d.cache, coalesce(d.energy_j, 0)")
_SELECT = ", ".join(f"d.{f}" for f in DECISION_FIELDS) + ", f.score, f.implicit"
# What a file written before implicit feedback holds, opened read-only (so not upgraded): its
# feedback is all explicit.
# ... and before sessions or energy (no such column): what each missing one reads as.
_LATER_COLUMNS = {"f.implicit": "0", "d.session": "NULL", "d.energy_j": "NULL"}
_FROM = "decisions AS d LEFT JOIN decision_feedback AS f ON f.request_id = d.request_id"
_CHUNK = 500
_FEEDBACK_MARGIN_S = 3600.0
_PAIRS = np.dtype("<u4")
_MAX_BUCKET = 1023  # ~e^51 ms: nothing real gets there; larger values share the last bucket


def pack(histogram: dict[int, int]) -> bytes:
    flat = [v for b, n in histogram.items() for v in (min(b, _MAX_BUCKET), n)]
    return np.asarray(flat, dtype=_PAIRS).tobytes()


def unpack(blob: bytes) -> dict[int, int]:
    pairs = np.frombuffer(blob, dtype=_PAIRS).reshape(-1, 2)
    return dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))


# -- writing (writer thread, inside the batch's transaction) -------------------------------


# The roll-ups of new records are aggregated by SQLite itself: a handful of rows come back
# per hour and dimension values, where reading the records would step (and hand the GIL
# back and forth with the event loop) once per record.
_FINE_KEY = ("CAST(d.time / 3600 AS INTEGER), "
             + ", ".join(f"d.{f}" for f in _DIM_FIELDS.split(", ")))
_NEW = ("FROM decisions AS d LEFT JOIN decision_feedback AS f ON f.request_id = d.request_id "
        "WHERE d.rowid > ? AND d.rowid <= ?")
_ERRORS_IN = ", ".join(f"'{status}'" for status in sorted(ERROR_STATUSES))
_ROLL_SUMS = (f"SELECT {_FINE_KEY}, count(*), total(d.status IN ({_ERRORS_IN})), "
              "total(d.cache IS NOT NULL), total(d.cache = 'hit'), total(d.prompt_tokens), "
              "total(d.completion_tokens), total(d.cost_usd), "
              "total(coalesce(d.dearest_cost_usd, d.cost_usd)), total(d.latency_ms), "
              f"count(f.score), total(f.score), total(d.energy_j) {_NEW} GROUP BY {_FINE_KEY}")
# Histogram buckets as query.bucket() makes them: int(log1p(max(0, ms)) * per e).
_ROLL_HIST = ("SELECT {key}, CAST(ln(1 + max(0, d.{column})) * {per_e} AS INTEGER) AS b, "
              "count(*) {new} AND d.{column} IS NOT NULL GROUP BY {key}, b")
# Feedback that came before its record takes the record's time (windows and retention).
_EARLY_FEEDBACK = (
    "UPDATE decision_feedback SET time = (SELECT d.time FROM decisions AS d "
    "WHERE d.request_id = decision_feedback.request_id) WHERE request_id IN "
    "(SELECT d.request_id FROM decisions AS d JOIN decision_feedback AS f "
    "ON f.request_id = d.request_id WHERE d.rowid > ? AND d.rowid <= ? AND f.time != d.time)")


def rolled_through(conn: sqlite3.Connection) -> int:
    """The rowid of the last record the roll-ups count."""
    row = conn.execute("SELECT rolled FROM decision_rollup_mark WHERE id = 0").fetchone()
    return int(row[0]) if row is not None else 0


def roll_up_pending(conn: sqlite3.Connection) -> int:
    """Add the records written since the last roll-up (by rowid) to the hourly roll-ups, with
    the feedback that came before them; how many. The writer calls it every few seconds and
    before stats, not on every batch: upserting the roll-ups of each small batch cost the
    request path ~10% of its throughput. A record written again keeps its rowid (the store's
    upsert), so it is counted once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = rolled_through(conn)
        end = conn.execute("SELECT max(rowid) FROM decisions").fetchone()[0] or 0
        if end > start:
            conn.execute(_EARLY_FEEDBACK, (start, end))
            _add_to_rollups(conn, _new_aggregates(conn, start, end))
            conn.execute("INSERT OR REPLACE INTO decision_rollup_mark (id, rolled) "
                         "VALUES (0, ?)", (end,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(0, end - start)


def _new_aggregates(conn: sqlite3.Connection, start: int, end: int
                    ) -> dict[tuple[Any, ...], Aggregate]:
    """The aggregate of the records with rowids in (start, end], per (hour, dimensions)."""
    fine: dict[tuple[Any, ...], Aggregate] = {}
    for row in conn.execute(_ROLL_SUMS, (start, end)):
        key, sums = row[:7], row[7:]
        (requests, errors, cache_ran, cache_hits, prompt, completion, cost, dearest,
         latency_sum, feedback_count, feedback_sum, energy) = sums
        fine[key] = Aggregate(requests, int(errors), int(cache_ran), int(cache_hits),
                              int(prompt), int(completion), cost, dearest, latency_sum,
                              feedback_count=feedback_count, feedback_sum=feedback_sum,
                              energy_j=energy)
    for column, histogram in (("latency_ms", "latency"), ("ttft_ms", "ttft")):
        query = _ROLL_HIST.format(key=_FINE_KEY, column=column, per_e=BUCKETS_PER_E, new=_NEW)
        for *key, index, count in conn.execute(query, (start, end)):
            agg = fine.get(tuple(key))
            if agg is not None and index is not None:
                getattr(agg, histogram)[int(index)] = count
    return fine


def _add_to_rollups(conn: sqlite3.Connection, fine: dict[tuple[Any, ...], Aggregate]) -> None:
    """Merge aggregates per (hour, dimension values) into each dimension's roll-up rows."""
    coarse: dict[tuple[str, int, str], Aggregate] = {}
    for (hour, *values), agg in fine.items():
        model, decision, _, _, surface, status = values
        for dim, value in (*zip(ROLLUP_DIMS, [None, *values], strict=True),
                           (CUBE, _cube_value(model, decision, surface, status))):
            slot = (dim, hour, "" if value is None else str(value))
            found = coarse.get(slot)
            if found is None:
                found = coarse[slot] = Aggregate()
            found.merge(agg)
    for slot, agg in coarse.items():
        row = conn.execute(_ROLLUP_GET, slot).fetchone()
        if row is not None:
            agg.merge(_aggregate(row))
        conn.execute(_ROLLUP_UPSERT, (*slot, agg.requests, agg.errors, agg.cache_ran,
                                      agg.cache_hits, agg.prompt_tokens, agg.completion_tokens,
                                      agg.cost_usd, agg.dearest_cost_usd, agg.latency_sum,
                                      agg.feedback_count, agg.feedback_sum,
                                      pack(agg.latency), pack(agg.ttft), agg.energy_j))


def add_feedback_columns(conn: sqlite3.Connection) -> None:
    """Bring a `decision_feedback` table made by an earlier version up to date (in the
    caller's transaction): its rows were all explicit. And the roll-ups' energy column."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(decision_feedback)")}
    if "implicit" not in present:
        conn.execute("ALTER TABLE decision_feedback ADD COLUMN implicit INTEGER NOT NULL "
                     "DEFAULT 0")
    # Roll-ups made before energy was recorded: their records had none.
    present = {row[1] for row in conn.execute("PRAGMA table_info(decision_rollups)")}
    if "energy_j" not in present:
        conn.execute("ALTER TABLE decision_rollups ADD COLUMN energy_j REAL NOT NULL DEFAULT 0")


def set_feedback(conn: sqlite3.Connection, request_id: str, score: float, now: float,
                 implicit: bool = False) -> bool:
    """Keep (or replace) a request's feedback, and count it in its record's roll-ups. Before
    its record is rolled up, it is kept only, and counted when the record is. Implicit
    feedback is kept only when the id has none (see Store.record_feedback); True when kept."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        record = conn.execute(f"SELECT time, {_DIM_FIELDS}, rowid FROM decisions "
                              "WHERE request_id = ?", (request_id,)).fetchone()
        old = conn.execute("SELECT score FROM decision_feedback WHERE request_id = ?",
                           (request_id,)).fetchone()
        if implicit and old is not None:
            conn.execute("COMMIT")
            return False
        conn.execute("INSERT OR REPLACE INTO decision_feedback (request_id, score, time, "
                     "implicit) VALUES (?, ?, ?, ?)",
                     (request_id, score, record[0] if record is not None else now,
                      int(implicit)))
        if record is not None and record[-1] <= rolled_through(conn):
            hour = int(record[0] // 3600)
            count, delta = (1, score) if old is None else (0, score - old[0])
            dims = record[1:-1]
            model, decision, _, _, surface, status = dims
            for dim, value in (*zip(ROLLUP_DIMS, [None, *dims], strict=True),
                               (CUBE, _cube_value(model, decision, surface, status))):
                conn.execute(_ROLLUP_FEEDBACK, (count, delta, dim, hour, value or ""))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def prune_older(conn: sqlite3.Connection, cutoff: float, limit: int = 10_000) -> int:
    """Delete up to `limit` records older than `cutoff` (and their feedback), and the roll-ups
    of the hours wholly before it. Returns how many records went."""
    conn.execute("BEGIN")
    try:
        gone = conn.execute(
            "DELETE FROM decisions WHERE rowid IN (SELECT rowid FROM decisions "
            "WHERE time < ? ORDER BY time LIMIT ?)", (cutoff, limit)).rowcount
        conn.execute("DELETE FROM decision_feedback WHERE time < ?", (cutoff,))
        conn.execute("DELETE FROM decision_rollups WHERE hour < ?", (math.floor(cutoff / 3600),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return gone


# -- reading (reader thread) -------------------------------------------------------------------


def record_of(row: tuple[Any, ...]) -> DecisionRecord:
    values = dict(zip((*DECISION_FIELDS, *FEEDBACK_FIELDS), row, strict=True))
    values["stream"] = bool(values["stream"])
    values["feedback_implicit"] = bool(values["feedback_implicit"])
    detail = values["detail"]
    values["detail"] = orjson.loads(detail) if detail else None
    return DecisionRecord(**values)


def _where(query: DecisionQuery | StatsQuery, since: float | None, until: float | None
           ) -> tuple[list[str], list[Any]]:
    terms: list[str] = []
    args: list[Any] = []
    if since is not None:
        terms.append("d.time >= ?")
        args.append(since)
    if until is not None:
        terms.append("d.time < ?")
        args.append(until)
    for name, value in query.filters:
        terms.append(f"d.{name} = ?")
        args.append(value)
    return terms, args


def query_page(conn: sqlite3.Connection, query: DecisionQuery) -> DecisionPage:
    terms, args = _where(query, query.since, query.until)
    if query.has_feedback is not None:
        terms.append("f.request_id IS NOT NULL" if query.has_feedback
                     else "f.request_id IS NULL")
    if query.after is not None:
        # The first term bounds the time index's range; the second breaks ties by id.
        terms.append("d.time <= ? AND (d.time < ? OR d.request_id < ?)")
        args += [query.after[0], query.after[0], query.after[1]]
    where = (" WHERE " + " AND ".join(terms)) if terms else ""
    rows = _select(conn, f"FROM {_FROM}{where} ORDER BY d.time DESC, d.request_id DESC "
                   "LIMIT ?", (*args, query.limit + 1))
    return page_of([record_of(row) for row in rows], query.limit)


def get_one(conn: sqlite3.Connection, request_id: str) -> DecisionRecord | None:
    rows = _select(conn, f"FROM {_FROM} WHERE d.request_id = ?", (request_id,))
    return record_of(rows[0]) if rows else None


def _select(conn: sqlite3.Connection, tail: str, args: tuple[Any, ...]) -> list[Any]:
    """The records' rows, feedback joined; from a file older than implicit feedback too
    (opened read-only by evaluate-policy or advise, so never upgraded)."""
    select = _SELECT
    while True:  # each pass replaces one missing column, so at most len(_LATER_COLUMNS) + 1
        try:
            return conn.execute(f"SELECT {select} {tail}", args).fetchall()
        except sqlite3.OperationalError as exc:
            missing = next((c for c in _LATER_COLUMNS if c in str(exc) and c in select), None)
            if missing is None:
                raise
            select = select.replace(missing, _LATER_COLUMNS[missing])


def _aggregate(row: tuple[Any, ...]) -> Aggregate:
    (requests, errors, cache_ran, cache_hits, prompt, completion, cost, dearest, latency_sum,
     feedback_count, feedback_sum, latency, ttft, energy) = row
    return Aggregate(requests, errors, cache_ran, cache_hits, prompt, completion, cost,
                     dearest, latency_sum, unpack(latency), unpack(ttft), feedback_count,
                     feedback_sum, energy)


def _group_sql(group_by: str | None) -> str:
    if group_by is None:
        return "NULL"
    if group_by == "hour":
        return "CAST(d.time / 3600 AS INTEGER)"
    return f"d.{FILTER_FIELDS[group_by]}"


def _raw(conn: sqlite3.Connection, query: StatsQuery, since: float, until: float,
         groups: dict[Any, Aggregate]) -> None:
    """Aggregate the matching records themselves: column-wise, with numpy (a per-row Python
    loop costs ~4 µs a record; this, about a third of it)."""
    terms, args = _where(query, since, until)
    where = " AND ".join(terms)
    rows = conn.execute(f"SELECT {_group_sql(query.group_by)}, {_RAW_COLUMNS} FROM decisions "
                        f"AS d WHERE {where}", args).fetchall()
    if not rows:
        return
    # Feedback is sparse: probe the records from it, not a join on every record (CROSS JOIN
    # keeps the feedback table outside).
    # A feedback row's time is its record's (or, when it came first, its own arrival, a
    # little later): the margin keeps those, and the records' own times decide.
    feedback = {key: (count, total) for key, count, total in conn.execute(
        f"SELECT {_group_sql(query.group_by)}, count(*), sum(f.score) FROM decision_feedback "
        f"AS f CROSS JOIN decisions AS d ON d.request_id = f.request_id WHERE f.time >= ? "
        f"AND f.time < ? AND {where} GROUP BY 1",
        [since - _FEEDBACK_MARGIN_S, until + _FEEDBACK_MARGIN_S, *args])}
    n = len(rows)
    keys, status, latency, ttft, prompt, completion, cost, dearest, cache, energy = zip(
        *rows, strict=True)
    del rows
    index: dict[Any, int] = {}
    group = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, n)
    size = len(index)

    def total(values: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.bincount(group, weights=np.fromiter(values, dtype, n), minlength=size)

    requests = np.bincount(group, minlength=size)
    errors = total((s in ERROR_STATUSES for s in status), bool)
    cache_ran = total((c is not None for c in cache), bool)
    cache_hits = total((c == "hit" for c in cache), bool)
    prompts, completions = total(prompt), total(completion)
    costs, latency_sum, energies = total(cost), total(latency), total(energy)
    dearests = total(c if d is None else d for c, d in zip(cost, dearest, strict=True))
    latencies = _histograms(group, map(bucket, latency), n, size)
    timed = [(g, t) for g, t in zip(group.tolist(), ttft, strict=True) if t is not None]
    ttfts = _histograms(np.fromiter((g for g, _ in timed), np.int64, len(timed)),
                        (bucket(t) for _, t in timed), len(timed), size)
    for key, i in index.items():
        agg = Aggregate(int(requests[i]), int(errors[i]), int(cache_ran[i]), int(cache_hits[i]),
                        int(prompts[i]), int(completions[i]), float(costs[i]),
                        float(dearests[i]), float(latency_sum[i]), latencies[i], ttfts[i],
                        *feedback.get(key, (0, 0.0)), float(energies[i]))
        found = groups.get(key)
        if found is None:
            groups[key] = agg
        else:
            found.merge(agg)


def _histograms(group: np.ndarray, buckets: Any, n: int, size: int) -> list[dict[int, int]]:
    """Per group, bucket → count."""
    found: list[dict[int, int]] = [{} for _ in range(size)]
    if n == 0:
        return found
    values = np.fromiter(buckets, np.int64, n)
    width = int(values.max()) + 1
    counts = np.bincount(group * width + values, minlength=size * width).reshape(size, width)
    for i in range(size):
        nonzero = np.flatnonzero(counts[i])
        found[i] = dict(zip(nonzero.tolist(), counts[i, nonzero].tolist(), strict=True))
    return found


def _cube_value(*values: str | None) -> str:
    return CUBE_SEP.join("" if v is None else str(v) for v in values)


def _glob_literal(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _rollup_plan(query: StatsQuery) -> tuple[str, str | None] | None:
    """The roll-up dimension (and value) that answers the query, or None when none does."""
    if query.group_by not in ROLLUP_DIMS and query.group_by != "hour" \
            and query.group_by is not None:
        return None  # a dimension not rolled up (session)
    if not query.filters:
        return ("all", None) if query.group_by in (None, "hour") else (query.group_by, None)
    if len(query.filters) == 1:
        field, value = query.filters[0]
        dim = _FIELD_DIM.get(field)
        if dim is not None and query.group_by in (None, "hour", dim):
            return dim, value
    if query.group_by in _CUBE_GROUPS and all(f in CUBE_FIELDS for f, _ in query.filters):
        return CUBE, None
    return None


def stats(conn: sqlite3.Connection, query: StatsQuery) -> dict[Any, Aggregate]:
    groups: dict[Any, Aggregate] = {}
    plan = _rollup_plan(query)
    first_hour, end_hour = math.ceil(query.since / 3600), math.floor(query.until / 3600)
    if plan is None or first_hour >= end_hour:
        _raw(conn, query, query.since, query.until, groups)
        return groups
    dim, value = plan
    _raw(conn, query, query.since, first_hour * 3600.0, groups)
    _raw(conn, query, end_hour * 3600.0, query.until, groups)
    sql = (f"SELECT hour, value, {_AGG_COLUMNS} FROM decision_rollups "
           "WHERE dim = ? AND hour >= ? AND hour < ?")
    args: list[Any] = [dim, first_hour, end_hour]
    if value is not None:
        sql += " AND value = ?"
        args.append(value)
    elif dim == CUBE and query.filters:
        # Each of the value's four parts is matched by one `*` or its escaped filter value:
        # the pattern has exactly as many separators as the value, so no `*` can span two.
        wanted_by = dict(query.filters)
        sql += " AND value GLOB ?"
        args.append(CUBE_SEP.join(_glob_literal(wanted_by[f]) if f in wanted_by else "*"
                                  for f in CUBE_FIELDS))
    # Sums in Python, histograms in numpy: a group's blobs are concatenated and counted once.
    sums: dict[Any, list[Any]] = {}
    blobs: dict[Any, tuple[list[bytes], list[bytes]]] = {}
    wanted = [(CUBE_FIELDS.index(f), v) for f, v in query.filters] if dim == CUBE else []
    column = CUBE_FIELDS.index(query.group_by) if dim == CUBE and query.group_by in CUBE_FIELDS \
        else None
    for hour, found, *row in conn.execute(sql, args):
        if dim == CUBE:
            parts = found.split(CUBE_SEP)
            if any(parts[i] != v for i, v in wanted):
                continue
            found = parts[column] if column is not None else None
        key = (hour if query.group_by == "hour" else
               None if query.group_by is None else found or None)
        total = sums.get(key)
        if total is None:
            sums[key] = row[:11]
            blobs[key] = ([row[11]], [row[12]])
        else:
            for i in range(11):
                total[i] += row[i]
            blobs[key][0].append(row[11])
            blobs[key][1].append(row[12])
    for key, total in sums.items():
        agg = Aggregate(*total[:9], _counted(blobs[key][0]), _counted(blobs[key][1]),
                        *total[9:])
        found_agg = groups.get(key)
        if found_agg is None:
            groups[key] = agg
        else:
            found_agg.merge(agg)
    return groups


def _counted(parts: list[bytes]) -> dict[int, int]:
    pairs = np.frombuffer(b"".join(parts), dtype=_PAIRS).reshape(-1, 2)
    if not len(pairs):
        return {}
    counts = np.bincount(pairs[:, 0], weights=pairs[:, 1])
    nonzero = np.flatnonzero(counts)
    return dict(zip(nonzero.tolist(), counts[nonzero].astype(np.int64).tolist(), strict=True))
