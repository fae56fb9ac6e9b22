"""The `pii` family: personal data in the request, found by fast validated patterns.

Offline and cheap (no heavy NER model): e-mail addresses, phone numbers (the `phonenumbers`
matcher and shape rules, `routeyard.signals.pii_phone`), Luhn-checked card numbers, checksummed
IBANs (`stdnum.iban`), IPv4/IPv6 addresses (`ipaddress`) and US SSN-shaped ids. PERSON and
LOCATION come from a small shipped token tagger (`routeyard.signals.names`, numpy only, loaded
on first use), STREET_ADDRESS from an address grammar (`routeyard.signals.pii_address`); they
are found only when asked for, so the default stays as cheap as the patterns. `find_pii` is the
reusable detector; the family reports only entity types, counts and character spans, never the
matched values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from routeyard.config.signals import ALL_PII_ENTITIES, NAME_ENTITIES, PII_ENTITIES, PiiFamily
from routeyard.signals.base import Family, FamilyResult, Match, RequestContext, register
from routeyard.signals.names import builtin_tagger, find_names
from routeyard.signals.pii_address import find_addresses
from routeyard.signals.pii_phone import find_phones


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


def _phones(text: str) -> Iterator[Span]:
    for s in find_phones(text):
        yield Span(s.start, s.end, "PHONE_NUMBER", s.score)


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


# Addresses are searched in the first this many characters of a text only: the grammar costs
# about 1 us a character on number-dense text, so the cap bounds it at ~50 ms.
ADDRESS_SCAN_CHARS = 50_000


def _addresses(text: str) -> Iterator[Span]:
    # Towns and countries that may close an address: the names tagger's GeoNames gazetteer.
    places = builtin_tagger().cache.gaz.places
    for s in find_addresses(text[:ADDRESS_SCAN_CHARS], places):
        yield Span(s.start, s.end, "STREET_ADDRESS", s.score)


# Earlier detectors win overlaps: a card number or IBAN is not also a phone number, a name
# inside an e-mail address is part of the address, and a street address keeps its house number
# (not a phone number) and its town (not a LOCATION).
_DETECTORS: dict[str, Callable[[str], Iterable[Span]]] = {
    "EMAIL_ADDRESS": _emails,
    "IBAN_CODE": _ibans,
    "CREDIT_CARD": _cards,
    "IP_ADDRESS": _ips,
    "US_SSN": _ssns,
    "STREET_ADDRESS": _addresses,
    "PHONE_NUMBER": _phones,
    **{label: _named(label) for label in NAME_ENTITIES},
}
assert set(_DETECTORS) == set(ALL_PII_ENTITIES)
DETECTABLE_ENTITIES = tuple(_DETECTORS)  # every type `find_pii` knows


def find_pii(text: str, entities: Iterable[str] | None = None) -> list[Span]:
    """PII spans in `text`, sorted by start, without overlaps (the first detector wins).
    `entities` defaults to the pattern types (`PII_ENTITIES`); PERSON, LOCATION and
    STREET_ADDRESS are searched only when listed (`DETECTABLE_ENTITIES` has every type)."""
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


@register
class PiiSignals(Family):
    """Names: `<ENTITY_TYPE>` for each type found, and `any`. Values: counts and spans."""

    name = "pii"

    def declared_names(self) -> set[str]:
        return set(self.config.entities) | {"any"}

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        config: PiiFamily = self.config
        text = ctx.texts_of(list(config.roles))
        spans = [s for s in find_pii(text, config.entities) if s.score >= config.min_score]
        counts: dict[str, int] = {}
        best: dict[str, float] = {}
        for s in spans:
            counts[s.label] = counts.get(s.label, 0) + 1
            best[s.label] = max(best.get(s.label, 0.0), s.score)
        result = FamilyResult(values={
            "counts": counts,
            "spans": [[s.start, s.end, s.label] for s in spans],  # offsets, never the text
        })
        for label, count in counts.items():
            result.matches[label] = Match(best[label], count)
        if spans:
            result.matches["any"] = Match(max(best.values()), len(spans))
        return result
