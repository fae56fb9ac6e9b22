"""The discrete-event model of a GPU pool, on SimPy.

Each replica (one model on `tensor_parallel` GPUs) is a SimPy process that runs a continuous-
batching scheduler like vLLM's, without chunked prefill and without preemption:
- when requests wait and fit (batch size below `max_batch`, and the KV cache can hold their
  input plus their whole output: admission reserves the worst case, so nothing is preempted),
  it admits them and runs one prefill iteration (`overhead + sum(input) / prefill rate`); the
  running decodes stall meanwhile; the prefill yields each request's first token;
- otherwise it decodes. A decode step advances every running request by one token and takes
  `base + per_seq * batch + per_context_token * tokens in the KV cache`. Steps are not single
  events: the replica sleeps until the next completion (the time of k steps, context growing
  by `batch` tokens a step, is a closed form), and an arrival that could be admitted
  interrupts it at the next step boundary. So the event count grows with requests, never
  with tokens.

Disaggregation: a `prefill` pool only prefills, then hands each request to the least-loaded
`decode` replica after a KV transfer (`KV_TRANSFER_US_PER_TOKEN` per input token).

Power: a busy replica draws its GPUs' peak power, an idle one their idle power.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from routeyard.fleet.profiles import ModelProfile, PoolSpec
from routeyard.fleet.workload import Workload

# ~128 KiB of KV per token (an 8B model) over a ~50 GB/s (400 Gb/s) link.
KV_TRANSFER_US_PER_TOKEN = 2.5


@dataclass(slots=True)
class Outcome:
    """Per-request times (seconds; NaN when it never ran) and per-replica busy time."""

    admitted: np.ndarray
    first_token: np.ndarray
    finished: np.ndarray
    replica_of: np.ndarray  # the replica index that decoded it
    busy: np.ndarray  # seconds per replica
    replicas: list[Replica]
    end: float


class Replica:
    """One model replica and its scheduler process."""

    __slots__ = (
        "_done",
        "_input",
        "_output",
        "_prefill_rate",
        "admitted",
        "busy",
        "env",
        "finished",
        "first",
        "handoff",
        "heap",
        "index",
        "interruptible",
        "kv_free",
        "load",
        "pool",
        "process",
        "profile",
        "queue",
        "ready",
        "steps",
        "sum_a",
        "wake",
    )

    def __init__(self, env: simpy.Environment, index: int, pool: PoolSpec,
                 work: Workload, times: tuple[np.ndarray, np.ndarray, np.ndarray],
                 done: Callable[[int], None]) -> None:
        self.env = env
        self.index = index
        self.pool = pool
        self.profile: ModelProfile = pool.profile
        self._input = work.input_list
        self._output = work.output_list
        self._prefill_rate = pool.profile.prefill_tokens_per_s
        self.admitted, self.first, self.finished = times
        self._done = done
        self.queue: deque[int] = deque()  # waiting for prefill
        self.ready: deque[int] = deque()  # prefilled elsewhere, waiting for a decode slot
        self.heap: list[tuple[int, int]] = []  # (finishing step, request)
        self.steps = 0  # decode steps done so far
        self.sum_a = 0  # sum over running requests of (context at admission - step then)
        self.kv_free = pool.profile.kv_capacity_tokens
        self.load = 0  # requests queued or running: what least-loaded policies read
        self.busy = 0.0
        self.wake: simpy.Event | None = None
        self.interruptible = False
        self.handoff: Callable[[int], None] | None = None  # set for a prefill-only replica
        self.process = env.process(self._run())

    # -- arrivals --------------------------------------------------------------------------
    def _fits(self, request: int) -> bool:
        return (len(self.heap) < self.profile.max_batch
                and self._input[request] + self._output[request] <= self.kv_free)

    def enqueue(self, request: int, prefilled: bool = False) -> None:
        (self.ready if prefilled else self.queue).append(request)
        self.load += 1
        if self.wake is not None:
            wake, self.wake = self.wake, None
            wake.succeed()
        elif self.interruptible and self._fits(request):
            self.interruptible = False
            self.process.interrupt()

    # -- the scheduler ---------------------------------------------------------------------
    def _admit(self, source: deque[int]) -> list[int]:
        admitted: list[int] = []
        capacity = self.profile.kv_capacity_tokens
        while source and len(self.heap) + len(admitted) < self.profile.max_batch:
            request = source[0]
            need = self._input[request] + self._output[request]
            if need > self.kv_free:
                if need > capacity and not self.heap and not admitted:
                    # Can never fit: served alone, over capacity, rather than blocking forever.
                    self.kv_free = need
                else:
                    break
            source.popleft()
            self.kv_free -= need
            admitted.append(request)
        return admitted

    def _start_decoding(self, requests: list[int], now: float) -> None:
        steps = self.steps
        for request in requests:
            remaining = self._output[request] - 1  # the prefill made the first token
            if remaining <= 0:
                self._finish(request, now)
                continue
            self.sum_a += self._input[request] + 1 - steps
            heapq.heappush(self.heap, (steps + remaining, request))

    def _finish(self, request: int, now: float) -> None:
        self.finished[request] = now
        self._release(request)
        self.load -= 1
        self._done(request)

    def _release(self, request: int) -> None:
        # capped: a request over the whole capacity ran alone and took more than there was
        self.kv_free = min(self.kv_free + self._input[request] + self._output[request],
                           self.profile.kv_capacity_tokens)

    def _step_terms(self) -> tuple[float, float]:
        """(first step's seconds, growth per step) for the current batch."""
        profile = self.profile
        batch = len(self.heap)
        context = self.sum_a + batch * self.steps
        per_token = profile.decode_per_context_token_us * 1e-6
        first = (profile.decode_base_ms + profile.decode_per_seq_ms * batch) * 1e-3 + (
            per_token * context)
        return first, per_token * batch

    def _run(self):  # type: ignore[no-untyped-def]  # a SimPy generator
        env = self.env
        profile = self.profile
        overhead = profile.prefill_overhead_ms * 1e-3
        while True:
            if not self.queue and not self.heap and not self.ready:
                self.wake = env.event()
                yield self.wake
            now = env.now
            if self.ready:  # prefilled by a prefill pool: join the batch, no prefill here
                joined = self._admit(self.ready)
                if joined:  # `admitted` keeps the prefill's admission: TTFT's queueing
                    self._start_decoding(joined, now)
            admitted = self._admit(self.queue)
            if admitted:
                tokens = sum(self._input[r] for r in admitted)
                duration = overhead + tokens / self._prefill_rate
                for request in admitted:
                    self.admitted[request] = now
                yield env.timeout(duration)
                self.busy += duration
                now = env.now
                for request in admitted:
                    self.first[request] = now
                if self.handoff is not None:
                    for request in admitted:
                        self._release(request)
                        self.load -= 1
                        self.handoff(request)
                else:
                    self._start_decoding(admitted, now)
                continue
            if not self.heap:
                continue
            yield from self._decode()

    def _decode(self):  # type: ignore[no-untyped-def]
        env = self.env
        first, growth = self._step_terms()
        steps = self.heap[0][0] - self.steps
        duration = steps * first + growth * steps * (steps - 1) / 2
        start = env.now
        self.interruptible = True
        try:
            yield env.timeout(duration)
        except simpy.Interrupt:
            # An arrival can join: finish the step under way, then let the loop admit it.
            done = _steps_within(env.now - start, first, growth) + 1
            steps = min(done, steps)
            rest = steps * first + growth * steps * (steps - 1) / 2 - (env.now - start)
            if rest > 0:
                yield env.timeout(rest)
        self.interruptible = False
        self.busy += env.now - start
        self.steps += steps
        now = env.now
        heap = self.heap
        while heap and heap[0][0] <= self.steps:
            ends, request = heapq.heappop(heap)
            # admitted at step ends - (output - 1): undo what _start_decoding added
            self.sum_a -= self._input[request] + 1 - (ends - self._output[request] + 1)
            self._finish(request, now)


def _steps_within(elapsed: float, first: float, growth: float) -> int:
    """Whole steps done within `elapsed` (step i takes first + i * growth)."""
    if growth <= 0.0:
        return int(elapsed / first) if first > 0 else 0
    a, b = growth / 2, first - growth / 2
    return max(0, int((-b + math.sqrt(b * b + 4 * a * elapsed)) / (2 * a)))


Picker = Callable[[int], Replica]
PolicyFactory = Callable[[list[PoolSpec], list[Replica], Workload], Picker]


def simulate(work: Workload, pools: list[PoolSpec], policy: PolicyFactory,
             progress: Callable[[int], None] | None = None) -> Outcome:
    """Run `work` through `pools`, each arrival sent where `policy` says; to the last request."""
    env = simpy.Environment()
    n = len(work)
    times = (np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
    replica_of = np.full(n, -1, dtype=np.int32)
    tick = progress or (lambda _: None)
    finished = [0]

    def done(request: int) -> None:
        finished[0] += 1
        if finished[0] % 10000 == 0:
            tick(10000)

    replicas: list[Replica] = []
    for pool in pools:
        replicas += [Replica(env, len(replicas) + i, pool, work, times, done)
                     for i in range(pool.count)]
    decoders = [r for r in replicas if r.pool.role == "decode"]
    prefillers = [r for r in replicas if r.pool.role == "prefill"]
    if prefillers and not decoders:
        from routeyard.fleet.profiles import FleetInputError
        raise FleetInputError("a prefill pool needs a decode pool (ROLE decode) beside it")
    inputs = work.input_list

    def hand_to_decoder(request: int) -> None:
        target = min(decoders, key=_load)
        replica_of[request] = target.index
        delay = inputs[request] * KV_TRANSFER_US_PER_TOKEN * 1e-6
        env.timeout(delay).callbacks.append(lambda _: target.enqueue(request, prefilled=True))

    for replica in prefillers:
        replica.handoff = hand_to_decoder
    front = [r for r in replicas if r.pool.role != "decode"]
    front_pools = [p for p in pools if p.role != "decode"]
    pick = policy(front_pools, front, work)
    arrivals = work.arrival_list

    def arrive():  # type: ignore[no-untyped-def]
        for request in range(n):
            wait = arrivals[request] - env.now
            if wait > 0:
                yield env.timeout(wait)
            target = pick(request)
            replica_of[request] = target.index
            target.enqueue(request)

    env.process(arrive())
    env.run()
    tick(finished[0] % 10000)
    busy = np.array([r.busy for r in replicas])
    return Outcome(admitted=times[0], first_token=times[1], finished=times[2],
                   replica_of=replica_of, busy=busy, replicas=replicas, end=float(env.now))


def _load(replica: Replica) -> int:
    return replica.load
