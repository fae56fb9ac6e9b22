"""Command line: `routeyard safety-eval` — measure the jailbreak (and PII) signals on files."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import orjson

EVAL_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attacks", required=True, metavar="FILE",
                        help="JSONL of jailbreak / prompt-injection prompts ({\"text\": ...})")
    parser.add_argument("--benign", required=True, metavar="FILE",
                        help="JSONL of ordinary prompts (false positives are counted here)")
    parser.add_argument("--harmful", metavar="FILE", help="JSONL of plain harmful requests")
    parser.add_argument("--pii", metavar="FILE", help="JSONL of sentences with PII spans")
    parser.add_argument("--threshold", type=float, help="jailbreak threshold (default: shipped)")
    parser.add_argument("--tier", choices=("fast", "accurate"), default="fast",
                        help="the shipped jailbreak model: fast (default) or accurate (int8 "
                             "MiniLM; the jailbreak-accurate extra)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--by-source", action="store_true",
                        help="also print the flagged share of each file's rows per `source`, "
                             "and PII scores per `source` "
                             "(text output only; the JSON keeps its contract)")


def _evaluate_pii(path: str, by_source: bool = False) -> dict[str, Any]:
    try:
        module = importlib.import_module("routeyard.safety.pii_eval")
    except ImportError as error:
        raise RuntimeError(f"--pii needs routeyard.safety.pii_eval, not available: {error}"
                           ) from error
    evaluate = getattr(module, "evaluate_pii", None)
    if evaluate is None:
        raise RuntimeError("--pii needs routeyard.safety.pii_eval.evaluate_pii, not available")
    result = evaluate(path, by_source=by_source)
    report = {"per_label": result["per_label"], "p50_ms": result["p50_ms"]}
    if by_source:  # text output only: the JSON keeps its contract
        report["by_source"] = result.get("by_source", {})
    return report


def run_command(args: argparse.Namespace) -> int:
    from routeyard.safety.jailbreak_eval import evaluate_jailbreak

    try:
        report: dict[str, Any] = {"jailbreak": evaluate_jailbreak(
            args.attacks, args.benign, args.harmful, args.threshold, args.tier)}
        if args.pii:
            report["pii"] = _evaluate_pii(args.pii, args.by_source and not args.json)
    except EVAL_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return 0
    if args.by_source:
        _print_by_source(args)
    jb = report["jailbreak"]
    print(f"jailbreak: recall {jb['recall']:.3f}  FPR {jb['fpr']:.4f}  precision "
          f"{jb['precision']:.3f}  threshold {jb['threshold']}  p50 {jb['p50_ms']:.3f} ms")
    if "pii" in report:
        print(f"pii: p50 {report['pii']['p50_ms']:.3f} ms")
        _print_pii(report["pii"]["per_label"], "  ")
        for source, part in report["pii"].get("by_source", {}).items():
            print(f"  {source} ({part['texts']} texts):")
            _print_pii(part["per_label"], "    ")
    return 0


def _print_pii(per_label: dict[str, dict[str, Any]], indent: str) -> None:
    for label, scores in per_label.items():
        print(f"{indent}{label}: " + "  ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))


def _print_by_source(args: argparse.Namespace) -> None:
    from routeyard.safety.jailbreak_eval import evaluate_by_source

    for source, row in evaluate_by_source(args.attacks, args.benign, args.harmful,
                                          tier=args.tier).items():
        print(f"  {source}: {row['rows']} rows, flagged {row['flagged']:.3f}, "
              f"named harmful {row['harmful_name']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="routeyard safety-eval", description=__doc__)
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
