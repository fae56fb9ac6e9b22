"""The pii_redact plugin: the upstream sees placeholders, the caller gets the values back."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import openai
import pytest
from echo_backend import echo_backend
from routerproc import start_router

from routeyard.catalog import build_config
from routeyard.plugins import PLUGINS, PluginContext
from routeyard.router import Router
from routeyard.signals import RequestContext
from routeyard.state import MemoryStore

EMAIL = "jane.doe@example.com"
OTHER_EMAIL = "bob@corp.example.org"
PHONE = "+1 415-555-0132"
CARD = "4111 1111 1111 1111"
IP = "192.168.1.20"
SSN = "123-45-6789"
IBAN = "DE89 3704 0044 0532 0130 00"
RAW = (EMAIL, OTHER_EMAIL, PHONE, CARD, IP, SSN, IBAN)


def redact_router(url: str, **options: Any) -> Router:
    """A decision routed on `pii:any` (so the pii signal runs and its values can be checked),
    with the plugin; the default has no plugin."""
    config = build_config({
        "models": [{"name": "m", "endpoints": [{"base_url": url}],
                    "capabilities": {"vision": True}}],
        "signals": {"pii": {}},
        "decisions": [{"name": "private", "rules": "pii:any", "candidates": ["m"],
                       "plugins": [{"type": "pii_redact", **options}]}],
        "default": {"candidates": ["m"]},
        "pool": {"health_check": {"interval_s": 0}},
    })
    return Router(config, store=MemoryStore())


def chat(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"model": "auto", "messages": list(messages)}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sent_text(body: dict[str, Any]) -> str:
    return json.dumps(body)


async def test_round_trip_masks_upstream_and_restores_for_the_caller() -> None:
    reply = "I will write to <EMAIL_ADDRESS_1> and call <PHONE_NUMBER_1>; <EMAIL_ADDRESS_2> too."
    async with echo_backend(reply) as (url, received), redact_router(url) as router:
        body = chat({"role": "system", "content": f"Admin: {OTHER_EMAIL}"},
                    user(f"Mail {EMAIL}, then {OTHER_EMAIL}, or call {PHONE}. "
                         f"Again: {EMAIL}."))
        original = copy.deepcopy(body)
        plan = await router.plan(body)
        result = await router.complete(body, plan)
        await router.store.flush()
        record = await router.store.get_decision(plan.request_id)
    assert plan.decision == "private"
    upstream = received[0]["messages"]
    # The system message is not in the default roles: untouched.
    assert upstream[0] == {"role": "system", "content": f"Admin: {OTHER_EMAIL}"}
    # The same value gets the same placeholder; each type is numbered on its own.
    assert upstream[1]["content"] == ("Mail <EMAIL_ADDRESS_1>, then <EMAIL_ADDRESS_2>, or call "
                                      "<PHONE_NUMBER_1>. Again: <EMAIL_ADDRESS_1>.")
    assert body == original  # the client's request is never edited
    answer = result.response["choices"][0]["message"]["content"]
    assert answer == f"I will write to {EMAIL} and call {PHONE}; {OTHER_EMAIL} too."
    # Neither the signal values nor the decision log hold the raw values.
    assert plan.signals is not None and record is not None
    logged = json.dumps(plan.signals.results["pii"].values) + json.dumps(record.to_dict())
    assert not any(value in logged for value in RAW)


async def test_streamed_answer_is_restored_through_the_sdk(tmp_path: Path) -> None:
    """Through `routeyard serve` and the openai SDK: the echo backend streams its answer in
    4-character deltas, so every placeholder arrives split across chunks."""
    reply = "Writing to <EMAIL_ADDRESS_1>, calling <PHONE_NUMBER_1>. Done <EMAIL_ADDRESS_1>"
    async with echo_backend(reply) as (url, received):
        config = {
            "models": [{"name": "m", "endpoints": [{"base_url": url}]}],
            "signals": {"pii": {}},
            "decisions": [{"name": "private", "rules": "pii:any", "candidates": ["m"],
                           "plugins": [{"type": "pii_redact"}]}],
            "default": {"candidates": ["m"]},
            "pool": {"health_check": {"interval_s": 0}},
        }
        with start_router(config, tmp_path) as proc:
            client = openai.AsyncOpenAI(base_url=proc.base_url, api_key="x")
            stream = await client.chat.completions.create(
                model="auto", stream=True,
                messages=[user(f"Mail {EMAIL} or call {PHONE}.")])
            deltas = [chunk.choices[0].delta.content async for chunk in stream
                      if chunk.choices and chunk.choices[0].delta.content]
            await client.close()
    assert received[0]["messages"][0]["content"] == (
        "Mail <EMAIL_ADDRESS_1> or call <PHONE_NUMBER_1>.")
    assert "".join(deltas) == f"Writing to {EMAIL}, calling {PHONE}. Done {EMAIL}"
    assert len(deltas) > 3  # still a stream, not one buffered answer
    assert not any("<" in delta for delta in deltas)  # no half placeholder leaked


async def test_streamed_tool_call_arguments_are_restored() -> None:
    arguments = '{"to": "<EMAIL_ADDRESS_1>", "cc": "<EMAIL_ADDRESS_2>"}'
    async with (echo_backend("Sending.", tool_arguments=arguments) as (url, _),
                redact_router(url) as router):
        chunks = [c async for c in router.chat_stream({
            **chat(user(f"Mail {EMAIL} and {OTHER_EMAIL}")), "stream": True})]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    text = "".join(d.get("content") or "" for d in deltas)
    streamed = "".join(call["function"].get("arguments") or ""
                       for d in deltas for call in d.get("tool_calls") or ())
    assert text == "Sending."
    assert json.loads(streamed) == {"to": EMAIL, "cc": OTHER_EMAIL}
    assert not any("<" in (call["function"].get("arguments") or "")
                   for d in deltas for call in d.get("tool_calls") or ())
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_names_are_masked_when_listed() -> None:
    reply = "Dear <PERSON_1>, see you in <LOCATION_1>."
    async with (echo_backend(reply) as (url, received),
                redact_router(url, entities=["PERSON", "LOCATION", "EMAIL_ADDRESS"]) as router):
        result = await router.complete(chat(user(
            f"Write to Maria Gonzalez ({EMAIL}) about the trip to Lisbon.")))
    sent = received[0]["messages"][0]["content"]
    assert sent == ("Write to <PERSON_1> (<EMAIL_ADDRESS_1>) about the trip to "
                    "<LOCATION_1>.")
    assert result.response["choices"][0]["message"]["content"] == (
        "Dear Maria Gonzalez, see you in Lisbon.")


async def test_street_addresses_are_masked_when_listed() -> None:
    reply = "Sent to <STREET_ADDRESS_1>."
    async with (echo_backend(reply) as (url, received),
                redact_router(url, entities=["STREET_ADDRESS", "PHONE_NUMBER"]) as router):
        result = await router.complete(chat(user(
            f"Ship it to 8 rue de la Paix, 75002 Paris, or call {PHONE}.")))
    sent = received[0]["messages"][0]["content"]
    assert "rue de la Paix" not in sent and "<STREET_ADDRESS_1>" in sent
    assert "<PHONE_NUMBER_1>" in sent
    assert result.response["choices"][0]["message"]["content"].startswith(
        "Sent to 8 rue de la Paix")


async def test_many_types_and_text_parts_and_system_role() -> None:
    reply_text = "<CREDIT_CARD_1> <IP_ADDRESS_1> <US_SSN_1> <IBAN_CODE_1>"
    async with (echo_backend(reply_text) as (url, received),
                redact_router(url, roles=["system", "user"]) as router):
        reply = await router.chat(chat(
            {"role": "system", "content": f"Server {IP}."},
            user([{"type": "text", "text": f"Card {CARD}, ssn {SSN}."},
                  {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                  {"type": "text", "text": f"IBAN {IBAN} on {IP}"}])))
    upstream = received[0]["messages"]
    assert upstream[0]["content"] == "Server <IP_ADDRESS_1>."
    assert upstream[1]["content"] == [
        {"type": "text", "text": "Card <CREDIT_CARD_1>, ssn <US_SSN_1>."},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "text", "text": "IBAN <IBAN_CODE_1> on <IP_ADDRESS_1>"}]
    assert not any(value in sent_text(received[0]) for value in RAW)
    assert reply["choices"][0]["message"]["content"] == f"{CARD} {IP} {SSN} {IBAN}"


async def test_entities_placeholder_and_restore_options() -> None:
    async with (echo_backend("Noted [EMAIL_ADDRESS#1].") as (url, received),
                redact_router(url, entities=["EMAIL_ADDRESS"], restore=False,
                              placeholder="[{label}#{n}]") as router):
        reply = await router.chat(chat(user(f"{EMAIL} / {PHONE}")))
    # Only e-mail addresses are masked; without restore the caller sees the placeholder.
    assert received[0]["messages"][0]["content"] == f"[EMAIL_ADDRESS#1] / {PHONE}"
    assert reply["choices"][0]["message"]["content"] == "Noted [EMAIL_ADDRESS#1]."


async def test_no_pii_leaves_the_body_untouched() -> None:
    async with echo_backend() as (url, received):
        config = build_config({
            "models": [{"name": "m", "endpoints": [{"base_url": url}]}],
            "default": {"candidates": ["m"], "plugins": [{"type": "pii_redact"}]},
            "pool": {"health_check": {"interval_s": 0}},
        })
        async with Router(config, store=MemoryStore()) as router:
            messages = [user("What is 2 + 2?"), {"role": "assistant", "content": "4"},
                        user([{"type": "text", "text": "And <EMAIL_ADDRESS_1>?"}])]
            reply = await router.chat(chat(*messages))
    assert received[0]["messages"] == messages
    assert reply["choices"][0]["message"]["content"] == "ok"


def ctx_for(messages: list[dict[str, Any]]) -> PluginContext:
    body = {"model": "m", "messages": messages}
    return PluginContext("req_1", "d", "m", RequestContext(body), None, body, {}, False)


def test_state_is_per_request_and_placeholders_in_the_prompt_are_skipped() -> None:
    plugin = PLUGINS["pii_redact"]({})
    first, second = ctx_for([user(f"a {EMAIL}")]), ctx_for(
        [user(f"I typed <EMAIL_ADDRESS_1> myself; mine is {OTHER_EMAIL}")])
    plugin.on_request(first)
    plugin.on_request(second)
    # A literal placeholder already in the prompt is never reused (nor restored).
    assert second.body["messages"][0]["content"] == (
        "I typed <EMAIL_ADDRESS_1> myself; mine is <EMAIL_ADDRESS_2>")
    answers = [{"choices": [{"message": {"role": "assistant", "content": text, "tool_calls": [
        {"id": "c", "type": "function",
         "function": {"name": "send", "arguments": json.dumps({"to": text})}}]}}]}
        for text in ("<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_1> <EMAIL_ADDRESS_2>")]
    plugin.on_response(first, answers[0])
    plugin.on_response(second, answers[1])
    assert answers[0]["choices"][0]["message"]["content"] == EMAIL
    assert answers[1]["choices"][0]["message"]["content"] == f"<EMAIL_ADDRESS_1> {OTHER_EMAIL}"
    arguments = answers[0]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"to": EMAIL}
    assert not vars(plugin).get("values")  # nothing request-specific on the shared plugin


def test_numbers_past_nine_restore_exactly() -> None:
    plugin = PLUGINS["pii_redact"]({"placeholder": "{label}{n}"})
    emails = [f"user{i}@example.com" for i in range(1, 12)]
    ctx = ctx_for([user(" ".join(emails))])
    plugin.on_request(ctx)
    assert ctx.body["messages"][0]["content"].split()[-1] == "EMAIL_ADDRESS11"
    answer = {"choices": [{"message": {"content": "EMAIL_ADDRESS11 EMAIL_ADDRESS1"}}]}
    plugin.on_response(ctx, answer)
    assert answer["choices"][0]["message"]["content"] == f"{emails[10]} {emails[0]}"


@pytest.mark.parametrize("options", [
    {"entities": ["NAME"]}, {"entities": []}, {"entities": "EMAIL_ADDRESS"},
    {"restore": "yes"}, {"placeholder": "<{label}>"}, {"placeholder": "{n}"},
    {"placeholder": "<{name}_{n}>"}, {"placeholder": "<{n"}, {"placeholder": ""},
    {"roles": ["robot"]}, {"roles": []}, {"colour": "red"},
])
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PLUGINS["pii_redact"](options)


def test_bad_options_name_the_decision() -> None:
    raw = {"models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:1/v1"}]}],
           "default": {"candidates": ["m"],
                       "plugins": [{"type": "pii_redact", "roles": ["robot"]}]}}
    with pytest.raises(ValueError, match=r"plugins\[0\] \(pii_redact\): roles"):
        Router(build_config(raw), store=MemoryStore())


def test_stream_restore_matches_whole_restore_however_the_text_is_split() -> None:
    from routeyard.plugins.redact import _Masking, _StreamRestore

    masking = _Masking("<{label}_{n}>", "")
    email = masking.mask("EMAIL_ADDRESS", EMAIL)
    for i in range(12):  # <PHONE_NUMBER_1> is a prefix of <PHONE_NUMBER_10>
        masking.mask("PHONE_NUMBER", f"+1 415-555-{i:04d}")
    text = (f"To {email}, call <PHONE_NUMBER_1> or <PHONE_NUMBER_10>; <PHONE_NUMBER_1>> "
            "<EMAIL_ < not one, <PHONE_NUMBER_12>")
    whole = masking.restore(text)
    assert EMAIL in whole and "+1 415-555-0009" in whole and "<EMAIL_ <" in whole
    rng = random.Random(3)
    for _ in range(500):
        restore, out, i = _StreamRestore(masking), [], 0
        while i < len(text):
            size = rng.randint(1, 7)
            out.append(restore.feed(text[i:i + size]))
            i += size
        out.append(restore.flush())
        assert "".join(out) == whole
