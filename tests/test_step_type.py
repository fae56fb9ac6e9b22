"""The `step` signal family: planning, tool_result, final and error_recovery, read from the end
of an agent's conversation; and the rules way of setting an effort per step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from echo_backend import echo_backend

from routeyard.catalog import build_config
from routeyard.config import ConfigError
from routeyard.config.signals import StepTypeFamily
from routeyard.router import Router
from routeyard.signals.base import FamilyBuild, RequestContext
from routeyard.signals.step_type import StepClassifier, StepTypeSignals
from routeyard.state import MemoryStore

TOOLS = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]
TASK = {"role": "user", "content": "Fix the failing test in tests/test_io.py"}


def call(index: int = 0) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{index}", "type": "function",
         "function": {"name": "run", "arguments": '{"cmd": "pytest"}'}}]}


def result(content: Any, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{index}", "content": content, **extra}


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [TASK, *messages], "tools": TOOLS, **extra}


def classify(request: dict[str, Any], **config: Any) -> tuple[str, float, dict[str, Any]] | None:
    return StepClassifier(StepTypeFamily(**config)).classify(request)


def step_of(request: dict[str, Any], **config: Any) -> str | None:
    found = classify(request, **config)
    return found[0] if found is not None else None


def test_a_new_user_task_is_planning() -> None:
    assert classify(body()) == ("planning", 1.0, {})
    # A second task after a finished exchange is planning again.
    later = body(call(), result("ok"), {"role": "assistant", "content": "Done."},
                 {"role": "user", "content": "Now add a docstring."})
    assert step_of(later) == "planning"


def test_tool_results_to_digest() -> None:
    found = classify(body(call(), result("3 passed in 0.2s")))
    assert found == ("tool_result", 1.0, {"tool_results": 1})
    # Parallel calls: every result of the tail counts.
    two = body(call(0), result("a.py\nb.py", 0), result("1 passed", 1))
    assert classify(two) == ("tool_result", 1.0, {"tool_results": 2})


@pytest.mark.parametrize(("content", "evidence"), [
    ('Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: 1', "traceback"),
    ("Error: file not found: tests/test_io.py", "error_prefix"),
    ("collected 3 items\n...\nProcess exited with code 2", "exit_code"),
    ('{"exit_code": 1, "stdout": ""}', "exit_code"),
    ('{"error": "rate limited", "result": null}', "json_error"),
    ('{"ok": false, "message": "no such branch"}', "json_error"),
    ("compiling...\nerror[E0308]: mismatched types", "error_line"),
    ("make: *** [all]\nsrc/io.c:3:5: error: expected ';'", "error_line"),
    ("HTTP/1.1 503 Service Unavailable", "shell_failure"),
    ("ModuleNotFoundError: No module named 'yaml'", "error_line"),
    ("bash: pytst: command not found", "shell_failure"),
    # The Anthropic surface turns an is_error tool_result into text that starts "Error: ".
    ([{"type": "text", "text": "Error: permission denied"}], "error_prefix"),
])
def test_a_failed_tool_result_is_error_recovery(content: Any, evidence: str) -> None:
    found = classify(body(call(), result(content)))
    assert found is not None
    assert found[0] == "error_recovery"
    assert found[2]["error"] == evidence
    assert found[1] >= 0.7


def test_is_error_flag_is_certain() -> None:
    assert classify(body(call(), result("it broke", is_error=True)))[:2] == (  # type: ignore[index]
        "error_recovery", 1.0)


@pytest.mark.parametrize("content", [
    '{"exit_code": 0, "stdout": "3 passed"}',
    '{"error": null, "result": [1, 2]}',
    "Process exited with code 0",
    "The docs describe error handling in chapter 3.",  # the word, not a marker
    "no errors found",
])
def test_successful_results_are_not_errors(content: str) -> None:
    assert step_of(body(call(), result(content))) == "tool_result"


def test_one_failure_among_parallel_results_is_enough() -> None:
    assert step_of(body(call(0), result("fine", 0), result("Error: boom", 1))) == (
        "error_recovery")


def test_error_marker_in_the_tail_of_a_long_result_is_seen() -> None:
    long = "line\n" * 5000 + "Traceback (most recent call last):\n  boom"
    assert step_of(body(call(), result(long))) == "error_recovery"
    # The middle of a huge output is not scanned: the cost stays bounded.
    buried = "x\n" * 3000 + "Error: in the middle\n" + "y\n" * 3000
    assert step_of(body(call(), result(buried))) == "tool_result"


def test_final_when_the_framework_takes_the_tools_away() -> None:
    no_tools = {"model": "auto", "messages": [TASK, call(), result("3 passed")]}
    assert classify(no_tools) == ("final", 0.9, {"tool_results": 1, "by": "no tools sent"})
    forced = body(call(), result("3 passed"), tool_choice="none")
    assert step_of(forced) == "final"
    # A failure still asks for recovery, tools or not.
    assert step_of({"model": "auto", "messages": [TASK, call(), result("Error: x")]}) == (
        "error_recovery")


def test_final_when_the_user_asks_to_conclude() -> None:
    # In the same (Anthropic) user turn as the tool results...
    same_turn = body(call(), result("3 passed"),
                     {"role": "user", "content": "Good. Now give your final answer."})
    assert classify(same_turn) == ("final", 0.7, {"tool_results": 1,
                                                  "by": "user asks to conclude"})
    # ...or as a turn of its own, once the conversation has used tools.
    after = body(call(), result("3 passed"), {"role": "assistant", "content": "Tests pass."},
                 {"role": "user", "content": "Please wrap up and summarize your findings."})
    assert step_of(after) == "final"
    # Without any tool use, "final answer" in a task is just planning.
    assert step_of({"model": "auto", "messages": [
        {"role": "user", "content": "What is the final answer to 6*7?"}]}) == "planning"


def test_configured_patterns() -> None:
    flaky = body(call(), result("WARN: 2 tests flaky"))
    assert step_of(flaky) == "tool_result"
    assert step_of(flaky, error_patterns=[r"^WARN: .*flaky"]) == "error_recovery"
    ask = body(call(), result("ok"), {"role": "user", "content": "ship it"})
    assert step_of(ask) == "tool_result"
    assert step_of(ask, final_patterns=[r"\bship it\b"]) == "final"
    # No final patterns at all: only the missing tools say final.
    conclude = body(call(), result("ok"), {"role": "user", "content": "final answer please"})
    assert step_of(conclude, final_patterns=[]) == "tool_result"


def test_nothing_to_classify() -> None:
    assert classify({"messages": [TASK, {"role": "assistant", "content": "The fix is"}]}) is None
    assert classify({"messages": []}) is None


def test_the_family_reports_one_leaf_with_its_evidence() -> None:
    family = StepTypeSignals.build(StepTypeFamily(), FamilyBuild())
    assert family.declared_names() == {"planning", "tool_result", "final", "error_recovery"}
    report = family.evaluate(RequestContext(body(call(), result("Error: nope"))))
    assert list(report.matches) == ["error_recovery"]
    assert report.matches["error_recovery"].value == "error_prefix"
    assert report.values == {"step": "error_recovery", "tool_results": 1,
                             "error": "error_prefix"}


def test_config_errors_are_located() -> None:
    with pytest.raises(ConfigError, match=r"error_patterns\[0\] is not a valid regex"):
        build_config({"models": [{"name": "m", "endpoints": [{"base_url": "http://x/v1"}]}],
                      "signals": {"step": {"error_patterns": ["(unclosed"]}}})
    with pytest.raises(ConfigError, match="step:thinking"):
        build_config({"models": [{"name": "m", "endpoints": [{"base_url": "http://x/v1"}]}],
                      "signals": {"step": {}},
                      "decisions": [{"name": "d", "rules": "step:thinking",
                                     "candidates": ["m"]}]})


# -- the rules way: decisions on step leaves, each candidate with its own effort ----------------

@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    async with echo_backend() as backend:
        yield backend


def rules_router(url: str) -> Router:
    model = {"name": "r", "endpoints": [{"base_url": url}],
             "capabilities": {"tools": True, "reasoning": True}}
    return Router(build_config({
        "models": [model],
        "signals": {"step": {}},
        "decisions": [
            {"name": "think", "rules": {"any": ["step:planning", "step:error_recovery"]},
             "candidates": [{"model": "r", "reasoning_effort": "high"}]},
            {"name": "digest", "rules": "step:tool_result",
             "candidates": [{"model": "r", "reasoning_effort": "low"}]},
        ],
        "default": {"candidates": [{"model": "r", "reasoning_effort": "medium"}]},
        "pool": {"health_check": {"interval_s": 0}},
    }), store=MemoryStore())


async def test_rules_on_step_leaves_set_the_effort_per_step(
        echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = echo
    async with rules_router(url) as router:
        for request in (body(), body(call(), result("ok")), body(call(), result("Error: x")),
                        {"model": "auto", "messages": [TASK, call(), result("ok")]}):
            await router.chat(request)
    assert [b.get("reasoning_effort") for b in received] == ["high", "low", "high", "medium"]
