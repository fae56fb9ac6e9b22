"""The simulator's `GET /metrics`: vLLM's load gauges, from its own queue model, per model.

For each served model (label `model_name`, as vLLM labels them):
- `vllm:num_requests_waiting`: requests being answered whose prefill has not started yet
  (queued behind the model's earlier prefills; only profiles that model prefill queue);
- `vllm:num_requests_running`: the other requests being answered (prefill or decode);
- `vllm:kv_cache_usage_perc`: the tokens those requests hold (prompt + planned answer) over
  the profile's `kv_cache_tokens`, at most 1; 0 when the profile sets no capacity.
"""

from __future__ import annotations

from collections.abc import Mapping

from routeyard.simulator.engine import ModelState

_GAUGES = (
    ("vllm:num_requests_running", "Number of requests in model execution batches."),
    ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
)


def model_load(state: ModelState, now: float) -> tuple[int, int, float]:
    """(running, waiting, KV usage) of one model at `now` (the engine's clock)."""
    waiting = sum(1 for plan in state.active.values()
                  if plan.prefill_start is not None and plan.prefill_start > now)
    capacity = state.profile.kv_cache_tokens
    kv_usage = 0.0
    if capacity:
        held = sum(plan.prompt_tokens + plan.completion_tokens for plan in state.active.values())
        kv_usage = min(1.0, held / capacity)
    return len(state.active) - waiting, waiting, kv_usage


def render_metrics(states: Mapping[str, ModelState], now: float) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of every model's load."""
    loads = {name: model_load(state, now) for name, state in states.items()}
    lines: list[str] = []
    for index, (metric, help_text) in enumerate(_GAUGES):
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f'{metric}{{model_name="{_label(name)}"}} {float(load[index])!r}'
                  for name, load in loads.items()]
    return ("\n".join(lines) + "\n").encode()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
