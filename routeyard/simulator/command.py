"""Command line: `routeyard simulate` / `python -m routeyard.simulator`."""

from __future__ import annotations

import argparse
import socket
import sys

import yaml

from routeyard.simulator.profiles import SimulatorConfig, demo_config


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="port; 0 picks a free one")
    parser.add_argument("--config", metavar="FILE", help="profiles file (YAML or JSON)")
    parser.add_argument(
        "--replay", metavar="PATH", help="routing dataset folder or .jsonl with recorded responses"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="serve this model with the default profile (repeatable)",
    )
    parser.add_argument("--demo", action="store_true", help="also serve the three demo models")
    parser.add_argument("--ttft-ms", type=float, help="default time to first token")
    parser.add_argument("--tpot-ms", type=float, help="default time per output token")
    parser.add_argument("--output-tokens", type=int, metavar="N", help="default mean output length")
    parser.add_argument(
        "--accept-any-model", action="store_true", help="serve unknown models with the default"
    )
    parser.add_argument("--seed", type=int, help="RNG seed for output lengths and faults")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build the config: the file first, then CLI flags, which set the default profile.

    Models named with --model, replayed models and models added at run time use that default;
    models defined in the file keep their own profiles.
    """
    config = SimulatorConfig.from_file(args.config) if args.config else SimulatorConfig()
    updates: dict[str, float | int] = {}
    if args.ttft_ms is not None:
        updates["ttft_ms"] = args.ttft_ms
    if args.tpot_ms is not None:
        updates["tpot_ms"] = args.tpot_ms
    if args.output_tokens is not None:
        latency = config.default.latency
        updates["output_tokens_mean"] = args.output_tokens
        updates["output_tokens_min"] = min(latency.output_tokens_min, args.output_tokens)
        updates["output_tokens_max"] = max(latency.output_tokens_max, args.output_tokens)
    if updates:
        config.default = config.default.merged(updates)
    if args.demo:
        config.models = {**demo_config().models, **config.models}
    for name in args.model:
        config.models[name] = config.default
    if args.accept_any_model:
        config.accept_any_model = True
    if args.seed is not None:
        config.seed = args.seed
    if args.replay:
        config.replay = args.replay
    if not config.models and not config.replay and not config.accept_any_model:
        config.models["sim-model"] = config.default  # serve something useful with no flags
    return config


def _bind(host: str, port: int) -> socket.socket:
    # Bound (and listening) before uvicorn starts, so that --port 0 can report the real port
    # and clients may connect as soon as the line is printed.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_command(args: argparse.Namespace) -> int:
    # uvicorn is heavy to import, so it is loaded only when a server actually starts.
    import uvicorn

    from routeyard.simulator.app import SimulatorApp

    try:
        app = SimulatorApp(config_from_args(args))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"routeyard-simulator: {exc}", file=sys.stderr)
        return 2
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"routeyard-simulator: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level=args.log_level,
            server_header=False,
            backlog=2048,
            # Hanging requests would otherwise hold shutdown for up to hang_s.
            timeout_graceful_shutdown=1,
        )
    )
    print(f"routeyard-simulator listening on http://{shown}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0
