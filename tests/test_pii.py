"""The pii family: each detector on positives and tricky negatives, the family through the
engine (types and offsets only, never the values), and the span-level evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routeyard.config.signals import SignalsConfig, declared_names
from routeyard.safety.pii_eval import evaluate_pii
from routeyard.signals import SignalEngine
from routeyard.signals.names import BUILTIN_MODEL, FEATURE_VERSION, NameTagger
from routeyard.signals.pii import ALL_PII_ENTITIES, DETECTABLE_ENTITIES, find_pii


def labels(text: str, entities: list[str] | None = None) -> list[tuple[str, str]]:
    return [(s.label, text[s.start:s.end]) for s in find_pii(text, entities)]


def test_email() -> None:
    assert labels("write to jane.doe+x@mail.example.co.uk today") == [
        ("EMAIL_ADDRESS", "jane.doe+x@mail.example.co.uk")]
    assert labels("the @handle and a@b are not addresses") == []


@pytest.mark.parametrize("phone", ["(602) 272-9781", "+1-604-696-5272", "+44 20 7946 0958",
                                   "+41 (0)38 549 02 90", "01.84.17.61.18"])
def test_phone_positive(phone: str) -> None:
    assert labels(f"call me on {phone} tomorrow") == [("PHONE_NUMBER", phone)]


@pytest.mark.parametrize("text", ["the meeting is on 2024-01-15 at noon",
                                  "The restaurant is at 17151 2450 Main Street",
                                  "it rose from 3.30 - 5.30 percent",
                                  "see http://plixi.com/p/45648946 now",
                                  "order 1234567 shipped"])
def test_phone_negative(text: str) -> None:
    assert labels(text, ["PHONE_NUMBER"]) == []


def test_phone_cue_admits_a_short_local_number() -> None:
    assert labels("my phone number: 451 5986") == [("PHONE_NUMBER", "451 5986")]


def test_credit_card() -> None:
    for card in ("4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005"):
        assert labels(f"card {card} exp 12/27") == [("CREDIT_CARD", card)]
    assert labels("card 4111 1111 1111 1112", ["CREDIT_CARD"]) == []  # fails Luhn
    assert labels("ref 1234567812345678", ["CREDIT_CARD"]) == []  # fails Luhn
    assert labels("zeros 0000000000000000", ["CREDIT_CARD"]) == []


def test_iban() -> None:
    assert labels("pay GB82 WEST 1234 5698 7654 32 please") == [
        ("IBAN_CODE", "GB82 WEST 1234 5698 7654 32")]
    assert labels("pay DE89370400440532013000.") == [("IBAN_CODE", "DE89370400440532013000")]
    assert labels("pay GB83 WEST 1234 5698 7654 32 please", ["IBAN_CODE"]) == []  # checksum


def test_ip_address() -> None:
    assert labels("from 192.168.0.1 and 2001:db8::8a2e:370:7334") == [
        ("IP_ADDRESS", "192.168.0.1"), ("IP_ADDRESS", "2001:db8::8a2e:370:7334")]
    assert labels("bad 999.1.1.1 or 1.2.3.4.5, time 12:30:45", ["IP_ADDRESS"]) == []


def test_ssn() -> None:
    assert labels("ssn 123-45-6789") == [("US_SSN", "123-45-6789")]
    for bad in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert labels(f"ssn {bad}", ["US_SSN"]) == []


def test_overlaps_resolve_and_unknown_entity_is_refused() -> None:
    spans = find_pii("card 4111111111111111")
    assert [s.label for s in spans] == ["CREDIT_CARD"]  # not also a phone number
    with pytest.raises(ValueError, match="unknown PII"):
        find_pii("x", ["PASSPORT"])


async def test_family_through_engine_reports_types_not_values() -> None:
    config = SignalsConfig.model_validate({"pii": {}})
    engine = SignalEngine(config, {"pii": set()})
    secret = "jane.doe@example.com"
    body = {"model": "auto", "messages": [
        {"role": "system", "content": "admin@corp.example is the operator"},
        {"role": "user", "content": f"my mail is {secret}, card 4111 1111 1111 1111"}]}
    report = await engine.evaluate(engine.context(body))
    assert {"pii:EMAIL_ADDRESS", "pii:CREDIT_CARD", "pii:any"} <= set(report.leaves)
    result = report.results["pii"]
    assert result.values["counts"] == {"EMAIL_ADDRESS": 1, "CREDIT_CARD": 1}  # user turn only
    dumped = json.dumps(report.explain())
    assert secret not in dumped and "4111" not in dumped
    clean = await engine.evaluate(engine.context(
        {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}))
    assert not any(leaf.startswith("pii:") for leaf in clean.leaves)


async def test_family_settings() -> None:
    config = SignalsConfig.model_validate(
        {"pii": {"entities": ["IP_ADDRESS"], "roles": ["user", "system"], "min_score": 0.9}})
    engine = SignalEngine(config, {"pii": set()})
    body = {"model": "auto", "messages": [{"role": "system", "content": "host 10.0.0.1"},
                                          {"role": "user", "content": "mail a@example.com"}]}
    report = await engine.evaluate(engine.context(body))
    assert set(report.leaves) == {"pii:IP_ADDRESS", "pii:any"}
    assert declared_names("pii", {"entities": ["IP_ADDRESS"]}) == {"IP_ADDRESS", "any"}


async def test_names_route_a_decision_when_configured(tmp_path: Path) -> None:
    from routeyard.catalog import build_config
    from routeyard.router import Router
    from routeyard.state import MemoryStore

    config = build_config({
        "models": [{"name": "local", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]},
                   {"name": "hosted", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}],
        "signals": {"pii": {"entities": ["PERSON", "LOCATION", "EMAIL_ADDRESS"]}},
        "decisions": [{"name": "named", "rules": "pii:PERSON", "candidates": ["local"]}],
        "default": {"candidates": ["hosted"]},
        "pool": {"health_check": {"interval_s": 0}},
    })
    async with Router(config, store=MemoryStore()) as router:
        named = await router.plan({"model": "auto", "messages": [
            {"role": "user", "content": "Draft a reference letter for Maria Gonzalez."}]})
        plain = await router.plan({"model": "auto", "messages": [
            {"role": "user", "content": "Draft a reference letter for my colleague."}]})
    assert (named.decision, named.model) == ("named", "local")
    assert plain.decision != "named" and plain.model == "hosted"
    assert named.signals is not None
    assert "Gonzalez" not in json.dumps(named.signals.results["pii"].values)


def test_evaluate_pii_by_hand(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        # gold email found (TP); a gold phone missed, written as words (FN)
        {"text": "mail bob@example.com or call five five five",
         "spans": [{"start": 5, "end": 20, "label": "EMAIL_ADDRESS", "value": "x"},
                   {"start": 29, "end": 43, "label": "PHONE_NUMBER", "value": "x"}]},
        # an unlabelled IP (FP); an ORGANIZATION span is ignored
        {"text": "Acme runs 10.1.2.3",
         "spans": [{"start": 0, "end": 4, "label": "ORGANIZATION", "value": "x"}]},
        # the data's own label EMAIL maps to EMAIL_ADDRESS (TP)
        {"text": "x@y.org", "spans": [{"start": 0, "end": 7, "label": "EMAIL", "value": "x"}]},
        # a labelled IP, found (TP): IP precision 1/2, recall 1/1, F1 2/3
        {"text": "ping 8.8.8.8", "spans": [{"start": 5, "end": 12, "label": "IP_ADDRESS",
                                          "value": "x"}]},
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = evaluate_pii(path, ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"])
    per = report["per_label"]
    assert per["EMAIL_ADDRESS"]["precision"] == 1.0 and per["EMAIL_ADDRESS"]["recall"] == 1.0
    assert per["PHONE_NUMBER"]["recall"] == 0.0 and per["PHONE_NUMBER"]["fn"] == 1
    assert per["IP_ADDRESS"]["precision"] == 0.5 and per["IP_ADDRESS"]["recall"] == 1.0
    assert per["IP_ADDRESS"]["f1"] == pytest.approx(2 / 3)
    assert report["p50_ms"] >= 0.0 and report["texts"] == 4


NAMES = ["PERSON", "LOCATION"]


def test_person_in_a_sentence_is_found() -> None:
    assert labels("Please send the report to John Smith by Friday.", NAMES) == [
        ("PERSON", "John Smith")]
    assert ("PERSON", "Priya Ramanathan") in labels(
        "My manager asked me to email Priya Ramanathan about it.", NAMES)


def test_location_in_a_sentence_is_found() -> None:
    found = labels("We flew from London to Tokyo last week.", NAMES)
    assert found == [("LOCATION", "London"), ("LOCATION", "Tokyo")]


@pytest.mark.parametrize("text", ["the quick brown fox jumps over the lazy dog",
                                  "can you write a function that sorts a list of numbers?",
                                  "please summarise this article about climate change",
                                  "1234 5678", ""])
def test_lowercase_common_words_are_not_names(text: str) -> None:
    assert labels(text, NAMES) == []


def test_names_only_when_asked_for() -> None:
    text = "John Smith lives in Boston, mail john.smith@example.com"
    assert [label for label, _ in labels(text)] == ["EMAIL_ADDRESS"]  # the default: patterns
    found = labels(text, ALL_PII_ENTITIES)
    assert ("EMAIL_ADDRESS", "john.smith@example.com") in found  # the address wins its names
    assert ("PERSON", "John Smith") in found and ("LOCATION", "Boston") in found
    assert labels(text, ["LOCATION"]) == [("LOCATION", "Boston")]


def test_a_name_does_not_run_over_a_line_break() -> None:
    # On one line the tagger reads "Anna Berlin" as one name; a line break must split it.
    assert labels("Regards, Anna Berlin office", NAMES) == [("PERSON", "Anna Berlin")]
    found = labels("Regards,\nAnna\nBerlin office", NAMES)
    assert [value for _, value in found] == ["Anna", "Berlin"]
    assert found[0] == ("PERSON", "Anna")


def test_tagger_refuses_a_model_for_other_features(tmp_path: Path) -> None:
    with np.load(BUILTIN_MODEL, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["feature_version"] = np.asarray(FEATURE_VERSION + 1)
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match="feature version"):
        NameTagger.load(tmp_path / "old.npz")


def test_evaluate_pii_scores_names_by_default(tmp_path: Path) -> None:
    text = "Ask Maria Lopez in Madrid"
    row = {"text": text, "spans": [{"start": 4, "end": 15, "label": "PERSON", "value": "x"},
                                   {"start": 19, "end": 25, "label": "GPE", "value": "x"}]}
    path = tmp_path / "names.jsonl"
    path.write_text(json.dumps(row) + "\n")
    per = evaluate_pii(path)["per_label"]
    assert set(DETECTABLE_ENTITIES) == set(per) and set(ALL_PII_ENTITIES) <= set(per)
    assert per["PERSON"]["tp"] == 1 and per["LOCATION"]["tp"] == 1


def test_names_are_searched_in_the_first_characters_only() -> None:
    from routeyard.signals.pii import NAME_SCAN_CHARS

    filler = "the weather report says rain again today. " * (NAME_SCAN_CHARS // 40)
    text = "Maria Gonzalez wrote this. " + filler + " Then John Smith replied."
    found = [text[s.start:s.end] for s in find_pii(text, ["PERSON"])]
    assert found == ["Maria Gonzalez"]  # the late name is past the scan window
    assert len(text) > NAME_SCAN_CHARS
