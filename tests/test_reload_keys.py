"""Config reload swaps `server.api_keys` live: after the file changes, the new key is accepted
and the old one refused, without a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from routerproc import start_router


def config(keys: list[str]) -> dict[str, Any]:
    # /v1/models needs a key but no backend, so the endpoint URL is never called.
    return {
        "server": {"api_keys": keys, "watch_config_s": 0.2},
        "models": [{"name": "m", "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]}],
        "pool": {"health_check": {"interval_s": 0}},
    }


def status(url: str, key: str) -> int:
    return httpx.get(url, headers={"authorization": f"Bearer {key}"}, timeout=5).status_code


def test_reload_swaps_api_keys(tmp_path: Path) -> None:
    with start_router(config(["k1"]), tmp_path) as gateway:
        url = f"{gateway.base_url}/models"
        assert status(url, "k1") == 200
        assert status(url, "k2") == 401
        path = tmp_path / "routeyard.yaml"
        state = yaml.safe_load(path.read_text())["state"]  # keep the store: no restart warning
        path.write_text(yaml.safe_dump({**config(["k2"]), "state": state}))
        deadline = time.monotonic() + 10
        while status(url, "k2") != 200:
            assert time.monotonic() < deadline, "k2 never accepted:\n" + "".join(gateway.output)
            time.sleep(0.05)
        assert status(url, "k1") == 401
        assert "config reloaded" in "".join(gateway.output)
