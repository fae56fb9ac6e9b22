"""PHONE_NUMBER and STREET_ADDRESS on hand-written examples (none from the shared PII file):
international and national phone formats with spaces, dots and dashes; numbers that are not
phones (versions, dates, prices, counts, ids, coordinates); street addresses in several
countries' formats, and text that only looks like one; the by-source evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routeyard.safety.pii_eval import evaluate_pii, format_report
from routeyard.signals.pii import DETECTABLE_ENTITIES, find_pii


def found(text: str, label: str) -> list[str]:
    return [text[s.start:s.end] for s in find_pii(text, [label])]


@pytest.mark.parametrize("phone", [
    "+33 6 71 23 45 89", "+49 89 2180 3344", "+39 02 8721 4410", "+34 934 871 220",
    "+31 10 418 2277", "+46 31 772 10 00", "+358 40 551 2093", "+48 61 829 33 12",
    "+81 6-6879-7070", "+91 80 2293 2001", "+55 21 3938-9191", "+64 4 472 1000",
    "+33.4.78.42.15.60", "+1.617.253.1000", "0044 161 306 6000",
    "04.78.42.15.60", "089 2180 3344", "0161 306 6000", "617.253.1000", "(617) 253-1000",
    "02-8721 4410",
])
def test_phone_formats_are_found(phone: str) -> None:
    text = f"For the workshop, ring the secretariat on {phone} before Friday."
    assert found(text, "PHONE_NUMBER") == [phone]


def test_phone_cue_after_and_label_before() -> None:
    assert found("Lines: 552 0193 (office)", "PHONE_NUMBER") == ["552 0193"]
    assert found("Desk: 4471 2290\nmail me", "PHONE_NUMBER") == ["4471 2290"]


@pytest.mark.parametrize("text", [
    "Upgrade to release 3.12.4567 before the freeze.",          # a version
    "The contract was signed on 03.11.2019 in Lyon.",           # a date
    "Invoices dated 2021-06-30 and 2021-07-31 are due.",        # ISO dates
    "Revenue reached 4 512 880 EUR last year.",                 # thousands, a currency
    "The city has 2.345.678 inhabitants.",                      # thousands with dots
    "It costs $ 1 299 000 in total.",                           # a price
    "Tracking number 7734 2290 1183 was issued.",               # an id, named
    "Use SKU 310-4471-2290 when reordering.",                   # an id, named
    "ISBN 978-0-262-03384-8 is the third edition.",             # one-digit groups
    "The summit is at 45.8326 6.8652 on the map.",              # coordinates
    "Scores were 12 15 18 21 24 27 across rounds.",             # a list of numbers
    "He served from (1998-2004) as chair.",                     # a range of years
    "Set the subnet to 192.168.40.17 and reboot.",              # an IPv4 address
    "Order 88213094 shipped yesterday.",                        # an unbroken id
    "The range 1200 - 4500 covers it.",                         # a range
    "Pi is roughly 3.14159265 here.",                           # a decimal
])
def test_numbers_that_are_not_phones(text: str) -> None:
    assert found(text, "PHONE_NUMBER") == []


@pytest.mark.parametrize(("text", "address"), [
    ("Send it to 1600 Amphitheatre Parkway, Mountain View, CA 94043 please.",
     "1600 Amphitheatre Parkway, Mountain View, CA 94043"),
    ("Our office moved to 350 Fifth Avenue, Suite 4200, New York, NY 10118.",
     "350 Fifth Avenue, Suite 4200, New York, NY 10118"),
    ("We met at 10 Downing Street yesterday.", "10 Downing Street"),
    ("Die Praxis ist in der Leopoldstraße 12, 80802 München.",
     "Leopoldstraße 12, 80802 München"),
    ("Adresse : 8 rue de la Paix, 75002 Paris.", "8 rue de la Paix, 75002 Paris"),
    ("Il museo è in Via dei Mille 23, Napoli.", "Via dei Mille 23, Napoli"),
    ("Kontoret ligger på Drottninggatan 71, Stockholm.", "Drottninggatan 71, Stockholm"),
    ("Toimisto: Mannerheimintie 14\n00100 Helsinki\nFinland",
     "Mannerheimintie 14\n00100 Helsinki\nFinland"),
    ("Ship to PO Box 4471 in Anchorage.", "PO Box 4471"),
    ("Mail: PSC 1020, Box 2330\nAPO AE 09012", "PSC 1020, Box 2330\nAPO AE 09012"),
    ("Meet at the corner of Dale Street and Castle Road tonight.",
     "the corner of Dale Street and Castle Road"),
])
def test_street_addresses_are_found(text: str, address: str) -> None:
    assert found(text, "STREET_ADDRESS") == [address]


@pytest.mark.parametrize("text", [
    "Chapter 3 The Road to Recovery is the best one.",
    "In December 1975 Balcombe Street was in the news.",
    "We shipped 3 Big Boxes yesterday.",
    "Turn to page 12 for the diagram.",
    "The meeting is in Room 4 at noon.",
    "Use the 2 Factor method via OAuth 2 and then log in.",
    "Windows 11 Pro costs more than Windows 10 Home.",
    "I live in Paris and work in Berlin.",
    "Here are the Top 10 Best Way to learn it.",            # a counter before the number
    "I finished the 5 Mile Road Race in June.",             # a title running on
    "Section 4 Main Drive System needs a review.",
])
def test_text_that_is_not_an_address(text: str) -> None:
    assert found(text, "STREET_ADDRESS") == []


def test_address_wins_over_its_place_names_and_house_numbers() -> None:
    text = "Deliver to 2210 Harbour Road, Cape Town, and call 021 480 7700 first."
    spans = [(s.label, text[s.start:s.end]) for s in find_pii(text, DETECTABLE_ENTITIES)]
    assert ("STREET_ADDRESS", "2210 Harbour Road, Cape Town") in spans
    assert ("PHONE_NUMBER", "021 480 7700") in spans
    assert not any(label == "LOCATION" for label, _ in spans)  # Cape Town is in the address


def test_evaluation_by_source_and_labelled_rows(tmp_path: Path) -> None:
    rows = [
        {"text": "Ship to 12 Baker Street now", "source": "a",
         "spans": [{"start": 8, "end": 23, "label": "STREET_ADDRESS", "value": "x"}]},
        {"text": "Visit 4 Mill Lane soon", "source": "b", "spans": []},  # unlabelled: FP
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = evaluate_pii(path, ["STREET_ADDRESS"], by_source=True)
    street = report["per_label"]["STREET_ADDRESS"]
    assert (street["tp"], street["fp"], street["fn"]) == (1, 1, 0)
    assert street["precision"] == 0.5 and street["labelled_rows_precision"] == 1.0
    assert street["row_recall"] == 1.0
    assert report["by_source"]["a"]["per_label"]["STREET_ADDRESS"]["tp"] == 1
    assert report["by_source"]["b"]["per_label"]["STREET_ADDRESS"]["fp"] == 1
    assert "| b (1) | STREET_ADDRESS |" in format_report(report)
