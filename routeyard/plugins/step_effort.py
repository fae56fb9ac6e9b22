"""`step_effort`: the reasoning effort of each step of an agent session (docs/plugins.md).

Planning a task and recovering from a failed tool call are worth thinking about; reading a
tool's output and choosing the next call rarely is. The plugin reads the request's step (the
`step` signal family, `routeyard/signals/step_type.py`) and sets `reasoning_effort` for it:

    plugins:
      - {type: step_effort, efforts: {planning: high, tool_result: low, final: medium,
                                      error_recovery: high}}

- A client's own `reasoning_effort` wins; the plugin's effort replaces a candidate's static
  `reasoning_effort` (the step is the more specific of the two).
- Only models that reason get it: those named in `models`, else those whose
  `capabilities.reasoning` is true when the Router tells the plugin (`PluginBuild`).
- When the `step` family is configured and ran, its result (and its config) is used; otherwise
  the plugin classifies the request itself with the family's defaults (about 10 µs).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from routeyard.config.signals import STEP_NAMES, StepTypeFamily
from routeyard.plugins.base import Plugin, PluginAnswer, PluginBuild, PluginContext, register
from routeyard.signals.step_type import StepClassifier

EFFORTS = ("none", "minimal", "low", "medium", "high")
DEFAULT_STEP_EFFORTS = {"planning": "high", "tool_result": "low", "final": "medium",
                        "error_recovery": "high"}
STEP_HEADER = "x-routeyard-step"  # the step the plugin saw, for the caller
# A client that set any of these chose its own reasoning (OpenAI, Anthropic, vLLM/Qwen forms).
_CLIENT_KEYS = ("reasoning_effort", "thinking", "chat_template_kwargs")


def _efforts(raw: Any) -> dict[str, str]:
    if raw is None:
        return dict(DEFAULT_STEP_EFFORTS)
    if not isinstance(raw, dict):
        raise ValueError("efforts must be a mapping of step to effort")
    for step, effort in raw.items():
        if step not in STEP_NAMES:
            raise ValueError(f"efforts: unknown step '{step}' "
                             f"(known: {', '.join(sorted(STEP_NAMES))})")
        if effort not in EFFORTS:
            raise ValueError(f"efforts.{step} must be one of {', '.join(EFFORTS)}")
    # Steps left out keep the default policy's effort.
    return {**DEFAULT_STEP_EFFORTS, **raw}


def _model_patterns(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) and m for m in raw):
        raise ValueError("models must be a non-empty list of model names (globs allowed)")
    return tuple(raw)


@register
class StepEffortPlugin(Plugin):
    name = "step_effort"
    options = frozenset({"efforts", "models"})

    def __init__(self, options: dict[str, Any], build: PluginBuild | None = None) -> None:
        super().__init__(options, build)
        self.efforts = _efforts(options.get("efforts"))
        patterns = _model_patterns(options.get("models"))
        if patterns is None:
            # The Router's models whose capabilities.reasoning is true.
            known: Iterable[str] | None = build.reasoning_models if build is not None else None
            if known is None:
                raise ValueError("give `models`: the models that take a reasoning effort "
                                 "(built outside a Router, the plugin knows no capabilities)")
            patterns = tuple(known)
        self.models = patterns
        self._reasons: dict[str, bool] = {}  # model name → does it get an effort (memoised)
        self._fallback = StepClassifier(StepTypeFamily())

    def reasons(self, model: str) -> bool:
        found = self._reasons.get(model)
        if found is None:
            found = self._reasons[model] = any(fnmatchcase(model, p) for p in self.models)
        return found

    def step(self, ctx: PluginContext) -> str | None:
        report = ctx.signals
        result = report.results.get("step") if report is not None else None
        if result is not None and result.error is None:
            return result.values.get("step")
        found = self._fallback.classify(ctx.request.body)
        return found[0] if found is not None else None

    def on_request(self, ctx: PluginContext) -> PluginAnswer | None:
        step = self.step(ctx)
        if step is None:
            return None
        ctx.headers[STEP_HEADER] = step
        client = ctx.request.body
        if any(key in client for key in _CLIENT_KEYS) or not self.reasons(ctx.model):
            return None  # the client's own effort wins; a model that does not reason gets none
        ctx.body["reasoning_effort"] = self.efforts[step]
        return None
