"""Ensembles: several models answer one request, and one answer is made of theirs.

    decisions:
      - name: hard-math
        ensemble: {members: [a, b, c], aggregate: rank, judge: large, member_timeout_s: 20}

Members (named, or the decision algorithm's `top_k` candidates by score) are asked at once,
unstreamed, each bounded by `member_timeout_s`; those that fail or time out are left out. Then:

- vote: a majority over the answers' normal forms (ensemble_aggregate.py), ties to the best
  prior (the algorithm's score, else the order of the members);
- rank: the judge compares pairs of answers, Bradley-Terry combines them (ensemble_judge.py);
- synthesise: the judge reads every answer and writes one; streamed live when the client
  streams.

A request with tools votes on the tool call instead. A judge that fails or answers garbage
falls back to the vote, with the reason logged. Usage and cost sum every call, the judge's
too; every call is in the decision record (`selection.ensemble`); the `x-routeyard-ensemble`
header names the members and the judge ("a,b,c>judge"). See docs/ensembles.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from routeyard.config.schema import EnsembleConfig
from routeyard.decisions import Decision
from routeyard.pool import AttemptLog, Pool, PooledModel, PoolExhausted, Served, UpstreamError
from routeyard.pool.providers.base import ChatStream
from routeyard.serving.accounting import Accountant
from routeyard.serving.capabilities import Needs, Skips
from routeyard.serving.ensemble_aggregate import LazyEmbedder, Tally, tool_vote, vote
from routeyard.serving.ensemble_judge import (
    bradley_terry,
    judge_pairs,
    parse_preference,
    question,
    rank_messages,
    synthesis_messages,
)
from routeyard.serving.handler import Answer, Handler
from routeyard.serving.planner import RoutePlan
from routeyard.serving.relay import NO_HOOKS, ReplayStream, StreamHooks, StreamRelay
from routeyard.serving.request import wants_usage
from routeyard.wire import completion_chunks, completion_text, usage

log = logging.getLogger("routeyard.ensemble")

ENSEMBLE_HEADER = "x-routeyard-ensemble"  # "a,b,c>judge": the members asked, then the judge
# What members are not sent: they answer whole, once each.
_MEMBER_DROPS = frozenset({"stream", "stream_options", "n"})
# What the judge's calls keep of the client's body (the answer's shape, not its tools).
_JUDGE_KEEPS = ("model", "temperature", "top_p", "max_tokens", "max_completion_tokens",
                "response_format", "seed", "user")
MIN_RANKED_SHARE = 0.5  # rank falls back to the vote when fewer comparisons were readable


@dataclass(slots=True)
class Call:
    """One call an ensemble made, as the decision record shows it."""

    model: PooledModel
    outcome: str = "ok"  # ok | failed | timeout
    latency_ms: float = 0.0
    served: Served | None = None
    prompt: int = 0
    completion: int = 0
    cost_usd: float = 0.0
    error: UpstreamError | None = None
    message: str | None = None
    attempts: list[AttemptLog] = field(default_factory=list)  # a failed call's
    note: dict[str, Any] = field(default_factory=dict)  # a judge call's pair and verdict

    @property
    def response(self) -> dict[str, Any] | None:
        return self.served.result if self.served is not None else None

    def text(self) -> str:
        return completion_text(self.response or {}, first_only=True)

    def record(self) -> dict[str, Any]:
        found: dict[str, Any] = {"model": self.model.name, "outcome": self.outcome,
                                 "latency_ms": round(self.latency_ms, 1),
                                 "cost_usd": self.cost_usd, "prompt_tokens": self.prompt,
                                 "completion_tokens": self.completion, **self.note}
        if self.message:
            found["error"] = self.message
        return found


@dataclass(slots=True)
class Run:
    """One ensemble request: every call so far, and what the log will say of it."""

    plan: RoutePlan
    members: list[Call] = field(default_factory=list)
    judge: list[Call] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> list[Call]:
        return [c for c in self.members if c.served is not None]

    def totals(self) -> tuple[int, int, float]:
        calls = self.members + self.judge
        return (sum(c.prompt for c in calls), sum(c.completion for c in calls),
                sum(c.cost_usd for c in calls))

    def header(self) -> str:
        names = ",".join(c.model.name for c in self.members)
        return f"{names}>{self.judge[0].model.name}" if self.judge else names

    def settle(self, winner: str, reason: str) -> None:
        """Put every call into the decision record (`detail.ensemble`)."""
        self.detail.update(winner=winner, reason=reason,
                           members=[c.record() for c in self.members],
                           judge=[c.record() for c in self.judge])
        self.plan.handled = {**(self.plan.handled or {}), "ensemble": self.detail}


class EnsembleHandler(Handler):
    def __init__(self, config: EnsembleConfig, pool: Pool, accountant: Accountant,
                 embedder: LazyEmbedder | None) -> None:
        self.config = config
        self.named = [pool.models[n] for n in config.members]
        self.judge = pool.models[config.judge] if config.judge else None
        self.aggregate = "synthesise" if config.aggregate == "synthesize" else config.aggregate
        self.limit = min(config.top_k or config.max_members, config.max_members)
        self.executor = pool.executor
        self.accountant = accountant
        self.embedder = embedder

    # -- the Handler contract -----------------------------------------------------------------

    async def complete(self, plan: RoutePlan, body: dict[str, Any]) -> Answer:
        run = await self._ask_members(plan, body)
        return await self._decide(run, body, synthesise=self.aggregate == "synthesise")

    async def open_stream(self, plan: RoutePlan, body: dict[str, Any],
                          hooks: StreamHooks = NO_HOOKS) -> StreamRelay:
        """Members answer whole; vote and rank replay the chosen answer, synthesise streams
        the judge live (falling back to the vote if the judge cannot be opened)."""
        run = await self._ask_members(plan, body)
        fallback = ""
        if self.aggregate == "synthesise" and self._judging(run, body):
            relay = await self._synthesis_stream(run, body, hooks)
            if relay is not None:
                return relay
            fallback = f"the judge's stream could not be opened: {run.judge[0].message}"
        answer = await self._decide(run, body, synthesise=False, fallback=fallback)
        return StreamRelay(plan, ReplayStream(completion_chunks(answer.response)),
                           self.accountant, served=answer.served,
                           client_wants_usage=wants_usage(body), hooks=hooks,
                           cost_usd=answer.cost_usd, headers=answer.headers)

    # -- members ------------------------------------------------------------------------------

    def members(self, plan: RoutePlan, body: dict[str, Any]) -> list[PooledModel]:
        """Best prior first: the algorithm's score, else the configured (or candidate) order;
        members that cannot serve the request are skipped, the rest capped."""
        pool = self.named or [m for m in plan.models if m in plan.candidates]
        scores = (plan.selection or {}).get("scores")
        if scores:
            pool = sorted(pool, key=lambda m: -scores.get(m.name, float("-inf")))
        skips = Skips(Needs.of(body), plan.context.prompt_tokens)
        kept = skips.servable(pool)
        if skips.found:
            plan.skipped = [*plan.skipped, *skips.records()]
        return kept[:self.limit] or plan.models[:1]

    async def _ask_members(self, plan: RoutePlan, body: dict[str, Any]) -> Run:
        run = Run(plan)
        sent = {k: v for k, v in body.items() if k not in _MEMBER_DROPS}
        run.members = list(await asyncio.gather(
            *(self._call(plan, model, sent) for model in self.members(plan, body))))
        run.detail["aggregate"] = self.aggregate
        if not run.answered:
            run.settle("none", "every member failed")
            raise _exhausted(run)
        return run

    async def _call(self, plan: RoutePlan, model: PooledModel, body: dict[str, Any]) -> Call:
        """One call, bounded by the member timeout; never raises for an upstream failure."""
        call = Call(model)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.member_timeout_s):
                served = await self.executor.complete([model], body)
        except TimeoutError:
            call.outcome, call.message = "timeout", \
                f"no answer within {self.config.member_timeout_s:g}s"
        except PoolExhausted as exhausted:
            call.outcome, call.error, call.message = "failed", exhausted.last, exhausted.message
            call.attempts = exhausted.attempts
        else:
            call.served = served
            spent = self.accountant.usage(plan, served.result)
            call.prompt = int(spent.get("prompt_tokens") or 0)
            call.completion = int(spent.get("completion_tokens") or 0)
            call.cost_usd = model.config.pricing.cost(call.prompt, call.completion)
        call.latency_ms = (time.monotonic() - started) * 1000
        return call

    # -- deciding -----------------------------------------------------------------------------

    def _judging(self, run: Run, body: dict[str, Any]) -> bool:
        """Whether the judge has anything to do: two answers or more, and no tool call."""
        return self.judge is not None and len(run.answered) > 1 and not (
            body.get("tools") and tool_vote([_message(c) for c in run.answered]) is not None)

    async def _decide(self, run: Run, body: dict[str, Any], *, synthesise: bool,
                      fallback: str = "") -> Answer:
        answered = run.answered
        if len(answered) == 1:
            return self._answer(run, answered[0], "only one member answered")
        if body.get("tools"):
            tally = tool_vote([_message(c) for c in answered])
            if tally is not None:
                run.detail["vote"] = tally.record()
                why = (f"{tally.votes} of {tally.voters} members made this tool call"
                       if tally.votes else "no majority on the tool call: the best member's")
                return self._answer(run, answered[tally.winner], why)
        if self.aggregate == "rank" and self.judge is not None:
            winner, fallback = await self._rank(run, body)
            if winner is not None:
                return self._answer(run, winner, "ranked first by the judge (Bradley-Terry)")
        elif synthesise and self.judge is not None:
            judged, fallback = await self._synthesise(run, body)
            if judged is not None:
                return self._answer(run, judged, "synthesised by the judge")
        tally = await self._vote(run)
        why = (f"{tally.votes} of {tally.voters} members agreed ({tally.normalise})"
               if tally.votes > 1 else "no two members agreed: the best prior's")
        if fallback:
            run.detail["fallback"] = fallback
            log.warning("ensemble %s fell back to the vote: %s", run.plan.request_id, fallback)
            why = f"{fallback}; vote: {why}"
        return self._answer(run, answered[tally.winner], why)

    async def _vote(self, run: Run) -> Tally:
        config = self.config
        tally = await vote([c.text() for c in run.answered], config.normalise,
                           similarity=config.similarity, embedder=self.embedder)
        run.detail["vote"] = tally.record()
        return tally

    async def _rank(self, run: Run, body: dict[str, Any]) -> tuple[Call | None, str]:
        """The answer Bradley-Terry ranks first, or (None, why not)."""
        assert self.judge is not None
        answered = run.answered
        asked = question(body)
        # A verdict is one letter: the client's response format is not the judge's here.
        base = {k: v for k, v in _judge_base(body).items() if k != "response_format"}
        pairs = judge_pairs(len(answered))
        calls = await asyncio.gather(*(self._call(run.plan, self.judge, {
            **base, "messages": rank_messages(asked, answered[a].text(), answered[b].text())})
            for a, b in pairs))
        wins: list[tuple[int, int]] = []
        for (a, b), call in zip(pairs, calls, strict=True):
            verdict = parse_preference(call.text()) if call.served is not None else None
            call.note = {"pair": [answered[a].model.name, answered[b].model.name],
                         "verdict": answered[(a, b)[verdict]].model.name
                         if verdict is not None else None}
            if verdict is not None:
                wins.append((a, b) if verdict == 0 else (b, a))
        run.judge = list(calls)
        if len(wins) < max(1, len(pairs) * MIN_RANKED_SHARE):
            return None, (f"the judge gave {len(wins)} readable verdicts of {len(pairs)} "
                          "comparisons")
        strength = bradley_terry(len(answered), wins)
        run.detail["strengths"] = {c.model.name: round(float(s), 4)
                                   for c, s in zip(answered, strength, strict=True)}
        best = max(range(len(answered)), key=lambda i: (strength[i], -i))  # ties: best prior
        return answered[best], ""

    async def _synthesise(self, run: Run, body: dict[str, Any]) -> tuple[Call | None, str]:
        """The judge's whole synthesis, or (None, why not)."""
        assert self.judge is not None
        call = await self._call(run.plan, self.judge, self._synthesis_body(run, body))
        run.judge = [call]
        if call.served is None:
            return None, f"the judge failed: {call.message}"
        if not call.text().strip():
            return None, "the judge's synthesis was empty"
        return call, ""

    def _synthesis_body(self, run: Run, body: dict[str, Any]) -> dict[str, Any]:
        return {**_judge_base(body), "messages": synthesis_messages(
            question(body), [c.text() for c in run.answered])}

    def _answer(self, run: Run, chosen: Call, reason: str) -> Answer:
        """The chosen call's completion, its usage the sum of every call's."""
        assert chosen.served is not None
        prompt, completion_tokens, cost = run.totals()
        summed = usage(prompt, completion_tokens)
        synthesised = any(chosen is c for c in run.judge)
        run.settle("synthesis" if synthesised else chosen.model.name, reason)
        return Answer(run.plan, chosen.served, {**chosen.served.result, "usage": summed},
                      summed, cost_usd=cost, headers={ENSEMBLE_HEADER: run.header()})

    # -- a live synthesis -------------------------------------------------------------------

    async def _synthesis_stream(self, run: Run, body: dict[str, Any],
                                hooks: StreamHooks) -> StreamRelay | None:
        """The judge's synthesis, streamed as it is written; None when it cannot be opened."""
        assert self.judge is not None
        judge = Call(self.judge, note={"stream": True})
        run.judge = [judge]
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.member_timeout_s):
                served = await self.executor.open_stream(
                    [self.judge], {**self._synthesis_body(run, body), "stream": True})
        except (TimeoutError, PoolExhausted) as failed:
            judge.outcome = "timeout" if isinstance(failed, TimeoutError) else "failed"
            judge.message = getattr(failed, "message", None) or "no first byte in time"
            judge.latency_ms = (time.monotonic() - started) * 1000
            return None
        judge.served = served
        judge.latency_ms = (time.monotonic() - started) * 1000  # to the first byte
        run.settle("synthesis", "synthesised by the judge, streamed")
        stream = _SummedStream(served.result, run, judge)
        relay = StreamRelay(run.plan, stream, self.accountant, served=served,
                            client_wants_usage=wants_usage(body), hooks=hooks,
                            cost_usd=run.totals()[2], headers={ENSEMBLE_HEADER: run.header()})
        stream.relay = relay
        return relay


class _SummedStream(ChatStream):
    """The judge's live stream, whose usage becomes the ensemble's: every call's tokens
    summed, and the relay's cost set to every call's when the judge's is known."""

    def __init__(self, inner: ChatStream, run: Run, judge: Call) -> None:
        self.inner = inner
        self.run = run
        self.judge = judge
        self.relay: StreamRelay | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        summed = False
        async for payload in self.inner:
            if b'"usage"' in payload:
                parsed = orjson.loads(payload)
                found = parsed.get("usage")
                if isinstance(found, dict) and "completion_tokens" in found:
                    parsed["usage"] = self._settle(found)
                    payload, summed = orjson.dumps(parsed), True
            yield payload
        if not summed and self.relay is not None:  # the judge sent none: count its text
            relay = self.relay
            counted = relay.accountant.counted(relay.plan, "".join(relay.text_parts))
            first = relay.first_chunk or {}
            yield orjson.dumps({"id": first.get("id"), "object": "chat.completion.chunk",
                                "created": first.get("created"), "model": first.get("model"),
                                "choices": [], "usage": self._settle(counted)})

    def _settle(self, judged: dict[str, Any]) -> dict[str, int]:
        judge = self.judge
        judge.prompt = int(judged.get("prompt_tokens") or 0)
        judge.completion = int(judged.get("completion_tokens") or 0)
        judge.cost_usd = judge.model.config.pricing.cost(judge.prompt, judge.completion)
        prompt, completion_tokens, cost = self.run.totals()
        self.run.settle("synthesis", "synthesised by the judge, streamed")
        if self.relay is not None:
            self.relay.cost_usd = cost
        return usage(prompt, completion_tokens)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def interrupt(self) -> None:
        self.inner.interrupt()


def _message(call: Call) -> dict[str, Any]:
    choices = (call.response or {}).get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    return message if isinstance(message, dict) else {}


def _judge_base(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in _JUDGE_KEEPS if k in body}


def _exhausted(run: Run) -> PoolExhausted:
    """Every member failed: the client's error is a 502, unless a backend refused the request
    itself (a 4xx that holds for any backend), which the client then gets."""
    attempts = [a for c in run.members for a in c.attempts]
    refused = next((c.error for c in run.members
                    if c.error is not None and not c.error.failover and c.error.status), None)
    reasons = "; ".join(f"{c.model.name}: {c.message or c.outcome}" for c in run.members)
    last = refused or UpstreamError("status", f"every ensemble member failed ({reasons})",
                                    status=502)
    return PoolExhausted(f"every ensemble member failed ({reasons})", last, attempts)


def ensemble_handlers(pool: Pool, decisions: Iterable[Decision], accountant: Accountant,
                      embedding_model: str) -> dict[str, EnsembleHandler]:
    """The ensemble handler of each decision that has one. Names are checked here too (the
    config's references check reports them first, located); one embedder is shared, and made
    only when some ensemble may cluster free text."""
    table: dict[str, EnsembleHandler] = {}
    embedder: LazyEmbedder | None = None
    for decision in decisions:
        config = decision.ensemble
        if config is None:
            continue
        missing = [n for n in [*config.members, config.judge] if n and n not in pool.models]
        if missing:
            raise ValueError(f"decision '{decision.name}': ensemble: unknown model(s) "
                             f"{', '.join(missing)}")
        if config.normalise in ("auto", "embedding") and embedder is None:
            embedder = LazyEmbedder(embedding_model)
        table[decision.name] = EnsembleHandler(
            config, pool, accountant,
            embedder if config.normalise in ("auto", "embedding") else None)
    return table
