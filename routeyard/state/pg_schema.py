"""PostgreSQL connections and schema migrations: numbered SQL files, applied in order, once.

Files live in routeyard/state/migrations/postgres/ as NNNN_name.sql. `upgrade(conn)` applies the
missing ones, each in its own transaction together with its row in `schema_migrations`, while
it holds a session advisory lock: replicas (or `routeyard db upgrade` runs) started together
apply each file exactly once, the others wait and then find nothing left to do. A database that
has a version this build does not know is refused with `SchemaMismatch`: an older Routeyard
must not write to a schema it does not understand.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

import asyncpg

from routeyard.state.base import StoreRefused

# Errors that mean "the server cannot be reached or cannot serve this right now".
PG_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.PostgresError,
                                              asyncpg.InterfaceError)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class SchemaMismatch(StoreRefused):
    """The database's schema does not fit this build, and this build cannot fix it."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration this build ships, in order (read once from the package data)."""
    folder = resources.files("routeyard.state").joinpath("migrations", "postgres")
    found = [Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
             for entry in folder.iterdir() if (match := _FILE.match(entry.name))]
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{folder}: migrations must be numbered 0001, 0002, ... without "
                           "gaps or repeats")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version


def check_url(url: str) -> str:
    """The URL, when asyncpg can use it; a ValueError (a config mistake) otherwise."""
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"a PostgreSQL URL starts with postgresql://, not {scheme or url!r}")
    return url


def where(url: str) -> str:
    """host:port/database of a URL, without user or password (for messages and logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def server_settings(schema: str | None) -> dict[str, str]:
    """Per-connection settings: our name in pg_stat_activity, and the schema when one is set
    (tables are named unqualified, so one database can hold several deployments)."""
    settings = {"application_name": "routeyard"}
    if schema is not None:
        settings["search_path"] = quote_ident(schema)
    return settings


async def connect(url: str, *, schema: str | None = None, timeout: float = 10.0,
                  command_timeout: float | None = None) -> asyncpg.Connection:
    """One connection (for migrations and exports; the store itself uses a pool)."""
    return await asyncpg.connect(check_url(url), timeout=timeout,
                                 command_timeout=command_timeout,
                                 server_settings=server_settings(schema))


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    """The versions recorded in `schema_migrations` (none before the first upgrade)."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return set()
    return {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}


async def upgrade(conn: asyncpg.Connection, *, schema: str | None = None) -> list[Migration]:
    """Apply the missing migrations; returns those applied now (empty when up to date)."""
    known = migrations()
    # Unlocked first look: replicas starting on an up-to-date schema take no lock at all.
    applied = await applied_versions(conn)
    _refuse_newer(applied)
    if applied >= {m.version for m in known}:
        return []
    key = _lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_LEDGER)
        applied = await applied_versions(conn)  # again: another process may have been first
        _refuse_newer(applied)
        done: list[Migration] = []
        for migration in known:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) "
                                   "VALUES ($1, $2)", migration.version, migration.name)
            done.append(migration)
        return done
    except asyncpg.InsufficientPrivilegeError as exc:
        raise SchemaMismatch(
            f"the schema is behind (this Routeyard needs version {latest_version()}) and "
            f"this database user may not upgrade it ({exc}): run `routeyard db upgrade` "
            "as the schema's owner") from exc
    finally:
        # A dead connection has released its session lock already.
        with contextlib.suppress(*PG_ERRORS):
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def refuse_newer(conn: asyncpg.Connection) -> None:
    """SchemaMismatch when the database's schema is newer than this build knows."""
    _refuse_newer(await applied_versions(conn))


def _refuse_newer(applied: set[int]) -> None:
    unknown = sorted(applied - {m.version for m in migrations()})
    if unknown:
        raise SchemaMismatch(
            f"the database schema is at version {unknown[-1]}, newer than this Routeyard "
            f"knows (up to {latest_version()}): run a Routeyard at least as new as the one "
            "that upgraded it, or point state.postgres_url at another database")


def _lock_key(schema: str | None) -> int:
    """A stable 64-bit advisory-lock key per schema (Python's hash() varies by process)."""
    digest = hashlib.sha256(f"routeyard-migrations:{schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
