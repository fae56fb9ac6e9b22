"""Phone detection on numbers from outside the shared data: every region's example numbers.

    python bench/pii_phone_formats.py            # ~20 s; [--json]

Positives: `phonenumbers`' own example numbers (fixed line and mobile) for every region it
knows, written four ways: INTERNATIONAL (`+44 20 7946 0958`), the same with dots for spaces
(`+44.20.7946.0958`), NATIONAL (`020 7946 0958`) and E.164 (`+442079460958`), each in a
sentence without a phone cue. Negatives: numbers that are not phones (dates, versions, prices,
counts, coordinates, ids, ranges, ISBNs), generated from templates with random values (seeded).
Both detectors run in the same process: the baseline (`bench/pii_baseline.py`) and
`routeyard.signals.pii`, PHONE_NUMBER only. A positive counts when one predicted phone covers
all its digits but at most two (a trunk prefix or a country code read apart).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import phonenumbers
import pii_baseline
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from routeyard.signals.pii import find_pii

Detect = Callable[[str], Sequence[Any]]
SENTENCES = ("Her number is {} if you need it.", "Write it down: {}.", "{} is on the card.")
NEGATIVES = (
    "Released on {d:02d}.{m:02d}.{y} in the morning.", "Version {a}.{b}.{c}{d} is out.",
    "It was {y}-{m:02d}-{d:02d} then {y}-{m2:02d}-{d:02d}.", "It costs $ {k} {h:03d} {t:03d}.",
    "Revenue was {k} {h:03d} {t:03d} EUR.", "The town has {k}.{h:03d}.{t:03d} people.",
    "At {lat:.4f} {lon:.4f} we stopped.", "Order {n8} shipped.", "Invoice {a}{b}-{h:03d}-{n4}.",
    "ISBN 978-{a}-{h:03d}-{n5}-{c}.", "From {h} - {n4} units.", "Scores {a}{b} {b}{c} {c}{d} "
    "{d}{a} {a}{c}.", "Between ({y}-{y2}) he wrote.", "Ticket {n4} {n4b} {n4c} is valid.",
    "Set {h}.{b}.{c}.{d} as the gateway.", "Pi is {a}.{n8}.", "Page {h}-{n4} of the report.",
)


def positives() -> list[str]:
    out: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
            national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
            e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            out += [intl, intl.replace(" ", ".").replace("-", "."), national, e164]
    return list(dict.fromkeys(out))


def negatives(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        template = NEGATIVES[i % len(NEGATIVES)]
        y = rng.randint(1950, 2030)
        out.append(template.format(
            a=rng.randint(1, 9), b=rng.randint(0, 9), c=rng.randint(0, 9), d=rng.randint(1, 28),
            m=rng.randint(1, 12), m2=rng.randint(1, 12), y=y, y2=y + rng.randint(1, 9),
            k=rng.randint(1, 99), h=rng.randint(100, 999), t=rng.randint(0, 999),
            lat=rng.uniform(-80, 80), lon=rng.uniform(-170, 170), n4=rng.randint(1000, 9999),
            n4b=rng.randint(1000, 9999), n4c=rng.randint(1000, 9999),
            n5=rng.randint(10000, 99999), n8=rng.randint(10**7, 10**8 - 1)))
    return out


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def score(detect: Detect, pos: list[str], neg: list[str]) -> dict[str, Any]:
    found, misses = 0, []
    for i, phone in enumerate(pos):
        text = SENTENCES[i % len(SENTENCES)].format(phone)
        start = text.index(phone)
        spans = [s for s in detect(text) if s.start < start + len(phone) and start < s.end]
        if any(_digits(text[s.start:s.end]) >= _digits(phone) - 2 for s in spans):
            found += 1
        else:
            misses.append(phone)
    flagged = [t for t in neg if detect(t)]
    recall = found / len(pos)
    fpr = len(flagged) / len(neg)
    return {"recall": recall, "negatives_flagged": fpr, "positives": len(pos),
            "negatives": len(neg), "misses_sample": misses[:15], "flagged_sample": flagged[:10]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--negatives", type=int, default=1700)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    pos, neg = positives(), negatives(args.negatives)
    report = {
        "baseline": score(lambda t: pii_baseline.find_pii(t, ["PHONE_NUMBER"]), pos, neg),
        "current": score(lambda t: find_pii(t, ["PHONE_NUMBER"]), pos, neg),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{len(pos)} example numbers of {len(phonenumbers.SUPPORTED_REGIONS)} regions, "
          f"{len(neg)} non-phone numbers\n")
    print("| detector | recall | negatives flagged |\n|---|---|---|")
    for name, r in report.items():
        print(f"| {name} | {r['recall']:.3f} | {r['negatives_flagged']:.3f} |")
    for name, r in report.items():
        print(f"\n{name}: missed e.g. {r['misses_sample'][:8]}\n  flagged e.g. "
              f"{r['flagged_sample'][:5]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
