"""Frozen copy of `routeyard.signals.pii`'s detector at commit 3994c63 (before issue 15): the
baseline that bench/pii_speed.py and bench/pii_accuracy.py measure the current detector against
in the same run. Not imported by the package; do not edit, so that the baseline stays fixed.

The original docstring follows.

The `pii` family: personal data in the request, found by fast validated patterns.

Offline and cheap (no heavy NER model): e-mail addresses, phone numbers (the `phonenumbers`
matcher), Luhn-checked card numbers, checksummed IBANs (`stdnum.iban`), IPv4/IPv6 addresses
(`ipaddress`) and US SSN-shaped ids. PERSON and LOCATION come from a small shipped token tagger
(`routeyard.signals.names`, numpy only, loaded on first use); they are found only when asked
for, so the default stays as cheap as the patterns. `find_pii` is the reusable detector; the
family reports only entity types, counts and character spans, never the matched values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from routeyard.config.signals import ALL_PII_ENTITIES, NAME_ENTITIES, PII_ENTITIES
from routeyard.signals.names import find_names


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    label: str
    score: float


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![\w:])")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _emails(text: str) -> Iterator[Span]:
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL_ADDRESS", 1.0)


def _cards(text: str) -> Iterator[Span]:
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        seps = {c for c in raw if not c.isdigit()}
        if 13 <= len(digits) <= 19 and len(seps) <= 1 and len(set(digits)) > 1 and _luhn(digits):
            yield Span(m.start(), m.end(), "CREDIT_CARD", 1.0)


def _ibans(text: str) -> Iterator[Span]:
    from stdnum import iban

    for m in _IBAN.finditer(text):
        raw = m.group()
        # The pattern may run on into a following word: shorten until the checksum holds.
        end = len(raw)
        while end >= 15:
            candidate = raw[:end].rstrip()
            if iban.is_valid(candidate):
                yield Span(m.start(), m.start() + len(candidate), "IBAN_CODE", 1.0)
                break
            end = raw.rfind(" ", 0, end)  # drop the last group; -1 ends the loop


def _ips(text: str) -> Iterator[Span]:
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP_ADDRESS", 0.95)
    for m in _IPV6.finditer(text):
        raw = m.group()
        if sum(c.isalnum() for c in raw) < 2:
            continue
        try:
            ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP_ADDRESS", 0.95)


def _ssns(text: str) -> Iterator[Span]:
    for m in _SSN.finditer(text):
        area, group, serial = m.groups()
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        if len(set(area + group + serial)) == 1:
            continue
        yield Span(m.start(), m.end(), "US_SSN", 0.85)


_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "CH", "SE", "IN", "BR", "AU", "ZA")
_DATE_LIKE = re.compile(r"^\(?\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\b")
_DIGIT_GROUPS = re.compile(r"\d+")
_DECIMAL_LIKE = re.compile(r"\d[.,]\d{1,2}\s+[-\u2013.]")


def _phone_ok(raw: str) -> bool:
    """Reject what the permissive matcher takes for a number but a reader would not."""
    digits = sum(c.isdigit() for c in raw)
    if digits < 7 or digits > 15:
        return False
    if _DATE_LIKE.match(raw) or _ISO_DATE.match(raw) or _DECIMAL_LIKE.search(raw):
        return False
    # A long unbroken digit run without a country code is more likely an account or card id.
    return not (raw.isdigit() and digits > 11)


# Candidates the matcher examines per region: bounds the worst case (a text of nothing but
# numbers) to tens of milliseconds; a text past it has its later numbers unchecked.
_PHONE_MAX_TRIES = 100
_PHONE_RUN = re.compile(r"[+(]?\d[\d \t().\-/x]*\d")
_PHONE_RUN_MAX = 64
# Runs checked per text: a prompt of thousands of numbers (a pasted table) must not cost a
# second on the request path; numbers past the first 50 candidate runs go unchecked.
_PHONE_RUNS_CHECKED = 50
_PHONE_CUE = re.compile(r"\b(?:phone|tel|telephone|call|mobile|cell|fax|contact|number|reach|"
                        r"ring|dial|text|whatsapp|sms)\b", re.IGNORECASE)
_MONTH = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s*$",
                    re.IGNORECASE)


def _glued(text: str, start: int, end: int) -> bool:
    """Whether a match continues a longer token: a URL path, an id, a date like Oct-12-2010."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    after2 = text[end + 1] if end + 1 < len(text) else " "
    if before in "/=#_" or before.isalnum() or after in "/_" or after.isalnum():
        return True
    if before == "-" and start >= 2 and text[start - 2].isalnum():
        return True
    return after in "-.:" and after2.isdigit()


def _phones(text: str) -> Iterator[Span]:
    """The matcher runs on short runs of digits and separators only: on a long run (a table of
    numbers) it is slow and not what a phone number looks like, so such runs are skipped."""
    import phonenumbers

    seen: set[tuple[int, int]] = set()
    checked = 0
    for run in _PHONE_RUN.finditer(text):
        if len(run.group()) > _PHONE_RUN_MAX or sum(c.isdigit() for c in run.group()) < 7:
            continue
        checked += 1
        if checked > _PHONE_RUNS_CHECKED:
            break
        offset = run.start()
        # POSSIBLE leniency: a plausible length for the region. VALID would also need an
        # allocated range, which drops most invented and many foreign local numbers.
        for region in _PHONE_REGIONS:
            for m in phonenumbers.PhoneNumberMatcher(run.group(), region,
                                                     leniency=phonenumbers.Leniency.POSSIBLE,
                                                     max_tries=_PHONE_MAX_TRIES):
                start, end = offset + m.start, offset + m.end
                span = _phone_span(text, start, end, m, region)
                if span is not None and (start, end) not in seen:
                    seen.add((start, end))
                    yield span


def _phone_span(text: str, start: int, end: int, m: Any, region: str) -> Span | None:
    import phonenumbers

    raw = m.raw_string
    if not _phone_ok(raw) or _glued(text, start, end):
        return None  # not shaped like a phone number, or part of a URL, a date or an id
    if _MONTH.search(text, max(0, start - 5), start):
        return None  # "Sat Jan 10 2015 12:00"
    valid = phonenumbers.is_valid_number(m.number)
    groups = len(_DIGIT_GROUPS.findall(raw))
    cued = _PHONE_CUE.search(text, max(0, start - 40), start) is not None
    if raw.startswith("+"):
        score = 0.85 if valid else 0.6  # an explicit country code
    elif valid and (region == "US" or groups >= 3 or "(" in raw or raw[0] == "0"):
        score = 0.85
    elif groups >= 3 or cued:
        score = 0.6  # shaped like a phone number, or announced as one
    else:
        return None  # "17151 2450": a house number and what follows, more often than not
    return Span(start, end, "PHONE_NUMBER", score)


# Names are searched in the first this many characters of a text only. The tagger costs
# ~3.5 us a character and runs on the event loop: uncapped, an 8 MB body would stall every
# other request for half a minute. 20,000 characters (~5k tokens) cost ~70 ms at most.
NAME_SCAN_CHARS = 20_000


def _named(label: str) -> Callable[[str], Iterable[Span]]:
    def detect(text: str) -> Iterator[Span]:
        for s in find_names(text[:NAME_SCAN_CHARS]):  # one tagger pass serves both labels
            if s.label == label:
                yield Span(s.start, s.end, label, s.score)
    return detect


# Earlier detectors win overlaps: a card number or IBAN is not also a phone number, and a
# name inside an e-mail address is part of the address.
_DETECTORS: dict[str, Callable[[str], Iterable[Span]]] = {
    "EMAIL_ADDRESS": _emails,
    "IBAN_CODE": _ibans,
    "CREDIT_CARD": _cards,
    "IP_ADDRESS": _ips,
    "US_SSN": _ssns,
    "PHONE_NUMBER": _phones,
    **{label: _named(label) for label in NAME_ENTITIES},
}
assert set(_DETECTORS) == set(ALL_PII_ENTITIES)


def find_pii(text: str, entities: Iterable[str] | None = None) -> list[Span]:
    """PII spans in `text`, sorted by start, without overlaps (the first detector wins).
    `entities` defaults to the pattern types (`PII_ENTITIES`); PERSON and LOCATION are
    searched only when listed (`ALL_PII_ENTITIES` has every type)."""
    wanted = set(PII_ENTITIES if entities is None else entities)
    unknown = wanted - set(_DETECTORS)
    if unknown:
        raise ValueError(f"unknown PII entities: {sorted(unknown)}")
    taken: list[Span] = []
    for label, detect in _DETECTORS.items():
        if label not in wanted:
            continue
        for span in detect(text):
            if not any(span.start < t.end and t.start < span.end for t in taken):
                taken.append(span)
    return sorted(taken, key=lambda s: s.start)
