"""`routeyard eval` and `routeyard train`: argument parsing and output, nothing else.

With --json, stdout carries exactly one JSON object; progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from routeyard.eval import ensemble_sweep, runner


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR|FILE",
                        help="routing dataset folder with train.jsonl and test.jsonl, or one "
                             "JSONL file of your own (split into train and test; schema in "
                             "docs/evaluation.md)")
    parser.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                        help="with a FILE: the share of rows held out for test (default 0.2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with a FILE: the seed of the train/test shuffle (default 0)")
    parser.add_argument("--algorithms", metavar="A,B,...",
                        help="comma-separated algorithm names (default: every registered one)")
    parser.add_argument("--out", metavar="DIR",
                        help="write eval.json, pareto.png and pareto.html there")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object to stdout (progress goes to stderr)")
    parser.add_argument("--no-plots", action="store_true",
                        help="with --out, write eval.json only (no matplotlib/plotly needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--energy", action="store_true",
                        help="also the energy-quality frontier, energy estimated from model "
                             "size (energy.png and energy.html with --out)")
    ensemble_sweep.add_options(parser)


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR|FILE",
                        help="routing dataset folder (its train.jsonl is used), or one JSONL "
                             "file (every row is used)")
    parser.add_argument("--algorithm", required=True, metavar="NAME")
    parser.add_argument("--out", required=True, metavar="FILE", help="the artifact to write")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _algorithms(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError("--algorithms names no algorithm")
    return names


def run_eval(args: argparse.Namespace) -> int:
    try:
        names = _algorithms(getattr(args, "algorithms", None))
        # Checked before loading anything, so a typo fails in a second, not after training.
        runner.check_algorithms(names if names is not None else [])
        # Before training, so that a bad ensemble option fails in seconds.
        ensembles = (ensemble_sweep.from_args(args) if getattr(args, "ensembles", False)
                     else None)
        result = runner.evaluate(args.data, names, progress=not getattr(args, "quiet", False),
                                 test_fraction=getattr(args, "test_fraction", 0.2),
                                 seed=getattr(args, "seed", 0),
                                 energy=getattr(args, "energy", False))
    except (ValueError, OSError) as error:
        return _fail(str(error))
    if not result["algorithms"]:
        return _fail("no algorithm is registered")
    if ensembles is not None:
        result["ensembles"] = ensembles
    status = 0
    if getattr(args, "out", None):
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "eval.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        except OSError as error:
            return _fail(f"cannot write to {out}: {error}")
        if not getattr(args, "no_plots", False):
            status = _plots(result, out)
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        sys.stdout.write(summary(result))
        if ensembles is not None:
            sys.stdout.write(ensemble_sweep.summary(ensembles))
    return status


def _plots(result: dict[str, Any], out: Path) -> int:
    from routeyard.eval.plots import PlotsUnavailable, write_plots

    try:
        write_plots(result, out)
    except PlotsUnavailable as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write plots to {out}: {error}")
    return 0


def summary(result: dict[str, Any]) -> str:
    """A plain-text table for people (the JSON is for programs)."""
    best, oracle = result["best_single"], result["oracle"]
    lines = [f"{result['dataset']}: {result['n_test']} test prompts, "
             f"{len(result.get('models', []))} models",
             f"best single  {best['model']}: quality {best['quality']:.4f} "
             f"at ${best['cost']:.6g}",
             f"oracle       quality {oracle['quality']:.4f} at ${oracle['cost']:.6g}"]
    if "random" in result:
        lines.append(f"random       quality {result['random']['quality']:.4f} "
                     f"at ${result['random']['cost']:.6g}")
    lines += ["", f"{'algorithm':<20} {'AIQ':>7} {'max quality':>12} {'cost@best':>10}"]
    for name, entry in sorted(result["algorithms"].items(),
                              key=lambda item: -(item[1]["aiq"] or 0.0)):
        aiq = "n/a" if entry["aiq"] is None else f"{entry['aiq']:.4f}"
        ratio = entry["cost_ratio_at_best"]
        ratio_text = "never" if ratio is None else f"{ratio:.1%}"
        lines.append(f"{name:<20} {aiq:>7} {entry['max_quality']:>12.4f} {ratio_text:>10}")
    return "\n".join(lines) + "\n"


def run_train(args: argparse.Namespace) -> int:
    try:
        result = runner.train(args.data, args.algorithm, args.out)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m routeyard.eval.command eval|train ...`, until cli.py wires these in."""
    parser = argparse.ArgumentParser(prog="routeyard")
    commands = parser.add_subparsers(dest="command", required=True)
    configure_eval(commands.add_parser("eval", help="offline cost/quality evaluation"))
    configure_train(commands.add_parser("train", help="fit a trainable router"))
    args = parser.parse_args(argv)
    return run_eval(args) if args.command == "eval" else run_train(args)


if __name__ == "__main__":
    sys.exit(main())
