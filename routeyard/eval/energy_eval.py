"""The energy-quality frontier of `routeyard eval --energy`: energy estimated from model size.

Routing datasets record dollars, not joules. Each model's joules per token are estimated by
routeyard/pool/energy.py as if it ran on H100s with the default assumptions (docs/routing.md,
"Energy"), from its parameter count: the `size` a dataset's models.json gives (llmrouter), else
the table below. A call's joules are its prompt's tokens (cl100k) times the input rate plus its
output tokens (the recorded response's, else OUTPUT_TOKENS, as llmrouter's cost estimate
assumes) times the output rate. A router chooses by quality - λ_energy · (expected joules / the
hungriest model's) with the output length unknown (OUTPUT_TOKENS), and is scored on the call's
joules; each λ of the grid is one point of its curve.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from routeyard.config.schema import EnergyConfig
from routeyard.dataset import RoutingDataset
from routeyard.eval import metrics
from routeyard.pool.energy import EnergyRates, estimate
from routeyard.tokens import count_text_tokens

OUTPUT_TOKENS = 200
GPU = "H100"

# Billions of parameters a token goes through (active ones for a mixture of experts). Open
# models: their model cards. Closed models: no figure is published; these are ASSUMPTIONS
# (press reports or guesses of the class), so their joules are guesses too.
PARAMS_B: dict[str, float] = {
    "WizardLM/WizardLM-13B-V1.2": 13.0,
    "meta/code-llama-instruct-34b-chat": 34.0,
    "meta/llama-2-70b-chat": 70.0,
    "mistralai/mistral-7b-chat": 7.3,
    "mistralai/mixtral-8x7b-chat": 12.9,  # 46.7B in all, 2 of 8 experts a token
    "zero-one-ai/Yi-34B-Chat": 34.4,
    "gpt-3.5-turbo-1106": 20.0,  # ASSUMPTION: a withdrawn Microsoft paper's figure
    "gpt-4-1106-preview": 280.0,  # ASSUMPTION: reported MoE, ~280B active of ~1.8T
    "claude-instant-v1": 20.0,  # ASSUMPTION: an instant-class model
    "claude-v1": 70.0,  # ASSUMPTION
    "claude-v2": 130.0,  # ASSUMPTION
}
ASSUMED = frozenset({"gpt-3.5-turbo-1106", "gpt-4-1106-preview", "claude-instant-v1",
                     "claude-v1", "claude-v2"})
# Mixtures of experts whose models.json `size` is their total: the active count instead.
ACTIVE_B: dict[str, float] = {"mixtral-8x7b-instruct-v0.1": 12.9,
                              "mixtral-8x22b-instruct-v0.1": 39.0}


def model_sizes(folder: str | Path, models: list[str]) -> tuple[dict[str, float], list[str]]:
    """Each model's billions of (active) parameters, and the models with none known."""
    declared: dict[str, Any] = {}
    found = Path(folder)
    listing = (found if found.is_dir() else found.parent) / "models.json"
    if listing.is_file():
        declared = json.loads(listing.read_text()).get("models") or {}
    sizes, unknown = {}, []
    for model in models:
        size = (declared.get(model) or {}).get("size")
        match = re.fullmatch(r"\s*([\d.]+)\s*[Bb]\s*", str(size)) if size else None
        if model in ACTIVE_B:
            sizes[model] = ACTIVE_B[model]
        elif match:
            sizes[model] = float(match.group(1))
        elif model in PARAMS_B:
            sizes[model] = PARAMS_B[model]
        else:
            unknown.append(model)
    return sizes, unknown


def joules(data: RoutingDataset, rates: list[EnergyRates], *, expected: bool) -> np.ndarray:
    """(prompts, models) joules: with OUTPUT_TOKENS out (`expected`), else the recorded
    response's tokens where there is one."""
    prompt = np.array([count_text_tokens(p) for p in data.prompts], dtype=np.float64)
    out = np.full((len(data), len(rates)), float(OUTPUT_TOKENS))
    if not expected and data.responses:
        for i, answers in enumerate(data.responses):
            for j, model in enumerate(data.models):
                if answers.get(model):
                    out[i, j] = count_text_tokens(answers[model])
    input_j = np.array([r.input_j for r in rates])
    output_j = np.array([r.output_j for r in rates])
    return prompt[:, None] * input_j[None, :] + out * output_j[None, :]


class EnergyFrontier:
    """The test split's joules, expected and true, for scoring routers' energy curves."""

    def __init__(self, folder: str | Path, test: RoutingDataset) -> None:
        self.sizes, self.unknown = model_sizes(folder, list(test.models))
        self.test = test
        if self.unknown:
            return
        rates = [estimate(EnergyConfig(gpu=GPU, params_b=self.sizes[m])) for m in test.models]
        self.rates = rates
        self.expected = joules(test, rates, expected=True)
        self.true = joules(test, rates, expected=False)
        self.relative = self.expected / self.expected.max(axis=1, keepdims=True)
        self.curves: dict[str, dict[str, Any]] = {}

    @property
    def usable(self) -> bool:
        return not self.unknown

    def singles(self) -> list[dict[str, Any]]:
        energy = self.true.mean(axis=0)
        quality = self.test.scores.mean(axis=0)
        return [{"model": m, "energy_j": float(e), "quality": float(q),
                 "params_b": self.sizes[m], "assumed": m in ASSUMED}
                for m, e, q in zip(self.test.models, energy, quality, strict=True)]

    def add(self, name: str, predicted: np.ndarray, lambdas: tuple[float, ...]) -> None:
        """A router's curve from its predicted quality (prompts, models) over the λ grid."""
        rows = np.arange(len(self.test))
        points: dict[tuple[float, float], float] = {}
        for lam in lambdas:
            chosen = np.argmax(predicted - lam * self.relative, axis=1)
            point = (float(self.true[rows, chosen].mean()),
                     float(self.test.scores[rows, chosen].mean()))
            points.setdefault(point, lam)
        curve = sorted(points)
        singles = [(s["energy_j"], s["quality"]) for s in self.singles()]
        self.curves[name] = {"aiq": metrics.aiq(curve, singles),
                             "curve": [[e, q] for e, q in curve],
                             "lambdas": [points[p] for p in curve]}

    def result(self) -> dict[str, Any]:
        if not self.usable:
            return {"skipped": f"no parameter count for {', '.join(self.unknown)}"}
        return {"gpu": GPU, "output_tokens": OUTPUT_TOKENS,
                "assumptions": "routeyard/pool/energy.py defaults (docs/routing.md, Energy); "
                               "closed models' sizes are assumptions (assumed: true)",
                "single_models": self.singles(), "algorithms": self.curves}
