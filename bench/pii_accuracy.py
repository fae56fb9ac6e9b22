"""PII detector accuracy by type and by source, before (the frozen baseline) and after.

    python bench/pii_accuracy.py                 # markdown tables, ~30 s
    python bench/pii_accuracy.py --json          # [--shared DIR | --data FILE]

Both detectors run on the same file in the same process: the baseline is `bench/pii_baseline.py`
(the detector as of commit 3994c63, frozen), the current one is `routeyard.signals.pii.find_pii`
with every type on. Overlap match, as `routeyard.safety.pii_eval`. The baseline has no
STREET_ADDRESS type: its row for that label is all misses.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pii_baseline
from paths import add_shared_option, shared_dir

from routeyard.safety.pii_eval import evaluate_pii, format_report
from routeyard.signals.pii import DETECTABLE_ENTITIES, find_pii


def _baseline(text: str, entities: Sequence[str]) -> list[Any]:
    known = [e for e in entities if e in pii_baseline.ALL_PII_ENTITIES]
    return list(pii_baseline.find_pii(text, known))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shared_option(parser)
    parser.add_argument("--data", type=Path, help="labelled JSONL (default: "
                        "data/safety/pii.jsonl in the shared folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data = args.data or shared_dir(args.shared) / "data" / "safety" / "pii.jsonl"
    if not data.is_file():
        print(f"no data at {data}", file=sys.stderr)
        return 2
    entities = list(DETECTABLE_ENTITIES)
    before = evaluate_pii(data, entities, detector=_baseline, by_source=True)
    after = evaluate_pii(data, entities, detector=find_pii, by_source=True)
    if args.json:
        print(json.dumps({"data": str(data), "before": before, "after": after}))
        return 0
    print(f"data: {data} ({after['texts']} texts); {platform.python_version()}, "
          f"{platform.machine()}\n")
    print("### before (bench/pii_baseline.py)\n")
    print(format_report(before) + "\n")
    print("### after (routeyard.signals.pii)\n")
    print(format_report(after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
