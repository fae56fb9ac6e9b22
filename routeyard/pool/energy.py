"""Energy per token: explicit figures, or an estimate from a GPU profile and a parameter count.

A model (or one endpoint of it) carries `energy:` in its config, in one of two forms:

    energy: {joules_per_input_token: 0.05, joules_per_output_token: 0.6}     # measured figures
    energy: {gpu: H100, gpus: 2, params_b: 70}                               # estimated

The estimate (docs/routing.md, "Energy") assumes a dense transformer served in BF16:

    decode  J/token = P·n / decode tokens/s,   decode tokens/s  = n·B·u_bw / (b·N) · batch
    prefill J/token = P·n / prefill tokens/s,  prefill tokens/s = n·F·MFU / (2·N)

P: the GPU's TDP (watts; an upper bound, inference rarely sustains it), n: GPUs serving one
replica, B: HBM bandwidth (bytes/s), u_bw: achieved share of it, b: bytes per parameter, N:
parameters (active ones, for a mixture of experts), F: dense BF16 FLOP/s, MFU: achieved share
of it. Decode is memory-bound (every step reads all weights once for the whole batch); prefill
is compute-bound (2·N FLOPs a token). KV-cache reads, idle power, host CPUs, networking and
cooling (PUE) are left out. With ideal tensor parallelism n cancels out of both; it is kept so
that the formula reads as power over throughput.

Another helper's fleet simulator (`routeyard/fleet/`) keeps GPU profiles of its own; the two
tables should agree (see the figures' sources below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from routeyard.config.schema import EnergyConfig

if TYPE_CHECKING:
    from routeyard.config.schema import ModelConfig


@dataclass(frozen=True, slots=True)
class GpuProfile:
    tdp_w: float  # board power, watts
    hbm_bytes_s: float  # memory bandwidth, bytes/s
    bf16_flops: float  # dense (no sparsity) BF16 tensor FLOP/s


# Vendor datasheet figures for the SXM / data-centre parts; the keys are the schema's GpuName.
GPUS: dict[str, GpuProfile] = {
    # NVIDIA H100 SXM5 datasheet: 700 W, 3.35 TB/s HBM3, 989 TFLOPS BF16 dense (1979 sparse).
    "H100": GpuProfile(700.0, 3.35e12, 989e12),
    # NVIDIA A100 80GB SXM datasheet: 400 W, 2,039 GB/s HBM2e, 312 TFLOPS BF16 dense.
    "A100": GpuProfile(400.0, 2.039e12, 312e12),
    # NVIDIA L4 datasheet: 72 W, 300 GB/s GDDR6, 242 TFLOPS BF16 with sparsity → 121 dense.
    "L4": GpuProfile(72.0, 300e9, 121e12),
    # NVIDIA HGX B200 (per GPU): 1,000 W, 8 TB/s HBM3e, 4.5 PFLOPS FP16/BF16 sparse → 2.25
    # dense.
    "B200": GpuProfile(1000.0, 8e12, 2.25e15),
}


@dataclass(frozen=True, slots=True)
class EnergyRates:
    """Joules per prompt token and per completion token."""

    input_j: float
    output_j: float

    def joules(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_j + completion_tokens * self.output_j


def estimate(config: EnergyConfig) -> EnergyRates:
    """The rates of an `energy:` section: its own figures, else the formula above."""
    if config.joules_per_input_token is not None and config.joules_per_output_token is not None:
        return EnergyRates(config.joules_per_input_token, config.joules_per_output_token)
    assert config.gpu is not None and config.params_b is not None  # the schema checked it
    gpu = GPUS[config.gpu]
    n, params = config.gpus, config.params_b * 1e9
    power = gpu.tdp_w * n
    decode_tokens_s = (n * gpu.hbm_bytes_s * config.bandwidth_utilisation
                       / (config.bytes_per_param * params) * config.batch)
    prefill_tokens_s = n * gpu.bf16_flops * config.mfu / (2.0 * params)
    return EnergyRates(power / prefill_tokens_s, power / decode_tokens_s)


@dataclass(frozen=True, slots=True)
class ModelEnergy:
    """A model's rates, and those of any endpoint that has its own."""

    rates: EnergyRates | None  # the model's, or the weighted mean of its endpoints'
    by_endpoint: dict[str, EnergyRates]

    def served(self, endpoint: str | None) -> EnergyRates | None:
        """The rates of the endpoint that answered (its own, else the model's)."""
        if endpoint is not None and self.by_endpoint:
            return self.by_endpoint.get(endpoint, self.rates)
        return self.rates


def _resolve(config: ModelConfig) -> ModelEnergy | None:
    by_endpoint: dict[str, EnergyRates] = {}
    weights: list[tuple[float, EnergyRates]] = []
    own = estimate(config.energy) if config.energy is not None else None
    for index, endpoint in enumerate(config.endpoints):
        found = estimate(endpoint.energy) if endpoint.energy is not None else own
        if endpoint.energy is not None:
            by_endpoint[endpoint.name or f"{config.name}#{index}"] = found  # type: ignore[assignment]
        if found is not None:
            weights.append((endpoint.weight, found))
    if own is None and not by_endpoint:
        return None
    if own is None:  # only some endpoints say: selection weighs their traffic-weighted mean
        total = sum(w for w, _ in weights)
        own = EnergyRates(sum(w * r.input_j for w, r in weights) / total,
                          sum(w * r.output_j for w, r in weights) / total)
    return ModelEnergy(own, by_endpoint)


# id(config) → (config, its energy). The config is held so that its id cannot be reused by
# another object while the entry lives; reloads add entries, so the cache is bounded.
_CACHE: dict[int, tuple[ModelConfig, ModelEnergy | None]] = {}
_CACHE_MAX = 4096


def model_energy(config: ModelConfig) -> ModelEnergy | None:
    """A model config's energy (None when neither it nor an endpoint has figures), computed
    once per config object: on the request path this is one dict lookup."""
    found = _CACHE.get(id(config))
    if found is not None and found[0] is config:
        return found[1]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    energy = _resolve(config)
    _CACHE[id(config)] = (config, energy)
    return energy


def expected_energy(candidate: object, prompt_tokens: int, output_tokens: int) -> float:
    """Joules this request would take on a selection candidate (0 without figures, as a
    model without pricing costs $0)."""
    config = getattr(candidate, "config", None)
    if config is None:
        return 0.0
    energy = model_energy(config)
    if energy is None or energy.rates is None:
        return 0.0
    return energy.rates.joules(prompt_tokens, output_tokens)


def relative(values: list[float]) -> list[float]:
    """Each value over the largest (all 0 when the largest is 0): unitless, in [0, 1]."""
    top = max(values, default=0.0)
    return [v / top for v in values] if top > 0 else [0.0] * len(values)
