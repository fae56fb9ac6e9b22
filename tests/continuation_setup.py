"""Shared setup for the stream-continuation tests: two simulator backends (A breaks off, B is
healthy), a router config over them, and reading the decision log a router wrote."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
from routerproc import RouterProcess

from routeyard.simulator.text import filler_text

TOKENS = 40  # every simulated answer's length (sd 0), so a continued one is exactly FULL
FULL = filler_text(TOKENS)
CUT = TOKENS // 2  # where the simulator's `disconnect` cuts a stream: after half its tokens
PARTIAL = filler_text(CUT)
SIM_ARGS = ("--model", "sim", "--output-tokens", str(TOKENS), "--tpot-ms", "1", "--seed", "7")
# Priced apart, so that a continued answer's cost shows both calls at their own rates.
PRICES = {"primary": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
          "backup": {"input_per_mtok": 10.0, "output_per_mtok": 20.0}}


def endpoint(url: str, name: str, *, provider: str = "openai", weight: float = 1.0,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"base_url": url, "upstream_model": "sim", "name": name,
                            "weight": weight, "headers": headers or {}}
    if provider == "anthropic":
        spec.update(provider="anthropic", api_key="unused")
    return spec


def model(name: str, *endpoints: dict[str, Any], continuation: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "endpoints": list(endpoints),
                            "pricing": PRICES.get(name, {})}
    if continuation is not None:
        spec["continuation"] = continuation
    return spec


def router_config(models: list[dict[str, Any]], *, candidates: list[str],
                  fallback: list[str]) -> dict[str, Any]:
    return {
        "models": models,
        "default": {"candidates": candidates, "fallback": fallback},
        # No retries, and a breaker that stays closed: every break is continued, none avoided.
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0},
                 "breaker": {"failure_threshold": 100_000, "cooldown_s": 60},
                 "timeouts": {"per_try_s": 10, "total_s": 20}},
    }


def decision_records(gateway: RouterProcess, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """request id → its decision record (model, status, tokens, cost, detail), once the
    router's SQLite writer has flushed them all."""
    db = Path(gateway.process.args[-1]).parent / "state.db"  # type: ignore[index]
    deadline = time.monotonic() + 15
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if not db.exists():
            continue
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT request_id, model, endpoint, status, prompt_tokens, completion_tokens, "
                "cost_usd, detail FROM decisions").fetchall()
        found = {row[0]: {"model": row[1], "endpoint": row[2], "status": row[3],
                          "prompt_tokens": row[4], "completion_tokens": row[5],
                          "cost_usd": row[6], "detail": json.loads(row[7]) if row[7] else None}
                 for row in rows}
        if all(request_id in found for request_id in request_ids):
            return {request_id: found[request_id] for request_id in request_ids}
    missing = [r for r in request_ids if r not in found]
    raise AssertionError(f"no decision record for {missing}")


def openai_client(gateway: RouterProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=30)
