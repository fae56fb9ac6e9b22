"""The `routeyard` command: serve · validate · route · simulate · db · ...

Each subcommand is a (configure, run) pair in COMMANDS; `main` only dispatches.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

import orjson

from routeyard.catalog import load_config
from routeyard.config import ConfigError

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; without it, the built-in demo pool")
    parser.add_argument("--host", default=None, help="default: server.host, or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: server.port, or 8080")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--no-discover", action="store_true",
                        help="built-in default only: do not probe for Ollama or vLLM")


def _run_serve(args: argparse.Namespace) -> int:
    from routeyard.serve import serve

    return serve(args.config, host=args.host, port=args.port, workers=args.workers,
                 discover=not args.no_discover)


def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the YAML config to check")
    parser.add_argument("--strict-env", action="store_true",
                        help="an unset ${VAR} is an error, as for serve (default: a warning, so "
                             "a config can be checked without its secrets)")


def _run_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from routeyard.config import depends_on_unset
    from routeyard.preflight import preflight

    unset: list[tuple[str, str]] = []  # stays empty with --strict-env: those are errors
    try:
        config = load_config(args.file, env_warnings=None if args.strict_env else unset)
        problems = [p for p in preflight(config, Path(args.file).resolve().parent)
                    if not depends_on_unset(p, unset, enclosing=True)]
        if problems:
            raise ConfigError(args.file, problems)
    except ConfigError as error:
        _print_warnings(args.file, unset)
        print(error.render(), file=sys.stderr)
        return 1
    _print_warnings(args.file, unset)
    noted = f", {len(unset)} warning(s)" if unset else ""
    print(f"{args.file}: ok ({len(config.models)} models, {len(config.decisions)} decisions"
          f"{noted})")
    return 0


def _print_warnings(source: str, warnings: list[tuple[str, str]]) -> None:
    if warnings:
        lines = [f"{source}: {len(warnings)} warning(s)"]
        lines += [f"  {location}: {message}" for location, message in warnings]
        print("\n".join(lines), file=sys.stderr)


def _configure_route(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; without it, the built-in demo pool")
    parser.add_argument("prompt", help="the prompt text to route (nothing is sent anywhere)")


def _run_route(args: argparse.Namespace) -> int:
    from pathlib import Path

    from routeyard.errors import RouteyardError
    from routeyard.preflight import BUILD_ERRORS
    from routeyard.router import Router
    from routeyard.serve import resolve_config
    from routeyard.state import MemoryStore

    async def dry_run() -> dict[str, object]:
        config, _ = resolve_config(args.config, "http://127.0.0.1:8080", discover=False)
        base_dir = Path(args.config).resolve().parent if args.config else None
        router = Router(config, store=MemoryStore(), base_dir=base_dir)
        return await router.route(args.prompt)  # a dry run needs no connections

    try:
        result = asyncio.run(dry_run())
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except RouteyardError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except BUILD_ERRORS as error:
        print(f"error: cannot build the router: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _configure_simulate(parser: argparse.ArgumentParser) -> None:
    from routeyard.simulator.command import configure_parser

    configure_parser(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    from routeyard.simulator.command import run_command

    return run_command(args)


def _configure_fit_signal(parser: argparse.ArgumentParser) -> None:
    from routeyard.signals.fitting import configure_parser

    configure_parser(parser)


def _run_fit_signal(args: argparse.Namespace) -> int:
    from routeyard.signals.fitting import run_command

    return run_command(args)


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.command import configure_eval

    configure_eval(parser)


def _run_eval(args: argparse.Namespace) -> int:
    from routeyard.eval.command import run_eval

    return run_eval(args)


def _configure_train(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.command import configure_train

    configure_train(parser)


def _run_train(args: argparse.Namespace) -> int:
    from routeyard.eval.command import run_train

    return run_train(args)


def _configure_export(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.routerarena import configure_export

    configure_export(parser)


def _run_export(args: argparse.Namespace) -> int:
    from routeyard.eval.routerarena import run_export

    return run_export(args)


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.replay import configure_replay

    configure_replay(parser)


def _run_replay(args: argparse.Namespace) -> int:
    from routeyard.eval.replay import run_replay

    return run_replay(args)


def _configure_evaluate_policy(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.offpolicy_command import configure_parser

    configure_parser(parser)


def _run_evaluate_policy(args: argparse.Namespace) -> int:
    from routeyard.eval.offpolicy_command import run_command

    return run_command(args)


def _configure_safety_eval(parser: argparse.ArgumentParser) -> None:
    from routeyard.safety.command import configure_parser

    configure_parser(parser)


def _run_safety_eval(args: argparse.Namespace) -> int:
    from routeyard.safety.command import run_command

    return run_command(args)


def _configure_advise(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.advise import configure_advise

    configure_advise(parser)


def _run_advise(args: argparse.Namespace) -> int:
    from routeyard.eval.advise import run_advise

    return run_advise(args)


def _configure_shadow_report(parser: argparse.ArgumentParser) -> None:
    from routeyard.eval.shadow_report import configure_shadow_report

    configure_shadow_report(parser)


def _run_shadow_report(args: argparse.Namespace) -> int:
    from routeyard.eval.shadow_report import run_shadow_report

    return run_shadow_report(args)


def _configure_fleet_sim(parser: argparse.ArgumentParser) -> None:
    from routeyard.fleet.command import configure_parser

    configure_parser(parser)


def _run_fleet_sim(args: argparse.Namespace) -> int:
    from routeyard.fleet.command import run_command

    return run_command(args)


def _configure_db(parser: argparse.ArgumentParser) -> None:
    from routeyard.dbtools import configure_parser

    configure_parser(parser)


def _run_db(args: argparse.Namespace) -> int:
    from routeyard.dbtools import run_command

    return run_command(args)


COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "serve": ("run the router (OpenAI API)", _configure_serve, _run_serve),
    "validate": ("check a config file; list every error with its location",
                 _configure_validate, _run_validate),
    "route": ("dry run: print how a prompt would be routed, as JSON",
              _configure_route, _run_route),
    "simulate": ("run the backend simulator (OpenAI- and Anthropic-compatible)",
                 _configure_simulate, _run_simulate),
    "fit-signal": ("fit a domain or complexity classifier into an artifact file",
                   _configure_fit_signal, _run_fit_signal),
    "train": ("train a selection algorithm on a routing dataset's train.jsonl",
              _configure_train, _run_train),
    "eval": ("train on train.jsonl, score on test.jsonl: AIQ, max quality, cost ratio, curve",
             _configure_eval, _run_eval),
    "export": ("write a trained router's choices in a leaderboard's submission format "
               "(RouterArena)", _configure_export, _run_export),
    "replay": ("stream a routing dataset as live traffic with feedback; regret plots",
               _configure_replay, _run_replay),
    "evaluate-policy": ("estimate a candidate policy's quality, cost and latency off-policy "
                        "from a decision log (IPS, SNIPS, DM, DR; intervals)",
                        _configure_evaluate_policy, _run_evaluate_policy),
    "safety-eval": ("jailbreak recall/FPR and PII per-label scores on labelled JSONL files",
                    _configure_safety_eval, _run_safety_eval),
    "advise": ("per decision and slice: each model's cost and quality from the decision log "
               "and its feedback, with intervals; the frontier; cheaper-model suggestions",
               _configure_advise, _run_advise),
    "shadow-report": ("per decision: the shadow model's win, tie and loss rates against the "
                      "served answers, its failure rate and cost delta, with intervals",
                      _configure_shadow_report, _run_shadow_report),
    "fleet-sim": ("simulate a workload (a trace or synthetic) on a GPU pool: TTFT, TPOT, SLO "
                  "attainment, utilisation, energy and cost; --find-min-gpus; export-trace",
                  _configure_fleet_sim, _run_fleet_sim),
    "db": ("the durable store: `db upgrade` (PostgreSQL migrations), `db export` (the "
           "decision log as Parquet or JSONL)", _configure_db, _run_db),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeyard", description="A fast LLM router.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(subparsers.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
