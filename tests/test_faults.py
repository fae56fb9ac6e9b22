"""Faults (issue 13) that no other test covers, as assertions over bench/faults.py's scenarios
at a small size: SIGTERM with 100 streams in flight, and SIGKILL of the router during writes
(SQLite and PostgreSQL). The full run, with every fault and its figures, is
`python bench/faults.py` (docs/reliability.md, "Faults").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import faults  # bench/faults.py

# The first SIGTERM is handled by the drain; uvicorn then re-raises it: -SIGTERM is clean.
CLEAN_EXIT = (0, -15)


def test_sigterm_with_100_streams_in_flight_loses_none(tmp_path: Path) -> None:
    """100 streams of ~1.5 s, SIGTERM once each has its first chunk, a drain window (30 s)
    longer than they last: every one completes, the router exits as soon as they have (not
    at the window's end), and each has its decision record."""
    result = faults.sigterm_streams(tmp_path, 100, grace_s=30.0, tokens=50, tpot_ms=30.0)
    assert result["completed"] == 100, result
    assert result["error_events"] == result["connection_errors"] == 0, result
    assert result["exit_code"] in CLEAN_EXIT
    assert result["exit_after_sigterm_s"] < 15, result
    assert result["records_expected"] == result["records_found"] == 100, result
    assert result["record_statuses"] == {"ok": 100}
    assert result["router_log_problems"] == []


def test_sigterm_past_the_drain_window_ends_every_stream_with_an_error_event(
        tmp_path: Path) -> None:
    """The same 100 streams, ~6 s long, and 10 whole requests as long, with a window of
    0.5 s: each stream ends with an SSE error event (never a cut connection), each whole
    request gets a 503 `server_shutting_down` in OpenAI's schema (not uvicorn's plain 500),
    all are logged `shutdown`, and the router exits promptly."""
    result = faults.sigterm_streams(tmp_path, 100, grace_s=0.5, tokens=200, tpot_ms=30.0,
                                    whole=10)
    assert result["error_events"] == 100, result
    assert result["completed"] == result["connection_errors"] == 0, result
    assert result["whole_failures"] == {"http_503": 10}, result
    assert result["last_stream_end_after_sigterm_s"] < 3, result
    assert result["exit_code"] in CLEAN_EXIT
    assert result["records_found"] == 110, result
    assert result["record_statuses"] == {"shutdown": 110}
    assert result["router_log_problems"] == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                             marks=pytest.mark.needs_postgres)])
def test_kill9_during_writes_loses_nothing_flushed_nor_acknowledged(
        backend: str, tmp_path: Path) -> None:
    """SIGKILL the router under chat and feedback (40 requests/s): whatever the store had at
    the kill is still there after a restart, every acknowledged feedback's claim survived
    (sent again, it is a 409), and the only records lost are of requests answered within the
    last moments before the kill (the write-behind buffer, flushed every 0.1 s)."""
    result = faults.kill9_during_writes(tmp_path, backend, faults.Settings(rate=40.0),
                                        seconds=3.0, kill_at=2.5)
    assert result["answered_before_kill"] >= 50, result
    assert result["in_flight_at_kill"] + result["sent_after_kill"] > 0, result  # it died
    assert result["flushed_records_lost_in_restart"] == 0, result
    assert result["records_found_after_restart"] >= result["records_found_after_kill"]
    # 0.1 s of flush interval, with slack for a loaded machine.
    assert result["lost_answered_within_ms_of_kill"] <= 500, result
    assert result["records_lost"] <= result["answered_before_kill"] // 10, result
    assert result["feedback_acknowledged"] >= 20, result
    assert result["feedback_lost"] == 0, result
    assert set(result["resent_feedback"]) == {"409"}, result
    assert result["after_restart"]["failed"] == 0, result
    if backend == "sqlite":
        assert result["sqlite_integrity"] == "ok"
    assert result["router_log_problems"] == []
