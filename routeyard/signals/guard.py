"""`guard`: a guard model in the pool (Llama Guard served by vLLM, say) judges the prompt.

The one family that awaits I/O, so it runs concurrently with nothing else to wait for and under
its `timeout_ms` budget; `on_error` decides whether a slow or failing guard lets the request
through (skip), treats it as unsafe (match) or refuses it (fail).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routeyard.config.signals import GuardFamily
from routeyard.signals.base import (
    AsyncFamily,
    Family,
    FamilyBuild,
    FamilyResult,
    Match,
    RequestContext,
    register,
)

if TYPE_CHECKING:
    from routeyard.pool import Pool


@register
class GuardSignals(AsyncFamily):
    name = "guard"

    def __init__(self, config: GuardFamily, embedder: Any = None, pool: Pool | None = None
                 ) -> None:
        super().__init__(config, embedder)
        self.pool = pool  # None outside a Router (a dry build): evaluating then fails

    @classmethod
    def build(cls, config: GuardFamily, build: FamilyBuild) -> Family:
        return cls(config, build.embedder, build.pool)

    def declared_names(self) -> set[str]:
        return {"unsafe"}

    async def evaluate_async(self, ctx: RequestContext) -> FamilyResult:
        config: GuardFamily = self.config
        if self.pool is None or config.model not in self.pool.models:
            raise RuntimeError(f"guard model '{config.model}' is not in the pool")
        body = {"messages": [{"role": "system", "content": config.instruction},
                             {"role": "user", "content": ctx.last_user_text}],
                "max_tokens": 8, "temperature": 0}
        from routeyard.pool import PoolExhausted

        try:
            served = await self.pool.executor.complete([self.pool.models[config.model]], body)
        except PoolExhausted as error:  # the family's on_error policy decides what this means
            raise RuntimeError(f"guard model '{config.model}' failed: {error.message}") from None
        choices = served.result.get("choices") or [{}]
        answer = str((choices[0].get("message") or {}).get("content") or "").strip()
        verdict = answer.lower().startswith(config.unsafe_prefix.lower())
        result = FamilyResult(values={"verdict": answer[:40]})
        if verdict:
            result.matches["unsafe"] = Match(1.0, answer.split()[0] if answer else "unsafe")
        return result
