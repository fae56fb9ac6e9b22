"""Simulator configuration: per-model profiles (latency plus fault rates) and the whole config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from routeyard.simulator.latency import LatencyModel
from routeyard.simulator.logprobs import StepEntropy

_LATENCY_KEYS = frozenset(f.name for f in dataclasses.fields(LatencyModel))
_RATE_KEYS = (
    "error_5xx_rate",
    "error_429_rate",
    "hang_rate",
    "disconnect_rate",
    "disconnect_before_first_byte_rate",
)
# Fault kinds in the order a single uniform draw walks through their rates.
FAULT_ORDER = ("503", "429", "hang", "disconnect", "disconnect_first")
_FLAG_KEYS = frozenset({"omit_usage", "embedding", "logprobs"})
_INT_KEYS = frozenset({"output_tokens_min", "output_tokens_max", "step_tokens",
                       "prefix_cache_tokens", "kv_cache_tokens"})


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """One simulated model: its latency model and how often it misbehaves."""

    latency: LatencyModel = field(default_factory=LatencyModel)
    error_5xx_rate: float = 0.0
    error_429_rate: float = 0.0
    hang_rate: float = 0.0
    disconnect_rate: float = 0.0
    disconnect_before_first_byte_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_s: float = 3600.0
    omit_usage: bool = False
    # Serves /v1/embeddings (and refuses chat); a name containing "embed" does so too.
    embedding: bool = False
    # Answers `logprobs: true` with token logprobs; false: with `logprobs: null`, as a backend
    # that has none does.
    logprobs: bool = True
    # > 0: answers are reasoning steps of this many words, separated by blank lines.
    step_tokens: int = 0
    # The first token's entropy of each step (see logprobs.py); None: as any other token's.
    step_entropy: StepEntropy | None = None
    # The prefix cache's capacity, in prompt tokens (see prefix_cache.py); 0: no cache.
    prefix_cache_tokens: int = 0
    # The KV cache's capacity in tokens, for /metrics' KV usage (load_metrics.py); 0: none.
    kv_cache_tokens: int = 0

    def __post_init__(self) -> None:
        for key in _RATE_KEYS:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1]")
        if self.retry_after_s < 0 or self.hang_s < 0:
            raise ValueError("retry_after_s and hang_s must be >= 0")
        if self.step_tokens < 0:
            raise ValueError("step_tokens must be >= 0")
        if self.prefix_cache_tokens < 0 or self.kv_cache_tokens < 0:
            raise ValueError("prefix_cache_tokens and kv_cache_tokens must be >= 0")

    @property
    def models_prefill(self) -> bool:
        """Whether requests pay prefill time or hit a prefix cache (their prompt's blocks
        are then hashed)."""
        return self.latency.prefill_ms_per_1k_tokens > 0 or self.prefix_cache_tokens > 0

    @property
    def fault_rates(self) -> tuple[float, ...]:
        return tuple(getattr(self, key) for key in _RATE_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """Flat form, the same keys that config files and PUT /_sim/profiles accept."""
        out: dict[str, Any] = dataclasses.asdict(self.latency)
        for f in dataclasses.fields(self):
            if f.name != "latency":
                out[f.name] = getattr(self, f.name)
        if self.step_entropy is not None:
            out["step_entropy"] = self.step_entropy.to_wire()
        return out

    def merged(self, updates: Mapping[str, Any]) -> ModelProfile:
        """A new profile with flat `updates` applied; bad keys or values raise ValueError."""
        if not isinstance(updates, Mapping):
            raise ValueError("a profile must be a JSON/YAML object")
        own = {f.name for f in dataclasses.fields(self)} - {"latency"}
        unknown = set(updates) - own - _LATENCY_KEYS
        if unknown:
            raise ValueError(f"unknown profile keys: {', '.join(sorted(unknown))}")
        try:
            latency = dataclasses.replace(
                self.latency, **{k: _number(k, v) for k, v in updates.items() if k in _LATENCY_KEYS}
            )
            rest = {
                k: _own_value(k, v)
                for k, v in updates.items()
                if k in own
            }
            return dataclasses.replace(self, latency=latency, **rest)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: ModelProfile | None = None) -> ModelProfile:
        return (base or cls()).merged(data)


def _own_value(key: str, value: Any) -> Any:
    if key in _FLAG_KEYS:
        return bool(value)
    if key == "step_entropy":
        return None if value is None else StepEntropy.parse(value)
    return _number(key, value)


def _number(key: str, value: Any) -> float | int:
    # bool is an int subclass; refuse it so `ttft_ms: true` is reported, not read as 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    if key in _INT_KEYS:
        return int(value)
    return float(value)


@dataclass(slots=True)
class SimulatorConfig:
    """Everything a simulator app needs; `models` maps served model names to profiles."""

    models: dict[str, ModelProfile] = field(default_factory=dict)
    default: ModelProfile = field(default_factory=ModelProfile)
    accept_any_model: bool = False
    seed: int = 0
    replay: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatorConfig:
        if not isinstance(data, Mapping):
            raise ValueError("simulator config must be an object")
        unknown = set(data) - {"models", "default", "accept_any_model", "seed", "replay"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        default = ModelProfile.from_dict(data.get("default") or {})
        raw_models = data.get("models") or {}
        if isinstance(raw_models, list):  # a bare list of names: all get the default profile
            raw_models = {name: {} for name in raw_models}
        if not isinstance(raw_models, Mapping):
            raise ValueError("models must be an object or a list of names")
        models = {}
        for name, profile in raw_models.items():
            try:
                models[str(name)] = ModelProfile.from_dict(profile or {}, base=default)
            except ValueError as exc:
                raise ValueError(f"models.{name}: {exc}") from exc
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        replay = data.get("replay")
        return cls(
            models=models,
            default=default,
            accept_any_model=bool(data.get("accept_any_model", False)),
            seed=seed,
            replay=str(replay) if replay else None,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SimulatorConfig:
        path = Path(path)
        raw = path.read_bytes()
        data = orjson.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        config = cls.from_dict(data or {})
        if config.replay and not Path(config.replay).is_absolute():
            config.replay = str(path.parent / config.replay)  # relative to the config file
        return config


def demo_config() -> SimulatorConfig:
    """Three fault-free models with distinct speeds, for the router's built-in demo pool."""

    def profile(ttft: float, tpot: float, mean: float) -> ModelProfile:
        latency = LatencyModel(
            ttft_ms=ttft,
            tpot_ms=tpot,
            output_tokens_mean=mean,
            output_tokens_sd=mean / 4,
            output_tokens_min=8,
            output_tokens_max=int(mean * 3),
        )
        return ModelProfile(latency=latency)

    return SimulatorConfig(
        models={
            "sim-small": profile(ttft=20, tpot=1.5, mean=48),
            "sim-medium": profile(ttft=80, tpot=4, mean=80),
            "sim-large": profile(ttft=250, tpot=8, mean=120),
        },
        default=profile(ttft=80, tpot=4, mean=80),
    )
