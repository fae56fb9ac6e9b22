"""Reasoning effort per agent step (issue 18): what the `step_effort` default policy saves on
simulated agent sessions, against one effort everywhere.

    python bench/step_effort_eval.py [--sessions 20000] [--seed 7] [--json] [--markdown]

Each simulated session is an agent fixing something with tools: a planning request, tool calls
whose results the agent digests, failed calls it must recover from, and a final answer forced
by `tool_choice: "none"`. Every request is built as an agent framework would send it (OpenAI
chat form) and classified by the real `StepClassifier`, the code the `step` family and the
plugin run; the policy's effort for that step sets the step's cost and its chance of a mistake.

Everything below the classifier is a stated model, not a measurement:

- Cost: reasoning tokens per call by effort (`REASONING_TOKENS`): half of the thinking budget
  the router's Anthropic adapter gives each effort (routeyard/pool/providers/anthropic.py,
  EFFORT_BUDGETS 1024 / 4096 / 16384), as reasoning models rarely spend their whole budget.
  Prompt tokens are the real token count of each request (`routeyard.tokens`); reasoning and
  visible output are billed as output. Prices: `PRICE_IN` / `PRICE_OUT` per million tokens
  (o4-mini's list price); no prompt caching.
- Success (an assumption, loosely shaped after Ares, arXiv:2603.07915: low effort everywhere
  loses accuracy, while digesting tool results needs little reasoning): `MISTAKE[step][effort]`
  is the chance the step goes wrong. A wrong plan or a wrong final answer fails the session;
  a misread tool result costs one more tool step; a failed recovery is retried up to
  `MAX_RECOVERY_TRIES` times, then the session fails. Sessions also fail past `MAX_STEPS`.

Change the tables and the conclusion may change: the script shows how the policy's saving
follows from them, it does not show that real agents behave so.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from routeyard.config.signals import StepTypeFamily
from routeyard.plugins.step_effort import DEFAULT_STEP_EFFORTS
from routeyard.signals.step_type import StepClassifier
from routeyard.tokens import count_prompt_tokens

REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 512, "medium": 2048, "high": 8192}
VISIBLE_OUTPUT_TOKENS = {"planning": 300, "tool_result": 80, "error_recovery": 120,
                         "final": 400}
PRICE_IN, PRICE_OUT = 1.10, 4.40  # $ per million tokens
DECODE_TOKENS_PER_S = 80.0  # for the decode-time column: reasoning + visible output

# The chance a step goes wrong, by step and effort (an assumption; see the docstring).
MISTAKE = {
    "planning": {"low": 0.15, "medium": 0.08, "high": 0.05},
    "tool_result": {"low": 0.04, "medium": 0.035, "high": 0.03},
    "error_recovery": {"low": 0.35, "medium": 0.20, "high": 0.12},
    "final": {"low": 0.06, "medium": 0.03, "high": 0.025},
}
TOOL_ERROR_RATE = 0.2  # a tool call fails (a traceback, a non-zero exit) this often
MAX_RECOVERY_TRIES = 3
MAX_STEPS = 40

POLICIES: dict[str, dict[str, str]] = {
    "high everywhere": dict.fromkeys(DEFAULT_STEP_EFFORTS, "high"),
    "medium everywhere": dict.fromkeys(DEFAULT_STEP_EFFORTS, "medium"),
    "low everywhere": dict.fromkeys(DEFAULT_STEP_EFFORTS, "low"),
    "step_effort default": dict(DEFAULT_STEP_EFFORTS),
    # The same efforts in the wrong places: the saving comes from where effort goes.
    "inverted": {"planning": "low", "tool_result": "high", "final": "medium",
                 "error_recovery": "low"},
}

TOOLS = [{"type": "function", "function": {
    "name": "shell", "description": "Run a shell command in the repository.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]
SYSTEM = ("You are a coding agent. Use the shell tool to inspect and change the repository, "
          "run the tests, and answer with a short summary of what you changed. ") * 6
OUTPUTS = [
    "tests/test_io.py::test_read PASSED\n" * 12,
    "src/io.py\nsrc/parse.py\nsrc/cli.py\ntests/test_io.py\n" * 6,
    "def read(path):\n    with open(path) as f:\n        return f.read()\n" * 10,
]
FAILURES = [
    'Traceback (most recent call last):\n  File "src/io.py", line 3, in read\n'
    "KeyError: 'encoding'\n",
    "bash: pytst: command not found\n",
    "collected 12 items\n" + "F" * 12 + "\nProcess exited with code 1\n",
]


@dataclass
class Tally:
    sessions: int = 0
    successes: int = 0
    cost_usd: float = 0.0
    reasoning_tokens: int = 0
    decode_s: float = 0.0
    steps: int = 0
    by_step: dict[str, int] = field(default_factory=dict)
    misclassified: int = 0


@dataclass
class Agent:
    """One session's conversation, grown request by request."""

    task: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    def start(self) -> dict[str, Any]:
        self.messages = [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": self.task}]
        return self.request()

    def request(self, **extra: Any) -> dict[str, Any]:
        return {"model": "auto", "messages": list(self.messages), "tools": TOOLS, **extra}

    def tool_turn(self, output: str) -> dict[str, Any]:
        call_id = f"call_{self.calls}"
        self.calls += 1
        self.messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "shell", "arguments": '{"cmd": "pytest -q"}'}}]})
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        return self.request()


def run_session(rng: random.Random, policy: dict[str, str], classifier: StepClassifier,
                tally: Tally) -> None:
    """One agent session under a policy; the step the agent is in is known here, the one the
    policy acts on is what the classifier reads from the request."""
    agent = Agent(f"Fix the failing test number {rng.randrange(1000)} in tests/test_io.py.")
    tools_needed = rng.randint(2, 8)
    succeeded = False

    def step(true_step: str, request: dict[str, Any]) -> bool:
        """Pay for one request; True when the step went right."""
        found = classifier.classify(request)
        seen = found[0] if found is not None else true_step
        tally.misclassified += seen != true_step
        effort = policy[seen]
        reasoning = REASONING_TOKENS[effort]
        output = VISIBLE_OUTPUT_TOKENS[true_step]
        prompt = count_prompt_tokens(request["messages"])
        tally.cost_usd += (prompt * PRICE_IN + (reasoning + output) * PRICE_OUT) / 1e6
        tally.reasoning_tokens += reasoning
        tally.decode_s += (reasoning + output) / DECODE_TOKENS_PER_S
        tally.steps += 1
        tally.by_step[seen] = tally.by_step.get(seen, 0) + 1
        return rng.random() >= MISTAKE[true_step][effort]

    if step("planning", agent.start()):
        done, tries = 0, 0
        failing = rng.random() < TOOL_ERROR_RATE  # the next tool call fails
        while agent.calls < MAX_STEPS:
            request = agent.tool_turn(rng.choice(FAILURES if failing else OUTPUTS))
            if failing:
                if step("error_recovery", request):
                    tries, failing = 0, rng.random() < TOOL_ERROR_RATE  # the call, fixed
                else:
                    tries += 1  # a wrong fix: the call fails again
                    if tries >= MAX_RECOVERY_TRIES:
                        break
                continue
            if step("tool_result", request):
                done += 1
                if done >= tools_needed:
                    succeeded = step("final", agent.request(tool_choice="none"))
                    break
            # else: a misread result, and one more tool step for it
            failing = rng.random() < TOOL_ERROR_RATE
    tally.sessions += 1
    tally.successes += succeeded


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def evaluate(sessions: int, seed: int) -> dict[str, Any]:
    classifier = StepClassifier(StepTypeFamily())
    results: dict[str, Any] = {}
    for name, policy in POLICIES.items():
        tally = Tally()
        rng = random.Random(seed)  # the same sessions (tool outcomes, lengths) for each policy
        for _ in range(sessions):
            run_session(rng, policy, classifier, tally)
        low, high = wilson(tally.successes, tally.sessions)
        results[name] = {
            "policy": policy, "sessions": tally.sessions,
            "success": tally.successes / tally.sessions, "success_ci95": [low, high],
            "cost_per_session_usd": tally.cost_usd / tally.sessions,
            "cost_per_success_usd": tally.cost_usd / max(tally.successes, 1),
            "reasoning_tokens_per_session": tally.reasoning_tokens / tally.sessions,
            "decode_s_per_session": tally.decode_s / tally.sessions,
            "steps_per_session": tally.steps / tally.sessions,
            "steps_seen": tally.by_step, "misclassified_steps": tally.misclassified}
    base = results["high everywhere"]
    for row in results.values():
        row["cost_vs_high"] = row["cost_per_session_usd"] / base["cost_per_session_usd"] - 1
        row["reasoning_vs_high"] = (row["reasoning_tokens_per_session"]
                                    / base["reasoning_tokens_per_session"] - 1)
    return results


def classifier_speed(iterations: int = 20000) -> float:
    """Microseconds to classify a mid-session request (12 messages, a 1.5 kB tool result)."""
    classifier = StepClassifier(StepTypeFamily())
    agent = Agent("Fix the failing test in tests/test_io.py.")
    agent.start()
    for output in OUTPUTS * 2:
        request = agent.tool_turn(output)
    started = time.perf_counter()
    for _ in range(iterations):
        classifier.classify(request)
    return (time.perf_counter() - started) / iterations * 1e6


def markdown(results: dict[str, Any], args: argparse.Namespace, speed_us: float) -> str:
    lines = [f"`python bench/step_effort_eval.py --sessions {args.sessions} --seed {args.seed}`"
             f" ({time.strftime('%Y-%m-%d')}); classifying one request: {speed_us:.1f} µs.",
             "",
             "| policy | success (95% CI) | $ / session | vs high | reasoning tokens / session "
             "| $ / success | decode s / session |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        low, high = row["success_ci95"]
        lines.append(
            f"| {name} | {row['success']:.3f} ({low:.3f}-{high:.3f}) "
            f"| {row['cost_per_session_usd']:.4f} | {row['cost_vs_high']:+.1%} "
            f"| {row['reasoning_tokens_per_session']:,.0f} | {row['cost_per_success_usd']:.4f} "
            f"| {row['decode_s_per_session']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    results = evaluate(args.sessions, args.seed)
    speed = classifier_speed()
    if args.json:
        print(json.dumps({"results": results, "classify_us": speed}, indent=2))
    if args.markdown or not args.json:
        print(markdown(results, args, speed))


if __name__ == "__main__":
    main()
