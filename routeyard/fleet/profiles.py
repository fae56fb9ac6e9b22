"""GPU profiles (YAML data files) and the pools built from them.

A profile names a GPU type, its idle and peak power, its price, and per model: tensor
parallelism, prefill throughput, the decode step time as a function of batch size and context
(`base_ms + per_seq_ms * batch + per_context_token_us * tokens in the batch's KV cache`),
the KV-cache capacity in tokens and the largest batch. The shipped profiles live in
`routeyard/fleet/profiles/`; `--profiles DIR` adds or overrides others. Every error names the
file and the key (`H100.yaml: models.llama-3.1-8b.decode.base_ms: must be a number >= 0`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHIPPED = Path(__file__).resolve().parent / "profiles"


class FleetInputError(ValueError):
    """Bad input (a trace, a profile, a pool): the CLI prints it on one line and exits 2."""


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model runs on one replica (tensor_parallel GPUs) of a GPU type."""

    gpu: str
    model: str
    tensor_parallel: int
    prefill_tokens_per_s: float
    prefill_overhead_ms: float
    decode_base_ms: float
    decode_per_seq_ms: float
    decode_per_context_token_us: float
    kv_capacity_tokens: int
    max_batch: int
    idle_w: float  # per GPU
    peak_w: float  # per GPU
    price_per_hour: float  # per GPU


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """`count` replicas of one model on one GPU type; `max_context` bounds what the
    context-length policy sends here (None: anything). `role` is `mixed`, or `prefill` /
    `decode` for a disaggregated pair."""

    name: str
    profile: ModelProfile
    count: int
    max_context: int | None = None
    role: str = "mixed"


def _number(data: dict[str, Any], key: str, where: str, *, minimum: float = 0.0,
            positive: bool = False) -> float:
    if key not in data:
        raise FleetInputError(f"{where}{key}: missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum or (
            positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum:g}"
        raise FleetInputError(f"{where}{key}: must be a number {bound}, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FleetInputError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def parse_profile(data: Any, source: str) -> dict[str, ModelProfile]:
    """The models of one profile file, by model name; `source` prefixes every error."""
    root = _mapping(data, f"{source}: (top level)")
    name = root.get("name")
    if not isinstance(name, str) or not name:
        raise FleetInputError(f"{source}: name: must be a non-empty string")
    power = _mapping(root.get("power_w"), f"{source}: power_w")
    idle = _number(power, "idle", f"{source}: power_w.")
    peak = _number(power, "peak", f"{source}: power_w.", positive=True)
    if peak < idle:
        raise FleetInputError(f"{source}: power_w.peak: must be >= power_w.idle")
    price = _number(root, "price_per_hour", f"{source}: ")
    models = _mapping(root.get("models"), f"{source}: models")
    if not models:
        raise FleetInputError(f"{source}: models: must list at least one model")
    profiles: dict[str, ModelProfile] = {}
    for model, spec in models.items():
        where = f"{source}: models.{model}."
        body = _mapping(spec, where.rstrip("."))
        decode = _mapping(body.get("decode"), f"{where}decode")
        tp = _number(body, "tensor_parallel", where, minimum=1)
        batch = _number(body, "max_batch", where, minimum=1)
        kv = _number(body, "kv_capacity_tokens", where, minimum=1)
        if tp != int(tp) or batch != int(batch) or kv != int(kv):
            raise FleetInputError(f"{where.rstrip('.')}: tensor_parallel, max_batch and "
                                  "kv_capacity_tokens must be integers")
        profiles[str(model)] = ModelProfile(
            gpu=name, model=str(model), tensor_parallel=int(tp),
            prefill_tokens_per_s=_number(body, "prefill_tokens_per_s", where, positive=True),
            prefill_overhead_ms=_number(body, "prefill_overhead_ms", where),
            decode_base_ms=_number(decode, "base_ms", f"{where}decode."),
            decode_per_seq_ms=_number(decode, "per_seq_ms", f"{where}decode."),
            decode_per_context_token_us=_number(decode, "per_context_token_us",
                                                f"{where}decode."),
            kv_capacity_tokens=int(kv), max_batch=int(batch),
            idle_w=idle, peak_w=peak, price_per_hour=price)
    return profiles


def load_profile_file(path: Path) -> tuple[str, dict[str, ModelProfile]]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise FleetInputError(f"{path.name}{line}: not valid YAML") from None
    except OSError as exc:
        raise FleetInputError(f"{path}: cannot read ({exc.strerror})") from None
    models = parse_profile(data, path.name)
    return next(iter(models.values())).gpu, models


def load_profiles(extra_dir: str | None = None) -> dict[str, dict[str, ModelProfile]]:
    """Every profile by GPU name (then model): the shipped ones, then `extra_dir`'s."""
    found: dict[str, dict[str, ModelProfile]] = {}
    dirs = [SHIPPED] + ([Path(extra_dir)] if extra_dir else [])
    for directory in dirs:
        if not directory.is_dir():
            raise FleetInputError(f"{directory}: no such profile directory")
        for path in sorted(directory.glob("*.yaml")):
            gpu, models = load_profile_file(path)
            found[gpu] = models
    return found


def resolve(profiles: dict[str, dict[str, ModelProfile]], gpu: str,
            model: str | None) -> ModelProfile:
    if gpu not in profiles:
        raise FleetInputError(f"unknown GPU {gpu!r}: known {', '.join(sorted(profiles))}")
    models = profiles[gpu]
    if model is None:
        return next(iter(models.values()))
    if model not in models:
        raise FleetInputError(f"GPU {gpu} has no profile for model {model!r}: known "
                              f"{', '.join(models)}")
    return models[model]


def parse_pool(text: str, profiles: dict[str, dict[str, ModelProfile]], model: str | None,
               index: int) -> PoolSpec:
    """`GPU:COUNT[:MAX_CONTEXT[:ROLE]]`, e.g. `H100:4:8192` or `H100:2::prefill`."""
    parts = text.split(":")
    where = f"--pool {text!r}"
    if not 2 <= len(parts) <= 4:
        raise FleetInputError(f"{where}: expected GPU:COUNT[:MAX_CONTEXT[:ROLE]]")
    try:
        count = int(parts[1])
        max_context = int(parts[2]) if len(parts) > 2 and parts[2] else None
    except ValueError:
        raise FleetInputError(f"{where}: COUNT and MAX_CONTEXT must be integers") from None
    role = parts[3] if len(parts) > 3 else "mixed"
    if count < 1:
        raise FleetInputError(f"{where}: COUNT must be >= 1")
    if role not in ("mixed", "prefill", "decode"):
        raise FleetInputError(f"{where}: ROLE must be mixed, prefill or decode")
    profile = resolve(profiles, parts[0], model)
    name = f"{parts[0]}-{index}" + (f"-le{max_context}" if max_context else "")
    return PoolSpec(name=name, profile=profile, count=count, max_context=max_context, role=role)
