"""The embedded default: a demo pool of simulated models, plus real providers found nearby.

`routeyard serve` with no config uses this, so a new user gets a working router at once.
Real providers join when their key is set (OPENAI_API_KEY, ANTHROPIC_API_KEY) or when a local
server answers (Ollama on 11434, vLLM on 8000).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from routeyard.config.loader import build_config
from routeyard.config.schema import RouteyardConfig

SIMULATOR_MOUNT = "/simulator"

# Demo prices mirror real small / mid / large hosted models ($ per million tokens).
_DEMO_MODELS: list[dict[str, Any]] = [
    {"name": "sim-small", "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
     "context_window": 16384, "capabilities": {"tools": True}},
    {"name": "sim-medium", "pricing": {"input_per_mtok": 1.10, "output_per_mtok": 4.40},
     "context_window": 131072, "capabilities": {"tools": True, "reasoning": True}},
    {"name": "sim-large", "pricing": {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
     "context_window": 131072,
     "capabilities": {"tools": True, "vision": True, "reasoning": True}},
    # Serves /v1/embeddings (the simulator serves any name containing "embed").
    {"name": "sim-embed", "kind": "embedding", "pricing": {"input_per_mtok": 0.02},
     "context_window": 8192},
]

# Agents' default model names, routed through the decisions: Claude Code asks for claude-*,
# Codex and OpenAI SDK samples for gpt-* and o-series models, embeddings clients for
# text-embedding-* (which /v1/embeddings sends to the embedding models).
_AGENT_MODEL_PATTERNS = ["claude-*", "gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"]

_HARD_KEYWORDS = ["prove", "proof", "derive", "step by step", "analyze", "analyse", "algorithm",
                  "debug", "optimize", "theorem", "architecture", "refactor"]

_HOSTED: dict[str, dict[str, Any]] = {
    "OPENAI_API_KEY": {
        "base_url": "https://api.openai.com/v1", "provider": "openai",
        "models": [("gpt-4o-mini", 0.15, 0.60, 128000), ("gpt-4o", 2.50, 10.00, 128000)],
        "capabilities": {"tools": True, "vision": True, "structured_output": True},
    },
    "ANTHROPIC_API_KEY": {
        "base_url": "https://api.anthropic.com/v1", "provider": "anthropic",
        "models": [("claude-3-5-haiku-latest", 0.80, 4.00, 200000),
                   ("claude-sonnet-4-5", 3.00, 15.00, 200000)],
        "capabilities": {"tools": True, "vision": True, "reasoning": True},
    },
}

_LOCAL_SERVERS = {"ollama": "http://127.0.0.1:11434/v1", "vllm": "http://127.0.0.1:8000/v1"}


def default_config(
    base_url: str, environ: Mapping[str, str], *, probe_local: bool = True
) -> tuple[RouteyardConfig, list[str]]:
    """The demo config served at `base_url`, and notes on what was discovered."""
    sim_url = f"{base_url}{SIMULATOR_MOUNT}/v1"
    models = [{**m, "endpoints": [{"base_url": sim_url}]} for m in _DEMO_MODELS]
    found, notes = discover_providers(environ, probe_local=probe_local)
    models += found
    real = [m["name"] for m in found]
    raw = {
        "models": models,
        "aliases": ["auto"],
        # A configured model's own name still wins over these patterns (gpt-4o, say).
        "model_routes": [{"match": pattern} for pattern in _AGENT_MODEL_PATTERNS],
        "decisions": [
            {"name": "reasoning", "priority": 20, "when": {"keywords_any": _HARD_KEYWORDS},
             "candidates": ["sim-large"], "fallback": ["sim-medium"]},
            {"name": "long-context", "priority": 10, "when": {"min_prompt_tokens": 12000},
             "candidates": ["sim-medium"], "fallback": ["sim-large"]},
        ],
        # Real providers, when found, take the everyday traffic; the simulator backs them up.
        "default": {"name": "everyday", "candidates": [*real, "sim-small"],
                    "algorithm": "first_healthy", "fallback": ["sim-medium"]},
        "pool": {"health_check": {"interval_s": 30}},
        "state": {"backend": "sqlite"},
    }
    return build_config(raw, source="<built-in default>", environ=environ), notes


def discover_providers(
    environ: Mapping[str, str], *, probe_local: bool = True
) -> tuple[list[dict[str, Any]], list[str]]:
    models: list[dict[str, Any]] = []
    notes: list[str] = []
    for variable, spec in _HOSTED.items():
        key = environ.get(variable)
        if not key:
            continue
        for name, price_in, price_out, window in spec["models"]:
            models.append({
                "name": name, "context_window": window,
                "pricing": {"input_per_mtok": price_in, "output_per_mtok": price_out},
                "capabilities": spec["capabilities"],
                "endpoints": [{"base_url": spec["base_url"], "provider": spec["provider"],
                               "api_key": key}],
            })
        notes.append(f"{variable} is set: added {', '.join(m[0] for m in spec['models'])}")
    if probe_local:
        for server, url in _LOCAL_SERVERS.items():
            for model_id, window in _list_local_models(url):
                # Tool calling is served by vLLM and Ollama for the models that have it;
                # vision and the rest are not assumed.
                models.append({"name": model_id, "context_window": window,
                               "capabilities": {"tools": True},
                               "endpoints": [{"base_url": url}]})
                notes.append(f"{server} answers at {url}: added {model_id}")
    return models, notes


def _list_local_models(base_url: str) -> list[tuple[str, int]]:
    """Models a local OpenAI-compatible server lists, or none if it does not answer quickly."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=0.3) as response:
            listing = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return []
    found = []
    for item in listing.get("data", []) if isinstance(listing, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            window = item.get("max_model_len")
            found.append((item["id"], window if isinstance(window, int) and window > 0 else 8192))
    return found
