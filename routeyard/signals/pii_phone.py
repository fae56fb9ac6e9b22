"""PHONE_NUMBER: Google's `phonenumbers` matcher on short digit runs, in several regions, and
general rules that tell a phone number from the other numbers of a text.

Candidates are short runs of digits and phone separators; on each, `PhoneNumberMatcher` runs at
POSSIBLE leniency (a plausible length) with a list of candidate regions, stopping once the run is
covered. A match then has to look like a phone number as people write one:

- an explicit country code (`+44 ...`, `0049 ...`), or a number valid in the region it was read
  in, or three or more digit groups, or a phone cue (`phone`, `call`, `fax`, `Tel.` ... just
  before, or `office`, `mobile`, `fax` just after);
- and none of the shapes of other numbers: dates, decimals and coordinates (a dot beside a
  space), ranges (`10 - 20`), thousands (`1 234 567`, `1.000.000`), money (a currency beside
  it), one-digit groups inside the number (`978-3-16-148410-0`, `1.2.3.4567`), a match that is
  a piece of a longer run of digit groups, or an id cue just before (`order`, `SKU`, `ISBN`,
  `account`, `invoice`, `ticket`, `licence` ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Regions the national (non-+) form of a number is read in; the first ones are tried first.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CH", "SE", "IN", "BR", "AU", "ZA",
                 "BE", "AT", "PL", "NO", "DK", "JP")


@dataclass(frozen=True, slots=True)
class PhoneSpan:
    start: int
    end: int
    score: float


# Candidates the matcher examines per region: bounds the worst case (a text of nothing but
# numbers) to tens of milliseconds; a text past it has its later numbers unchecked.
_MAX_TRIES = 100
_RUN = re.compile(r"[+(]?\d[\d \t().\-/x]*\d")
_RUN_MAX = 64
# Runs checked per text: a prompt of thousands of numbers (a pasted table) must not cost a
# second on the request path; numbers past the first 50 candidate runs go unchecked.
_RUNS_CHECKED = 50
_CUE_BEFORE = re.compile(
    r"\b(?:phone|tel|telephone|telefon|téléphone|teléfono|call|calling|mobile|mob|cell|"
    r"cellphone|fax|contact|reach|ring|dial|text|txt|whatsapp|sms|hotline|helpline|landline)"
    r"\b\W{0,12}(?:(?:me|us|him|her|them|at|on|to|is|number|no|nr|#)\W{1,3}){0,3}$|"
    r"\b(?:office|home|work|desk|direct|main|private)\s*:\s*$", re.IGNORECASE)
_CUE_AFTER = re.compile(r"^\W{0,3}\(?(?:office|mobile|cell|fax|home|work|tel|phone|direct|"
                        r"landline)\b", re.IGNORECASE)
# An id named just before: "order 1234567", "SKU 400-1234-5678", "account number 12345678".
_ID_BEFORE = re.compile(
    r"\b(?:order|sku|isbn|issn|account|acct|invoice|inv|ticket|case|policy|serial|part|model|"
    r"tracking|reference|ref|patent|licen[cs]e|passport|id|member|customer|employee|student|"
    r"routing|transaction|booking|confirmation|version|build|release|page|pages|pp|zip|"
    r"postcode|population|isin|ean|upc|gtin|item|product|batch|lot|sn|company|registration|"
    r"reg|vat|tax|nif|siren|siret|crn|ssn|nhs)\b\W{0,4}"
    r"(?:(?:number|no|nr|num|code|#)\W{0,4})?(?:(?:is|was|:)\W{0,3})?$", re.IGNORECASE)
# "my number is", "number:": a phone cue when no id word comes before it (`_ID_BEFORE`).
_NUMBER_CUE = re.compile(r"\b(?:number|no|nr|num)\W{0,3}(?:(?:is|was)\W{1,3})?$", re.IGNORECASE)
_CURRENCY = re.compile(r"[$€£¥₹]\s*$|^\s*(?:[$€£¥₹]|(?:eur|usd|gbp|chf|jpy|inr|dollars?|euros?|"
                       r"pounds?|francs?|yen|rupees?|kr|sek|nok|dkk)\b)", re.IGNORECASE)
_DATE_LIKE = re.compile(r"^\(?\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\b")
_GROUPS = re.compile(r"\d+")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE_INSIDE = re.compile(r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4})\b")
_SEQUENTIAL = "01234567890123456789" + "98765432109876543210"
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_DECIMAL = re.compile(r"^\d+\.\d+$")
_THOUSANDS = re.compile(r"^\d{1,3}(?:([ .,\u00a0])\d{3})(?:\1\d{3})*$")
_RANGE = re.compile(r"\d\s+[-\u2013]\s+\d|\d[-\u2013]\s+\d|\d\s+[-\u2013]\d")
_MONTH = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s*$",
                    re.IGNORECASE)
_LOOKBACK = 40


def _groups(raw: str) -> list[str]:
    """Digit groups of the number itself: without an extension, nor a '(0)' trunk prefix."""
    body = re.split(r"\s*(?:x|ext\.?)\s*\d", raw, maxsplit=1)[0].replace("(0)", "")
    return _GROUPS.findall(body)


def _shape_ok(raw: str) -> bool:
    """Reject what the permissive matcher takes for a number but a reader would not."""
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or digits > 15:
        return False
    if _DATE_LIKE.match(raw) or _ISO_DATE.match(raw) or _RANGE.search(raw):
        return False
    if _IPV4.match(raw) or _DATE_INSIDE.search(raw) or raw.count("/") > 1:
        return False  # "172.28.128.11", "23/015 2023-02-11", "02/15-03/16"
    groups = _groups(raw)
    if raw.isdigit() and raw in _SEQUENTIAL:
        return False  # "0123456789": a placeholder
    if len(groups) == 2 and all(_YEAR.match(g) for g in groups):
        return False  # "(2017-2018)"
    if raw.startswith(("+", "00")):
        return True  # international: its groups follow the country's own plan
    if "." in raw and any(c.isspace() for c in raw):
        return False  # decimals in a list, coordinates: "51.5074 -0.1278", "36.6 37.2"
    if raw.isdigit() and digits > 11:
        return False  # a long unbroken run without a country code: an account or card id
    if len(groups) > 1 and any(len(g) == 1 for g in groups[1:]):
        return False  # "978-3-16-148410-0", "1.2.3.4567", "1 0 0 1 0 1"
    if len(groups) >= 5 and groups[0][0] != "0" and "(" not in raw:
        return False  # "32 33 82 10 97 100": a list of numbers
    # "0.499116", "52.204-24": a decimal, a clause, a mixed id
    return not (_DECIMAL.match(raw) or len({c for c in raw if c in ".-/"}) > 1)


def _count_like(raw: str) -> bool:
    """ "1 234 567", "1.000.000", "10 000" (a count or an amount), "5 19 17 16" (a list of small
    numbers): not a phone number unless announced as one."""
    if raw.startswith(("+", "0", "(")):
        return False  # counts are not written with a leading zero
    first = _groups(raw)[0]
    return (bool(_THOUSANDS.match(raw)) and len(first) < 3) or (len(first) == 1 and first != "1")


def _glued(text: str, start: int, end: int) -> bool:
    """Whether a match continues a longer token: a URL path, an id, a date like Oct-12-2010,
    or a longer run of digit groups ("1001 1002 1003 1004")."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    after2 = text[end + 1] if end + 1 < len(text) else " "
    before2 = text[start - 2] if start >= 2 else " "
    if before in "/=#_" or before.isalnum() or after in "/_" or after.isalnum():
        return True
    if (before in "-.:" and before2.isalnum()) or before in "-\u2212":
        return True  # "Oct-12-2010", "v1.2", a minus sign
    if before in " \t" and before2.isdigit() and text[start] != "+":
        return True
    return after in "-.: \t" and after2.isdigit()


def _score(text: str, start: int, end: int, m: Any, region: str) -> float | None:
    import phonenumbers

    raw = m.raw_string
    if not _shape_ok(raw) or _glued(text, start, end):
        return None
    head = text[max(0, start - _LOOKBACK):start]
    tail = text[end:end + 15]
    if _MONTH.search(head) or _CURRENCY.search(head) or _CURRENCY.search(tail):
        return None  # "Sat Jan 10 2015 12:00", "$ 1 234 567", "1 234 567 EUR"
    cued = _CUE_BEFORE.search(head) is not None or _CUE_AFTER.match(tail) is not None
    if not cued and _ID_BEFORE.search(head):
        return None  # "order 1234567", "licence number is 6940579"
    cued = cued or _NUMBER_CUE.search(head) is not None
    if not cued and _count_like(raw):
        return None
    valid = phonenumbers.is_valid_number(m.number)
    groups = len(_groups(raw))
    if raw.startswith("00") and not valid:
        return None  # "001.003.03": a leading 00 is a country code only in a real number
    if raw.startswith(("+", "00")):
        return 0.85 if valid else 0.6  # an explicit country code
    if valid and (region == "US" or groups >= 3 or "(" in raw or raw[0] == "0"):
        return 0.85
    if groups >= 3 or cued:
        return 0.6  # shaped like a phone number, or announced as one
    return None  # "17151 2450": a house number and what follows, more often than not


def find_phones(text: str) -> Iterator[PhoneSpan]:
    """Phone numbers in `text`. The matcher runs on short runs of digits and separators only:
    on a long run (a table of numbers) it is slow and not what a phone number looks like."""
    import phonenumbers

    checked = 0
    for run in _RUN.finditer(text):
        chunk = run.group()
        if len(chunk) > _RUN_MAX or sum(c.isdigit() for c in chunk) < 7:
            continue
        checked += 1
        if checked > _RUNS_CHECKED:
            break
        offset = run.start()
        found: list[PhoneSpan] = []
        for region in PHONE_REGIONS:
            for m in phonenumbers.PhoneNumberMatcher(chunk, region,
                                                     leniency=phonenumbers.Leniency.POSSIBLE,
                                                     max_tries=_MAX_TRIES):
                start, end = offset + m.start, offset + m.end
                if any(start < f.end and f.start < end for f in found):
                    continue
                score = _score(text, start, end, m, region)
                if score is not None:
                    found.append(PhoneSpan(start, end, score))
            if sum(f.end - f.start for f in found) >= len(chunk.strip("()")) - 1:
                break  # the run is covered: other regions would read it the same
        yield from sorted(found, key=lambda f: f.start)
