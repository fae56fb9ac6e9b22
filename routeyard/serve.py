"""`routeyard serve`: load (or build) the config, make the app, run uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from routeyard.api import create_app
from routeyard.api.drain import UVICORN_MARGIN_S
from routeyard.catalog import load_config
from routeyard.config import ConfigError, RouteyardConfig
from routeyard.config.defaults import SIMULATOR_MOUNT, default_config
from routeyard.config.schema import ServerConfig
from routeyard.preflight import BUILD_ERRORS
from routeyard.router import Router
from routeyard.state import StoreRefused

log = logging.getLogger("routeyard")

_ENV_CONFIG = "ROUTEYARD_CONFIG"  # passes the config to worker processes
_ENV_BASE_URL = "ROUTEYARD_BASE_URL"
_ENV_DISCOVER = "ROUTEYARD_DISCOVER"


def resolve_config(
    path: str | None, base_url: str, *, discover: bool
) -> tuple[RouteyardConfig, list[str]]:
    if path:
        return load_config(path), []
    return default_config(base_url, os.environ, probe_local=discover)


def build_app(path: str | None, base_url: str, *, discover: bool
              ) -> tuple[ASGIApp, list[str], Router]:
    config, notes = resolve_config(path, base_url, discover=discover)
    mounts: dict[str, ASGIApp] = {}
    if path is None:
        from routeyard.simulator import build_simulator_app, demo_config

        mounts[SIMULATOR_MOUNT] = build_simulator_app(demo_config())
    router = Router(config, base_dir=Path(path).resolve().parent if path else None)
    return create_app(router, mounts=mounts, config_path=path), notes, router


def tune_gc(young_threshold: int) -> None:
    """Tune the cyclic garbage collector for a long-running server, once its app is built.

    Python collects its youngest generation every 700 container allocations, and each request
    allocates hundreds: at c=64 the collector took ~10% of the server's CPU (~100 µs a
    request, gc callbacks on bench/gateway.py's load). Objects built at startup (config,
    signal tables, models) never die: `gc.freeze()` moves them out of every later collection,
    and a larger young threshold collects less often (requests free almost everything by
    reference counting; cycles wait a little longer). `young_threshold` 0 keeps Python's
    defaults."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def app_from_environment() -> ASGIApp:
    """uvicorn factory for --workers > 1: each worker builds its own app."""
    app, _, router = build_app(os.environ.get(_ENV_CONFIG) or None, os.environ[_ENV_BASE_URL],
                               discover=os.environ.get(_ENV_DISCOVER) == "1")
    tune_gc(router.config.server.gc_young_threshold)
    return app


def serve(path: str | None, *, host: str | None, port: int | None, workers: int,
          discover: bool) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server_config = load_config(path).server if path else None
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return 1
    host = host or (server_config.host if server_config else "127.0.0.1")
    port = port if port is not None else (server_config.port if server_config else 8080)
    level = server_config.log_level if server_config else "info"
    server = server_config or ServerConfig()
    # uvicorn's hard deadline, past the drain window in which open streams are cut cleanly.
    hard_deadline_s = server.drain_delay_s + server.shutdown_grace_s + UVICORN_MARGIN_S
    logging.getLogger("routeyard").setLevel(level.upper())
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listen now: connections made after the "listening" line queue until uvicorn serves.
        sock.listen(2048)
    except OSError as error:
        print(f"cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    base_url = f"http://{host}:{port}"
    try:
        app, notes, router = build_app(path, base_url, discover=discover)
        # A store this build can never use (a newer database schema): refuse now, in one line.
        asyncio.run(router.store.preflight())
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except StoreRefused as error:
        print(f"cannot serve with the store of {path}: {error}", file=sys.stderr)
        return 1
    except BUILD_ERRORS as error:  # a signal's file is missing, say: no traceback
        print(f"cannot build the router from {path}: {error}", file=sys.stderr)
        return 1
    _announce(path, base_url, notes)
    if workers > 1:
        sock.close()
        os.environ[_ENV_CONFIG] = path or ""
        os.environ[_ENV_BASE_URL] = base_url
        os.environ[_ENV_DISCOVER] = "1" if discover else "0"
        uvicorn.run("routeyard.serve:app_from_environment", factory=True, host=host, port=port,
                    workers=workers, log_level=level, access_log=False, loop="uvloop",
                    http="httptools", lifespan="on",
                    timeout_graceful_shutdown=int(hard_deadline_s) + 1)
        return 0
    config = uvicorn.Config(app, log_level=level, access_log=False, loop="uvloop",
                            http="httptools", lifespan="on",
                            timeout_graceful_shutdown=int(hard_deadline_s) + 1)
    tune_gc(router.config.server.gc_young_threshold)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _announce(path: str | None, base_url: str, notes: list[str]) -> None:
    if path is None:
        print("No --config given: serving the built-in demo pool (simulated sim-small, "
              "sim-medium, sim-large, and sim-embed for /v1/embeddings) on every surface: "
              "/v1/chat/completions, /v1/messages, /v1/responses, /v1/completions, "
              "/v1/embeddings.")
        for note in notes:
            print(f"  discovered: {note}")
        print("  Add real providers with a config file (see docs/configuration.md), or set "
              "OPENAI_API_KEY / ANTHROPIC_API_KEY, or run Ollama or vLLM locally.")
    print(f"  Try: curl {base_url}/v1/chat/completions -H 'content-type: application/json' "
          "-d '{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}'")
    print(f"routeyard listening on {base_url}", flush=True)
