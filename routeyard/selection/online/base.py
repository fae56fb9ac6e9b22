"""The online-learner contract: select / update / get_state / set_state.

An online algorithm learns from feedback while it serves. Its state is plain data (JSON through
orjson, numpy arrays as base64), so that it can live in SQLite or Redis and be shared between
workers; models it has never seen get an optimistic or default prior, so a model that joins a
running pool is explored rather than ignored.

Options common to every online algorithm:
- `lambda` (default 0): cost weight; costs are divided by the dearest candidate's expected cost,
  so λ is unitless (score = estimate - λ·relative cost).
- `seed` (default 0): the seed of the algorithm's random generator (exploration, sampling).
  Offline (replay, tests) the seed alone fixes the draws. A serving Router mixes a random
  per-replica value into it, so replicas and restarts never repeat each other's draws.

The random generator is process-local and never part of the shared state: state is reloaded
before every feedback update and every few seconds, and restoring a stored generator there
would rewind the random stream, so every selection after a feedback would reuse the same
draws (an ε-greedy learner would stop exploring).
- `expected_output_tokens` (default 256): for the expected cost of a request.
- `lambda_energy` (default 0): energy weight (docs/routing.md, "Energy"); each candidate's
  expected joules for the request are divided by the most energy-hungry candidate's, so the
  score is estimate - λ·relative cost - λ_energy·relative energy. The penalty is subtracted
  when choosing, as λ·cost is, rather than from the learned reward: it is known before the
  call, so learning reward - λ_energy·energy would only add noise to the estimates (the argmax
  is the same), and λ_energy can change without relearning.
"""

from __future__ import annotations

import base64
import math
import threading
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from routeyard.selection.base import (
    AlgorithmBuild,
    CandidateView,
    Selection,
    SelectionAlgorithm,
)
from routeyard.selection.common import energy_penalties, number, priced

if TYPE_CHECKING:
    from routeyard.signals.base import RequestContext

STATE_VERSION = 1


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """An exact, compact JSON form of a float64 array."""
    data = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(data.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(value: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(value["b64"])
    return np.frombuffer(raw, dtype="<f8").reshape(value["shape"]).astype(np.float64)


def check_reward(reward: float) -> float:
    value = float(reward)
    if not math.isfinite(value):
        raise ValueError(f"reward must be a finite number in [0, 1], got {reward!r}")
    return min(1.0, max(0.0, value))


class OnlineAlgorithm(SelectionAlgorithm):
    """A selection algorithm that learns from rewards in [0, 1] while serving."""

    gives_scores = True  # Elo's first games excepted: then a softmax keeps its choice

    def __init__(self, options: dict[str, Any] | None = None, build: AlgorithmBuild | None = None):
        super().__init__(options, build)
        self.lam = number(self.options, "lambda", 0.0)
        seed = self.options.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError("algorithm_options.seed must be an integer >= 0")
        self.seed = seed
        entropy = self.build.entropy
        self.rng = np.random.default_rng(seed if entropy is None else [seed, entropy])
        self.output_tokens = int(number(self.options, "expected_output_tokens", 256))
        self.lam_energy = number(self.options, "lambda_energy", 0.0)
        # λ_energy · relative energy of the candidates being chosen among (set under the lock
        # by select, read by penalty); None: energy does not weigh.
        self._energy: np.ndarray | None = None
        self.lock = threading.RLock()  # select and update may come from different threads
        # What the last choose_index knew of its own choice (read under the lock): the
        # probability of the index it returned, and the values it compared.
        self._probability = 1.0
        self._values: np.ndarray | None = None

    # -- serving ---------------------------------------------------------------------------

    def select(self, candidates: list[CandidateView], prompt_tokens: int,
               ctx: RequestContext | None = None) -> Selection | None:
        weighed = priced(candidates, prompt_tokens, self.output_tokens, ctx)
        if weighed is None:
            return None
        pool, costs, note = weighed.pool, weighed.costs, weighed.note
        context = None
        if self.needs_embedding and ctx is not None and ctx.embedder is not None:
            context = np.asarray(ctx.embedding(), dtype=np.float64)
        names = [c.name for c in pool]
        energy = energy_penalties(pool, prompt_tokens, weighed.output_tokens, self.lam_energy)
        with self.lock:
            self._probability, self._values = 1.0, None
            self._energy = None if energy is None else np.asarray(energy)
            index = self.choose_index(names, costs, context)
            why = self.explain(names[index])
            probability, values = self._probability, self._values
        scores = dict(zip(names, values.tolist(), strict=True)) if values is not None else None
        weights = f"λ={self.lam:g}" + (f", λ_energy={self.lam_energy:g}" if energy else "")
        return Selection(names[index], f"{self.name}: {why}, {weights}{note}",
                         probability, scores)

    def relative_costs(self, costs: list[float] | np.ndarray) -> np.ndarray:
        values = np.asarray(costs, dtype=np.float64)
        dearest = float(values.max()) if values.size else 0.0
        return values / dearest if dearest > 0 else np.zeros_like(values)

    def penalty(self, costs: list[float] | np.ndarray) -> np.ndarray:
        """What each candidate's score loses: λ·relative cost, plus λ_energy·relative energy
        when select computed it for these candidates."""
        penalty = self.lam * self.relative_costs(costs)
        energy = self._energy
        if energy is not None and energy.shape == penalty.shape:
            penalty = penalty + energy
        return penalty

    def argmax(self, values: np.ndarray) -> int:
        """The best index; exact ties are broken by the seeded generator (each tied index
        then had the probability 1/ties)."""
        best = np.flatnonzero(values >= values.max())
        self._probability, self._values = 1.0 / len(best), values
        return int(best[0]) if len(best) == 1 else int(self.rng.choice(best))

    def epsilon_greedy(self, values: np.ndarray, epsilon: float) -> int:
        """With probability ε a uniform draw, else the argmax; records the exact probability
        of the index returned: ε/n, plus (1-ε)/ties when it is a best one."""
        n = len(values)
        best = np.flatnonzero(values >= values.max())
        explore = epsilon if epsilon > 0 and n > 1 else 0.0
        if explore and self.rng.random() < explore:
            index = int(self.rng.integers(n))
        else:
            index = int(best[0]) if len(best) == 1 else int(self.rng.choice(best))
        greedy = (1.0 - explore) / len(best) if index in best else 0.0
        self._probability, self._values = explore / n + greedy, values
        return index

    @abstractmethod
    def choose_index(self, names: list[str], costs: list[float] | np.ndarray,
                     context: np.ndarray | None = None) -> int:
        """The index into `names` to serve; `costs` are expected dollars per call."""

    def explain(self, model: str) -> str:
        return "learned estimate"

    # -- feedback --------------------------------------------------------------------------

    @abstractmethod
    def update(self, model: str, reward: float, context: np.ndarray | None = None) -> None:
        """Feedback for one call of `model`: reward in [0, 1] (clipped), optional context."""

    def update_preference(self, winner: str, loser: str) -> None:
        """A pairwise preference: by default one win and one loss."""
        with self.lock:
            self.update(winner, 1.0)
            self.update(loser, 0.0)

    # -- state -----------------------------------------------------------------------------

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The learned state as JSON-able data (the random generator is not part of it)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def get_state(self) -> bytes:
        with self.lock:
            return orjson.dumps({"algorithm": self.name, "version": STATE_VERSION,
                                 "state": self.state_dict()})

    def set_state(self, data: bytes) -> None:
        try:
            blob = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"not an online-learner state: {error}") from None
        if not isinstance(blob, dict) or blob.get("algorithm") != self.name:
            found = blob.get("algorithm") if isinstance(blob, dict) else None
            raise ValueError(f"state is for algorithm {found!r}, not {self.name!r}")
        if blob.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {blob.get('version')!r}")
        with self.lock:
            # A stored "rng" (written by earlier versions) is ignored: see the module docstring.
            self.load_state_dict(blob["state"])
