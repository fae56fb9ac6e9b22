"""The `step` family: which step of an agent loop a request is (docs/sessions.md).

An agent's session is a chain of requests, and each one is one of four steps, read from the
end of the conversation (at most one name holds):

- `planning`: the last message is a user turn that does not carry tool results, i.e. a new
  task (or a new instruction) for the agent to plan;
- `tool_result`: the conversation ends in tool results (OpenAI `tool`/`function` messages,
  optionally followed by the user text that came in the same Anthropic user turn), and the
  agent is to digest them and choose its next call;
- `error_recovery`: as `tool_result`, but one of those results looks like a failure;
- `final`: the agent must answer now. An agent framework forces its last turn by taking the
  tools away, so a request that ends in tool results and sends no `tools` (or
  `tool_choice: "none"`) is final; so is a last user turn that asks to conclude ("give your
  final answer", "wrap up", ...) once the conversation has tool results.

Limits: an agent that keeps its tools on its last turn and simply stops calling them is seen
as `tool_result` (whether it will stop is in the answer, not in the request); an error a tool
reports in prose without any marker is not seen; a planning turn and a follow-up question look
alike. The family reads only the conversation's tail and at most `scan_chars` from each end of
a tool result, so its cost does not grow with the session (about 10 µs a request).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from routeyard.config.signals import STEP_NAMES, StepTypeFamily
from routeyard.signals.base import Family, FamilyResult, Match, RequestContext, register
from routeyard.tokens import message_text

_TOOL_ROLES = frozenset({"tool", "function"})



@dataclass(frozen=True, slots=True)
class ErrorMarker:
    """A sign that a tool call failed. `cues` are lower-case substrings of which one must be
    in the result before the (slower) regex runs; none: the regex always runs."""

    name: str
    pattern: re.Pattern[str]
    confidence: float
    cues: tuple[str, ...] = ()


# Markers a tool runner or a framework writes into a failed result, strongest first. Each is
# searched in the result's first and last `scan_chars`.
_ERROR_MARKERS = (
    ErrorMarker("traceback", re.compile(r"Traceback \(most recent call last\)"), 0.95,
                ("traceback",)),
    ErrorMarker("error_prefix", re.compile(r"\A\s*(?:error|fatal|exception)\b\s*[:!]", re.I),
                0.95),
    ErrorMarker("exit_code", re.compile(
        r"(?:exit(?:ed)?(?: with)?[ _](?:code|status)|return(?:ed)? code)"
        r"[\s:=\"']*(?:-\d+|[1-9]\d*)\b", re.I), 0.9,
        ("exit code", "exit status", "exited with", "exit_code", "return code",
         "returned code")),
    # `KeyError: ...`, `error[E0308]: ...`, and a compiler's `file.c:3:5: error: ...`.
    ErrorMarker("error_line", re.compile(
        r"^\s*(?:[\w.]*(?:Error|Exception)|error(?:\[\w+\])?|fatal|panic)\s*:"
        r"|^\S+:\d+(?::\d+)?: (?:fatal )?error:", re.M), 0.8,
        ("error", "exception", "fatal", "panic")),
    ErrorMarker("shell_failure", re.compile(
        r"command not found|No such file or directory|Permission denied|"
        r"Segmentation fault|timed out|\bHTTP(?:/\d(?:\.\d)?)? [45]\d\d\b", re.I), 0.7,
        ("command not found", "no such file", "permission denied", "segmentation fault",
         "timed out", "http")),
)

# A last user turn that asks the agent to conclude.
DEFAULT_FINAL_PATTERNS = (
    r"\bfinal answer\b",
    r"\bwrap (?:it |this |things )?up\b",
    r"\b(?:summari[sz]e|report) (?:your|the|what you) (?:findings|results|changes|work|found)",
    r"\bconclude\b",
    r"\bstop (?:calling|using) (?:the )?tools\b",
    r"\bno more tool",
    r"\bthat'?s (?:all|enough)\b.*\banswer\b",
)


def _tool_tail(messages: list[Any]) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None]:
    """The tool results the conversation ends in, and the user turn after them if any (an
    Anthropic user turn holding tool_result blocks and text becomes tool messages + a user
    message). No tool results: ([], the last message if it is a user turn)."""
    index = len(messages) - 1
    trailing_user = None
    if index >= 0 and _role(messages[index]) == "user":
        trailing_user = messages[index]
        index -= 1
    results: list[Mapping[str, Any]] = []
    while index >= 0 and _role(messages[index]) in _TOOL_ROLES:
        results.append(messages[index])
        index -= 1
    results.reverse()
    return results, trailing_user


def _role(message: Any) -> str | None:
    return message.get("role") if isinstance(message, Mapping) else None


def _json_error(text: str) -> bool:
    """A JSON object result with a truthy `error` (or `errors`) key, or `"ok": false`."""
    stripped = text.lstrip()
    if not stripped.startswith("{") or ('"error' not in stripped and '"ok"' not in stripped):
        return False
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    return bool(data.get("error") or data.get("errors")) or data.get("ok") is False


class StepClassifier:
    """The rules, apart from the family so the `step_effort` plugin can run them too."""

    def __init__(self, config: StepTypeFamily) -> None:
        self.scan_chars = config.scan_chars
        self.error_markers = _ERROR_MARKERS + tuple(
            ErrorMarker(f"error_patterns[{i}]", re.compile(p, re.I | re.M), 0.9)
            for i, p in enumerate(config.error_patterns))
        finals = (DEFAULT_FINAL_PATTERNS if config.final_patterns is None
                  else config.final_patterns)
        self.final = re.compile("|".join(f"(?:{p})" for p in finals), re.I) if finals else None

    def error_evidence(self, message: Mapping[str, Any]) -> tuple[str, float] | None:
        """Why a tool result looks like a failure, and how sure that is; None: it does not."""
        if message.get("is_error") is True:  # Anthropic's tool_result flag, kept by some SDKs
            return "is_error", 1.0
        text = message_text(message)  # type: ignore[arg-type]
        if _json_error(text[: self.scan_chars * 4]):
            return "json_error", 0.95
        scanned = self._ends(text)
        lowered = scanned.lower()
        for marker in self.error_markers:
            if marker.cues and not any(cue in lowered for cue in marker.cues):
                continue
            if marker.pattern.search(scanned):
                return marker.name, marker.confidence
        return None

    def classify(self, body: Mapping[str, Any]) -> tuple[str, float, dict[str, Any]] | None:
        """(step, confidence, what was seen), or None when the request is none of the four
        (it ends in an assistant prefill, say)."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        results, user = _tool_tail(messages)
        if not results:
            if user is None:
                return None
            if self._asks_to_conclude(user) and self._had_tools(messages):
                return "final", 0.7, {"by": "user asks to conclude"}
            return "planning", 1.0, {}
        seen: dict[str, Any] = {"tool_results": len(results)}
        for message in results:
            evidence = self.error_evidence(message)
            if evidence is not None:
                seen["error"] = evidence[0]
                return "error_recovery", evidence[1], seen
        if not body.get("tools") and not body.get("functions"):
            return "final", 0.9, {**seen, "by": "no tools sent"}
        if body.get("tool_choice") == "none" or body.get("function_call") == "none":
            return "final", 0.9, {**seen, "by": "tool_choice none"}
        if user is not None and self._asks_to_conclude(user):
            return "final", 0.7, {**seen, "by": "user asks to conclude"}
        return "tool_result", 1.0, seen

    def _ends(self, text: str) -> str:
        """The first and last `scan_chars` of a text: what is read of it."""
        n = self.scan_chars
        return text if len(text) <= 2 * n else text[:n] + "\n" + text[-n:]

    def _asks_to_conclude(self, user: Mapping[str, Any]) -> bool:
        if self.final is None:
            return False
        return self.final.search(self._ends(message_text(user))) is not None  # type: ignore[arg-type]

    @staticmethod
    def _had_tools(messages: list[Any]) -> bool:
        return any(_role(m) in _TOOL_ROLES for m in messages)


@register
class StepTypeSignals(Family):
    name = "step"

    def __init__(self, config: Any, embedder: Any = None) -> None:
        super().__init__(config, embedder)
        self.classifier = StepClassifier(config)

    def declared_names(self) -> set[str]:
        return set(STEP_NAMES)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        found = self.classifier.classify(ctx.body)
        if found is None:
            return FamilyResult(values={"step": None})
        step, confidence, seen = found
        return FamilyResult({step: Match(confidence, seen.get("error") or seen.get("by"))},
                            {"step": step, **seen})
