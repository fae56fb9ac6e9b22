"""What the gateway tests share: a two-model config (a dear `large`, a cheap `small`) with a
static admin key, and an admin client for `/admin`."""

from __future__ import annotations

from typing import Any

import httpx
import openai
from routerproc import RouterProcess
from simproc import SimulatorProcess

ADMIN_KEY = "sk-admin-static-0001"
USER_KEY = "sk-user-static-0001"
MESSAGES = [{"role": "user", "content": "Tell me about rate limits please."}]
# Our offline count of MESSAGES, and the simulator's (what the answer's usage says).
COUNTED_PROMPT_TOKENS, BACKEND_PROMPT_TOKENS = 13, 10
ANSWER_TOKENS = 8  # every answer is cut at max_tokens=8 (the simulator's mean is larger)
# Dollars per million tokens: large costs 100x small.
LARGE_PRICE = {"input_per_mtok": 10_000.0, "output_per_mtok": 20_000.0}
SMALL_PRICE = {"input_per_mtok": 100.0, "output_per_mtok": 200.0}


def large_cost(prompt: int = BACKEND_PROMPT_TOKENS, completion: int = ANSWER_TOKENS) -> float:
    return (prompt * LARGE_PRICE["input_per_mtok"]
            + completion * LARGE_PRICE["output_per_mtok"]) / 1e6


def config(sim: SimulatorProcess, **extra: Any) -> dict[str, Any]:
    """`auto` routes to large (static selection), small as the alternative."""
    found: dict[str, Any] = {
        "server": {"admin_keys": [ADMIN_KEY], "watch_config_s": 0},
        "models": [
            {"name": "large", "pricing": LARGE_PRICE, "endpoints": [{"base_url": sim.base_url}]},
            {"name": "small", "pricing": SMALL_PRICE, "endpoints": [{"base_url": sim.base_url}]},
        ],
        "default": {"name": "everyday", "candidates": ["large", "small"]},
        "pool": {"health_check": {"interval_s": 0}},
    }
    for key, value in extra.items():
        found[key] = {**found[key], **value} if isinstance(value, dict) and key in found \
            else value
    return found


class Admin:
    """The admin API of one router, as a static admin key (or `key`) sees it."""

    def __init__(self, router: RouterProcess, key: str = ADMIN_KEY) -> None:
        self.http = httpx.Client(base_url=router.url, timeout=10,
                                 headers={"authorization": f"Bearer {key}"})

    def create_key(self, **body: Any) -> tuple[str, dict[str, Any]]:
        """(the full key, the record as created)."""
        response = self.http.post("/admin/keys", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        return created.pop("key"), created

    def create_tenant(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/admin/tenants", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, json=body) if body is not None else self.http.post(path)

    def patch(self, path: str, body: Any) -> httpx.Response:
        return self.http.patch(path, json=body)

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path)


def openai_client(router: RouterProcess, key: str) -> openai.OpenAI:
    """The openai SDK as `key`, without its own retries (a test sees every refusal)."""
    return openai.OpenAI(base_url=router.base_url, api_key=key, max_retries=0)


def chat(base_url: str, key: str, **extra: Any) -> httpx.Response:
    """One chat request over plain HTTP (no SDK retries), as `key`."""
    body = {"model": "auto", "messages": MESSAGES, "max_tokens": ANSWER_TOKENS, **extra}
    return httpx.post(f"{base_url}/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}"})
