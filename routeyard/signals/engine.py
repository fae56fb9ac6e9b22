"""The signal engine: compute only the families some decision references, each timed, with
its failure policy applied, and flatten the matches for the rule trees."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routeyard import tracing
from routeyard.config.signals import SignalsConfig
from routeyard.errors import RouteyardError
from routeyard.signals.base import FAMILIES, Family, FamilyBuild, FamilyResult, RequestContext
from routeyard.signals.embedder import Embedder, load_embedder

if TYPE_CHECKING:
    from routeyard.pool import Pool
    from routeyard.state import Store

log = logging.getLogger("routeyard.signals")

# What a failing family may raise; anything else is a bug and propagates.
SIGNAL_ERRORS = (ValueError, TypeError, KeyError, IndexError, RuntimeError, OSError,
                 ArithmeticError)


class SignalFailed(RouteyardError):
    status = 503
    type = "server_error"
    code = "signal_failed"


class SignalReport:
    """Every computed family's result, and the flat `family:name → confidence` view."""

    def __init__(self, results: dict[str, FamilyResult], leaves: dict[str, float]) -> None:
        self.results = results
        self.leaves = leaves

    def matched(self) -> list[str]:
        return sorted(self.leaves)

    def explain(self) -> dict[str, Any]:
        return {
            family: {"latency_ms": round(result.latency_ms, 4),
                     "matches": {name: {"confidence": round(m.confidence, 3), "value": m.value}
                                 for name, m in result.matches.items()},
                     "values": result.values,
                     **({"error": result.error} if result.error else {})}
            for family, result in self.results.items()
        }


class SignalEngine:
    def __init__(self, config: SignalsConfig, referenced: Mapping[str, set[str]],
                 base_dir: Path | None = None, *, embedder_needed: bool = False,
                 pool: Pool | None = None, store: Store | None = None) -> None:
        """`referenced` maps each family that some rule uses to the names it uses;
        `embedder_needed` loads the embedding model for others (learned selection); `pool`
        is for families that call a model (guard); `store` for those that keep state."""
        configured = config.families()
        self.referenced = {f: names for f, names in referenced.items() if f in configured}
        needs_embedder = embedder_needed or any(
            FAMILIES[f].needs_embedder for f in self.referenced)
        self.embedder: Embedder | None = (
            load_embedder(config.embedding_model.model) if needs_embedder else None)
        build = FamilyBuild(self.embedder, base_dir, pool, store)
        self.families: list[Family] = [
            FAMILIES[name].build(configured[name], build)
            for name in configured if name in self.referenced
        ]
        # A child span per learned family (tracing on); a regex or a lookup is not worth one.
        self._span_names: dict[str, str | None] = {
            f.name: f"routeyard.signal.{f.name}" if f.is_learned() else None
            for f in self.families}
        self._sync = [f for f in self.families if not f.is_async]
        self._async = [f for f in self.families if f.is_async]

    async def warm_up(self) -> None:
        """Load what families load lazily (BPE tables, the language model), so the first
        request does not pay half a second for it."""
        ctx = self.context({"messages": [{"role": "user", "content": "Warm up, please."}]})
        if "context_length" in self.referenced:
            _ = ctx.prompt_tokens
        for family in self._sync:  # not the async ones: a guard model is not called at start
            try:
                family.evaluate(ctx)
            except SIGNAL_ERRORS as error:
                log.warning("signal family %s failed to warm up: %s", family.name, error)

    def context(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
                ) -> RequestContext:
        return RequestContext(body, headers, self.embedder)

    async def evaluate(self, ctx: RequestContext) -> SignalReport:
        with tracing.span("routeyard.signals") as span:
            results: dict[str, FamilyResult] = {}
            for family in self._sync:
                with tracing.span(self._span_names[family.name]):  # None: no span
                    started = time.perf_counter()
                    try:
                        result = family.evaluate(ctx)
                    except SIGNAL_ERRORS as error:
                        result = self._failed(family, error)
                    result.latency_ms = (time.perf_counter() - started) * 1000
                results[family.name] = result
            if self._async:
                outcomes = await asyncio.gather(*(self._run_async(f, ctx) for f in self._async))
                for family, result in zip(self._async, outcomes, strict=True):
                    results[family.name] = result
            report = SignalReport(results, self._leaves(results))
            if span is not None:
                tracing.set_attributes(span, {"routeyard.signals": report.matched()})
            return report

    async def _run_async(self, family: Family, ctx: RequestContext) -> FamilyResult:
        with tracing.span(self._span_names[family.name]):
            return await self._timed_async(family, ctx)

    async def _timed_async(self, family: Family, ctx: RequestContext) -> FamilyResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(family.config.timeout_ms / 1000):
                result = await family.evaluate_async(ctx)  # type: ignore[attr-defined]
        except TimeoutError:
            result = self._failed(family, TimeoutError(
                f"over its {family.config.timeout_ms:g} ms budget"))
        except SIGNAL_ERRORS as error:
            result = self._failed(family, error)
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result

    def _failed(self, family: Family, error: BaseException) -> FamilyResult:
        policy = family.config.on_error
        log.warning("signal family %s failed (%s): %s", family.name, policy, error)
        if policy == "fail":
            raise SignalFailed(f"signal '{family.name}' failed; the request was refused")
        return FamilyResult(error=f"{type(error).__name__}: {error}")

    def _leaves(self, results: dict[str, FamilyResult]) -> dict[str, float]:
        leaves: dict[str, float] = {}
        for family, result in results.items():
            if result.error is not None:
                if self._policy(family) == "match":  # fail closed: every referenced leaf holds
                    for name in self.referenced.get(family, ()):
                        leaves[f"{family}:{name}"] = 1.0
                continue
            for name, match in result.matches.items():
                # A confidence of 0 would read as "no match" in the rule trees.
                leaves[f"{family}:{name}"] = max(match.confidence, 1e-6)
        return leaves

    def _policy(self, family: str) -> str:
        for candidate in self.families:
            if candidate.name == family:
                return str(candidate.config.on_error)
        return "skip"
