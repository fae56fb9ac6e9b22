"""Serving a trained router: `algorithm: learned` with `algorithm_options: {artifact, lambda}`.

The artifact (from `routeyard train`) predicts each model's quality for the last user turn (its
embedding, and its text for routers that read it) and the cost it expects for it; the candidate
with the best `quality - λ·cost` wins (minus `lambda_energy` times each candidate's expected
joules over the hungriest one's, when set: docs/routing.md, "Energy"). Candidates the artifact
does not know are skipped by it (and still serve as failover); `model_map` renames dataset
models to config names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routeyard.selection.base import (
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
    register,
)
from routeyard.selection.common import energy_penalties, expected_output_tokens, number

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext


@register
class LearnedSelection(SelectionAlgorithm):
    name = "learned"
    needs_embedding = True
    gives_scores = True

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        from routeyard.selection.learned import load_router

        artifact = self.options.get("artifact")
        if not isinstance(artifact, str):
            raise ValueError("algorithm 'learned' needs algorithm_options.artifact (a file "
                             "made by `routeyard train`)")
        path = Path(artifact)
        if not path.is_absolute() and self.build.base_dir is not None:
            path = self.build.base_dir / path
        self.router = load_router(path)
        self.lam = float(self.options.get("lambda", 1.0))
        self.lam_energy = number(self.options, "lambda_energy", 0.0)
        self.output_tokens = int(number(self.options, "expected_output_tokens", 256))
        model_map = self.options.get("model_map") or {}
        names = [str(model_map.get(m, m)) for m in self.router.models]
        self.column = {name: index for index, name in enumerate(names)}

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        fitting = [c for c in candidates if c.fits(prompt_tokens)]
        known = [c for c in fitting if c.name in self.column]
        if ctx is None or not known:
            return Selection(fitting[0].name, "no learned estimate; first that fits") \
                if fitting else None
        embedding, text = ctx.embedding()[None, :], [ctx.last_user_text]
        predicted, expected = self.router.predict_with_costs(embedding, text)
        quality, cost = predicted[0], expected[0]
        columns = np.array([self.column[c.name] for c in known])
        value = quality[columns] - self.lam * cost[columns] / self.router.cost_scale
        energy = energy_penalties(known, prompt_tokens,
                                  expected_output_tokens(self.output_tokens, ctx),
                                  self.lam_energy)
        if energy is not None:
            value = value - np.asarray(energy)
        best = int(np.argmax(value))
        return Selection(known[best].name,
                         f"{self.router.kind}: predicted quality {quality[columns[best]]:.2f}, "
                         f"λ={self.lam:g}",
                         scores=dict(zip([c.name for c in known], value.tolist(), strict=True)))
