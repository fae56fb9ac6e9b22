"""STREET_ADDRESS: postal addresses in free text, found by a small address grammar.

No model and no data file. A street is anchored by a street-type word, which Western address
formats put in one of three places:

- after the name, with a house number before it: `221B Baker Street` (USPS Publication 28
  suffixes and their common British/Commonwealth kin);
- before the name, with a house number after or before it: `Via delle Coste 41`,
  `ul. Narewska 94`, `8 rue de la Paix` (Romance, Slavic and Greek prefixes);
- fused into the name, with a number after it: `Friedhofstrasse 33`, `Vesterskovvej 79`,
  `Koskikatu 25` (Germanic, Nordic, Finnish, Estonian and Hungarian compounds), or as a word of
  its own after it: `Erzsébet tér 19`, `Villacher Strasse 89`;

or, with no type word, by what follows a name and a number: a unit (`Edeby 55, Apt. 297`), or
at least two lines that are a town, a state code, a postcode or a country. Box and military
forms (`P.O. Box 123`, `PSC 3294, Box 9168`, `APO AE 61487`) and "the corner of <street> and
<street>" are anchors too. The anchor then grows over its unit and up to four further parts,
each after a line break or a comma (after a space only a known place or an upper-case word): a
town is taken only where it looks like one (upper-case words, a known place from the names
tagger's GeoNames gazetteer, capitalised words beside a postcode or ending their part).
Regular expressions (the larger ones compiled on first use) and a few string checks: a few
microseconds on a short text, about 1 µs a character on long, number-dense text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache


def _words(spaced: str) -> list[str]:
    return spaced.split()


# Street types written after the name (USPS Publication 28's common suffixes, British and
# Commonwealth ones); matched case-insensitively but must start with a capital in the text.
_AFTER = _words(
    "street st road rd avenue ave av lane ln drive dr boulevard blvd court ct place pl "
    "square sq terrace terr ter way parkway pkwy highway hwy circle cir crescent cres close "
    "grove gardens gdns row mews trail trl alley aly plaza pike crossing xing loop ridge "
    "wharf quay parade esplanade broadway expressway expy freeway fwy turnpike tpke motorway "
    "causeway walk path vale view hill heights hts park point pt rise green estate lodge "
    "manor meadows cove glen harbor harbour landing junction jct bypass byway "
    "radial drift track wynd brae gate"
)
# Street types written before the name (French, Italian, Spanish, Portuguese, Catalan,
# Romanian, Polish, Czech, Greek).
_BEFORE = _words(
    "rue avenue av boulevard bd bld chemin ch allée allee impasse quai "
    "via viale piazza piazzale corso vicolo largo strada contrada calle avenida avda "
    "paseo plaza carrera camino carretera ronda travesía rua travessa praça praca largo "
    "alameda estrada carrer passeig strada bulevardul str ul ulica al aleja os osiedle pl "
    "plac ulice nám náměstí odos οδός λεωφόρος πλατεία"
)
# Street words fused into the name (`Friedhofstrasse`, `Koskikatu`) or, in lower case, a word
# of their own after it (`Karl Johans gate`, `Erzsébet tér`): German, Dutch, Danish, Norwegian,
# Swedish, Icelandic, Finnish, Estonian, Hungarian.
_FUSED = _words(
    "straße strasse str weg gasse platz allee damm ufer chaussee steig "
    "straat laan plein gracht kade singel dijk "
    "vej gade allé stræde torv plads vænget "
    "veien vegen vei gata plass stien bakken svingen "
    "gatan vägen väg gränd torget "
    "vegur braut "
    "katu tie kuja polku väylä kaari rinne raitti "
    "tänav maantee "
    "utca körút sétány fasor"
)
# Only as a word of their own, in lower case: fused they end too many other words.
_SEPARATE = _words("gate terrasse tér út köz sor kapu rue u")
_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building|Box|No|Nr|#)"

_NUM = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?"
_WORD = r"[^\W\d_][\w'\u2019-]*\.?"
# Small words inside a name: "Via delle Coste", "Rua do Arenque", "Rue de Virton".
_LINK = (r"(?:de|del|della|delle|dei|degli|di|da|do|dos|das|du|des|la|le|les|el|los|las|"
         r"van|von|der|den|y|e|i)")


@dataclass(frozen=True, slots=True)
class AddressSpan:
    start: int
    end: int
    score: float


def _alt(words: list[str]) -> str:
    return "|".join(sorted({re.escape(w) for w in words}, key=len, reverse=True))


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], ...]:
    name = rf"{_WORD}(?:[ \t]+(?:{_LINK}[ \t]+)?{_WORD}){{0,3}}?"
    after = re.compile(  # 221B Baker Street / 9448 175 Iroon Polytechniou Avenue
        rf"(?<![\w.,-])(?:\d{{1,6}}\s+)?{_NUM}[ \t]+(?P<name>{name})[ \t]+"
        rf"(?P<type>(?i:{_alt(_AFTER)}))\b\.?")
    before = re.compile(  # Rue de Virton 38 / Via delle Coste 41 / 2456 Rue ...
        rf"(?<![\w.-])(?P<type>(?i:{_alt(_BEFORE)}))\b\.?[ \t]+"
        rf"(?P<name>(?:{_LINK}[ \t]+)?{_WORD}(?:[ \t]+(?:{_LINK}[ \t]+)?{_WORD}){{0,3}})"
        rf"[ \t]+{_NUM}\b\.?")
    fused = re.compile(  # Koskikatu 25 / Erzsébet tér 19.: a word, then a number
        rf"(?<![\w.-])(?P<last>[^\W\d_][\w'\u2019-]*)\.?[ \t]+{_NUM}\b\.?")
    box = re.compile(
        r"(?i)(?<![\w.])(?:(?:P\.? ?O\.?|Post Office) ?Box|Postfach|Apartado|Caixa Postal)"
        r"[ \t]+\d{1,6}\b|"
        r"(?<![\w.])(?:PSC|CMR|Unit)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}\b"
        r"(?:\s*\n?\s*[ADF]PO[ \t]+A[AEP][ \t]+\d{5}\b)?|"
        r"(?<![\w.])USS[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?\s*\n\s*FPO[ \t]+A[AEP][ \t]+"
        r"\d{5}\b|"
        r"(?<![\w.])[ADF]PO[ \t]+A[AEP][ \t]+\d{5}\b")
    unit = re.compile(  # Edeby 55\n Apt. 297: a name and a number, then a unit
        rf"(?<![\w.-])(?:\d{{1,6}}[ \t]+)?(?P<name>{name})[ \t]+{_NUM}\b\.?"
        rf"[ \t]*,?[ \t]*\n?[ \t>]*\Z")
    lead = re.compile(  # 8 rue de la Paix: a number, a prefix type, then the name
        rf"(?<![\w.,-]){_NUM},?[ \t]+(?P<type>(?i:{_alt(_BEFORE)}))\b\.?[ \t]+"
        rf"(?P<name>(?:{_LINK}[ \t]+){{0,2}}{_WORD}(?:[ \t]+(?:{_LINK}[ \t]+)?{_WORD}){{0,3}})")
    corner = re.compile(  # the corner of Dale Street and ...: no number needed
        rf"\b(?:[Tt]he[ \t]+)?[Cc]orner[ \t]+of[ \t]+(?P<name>{name})[ \t]+"
        rf"(?P<type>(?i:{_alt(_AFTER)}))\b\.?")
    line = re.compile(  # 4241 Steinfelden 73 / SAVONLINNA / , SV / 77233: a name and a number
        rf"(?<![\w.-])(?:\d{{1,6}}[ \t]+)?(?P<name>{name})[ \t]+{_NUM}\b\.?(?=[ \t]*,?[ \t]*\n)")
    return after, before, fused, box, unit, lead, corner, line


_STRONG_UNIT = re.compile(r"\b(?:Apt|Apartment|Suite|Ste|Flat)\.?[ \t]*#?[ \t]*\d")
_BOX_HINTS = ("box", "apo ", "fpo ", "dpo ", "postfach", "apartado", "caixa")
_DIGIT = re.compile(r"\d")
_LINE_SCORE = 0.65
_AFTER_SCORE = 0.8
_SENTENCE_AFTER = re.compile(r"$|\s*$|\s+[A-Z]|\s*\n")
_UNIT_RE = re.compile(rf"[ \t]*,?[ \t]*\n?[ \t]*{_UNIT}\.?[ \t]*#?[ \t]*\d{{1,6}}[A-Za-z]?\b")
_CORNER = re.compile(r"(?i:the corner of|corner of)[ \t]+\Z")
_AND_STREET = re.compile(rf"[ \t]+(?:and|&)[ \t]+((?:{_WORD}[ \t]+){{0,3}}{_WORD})")
# One further part of an address: after a line break or a comma (or a space, more strictly).
_SEP = re.compile(r"[ \t]*(?:\n[ \t>]*(?:,[ \t]*)?|,[ \t]*(?:\n[ \t>]*)?)|[ \t]+")
_POSTCODE = (r"(?:\d{4,6}(?:-\d{3,4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|"
             r"[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{4} ?[A-Z]{2}|\d{2,3}[ -]\d{2,3})")
_PLACE_WORD = r"[^\W\d_][\w'\u2019.-]*"
# One part with exactly n words ("San Francisco"), a postcode before or after it, or a postcode.
_PARTS = tuple(re.compile(
    rf"(?P<pre>{_POSTCODE}[ \t]+)?(?P<words>{_PLACE_WORD}(?:[ \t]+{_PLACE_WORD}){{{n - 1}}})"
    rf"(?![\w'\u2019.-])(?:[ \t]+(?P<post>{_POSTCODE})\b)?|(?P<code>{_POSTCODE})\b")
    for n in (3, 2, 1))
_BOUNDARY = re.compile(r"[ \t]*(?:$|\n|,|[.;!?)](?:\s|$)|-[A-Z])")
_MAX_PARTS = 4


def _capitalised(words: str) -> bool:
    return all(w[0].isupper() or w.lower() in _LINKS for w in words.split())


_LINKS = frozenset(_LINK.strip("(?:)").split("|"))


def _part_ok(text: str, m: re.Match[str], sep: str, places: frozenset[str]) -> bool:
    """Whether one more part after an address is a town, state, country or postcode."""
    broken = "\n" in sep or "," in sep
    if m.group("code"):
        return bool(_BOUNDARY.match(text, m.end()))
    words = m.group("words")
    if not _capitalised(words):
        return False
    postcode = bool(m.group("pre") or m.group("post"))
    low = words.lower().rstrip(".")
    if words.isupper() or low in places or f"the {low}" in places:
        return postcode or bool(_BOUNDARY.match(text, m.end())) or not broken
    if not broken:  # after a space only a known place or an upper-case town may follow
        return False
    return postcode or bool(_BOUNDARY.match(text, m.end()))


def _extend(text: str, end: int, places: frozenset[str]) -> tuple[int, int]:
    """Grow an address over its unit and the parts that follow it: the new end, and how many
    of those parts were a state code, a postcode or a known place."""
    unit = _UNIT_RE.match(text, end)
    if unit:
        end = unit.end()
    strong = 0
    for _ in range(_MAX_PARTS):
        sep = _SEP.match(text, end)
        if sep is None:
            break
        part = next((m for pattern in _PARTS if (m := pattern.match(text, sep.end()))
                     and _part_ok(text, m, sep.group(), places)), None)
        if part is None:
            unit = _UNIT_RE.match(text, end)
            if unit is None:
                break
            end = unit.end()
            continue
        strong += _strong_part(part, places)
        end = part.end()
    return end, strong


def _strong_part(m: re.Match[str], places: frozenset[str]) -> bool:
    if m.group("code") or m.group("pre") or m.group("post"):
        return True
    words = m.group("words")
    return (words.isupper() and len(words) <= 3) or words.lower() in places


# Capitalised words that start a sentence or a title, not a street name: "Chapter 3 The Road".
_NOT_NAMES = frozenset(_words(
    "the a an this that these those my our your his her their its and or of in on at to for "
    "by with from is are was be it we you they he she i if as so no not all any "
    "apt apartment suite ste unit flat floor fl room rm bldg building box nr po"))


def _name_ok(name: str) -> bool:
    words = [w for w in name.split() if w.lower() not in _LINKS]
    return bool(words) and all(w[0].isupper() and w.lower().rstrip(".") not in _NOT_NAMES
                               for w in words)


def _corner(text: str, start: int, end: int) -> tuple[int, int]:
    """`the corner of X and Y`: take the phrase and the second street."""
    lead = _CORNER.search(text, max(0, start - 20), start)
    if lead is None and not text.startswith(("the corner", "The corner", "corner"), start):
        return start, end
    second = _AND_STREET.match(text, end)
    if second:
        stop = None
        for w in re.finditer(r"\S+", second.group(1)):  # its capitalised words only
            if not _name_ok(w.group()):
                break
            stop = second.start(1) + w.end()
        end = stop if stop is not None else end
    return (lead.start() if lead else start), end


_FUSED_SET = frozenset(_FUSED)
# German types also written as a capitalised word of their own: "Villacher Strasse 89".
_GERMAN = frozenset({"straße", "strasse", "weg", "allee", "platz", "gasse", "ufer", "damm"})
_SEPARATE_SET = frozenset(_SEPARATE) | _FUSED_SET
_NAME_BEFORE = re.compile(rf"(?:(?<=\s)|^)((?:{_WORD}[ \t]+){{1,2}})\Z")
_NUMBER_BEFORE = re.compile(r"(?:(?<=\s)|^)\d{1,6}[A-Za-z]?,?[ \t]+\Z")


_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n\"(])[ \t]*\Z")
_WORD_BEFORE = re.compile(r"([^\W\d_]+)[ \t]+\Z")
_CAPITAL_AFTER = re.compile(r"[ \t]+([^\W\d_][\w'\u2019-]*)")
# Words before a house number that make it a count or a rank: "the 5 Mile Road Race".
_COUNTERS = frozenset(_words("the a an my our your their his her its top best first last "
                             "these those every each over under about"))


def _in_title(text: str, m: re.Match[str]) -> bool:
    """Whether a number-name-type match is a phrase in Title Case, not an address: the number
    follows a capitalised word or a counter ("Chapter 12 Dark Street", "Top 10 Best Way")."""
    before = _WORD_BEFORE.search(text, max(0, m.start() - 30), m.start())
    if before is None:
        return False
    word = before.group(1)
    if word.lower() in _COUNTERS:
        return True
    # A capitalised word mid-sentence ("the Top 10"), not a sentence's first ("Visit 4 ...").
    return word[0].isupper() and not _SENTENCE_START.search(
        text, max(0, before.start() - 8), before.start())


def _building(text: str, end: int) -> int:
    """A street's end grown over a direction (`Devon Street West`) or over up to three
    capitalised words that a unit follows (`1317 Kimberly Way Laidlaw Green, Apt. 962`)."""
    direction = _DIRECTION.match(text, end)
    if direction:
        return direction.end()
    more = _BEFORE_UNIT.match(text, end)
    if more and _name_ok(more.group(1)):
        return more.end(1)
    return end


_DIRECTION = re.compile(r"[ \t]+(?:North|South|East|West|N|S|E|W|NE|NW|SE|SW)\b\.?(?![\w'-])")
_BEFORE_UNIT = re.compile(r"[ \t]+((?:[^\W\d_][\w'\u2019-]*[ \t]+){0,2}[^\W\d_][\w'\u2019-]*)"
                          r"(?=[ \t]*,?[ \t]*\n?[ \t>]*(?:Apt|Apartment|Suite|Ste|Flat|Unit)\b)")


def _runs_on(text: str, end: int) -> bool:
    """Whether a street runs on into a capitalised word that is no part of an address."""
    after = _CAPITAL_AFTER.match(text, end)
    return bool(after and after.group(1)[0].isupper() and not after.group(1).isupper()
                and after.group(1).lower().rstrip(".") not in _UNIT_WORDS)


_UNIT_WORDS = frozenset(_words("apt apartment suite ste unit flat floor fl room rm bldg "
                               "building box no nr"))


def _name_end(m: re.Match[str]) -> int | None:
    """The end of the capitalised words of a name group (links inside allowed), or None."""
    end = None
    for w in re.finditer(r"\S+", m.group("name")):
        word = w.group()
        if word.lower() in _LINKS:
            continue
        if not word[0].isupper() or word.lower().rstrip(".") in _NOT_NAMES:
            break
        end = m.start("name") + w.end()
    return end


def _fused_start(text: str, m: re.Match[str]) -> int | None:
    """Where a fused-type street starts, or None when the word is no street."""
    word = m.group("last")
    low = word.lower()
    start = m.start()
    if low in _SEPARATE_SET:  # a word of its own: lower case, after a capitalised name
        if not (word.islower() or low in _GERMAN):
            return None
        name = _NAME_BEFORE.search(text, max(0, start - 60), start)
        if name is None:
            return None
        words = list(re.finditer(r"\S+", name.group(1)))
        while words and not _name_ok(" ".join(w.group() for w in words)):
            words.pop(0)  # "on Villacher Strasse": the name is its capitalised words
        if not words or (low == "u" and text[m.end("last"):m.end("last") + 1] != "."):
            return None
        start = name.start(1) + words[0].start()
    elif not (word[0].isupper() and any(low.endswith(t) and len(low) - len(t) >= 3
                                       for t in _FUSED_SET)):
        return None
    number = _NUMBER_BEFORE.search(text, max(0, start - 12), start)
    return number.start() if number else start


def _cores(text: str) -> list[tuple[int, int, float]]:
    after, before, fused, box, unit, lead, corner, line = _patterns()
    low = text.lower()
    cores = [(m.start(), m.end(), 0.9) for m in box.finditer(text)] \
        if any(hint in low for hint in _BOX_HINTS) else []
    for u in _STRONG_UNIT.finditer(text):  # a unit: look back for the street before it
        m = unit.search(text, max(0, u.start() - 80), u.start())
        if m and _name_ok(m.group("name")):
            cores.append((m.start(), m.start() + len(m.group().rstrip(" \t\n,>")), 0.7))
    for m in after.finditer(text):
        if _name_ok(m.group("name")) and _type_ok(text, m) and not _in_title(text, m):
            cores.append((m.start(), m.end(), _AFTER_SCORE))
    for m in before.finditer(text):
        if _name_ok(m.group("name")) and _type_ok(text, m):
            number = _NUMBER_BEFORE.search(text, max(0, m.start() - 12), m.start())
            cores.append((number.start() if number else m.start(), m.end(), 0.8))
    for m in lead.finditer(text):
        end = _name_end(m)
        if end is not None and _type_ok(text, m):
            cores.append((m.start(), end, 0.75))
    if "\n" in text:  # ending its line, and confirmed by the lines after it (find_addresses)
        cores += [(m.start(), m.end(), _LINE_SCORE) for m in line.finditer(text)
                  if _name_ok(m.group("name"))]
    for m in corner.finditer(text):
        if _name_ok(m.group("name")) and _type_ok(text, m):
            cores.append((m.start(), m.end(), 0.75))
    for m in fused.finditer(text):
        start = _fused_start(text, m)
        if start is not None:
            cores.append((start, m.end(), 0.75))
    cores = [c for c in cores if not _MONTH_BEFORE.search(text, max(0, c[0] - 12), c[0])]
    cores.sort(key=lambda c: (c[0], -c[1]))
    return cores


# "in December 1975 Balcombe Street ...": a date, not a house number.
_MONTH_BEFORE = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
                           r"[ \t]+\Z", re.IGNORECASE)


# Prefix types that are written in lower case: "ul. Narewska 94", "12 rue de Rivoli".
_LOWER_OK = frozenset({"ul", "al", "os", "str", "pl", "rue", "calle", "rua", "avenue"})
# Short prefixes that are words or codes elsewhere ("AL", "OS"): only with their full stop.
_DOTTED = frozenset({"ul", "al", "os", "pl", "str", "av", "bd", "ch", "bld"})


def _type_ok(text: str, m: re.Match[str]) -> bool:
    kind = m.group("type")
    low = kind.lower()
    if low in _DOTTED and text[m.end("type"):m.end("type") + 1] != ".":
        return False
    return kind[0].isupper() or low in _LOWER_OK or (
        "name" in m.groupdict() and m.start("type") > m.start("name") and low in _PLAIN)


# Street types plain enough to be written in lower case after a name: "12 Main street".
_PLAIN = frozenset({"street", "road", "avenue", "lane", "drive", "boulevard"})


def find_addresses(text: str, places: frozenset[str] = frozenset()) -> Iterator[AddressSpan]:
    """Street addresses in `text`, in order, not overlapping. `places`: lower-case town and
    country names that may follow a street on its own line."""
    if not _DIGIT.search(text) and "orner of" not in text:
        return
    last_end = -1
    for start, end, score in _cores(text):
        if start < last_end:
            continue
        start, end = _corner(text, start, end)
        if score == _AFTER_SCORE:
            end = _building(text, end)
        core_end = end
        end, strong = _extend(text, end, places)
        if score == _LINE_SCORE and strong < 2:
            continue  # a bare "Name 12" line needs a town, state or postcode line after it
        if score == _AFTER_SCORE and end == core_end and _runs_on(text, end):
            continue  # "5 Mile Road Race": a title, not an address
        last_end = end
        if text[end - 1] == "." and _SENTENCE_AFTER.match(text, end):
            end -= 1  # the full stop of the sentence, not of the address
        yield AddressSpan(start, end, score)
