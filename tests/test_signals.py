"""Every signal family on real inputs, and the rule operators over them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from routeyard.config.signals import RuleTree, SignalsConfig
from routeyard.decisions.rules import compile_rule, explain_rule
from routeyard.signals import SignalEngine, SignalFailed


def engine(signals: dict[str, Any], referenced: dict[str, set[str]] | None = None
           ) -> SignalEngine:
    config = SignalsConfig.model_validate(signals)
    families = referenced or {family: set() for family in config.families()}
    return SignalEngine(config, families)


def user(text: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


async def leaves(signals: dict[str, Any], body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> dict[str, float]:
    e = engine(signals)
    return (await e.evaluate(e.context(body, headers))).leaves


async def test_keyword_any_all_regex_and_case() -> None:
    signals = {"keyword": {"sets": {
        "code": {"any": ["python", "C++"]},
        "sql": {"all": ["select", "from"]},
        "ticket": {"regex": [r"\bJIRA-\d+\b"], "case_sensitive": True},
    }}}
    assert set(await leaves(signals, user("Write PYTHON please"))) == {"keyword:code"}
    assert "keyword:sql" in await leaves(signals, user("select a from b"))
    assert "keyword:sql" not in await leaves(signals, user("select a"))
    assert "keyword:ticket" in await leaves(signals, user("see JIRA-42"))
    assert "keyword:ticket" not in await leaves(signals, user("see jira-42"))


async def test_keyword_fuzzy_and_bm25() -> None:
    signals = {"keyword": {"sets": {
        "kube": {"any": ["kubernetes"], "fuzzy": 85},
        "billing": {"any": ["invoice", "refund", "charge"], "bm25_threshold": 2.0},
    }}}
    found = await leaves(signals, user("my kubernetse pod crashes"))
    assert 0.85 <= found["keyword:kube"] < 1.0  # a typo, matched with its fuzzy score
    assert "keyword:kube" not in await leaves(signals, user("my laptop crashes"))
    # BM25 needs relevance, not one word: a single mention scores ~1.4, below the threshold.
    assert "keyword:billing" not in await leaves(signals, user("I want a refund"))
    found = await leaves(signals, user("Refund the double charge on my last invoice"))
    assert 0.5 <= found["keyword:billing"] <= 1.0


async def test_context_length_bands() -> None:
    signals = {"context_length": {"bands": {"short": {"max_tokens": 50},
                                            "long": {"min_tokens": 1000}}}}
    assert set(await leaves(signals, user("hi"))) == {"context_length:short"}
    assert set(await leaves(signals, user("word " * 1500))) == {"context_length:long"}


async def test_language_detects_codes_and_groups() -> None:
    signals = {"language": {"groups": {"cjk": ["zh", "ja", "ko"]}}}
    found = await leaves(signals, user("这是一个关于数据库索引的问题。请详细解释。"))
    assert {"language:zh", "language:cjk"} <= set(found)
    assert "language:fr" in await leaves(signals, user("Bonjour, pouvez-vous m'aider ?"))
    assert await leaves(signals, user("")) == {}


async def test_conversation_shapes() -> None:
    body = {"model": "auto", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "system", "content": "be terse"},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Lyon"},
                {"role": "user", "content": "what is the capital of france??"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "content": "x", "tool_call_id": "1"},
                {"role": "tool", "content": "y", "tool_call_id": "1"},
            ]}
    found = await leaves({"conversation": {"tool_loop_depth": 2}}, body)
    assert {"conversation:multi_turn", "conversation:has_tools", "conversation:tool_loop",
            "conversation:has_system", "conversation:reask"} <= set(found)
    single = await leaves({"conversation": {}}, user("hello"))
    assert single == {}


async def test_modality_parts_including_malformed() -> None:
    body = user([{"type": "text", "text": "what is this"},
                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                 {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                 "not-a-part", {"no": "type"}])
    found = await leaves({"modality": {}}, body)
    assert set(found) == {"modality:image", "modality:audio"}
    assert set(await leaves({"modality": {}}, user("plain"))) == {"modality:text_only"}


async def test_authz_by_key_hash_and_header() -> None:
    digest = hashlib.sha256(b"team-a-key").hexdigest()
    signals = {"authz": {"roles": {"team_a": {"api_keys": [digest]},
                                   "admin": {"headers": {"X-Role": ["admin"]}}}}}
    found = await leaves(signals, user("hi"), {"authorization": "Bearer team-a-key"})
    assert set(found) == {"authz:team_a"}
    found = await leaves(signals, user("hi"), {"x-role": "admin"})
    assert set(found) == {"authz:admin"}
    assert await leaves(signals, user("hi"), {"authorization": "Bearer other"}) == {}


async def test_metadata_from_header_field_and_user() -> None:
    signals = {"metadata": {"hints": {
        "premium": {"header": "x-tier", "equals": ["premium"]},
        "batch": {"field": "priority", "equals": ["low"]},
        "known_user": {"field": "user"},
    }}}
    body = {**user("hi"), "metadata": {"priority": "low"}, "user": "u-7"}
    found = await leaves(signals, body, {"x-tier": "premium"})
    assert set(found) == {"metadata:premium", "metadata:batch", "metadata:known_user"}


async def test_embedding_similarity_sets() -> None:
    signals = {"embedding": {"sets": {"cooking": {
        "examples": ["How long should I boil pasta?", "Best way to roast vegetables",
                     "How do I bake sourdough bread?"], "threshold": 0.5}}}}
    found = await leaves(signals, user("What temperature do I bake bread at?"))
    assert found.get("embedding:cooking", 0) >= 0.5
    assert "embedding:cooking" not in await leaves(signals, user("Explain TCP handshakes"))


async def test_domain_classifier_from_examples() -> None:
    signals = {"domain": {"examples": {
        "math": ["Solve 3x + 5 = 20", "What is the integral of x^2?", "Compute 17 * 23",
                 "Find the derivative of sin(x)", "What is 15% of 80?"],
        "code": ["Write a Python function to reverse a list", "Fix this JavaScript bug",
                 "How do I use a HashMap in Java?", "Write a SQL query to count rows",
                 "Implement quicksort in C"],
    }}}
    assert "domain:math" in await leaves(signals, user("Solve for y: 2y - 4 = 10"))
    assert "domain:code" in await leaves(signals, user("Write a Rust function that sorts"))


async def test_failing_family_policies() -> None:
    # A classifier file that is not there fails at build time: config errors are loud.
    with pytest.raises(ValueError, match=r"labels\.jsonl: cannot read"):
        engine({"domain": {"file": "/nonexistent/labels.jsonl"}})
    skip = engine({"keyword": {"sets": {"k": {"regex": ["x"]}}}})
    family = skip.families[0]

    def boom(_: Any) -> Any:
        raise ValueError("broken")

    family.evaluate = boom  # type: ignore[method-assign]
    report = await skip.evaluate(skip.context(user("x")))
    assert report.leaves == {} and "broken" in (report.results["keyword"].error or "")
    closed = engine({"keyword": {"on_error": "match", "sets": {"k": {"regex": ["x"]}}}},
                    {"keyword": {"k"}})
    closed.families[0].evaluate = boom  # type: ignore[method-assign]
    assert (await closed.evaluate(closed.context(user("y")))).leaves == {"keyword:k": 1.0}
    failing = engine({"keyword": {"on_error": "fail", "sets": {"k": {"regex": ["x"]}}}})
    failing.families[0].evaluate = boom  # type: ignore[method-assign]
    with pytest.raises(SignalFailed):
        await failing.evaluate(failing.context(user("x")))


async def test_only_referenced_families_are_built() -> None:
    config = SignalsConfig.model_validate({
        "keyword": {"sets": {"k": {"any": ["x"]}}},
        "embedding": {"sets": {"e": {"examples": ["x"]}}},
    })
    built = SignalEngine(config, {"keyword": {"k"}})
    assert [f.name for f in built.families] == ["keyword"] and built.embedder is None


async def test_unicode_empty_and_huge_prompts() -> None:
    signals = {"keyword": {"sets": {"k": {"any": ["naïve", "日本"]}}},
               "context_length": {"bands": {"huge": {"min_tokens": 100_000}}},
               "language": {}, "conversation": {}, "modality": {}}
    assert "keyword:k" in await leaves(signals, user("a NAÏVE approach 🙂"))
    assert "keyword:k" in await leaves(signals, user("日本語の質問"))
    assert "context_length:huge" not in await leaves(signals, user(""))
    found = await leaves(signals, user("lorem ipsum dolor " * 70_000))  # ~200k tokens
    assert "context_length:huge" in found


def rule(spec: Any) -> RuleTree:
    return RuleTree.model_validate(spec)


def test_rule_operators_and_confidence() -> None:
    leaves = {"a:x": 0.9, "b:y": 0.4}
    assert compile_rule(rule("a:x"))(leaves) == 0.9
    assert compile_rule(rule({"signal": "b:y", "threshold": 0.5}))(leaves) == 0.0
    assert compile_rule(rule({"all": ["a:x", "b:y"]}))(leaves) == 0.4
    assert compile_rule(rule({"all": ["a:x", "c:z"]}))(leaves) == 0.0
    assert compile_rule(rule({"any": ["c:z", "b:y"]}))(leaves) == 0.4
    assert compile_rule(rule({"not": "c:z"}))(leaves) == 1.0
    assert compile_rule(rule({"not": {"any": ["a:x"]}}))(leaves) == 0.0
    nested = rule({"all": ["a:x", {"not": {"all": ["b:y", "c:z"]}}]})
    assert compile_rule(nested)(leaves) == 0.9
    trace = explain_rule(nested, leaves)
    assert trace["holds"] and trace["all"][1]["not"]["holds"] is False


@pytest.mark.parametrize("bad", [{}, {"all": ["a:x"], "any": ["b:y"]}, {"signal": "nocolon"},
                                 {"all": ["a:x"], "threshold": 0.5}])
def test_malformed_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        rule(bad)
