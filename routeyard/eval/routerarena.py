"""Export a trained router's choices in RouterArena's submission format.

RouterArena (github.com/RouteWorks/RouterArena, checked at commit 4714a9a) ranks routers on
its own prompts. A submission is two files of its repository (its README, "Evaluating Your
Router", and router_inference/generate_prediction_file.py, check_config_prediction_files.py):

- `router_inference/config/<name>.json`:
  `{"pipeline_params": {"router_name": <name>, "models": [<model>, ...]}}`;
- `router_inference/predictions/<name>.json`: a JSON list, one entry per dataset prompt,
  `{"global index": str, "prompt": str, "prediction": <model>, "generated_result": null,
  "cost": null, "accuracy": null}`, where `prompt` is the dataset entry's `prompt_formatted`
  (else its `prompt`) verbatim and `prediction` is one of the config's models.

The prompts come from RouterArena's `dataset/router_data_10.json` (`sub_10`, 809 entries) or
`dataset/router_data.json` (`full`, 8,400), made by its scripts/process_datasets/prep_datasets.py:
a JSON list of `{"prompt_formatted", "global index"}`. Entries without either are skipped, as
RouterArena's own generator skips them. Its model names must be its "universal" names (its
universal_model_names.py) with prices in its model_cost/cost.json; `--map` renames the
router's dataset models to them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

PREDICTION_FIELDS = ("global index", "prompt", "prediction", "generated_result", "cost",
                     "accuracy")
SPLIT_SIZES = {"sub_10": 809, "full": 8400}  # what RouterArena's checker expects


def read_arena_prompts(path: str | Path) -> list[tuple[str, str]]:
    """(global index, prompt) of a RouterArena dataset file (a JSON list), or of a JSONL
    file with the same fields; entries without an index or a prompt are skipped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror}") from error
    try:
        entries = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            entries = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
        except orjson.JSONDecodeError as error:
            raise ValueError(f"{path}: neither a JSON list nor JSONL: {error}") from error
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of entries")
    prompts = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        index = entry.get("global index") or entry.get("global_index")
        prompt = entry.get("prompt_formatted") or entry.get("prompt")
        if index and isinstance(prompt, str) and prompt:
            prompts.append((str(index), prompt))
    if not prompts:
        raise ValueError(f"{path}: no entry has a 'global index' and a 'prompt_formatted' "
                         "(or 'prompt')")
    return prompts


def submission(name: str, models: Sequence[str], prompts: Sequence[tuple[str, str]],
               predictions: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config, prediction list) in RouterArena's format."""
    if len(prompts) != len(predictions):
        raise ValueError("one prediction per prompt is needed")
    unknown = sorted(set(predictions) - set(models))
    if unknown:
        raise ValueError(f"predictions name models outside the config: {unknown}")
    config = {"pipeline_params": {"router_name": name, "models": list(models)}}
    entries = [{"global index": index, "prompt": prompt, "prediction": model,
                "generated_result": None, "cost": None, "accuracy": None}
               for (index, prompt), model in zip(prompts, predictions, strict=True)]
    return config, entries


def write_submission(out: str | Path, name: str, config: dict[str, Any],
                     entries: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write both files under `out` laid out as in RouterArena's repository."""
    root = Path(out) / "router_inference"
    config_path = root / "config" / f"{name}.json"
    predictions_path = root / "predictions" / f"{name}.json"
    for path, value in ((config_path, config), (predictions_path, entries)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    return config_path, predictions_path


def parse_map(pairs: Sequence[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"--map wants DATASET_MODEL=ARENA_MODEL, got {pair!r}")
        mapping[source.strip()] = target.strip()
    return mapping


def choose_models(artifact: str | Path, texts: list[str], lam: float,
                  mapping: dict[str, str]) -> tuple[list[str], list[str]]:
    """(config models, chosen model per text): the router's λ choice among the mapped models
    (every model of the artifact when `mapping` is empty), named as RouterArena names them."""
    from routeyard.eval.runner import embed
    from routeyard.selection.learned import load_router

    router = load_router(artifact)
    missing = sorted(set(mapping) - set(router.models))
    if missing:
        raise ValueError(f"--map names models the router does not know: {missing}; "
                         f"it knows {router.models}")
    columns = [j for j, m in enumerate(router.models) if not mapping or m in mapping]
    names = [mapping.get(router.models[j], router.models[j]) for j in columns]
    embeddings = embed(texts)
    predicted, expected = router.predict_with_costs(embeddings, texts)
    quality, cost = predicted[:, columns], expected[:, columns]
    value = quality - lam * cost / router.cost_scale
    chosen = np.argmax(value, axis=1)
    return names, [names[j] for j in chosen]


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["routerarena"], default="routerarena",
                        help="the submission format (default routerarena)")
    parser.add_argument("--router", required=True, metavar="ARTIFACT",
                        help="a router file made by `routeyard train`")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="RouterArena's dataset/router_data_10.json or router_data.json")
    parser.add_argument("--name", required=True, help="the router's name on RouterArena")
    parser.add_argument("--map", action="append", default=[], metavar="DATASET=ARENA",
                        help="rename a model to RouterArena's name; when given, only mapped "
                             "models are chosen (repeatable)")
    parser.add_argument("--lambda", dest="lam", type=float, default=1.0,
                        help="the cost/quality knob, as in serving (default 1.0)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="writes DIR/router_inference/{config,predictions}/NAME.json")


def run_export(args: argparse.Namespace) -> int:
    try:
        mapping = parse_map(args.map)
        prompts = read_arena_prompts(args.prompts)
        models, chosen = choose_models(args.router, [p for _, p in prompts], args.lam,
                                       mapping)
        config, entries = submission(args.name, models, prompts, chosen)
        paths = write_submission(args.out, args.name, config, entries)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = {m: chosen.count(m) for m in models}
    sizes = {split: n for split, n in SPLIT_SIZES.items() if n == len(entries)}
    note = (f" (the size of RouterArena's {next(iter(sizes))} split)" if sizes else
            f" (RouterArena's checker expects {SPLIT_SIZES['sub_10']} for sub_10, "
            f"{SPLIT_SIZES['full']} for full)")
    sys.stdout.write(orjson.dumps({"config": str(paths[0]), "predictions": str(paths[1]),
                                   "entries": len(entries), "size_note": note.strip(" ()"),
                                   "chosen": counts}, option=orjson.OPT_INDENT_2).decode()
                     + "\n")
    return 0
