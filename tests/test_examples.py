"""The example configs: each validates, and each routes as its comments say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from routeyard import Router
from routeyard.catalog import load_config
from routeyard.cli import main as cli_main
from routeyard.state import MemoryStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR} without a :-default


def set_secrets(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in set(_SECRET.findall(path.read_text(encoding="utf-8"))):
        monkeypatch.setenv(name, f"dummy-{name.lower()}")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_validates(path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    set_secrets(path, monkeypatch)
    assert cli_main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert ": ok (" in capsys.readouterr().out


def router(name: str, monkeypatch: pytest.MonkeyPatch) -> Router:
    path = EXAMPLES / name
    set_secrets(path, monkeypatch)
    return Router(load_config(path), store=MemoryStore(), base_dir=EXAMPLES)


def chat(*messages: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": r, "content": c} for r, c in messages],
            **extra}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def long_prompt(tokens: int) -> str:
    return "lorem ipsum dolor sit amet " * (tokens // 5)  # about five tokens a repeat


# -- cost-optimised ---------------------------------------------------------------------------


async def test_cost_optimised(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router("cost-optimised.yaml", monkeypatch)
    easy = await r.route("What is the capital of France?")
    assert (easy["decision"], easy["model"], easy["fallback"]) == ("cheap", "gpt-4o-mini",
                                                                   ["gpt-4.1"])
    maths = await r.route("Solve 2y - 4 = 10")
    assert (maths["decision"], maths["model"]) == ("escalate", "claude-sonnet-4-5")
    assert "domain:math" in maths["matched_signals"]
    assert maths["fallback"] == ["gpt-4.1", "gpt-4o-mini"]
    code = await r.route("Write a Rust function that parses a CSV file")
    assert (code["decision"], code["model"]) == ("escalate", "claude-sonnet-4-5")
    assert "domain:code" in code["matched_signals"]
    hard = await r.route("Design a lock-free concurrent hash map and prove its linearizability")
    assert hard["decision"] == "escalate"
    assert hard["signals"]["complexity"]["matches"]["hard"]["confidence"] >= 0.5


async def test_cost_optimised_long_context(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router("cost-optimised.yaml", monkeypatch)
    long = await r.route(long_prompt(120_000))
    assert long["prompt_tokens"] >= 100_000
    assert (long["decision"], long["model"]) == ("long-context", "gpt-4.1")
    assert long["fallback"] == ["claude-sonnet-4-5"]
    huge = await r.route(long_prompt(300_000))  # past Sonnet's 200k window: no fallback left
    assert (huge["model"], huge["fallback"]) == ("gpt-4.1", [])


# -- privacy-first ----------------------------------------------------------------------------

LOCAL = "qwen2.5-32b-local"


@pytest.mark.parametrize("prompt, leaf", [
    ("Email the invoice to jane.doe@example.com", "keyword:email"),
    ("Call me on +44 20 7946 0958 tomorrow", "keyword:phone"),
    ("My card is 4111-1111-1111-1111, exp 12/27", "keyword:card"),
    ("Please pay DE89370400440532013000 by Friday", "keyword:iban"),
    ("Draft a reference letter for Maria Gonzalez", "pii:PERSON"),
    ("The server at 10.2.33.14 keeps rebooting", "pii:IP_ADDRESS"),
])
async def test_privacy_personal_data_stays_local(monkeypatch: pytest.MonkeyPatch, prompt: str,
                                                 leaf: str) -> None:
    r = router("privacy-first.yaml", monkeypatch)
    result = await r.route(prompt)
    assert (result["decision"], result["model"], result["fallback"]) == ("private", LOCAL, [])
    assert leaf in result["matched_signals"]


async def test_privacy_other_turns_and_regulated_callers(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    r = router("privacy-first.yaml", monkeypatch)
    # Personal data in a tool result, not in the user's turn, still keeps the request local.
    body = chat(("user", "Look up the customer"), ("tool", "found: sam@example.org"))
    assert (await r.route(body))["model"] == LOCAL
    # A regulated caller's key (the placeholder whose digest is in the file): always local.
    regulated = await r.route("What is the capital of France?", bearer("sk-regulated-example"))
    assert (regulated["decision"], regulated["model"]) == ("private", LOCAL)
    assert regulated["matched_signals"] == ["authz:regulated"]
    # Anyone else, with no personal data: hosted models.
    plain = await r.route("In 2024 we sold 1500 units at 3.50 each", bearer("someone-else"))
    assert (plain["decision"], plain["model"]) == ("everyday", "gpt-4o-mini")
    hard = await r.route("Explain step by step how TCP connects")
    assert (hard["decision"], hard["model"]) == ("hard", "gpt-4o")


# -- latency-first ----------------------------------------------------------------------------


async def test_latency_first(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router("latency-first.yaml", monkeypatch)
    hello = await r.route("hey, how are you?")
    assert (hello["decision"], hello["model"]) == ("fast", "qwen2.5-3b")
    # Short, but it reads like analysis: the analysis decision is the more confident one.
    analysis = await r.route("Analyse why our checkout service fell over last night")
    assert (analysis["decision"], analysis["model"]) == ("analysis", "gpt-4.1-mini")
    fast = next(d for d in analysis["considered"] if d["name"] == "fast")
    assert fast["matched"] is False
    chat_turns = chat(("user", "Write a haiku about rain"), ("assistant", "..."),
                      ("user", "now one about snow"))
    assert (await r.route(chat_turns))["decision"] == "fast"


async def test_latency_first_tools_and_long_context(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router("latency-first.yaml", monkeypatch)
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]}
    body = chat(("user", "Find flights to Oslo"), tools=tools)
    body["messages"] += [call, {"role": "tool", "tool_call_id": "c1", "content": "3 flights"},
                         call, {"role": "tool", "tool_call_id": "c1", "content": "prices"}]
    loop = await r.route(body)
    # Both `tool-loop` and `fast` (a short prompt) hold at 1.0; the higher priority wins the tie.
    assert (loop["decision"], loop["model"]) == ("tool-loop", "gpt-4.1-mini")
    assert {d["name"] for d in loop["considered"] if d["matched"]} >= {"tool-loop", "fast"}
    long = await r.route(long_prompt(30_000))
    assert (long["decision"], long["model"]) == ("long-context", "gemini-2.5-flash")


# -- multi-tenant -----------------------------------------------------------------------------


@pytest.mark.parametrize("headers, decision, model", [
    (bearer("sk-acme-example"), "enterprise", "claude-opus-4-1"),
    ({"x-tenant": "globex"}, "enterprise", "claude-opus-4-1"),
    (bearer("sk-free-example"), "free-tier", "gpt-4.1-nano"),
    ({**bearer("sk-free-example"), "x-priority": "batch"}, "free-tier", "gpt-4.1-nano"),
    (bearer("sk-admin-example"), "admin", "claude-opus-4-1"),
    ({**bearer("sk-standard"), "x-priority": "batch"}, "batch", "gpt-4.1-mini"),
    (bearer("sk-standard"), "standard", "gpt-4.1-mini"),
])
async def test_multi_tenant_roles(monkeypatch: pytest.MonkeyPatch, headers: dict[str, str],
                                  decision: str, model: str) -> None:
    r = router("multi-tenant.yaml", monkeypatch)
    result = await r.route("Summarise this contract in five bullet points", headers)
    assert (result["decision"], result["model"]) == (decision, model)


async def test_multi_tenant_cjk(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router("multi-tenant.yaml", monkeypatch)
    zh = await r.route("这是一个关于数据库索引的问题。请详细解释。", bearer("sk-standard"))
    assert (zh["decision"], zh["model"]) == ("cjk", "qwen2.5-72b")
    assert {"language:zh", "language:cjk"} <= set(zh["matched_signals"])
    ja = await r.route("データベースのインデックスについて説明してください。",
                       bearer("sk-acme-example"))
    assert (ja["decision"], ja["model"]) == ("cjk", "qwen2.5-72b")  # above enterprise
    ko = await r.route("데이터베이스 인덱스에 대해 설명해 주세요.", bearer("sk-free-example"))
    assert (ko["decision"], ko["model"]) == ("free-tier", "gpt-4.1-nano")  # free stays small
