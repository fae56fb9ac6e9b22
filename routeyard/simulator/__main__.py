"""`python -m routeyard.simulator --port 0 ...`: run a simulated LLM backend."""

from __future__ import annotations

import argparse
import sys

from routeyard.simulator.command import configure_parser, run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m routeyard.simulator",
        description="Simulated OpenAI/Anthropic-compatible LLM backends for tests and benchmarks.",
    )
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
