"""What energy costs the request path: selection and accounting with energy off, with energy
figures configured but not weighed, and weighed (`lambda_energy`), in one run.

    python bench/energy_cost.py [--candidates 4] [--calls 20000] [--rounds 7]

Cases, each timed as the median over `--rounds` interleaved rounds of `--calls` calls:
- `quality_cost` / `ema` `select()` over `--candidates` models: no figures and λ_energy 0 (the
  baseline); figures configured, λ_energy 0; figures and λ_energy 0.5.
- the accountant's energy step (`model_energy` + the served endpoint's rates + joules), for a
  model without figures (a cached None) and with them (one multiply-add more).
Ratios are against the baseline of the same group, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from routeyard.config.schema import ModelConfig
from routeyard.pool.endpoint import PooledModel
from routeyard.pool.energy import model_energy
from routeyard.selection import make_algorithm

ENERGY = ({"gpu": "H100", "gpus": 2, "params_b": 70}, {"gpu": "L4", "params_b": 8},
          {"joules_per_input_token": 0.02, "joules_per_output_token": 0.25},
          {"gpu": "A100", "params_b": 34})


def pool(n: int, energy: bool) -> list[PooledModel]:
    models = []
    for i in range(n):
        config = ModelConfig(name=f"m{i}", endpoints=[{"base_url": "http://127.0.0.1:9/v1"}],
                             pricing={"input_per_mtok": 0.1 * (i + 1),
                                      "output_per_mtok": 0.3 * (i + 1)},
                             energy=ENERGY[i % len(ENERGY)] if energy else None)
        models.append(PooledModel(config.name, config))
    return models


def ns_per_call(call: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - start) / calls


def accounting_step(model: PooledModel) -> Callable[[], Any]:
    def step() -> float | None:  # as Accountant.record does it
        found = model_energy(model.config)
        rates = found.served("m0#0") if found is not None else None
        return rates.joules(120, 256) if rates is not None else None
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    plain, figured = pool(args.candidates, False), pool(args.candidates, True)
    groups: dict[str, dict[str, Callable[[], Any]]] = {}
    for algorithm, extra in (("quality_cost", {}), ("ema", {"epsilon": 0.0})):
        off = make_algorithm(algorithm, extra)
        weighed = make_algorithm(algorithm, {**extra, "lambda_energy": 0.5})
        groups[algorithm] = {
            "energy off": lambda a=off: a.select(plain, 120),
            "figures, λ_energy 0": lambda a=off: a.select(figured, 120),
            "figures, λ_energy 0.5": lambda a=weighed: a.select(figured, 120),
        }
    groups["accounting"] = {"energy off": accounting_step(plain[0]),
                            "figures": accounting_step(figured[0])}
    times: dict[tuple[str, str], list[float]] = {}
    for group in groups.values():  # warm up: caches, the learners' first selections
        for call in group.values():
            ns_per_call(call, 200)
    for _ in range(args.rounds):
        for name, group in groups.items():
            for case, call in group.items():
                times.setdefault((name, case), []).append(ns_per_call(call, args.calls))
    print(f"{args.candidates} candidates, {args.calls} calls x {args.rounds} rounds "
          "(median ns per call; ratio against energy off)")
    for name, group in groups.items():
        base = statistics.median(times[(name, "energy off")])
        for case in group:
            found = statistics.median(times[(name, case)])
            print(f"  {name:<13} {case:<22} {found / 1000:8.2f} µs  x{found / base:.3f}")


if __name__ == "__main__":
    main()
