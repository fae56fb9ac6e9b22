"""Shared fixtures: real simulator and router processes, and the dataset folder."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers: simproc, routerproc, stores

from stores import BACKENDS, build_store, unique_prefix

from routeyard.state import Store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path, prefix: str
                ) -> AsyncIterator[Store]:
    """A started store of each backend (Redis: the real server, skipped when it is down)."""
    s = build_store(request.param, tmp_path, prefix)
    await s.start()
    yield s
    await s.close()
