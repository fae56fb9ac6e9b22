"""`routeyard serve` tunes the garbage collector for a server (routeyard.serve.tune_gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from routeyard.config.schema import ServerConfig
from routeyard.serve import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_exists_and_raises_the_young_threshold(restored_gc: None) -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    tune_gc(ServerConfig().gc_young_threshold)
    assert gc.get_threshold() == (50_000, *older)
    assert gc.get_freeze_count() > 1000  # the modules, config and tables built so far


def test_zero_keeps_pythons_defaults(restored_gc: None) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
