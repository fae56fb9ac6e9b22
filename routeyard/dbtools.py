"""`routeyard db`: the durable store's schema and data, from the command line.

    routeyard db upgrade [--config FILE | --postgres-url URL]
    routeyard db export  [--config FILE | --postgres-url URL | --sqlite PATH]
                         [--format parquet|jsonl] --out FILE [--since ISO] [--until ISO]

Each subcommand is a (help, configure, run) triple in SUBCOMMANDS. Failures print one line to
stderr and exit 1 (2 for bad arguments, as argparse does); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from types import ModuleType

from routeyard.catalog import load_config
from routeyard.config import ConfigError, RouteyardConfig
from routeyard.state import default_sqlite_path
from routeyard.state.export import (
    EXPORT_FORMATS,
    Row,
    TimeRange,
    export,
    postgres_rows,
    sqlite_rows,
)

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A failure to report in one line (exit status 1)."""


# -- where the data is ------------------------------------------------------------------


def _add_config_source(group: argparse._MutuallyExclusiveGroup) -> None:
    group.add_argument("--config", help="the YAML config whose `state` to use "
                                        "(keeps the URL's password out of the process list)")
    group.add_argument("--postgres-url", help="postgresql://user[:password]@host:port/database")


def _pg() -> ModuleType:
    """routeyard.state.pg_schema, which needs asyncpg (the `postgres` extra)."""
    try:
        from routeyard.state import pg_schema
    except ImportError as exc:
        raise CommandError(f"PostgreSQL needs asyncpg ({exc}): pip install "
                           "'routeyard[postgres]'") from None
    return pg_schema


def _config_state(path: str) -> RouteyardConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        raise CommandError(error.render()) from None


def _postgres_url(args: argparse.Namespace) -> str | None:
    """The PostgreSQL URL to use; None when the config's backend is not postgres."""
    if args.postgres_url:
        return str(args.postgres_url)
    state = _config_state(args.config).state
    if state.backend != "postgres":
        return None
    if state.postgres_url is None:
        raise CommandError(f"{args.config}: state.postgres_url is not set")
    return state.postgres_url.get_secret_value()


# -- upgrade ----------------------------------------------------------------------------


def _configure_upgrade(parser: argparse.ArgumentParser) -> None:
    _add_config_source(parser.add_mutually_exclusive_group(required=True))


def _run_upgrade(args: argparse.Namespace) -> int:
    url = _postgres_url(args)
    if url is None:
        print(f"{args.config}: state.backend is not postgres: nothing to upgrade (SQLite files "
              "upgrade themselves when opened; Redis has no schema)")
        return 0
    pg = _pg()

    async def run() -> list[str]:
        conn = await pg.connect(url)  # no command timeout: a migration may take a while
        try:
            return [m.label for m in await pg.upgrade(conn)]
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except (ValueError, pg.SchemaMismatch) as error:  # a URL asyncpg cannot use; a newer schema
        raise CommandError(str(error)) from None
    except pg.PG_ERRORS as error:
        raise CommandError(f"PostgreSQL at {pg.where(url)}: {type(error).__name__}: "
                           f"{error}") from None
    version = pg.latest_version()
    if applied:
        print(f"{pg.where(url)}: applied {', '.join(applied)}; schema at version {version}")
    else:
        print(f"{pg.where(url)}: schema up to date at version {version}")
    return 0


# -- export -----------------------------------------------------------------------------


def _timestamp(text: str) -> float:
    """ISO 8601 date or date-time to unix seconds; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or time: {text!r} (e.g. 2026-05-01 or "
            "2026-05-01T12:00:00+02:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _configure_export(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    _add_config_source(source)
    source.add_argument("--sqlite", metavar="PATH", help="a SQLite state file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                        help="default: parquet when --out ends in .parquet, else jsonl")
    parser.add_argument("--out", required=True, help="the file to write; - for stdout (jsonl)")
    parser.add_argument("--since", type=_timestamp, metavar="ISO",
                        help="records that arrived at or after this time (UTC unless a zone "
                             "is given)")
    parser.add_argument("--until", type=_timestamp, metavar="ISO",
                        help="records that arrived before this time")


def _export_rows(args: argparse.Namespace, span: TimeRange
                 ) -> tuple[str, AsyncIterator[list[Row]]]:
    """A description of the source, and its batches of rows."""
    if args.sqlite:
        return args.sqlite, sqlite_rows(args.sqlite, span)
    if not args.postgres_url:
        state = _config_state(args.config).state
        if state.backend == "sqlite":
            path = state.path or str(default_sqlite_path())
            return path, sqlite_rows(path, span)
    url = _postgres_url(args)
    if url is None:
        raise CommandError(f"{args.config}: state.backend has no decision log to export "
                           "(export reads sqlite and postgres)")
    where = _pg().where  # and asyncpg is there
    return where(url), postgres_rows(url, span)


def _run_export(args: argparse.Namespace) -> int:
    fmt = args.format or ("parquet" if args.out.endswith(".parquet") else "jsonl")
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise CommandError("--since must be before --until")
    source, rows = _export_rows(args, TimeRange(args.since, args.until))
    # OSError: files, the network; ValueError: bad --out for the format, a bad URL;
    # RuntimeError: no pyarrow; and what PostgreSQL says.
    failures = (OSError, ValueError, RuntimeError, *_postgres_errors())
    try:
        count = asyncio.run(export(rows, fmt, args.out))
    except failures as error:
        raise CommandError(f"{source}: {error}") from None
    print(f"exported {count} decision records from {source} to {args.out} ({fmt})",
          file=sys.stderr)
    return 0


def _postgres_errors() -> tuple[type[BaseException], ...]:
    try:
        from routeyard.state.pg_schema import PG_ERRORS
    except ImportError:  # a SQLite export needs no asyncpg
        return ()
    return PG_ERRORS


# -- dispatch ---------------------------------------------------------------------------


SUBCOMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "upgrade": ("apply the PostgreSQL schema migrations this version needs (safe to run from "
                "several replicas at once)", _configure_upgrade, _run_upgrade),
    "export": ("write the decision log as Parquet or JSONL, from PostgreSQL or SQLite",
               _configure_export, _run_export),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="db_command", required=True)
    for name, (help_text, configure, _) in SUBCOMMANDS.items():
        configure(subparsers.add_parser(name, help=help_text, description=help_text))


def run_command(args: argparse.Namespace) -> int:
    try:
        return SUBCOMMANDS[args.db_command][2](args)
    except CommandError as error:
        print(f"routeyard db {args.db_command}: {error}", file=sys.stderr)
        return 1
