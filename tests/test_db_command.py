"""`routeyard db upgrade` and `routeyard db export` against the real PostgreSQL (databases of
their own) and SQLite files: upgrades are idempotent and safe from several processes at once;
exports round-trip every field in both formats, from both stores, in batches; every failure
is one line on stderr, no traceback. The command runs in-process through `routeyard.cli.main`
(each subprocess would spend a second importing), and as real processes where that matters:
concurrent upgrades, and JSONL on stdout."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest
import yaml
from stores import POSTGRES_DOWN_URL, fresh_database, needs_postgres

from routeyard.cli import main
from routeyard.state import DecisionRecord, SQLiteStore, Store
from routeyard.state.pg_schema import migrations
from routeyard.state.postgres import PostgresStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def db(*args: str) -> subprocess.CompletedProcess[str]:
    """`routeyard db ARGS`: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(["db", *args])
        except SystemExit as exit_:  # argparse's usage errors
            status = int(exit_.code or 0)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def fails_cleanly(done: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


def config_file(tmp_path: Path, state: Any) -> Path:
    """A minimal valid config with this `state` section."""
    path = tmp_path / "routeyard.yaml"
    path.write_text(yaml.safe_dump({
        "models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}],
        "state": state}))
    return path


def records() -> list[DecisionRecord]:
    """Every field's shapes: nulls, both stream values, nested unicode detail, exact floats."""
    return [
        DecisionRecord("req_a", T0 + 0.125, "default", "gpt-4o", "gpt-4o#0", 812.5, 1_234,
                       56, 0.000123456789, "ok", stream=True,
                       detail={"skipped": [{"model": "m", "reason": "no vision"}],
                               "note": "héllo ✓", "n": [1, 2.5, None, True]}),
        DecisionRecord("req_b", T0 + 3600.5, None, None, None, 3.25, 0, 0, 0.0,
                       "upstream_failed", stream=False, detail=None),
        DecisionRecord("req_c", T0 + 86_400, "direct", "m", "m#1", 1e-3, 2**40, 7, 12.5,
                       "stream_broken", stream=True, detail={}),
    ]


def as_record(row: dict[str, Any]) -> DecisionRecord:
    """An exported row back to a record (detail is JSON text in every format)."""
    detail = row["detail"]
    return DecisionRecord.from_dict({**row, "detail": None if detail is None
                                     else json.loads(detail)})


def read_back(path: Path) -> list[DecisionRecord]:
    if path.suffix == ".parquet":
        return [as_record(row) for row in pq.read_table(path).to_pylist()]
    return [as_record(json.loads(line)) for line in path.read_text().splitlines()]


async def fill(store: Store, rows: list[DecisionRecord]) -> None:
    await store.start()
    try:
        for record in rows:
            store.record_decision(record)
        await store.flush()
    finally:
        await store.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of this module's own, upgraded, holding `records()` in its public schema
    (used by tests marked `needs_postgres`, which skip or fail before it is set up)."""
    with fresh_database() as url:
        asyncio.run(fill(PostgresStore(url), records()))
        yield url


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    asyncio.run(fill(SQLiteStore(path), records()))
    return path


def source_args(source: str, pg_url: str | None, sqlite_file: Path | None) -> list[str]:
    return ["--postgres-url", pg_url] if source == "postgres" else ["--sqlite", str(sqlite_file)]


# -- upgrade ----------------------------------------------------------------------------


@needs_postgres
def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    with fresh_database() as url:
        first = db("upgrade", "--postgres-url", url)
        assert first.returncode == 0, first.stderr
        assert "applied 0001_initial" in first.stdout
        again = db("upgrade", "--postgres-url", url)
        assert again.returncode == 0 and "schema up to date at version" in again.stdout
        config = config_file(tmp_path, {"backend": "postgres", "postgres_url": url})
        by_config = db("upgrade", "--config", str(config))
        assert by_config.returncode == 0 and "up to date" in by_config.stdout


@needs_postgres
def test_concurrent_upgrades_from_several_processes() -> None:
    with fresh_database() as url:
        runs = [subprocess.Popen([sys.executable, "-m", "routeyard", "db", "upgrade",
                                  "--postgres-url", url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs = [run.communicate(timeout=60) for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, outputs
        assert sum("applied 0001_initial" in out for out, _ in outputs) == 1

        async def ledger() -> list[int]:
            conn = await asyncpg.connect(url)
            try:
                return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            finally:
                await conn.close()

        assert sorted(asyncio.run(ledger())) == [m.version for m in migrations()]


@needs_postgres
def test_a_newer_schema_fails_the_upgrade_cleanly() -> None:
    with fresh_database() as url:
        assert db("upgrade", "--postgres-url", url).returncode == 0

        async def from_the_future() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("INSERT INTO schema_migrations (version, name) "
                                   "VALUES (9999, 'future')")
            finally:
                await conn.close()

        asyncio.run(from_the_future())
        error = fails_cleanly(db("upgrade", "--postgres-url", url))
        assert "newer than this Routeyard" in error


def test_upgrade_errors_are_one_line(tmp_path: Path) -> None:
    down = fails_cleanly(db("upgrade", "--postgres-url", POSTGRES_DOWN_URL))
    assert down.count("\n") == 1 and "127.0.0.1:5439/routeyard" in down
    assert "postgres@" not in down  # no user (nor password) in messages
    assert "postgresql://" in fails_cleanly(db("upgrade", "--postgres-url", "mysql://h/x"))
    fails_cleanly(db("upgrade"), status=2)  # argparse: one source is required
    config = config_file(tmp_path, {"backend": "postgres"})
    assert "state.postgres_url: required when state.backend is 'postgres'" \
        in fails_cleanly(db("upgrade", "--config", str(config)))
    config = config_file(tmp_path, {"backend": "sqlite"})
    sqlite = db("upgrade", "--config", str(config))
    assert sqlite.returncode == 0 and "nothing to upgrade" in sqlite.stdout
    config = config_file(tmp_path, ["not", "a", "mapping"])
    assert "state" in fails_cleanly(db("upgrade", "--config", str(config)))


# -- export -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("source", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_export_round_trips_every_field(source: str, fmt: str, request: pytest.FixtureRequest,
                                        tmp_path: Path) -> None:
    pg = request.getfixturevalue("pg_url") if source == "postgres" else None
    sq = request.getfixturevalue("sqlite_file") if source == "sqlite" else None
    out = tmp_path / f"log.{fmt}"
    done = db("export", *source_args(source, pg, sq), "--format", fmt, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 3 decision records" in done.stderr
    assert read_back(out) == records()  # every field, oldest first
    # --since (inclusive) and --until (exclusive), UTC unless a zone is given.
    window = tmp_path / f"window.{fmt}"
    done = db("export", *source_args(source, pg, sq), "--out", str(window), "--format", fmt,
              "--since", "2026-01-01T00:00:00.125", "--until", "2026-01-02T01:00:00+01:00")
    assert done.returncode == 0, done.stderr
    assert [r.request_id for r in read_back(window)] == ["req_a", "req_b"]


@needs_postgres
def test_export_streams_in_batches(tmp_path: Path) -> None:
    many = [DecisionRecord(f"req_{i:05d}", T0 + i, "d", "m", "m#0", 1.0, i, 1, 0.0, "ok")
            for i in range(25_000)]
    with fresh_database() as url:
        asyncio.run(fill(PostgresStore(url), many))
        out = tmp_path / "many.parquet"  # the format follows the suffix
        done = db("export", "--postgres-url", url, "--out", str(out))
        assert done.returncode == 0, done.stderr
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_rows == 25_000
    assert parquet.metadata.num_row_groups == 3  # one per batch of 10,000: never all at once
    table = parquet.read(columns=["request_id", "prompt_tokens"])
    assert table.column("prompt_tokens").to_pylist() == list(range(25_000))


def test_export_jsonl_to_stdout_from_a_config(sqlite_file: Path, tmp_path: Path) -> None:
    config = config_file(tmp_path, {"backend": "sqlite", "path": str(sqlite_file)})
    done = subprocess.run([sys.executable, "-m", "routeyard", "db", "export", "--config",
                           str(config), "--out", "-"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert [as_record(json.loads(line)) for line in done.stdout.splitlines()] == records()


def test_export_errors_are_clean(sqlite_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    assert "no SQLite state file" in fails_cleanly(
        db("export", "--sqlite", str(tmp_path / "missing.db"), "--out", str(out)))
    empty = tmp_path / "empty.db"
    empty.touch()
    assert "no decision log" in fails_cleanly(db("export", "--sqlite", str(empty),
                                                 "--out", str(out)))
    assert "not an ISO 8601" in fails_cleanly(
        db("export", "--sqlite", str(sqlite_file), "--out", str(out), "--since", "yesterday"),
        status=2)
    assert "--since must be before --until" in fails_cleanly(
        db("export", "--sqlite", str(sqlite_file), "--out", str(out),
           "--since", "2026-02-01", "--until", "2026-01-01"))
    assert "cannot go to stdout" in fails_cleanly(
        db("export", "--sqlite", str(sqlite_file), "--format", "parquet", "--out", "-"))
    assert "No such file or directory" in fails_cleanly(
        db("export", "--sqlite", str(sqlite_file), "--out", str(tmp_path / "no" / "x.jsonl")))
    config = config_file(tmp_path, {"backend": "memory"})
    assert "no decision log to export" in fails_cleanly(
        db("export", "--config", str(config), "--out", str(out)))
    down = fails_cleanly(db("export", "--postgres-url", POSTGRES_DOWN_URL, "--out", str(out)))
    assert "127.0.0.1:5439/routeyard" in down
    assert not out.exists() and not list(tmp_path.glob(".*.partial"))  # nothing half-written
