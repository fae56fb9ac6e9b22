"""Shared fixtures: real simulator and router processes, and the dataset folder."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers: simproc, routerproc, stores

from fakeclock import FakeClock
from stores import BACKENDS, build_store, require_postgres, require_redis, unique_prefix

from routeyard.state import Store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_redis: skips without Redis (fails when "
                            "ROUTEYARD_REQUIRE_SERVICES=1)")
    config.addinivalue_line("markers", "needs_postgres: skips without PostgreSQL (fails when "
                            "ROUTEYARD_REQUIRE_SERVICES=1)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Sees marks given through pytest.param too, so the store fixture's redis and postgres
    # cases are covered.
    if item.get_closest_marker("needs_redis") is not None:
        require_redis()
    if item.get_closest_marker("needs_postgres") is not None:
        require_postgres()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique Redis key prefix, cleaned up afterwards."""
    with unique_prefix("test") as p:
        yield p


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, prefix: str, clock: FakeClock
                ) -> AsyncIterator[Store]:
    """A started store of each backend (Redis: the real server, skipped when it is down).
    Key expiry of memory and SQLite follows `clock`."""
    s = build_store(request.param, tmp_path, prefix, clock)
    await s.start()
    yield s
    await s.close()
