"""Coding agents as clients: Claude Code (`/v1/messages`) and the Codex CLI (`/v1/responses`),
installed from npm and pointed at `routeyard serve` over its simulated default pool, complete a
task and exit 0. Their requests are routed like any other (the agents ask for their own default
model names, which the default config's `model_routes` send through the decisions).

Skipped, with the reason, when npm is not installed or the packages cannot be installed.
The packages are installed once into a cache folder ($ROUTEYARD_AGENTS_DIR, by default
~/.cache/routeyard/agents) at the pinned versions below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from routerproc import RouterProcess, start_router

AGENTS = {"claude": "@anthropic-ai/claude-code@2.1.197", "codex": "@openai/codex@0.171.0"}
TASK = "Say hello in five words."


def agents_dir() -> Path:
    default = Path.home() / ".cache" / "routeyard" / "agents"
    return Path(os.environ.get("ROUTEYARD_AGENTS_DIR", str(default)))


@pytest.fixture(scope="module")
def agent_bin() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the coding-agent tests need Node.js and npm "
                    "(Debian: apt-get install nodejs npm)")
    folder = agents_dir()
    bins = folder / "node_modules" / ".bin"
    if not all((bins / name).exists() for name in AGENTS):
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix",
                               str(folder), *AGENTS.values()],
                              capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.skip(f"npm could not install {', '.join(AGENTS.values())}: "
                        f"{done.stderr.strip()[-500:]}")
    return bins


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with start_router(None, tmp_path_factory.mktemp("agents"), "--no-discover") as process:
        yield process


def requests_served(gateway: RouterProcess) -> float:
    metrics = httpx.get(f"{gateway.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("routeyard_requests_total{") and 'status="ok"' in line)


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    # A fresh home (no user config), and nothing that phones home: the tests run offline.
    return {"PATH": os.environ["PATH"], "HOME": str(home), "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", **extra}


def test_claude_code_completes_a_task(agent_bin: Path, gateway: RouterProcess,
                                      tmp_path: Path) -> None:
    before = requests_served(gateway)
    done = subprocess.run(
        [str(agent_bin / "claude"), "-p", TASK], cwd=tmp_path, capture_output=True,
        text=True, timeout=180, check=False,
        env=agent_env(tmp_path, ANTHROPIC_BASE_URL=gateway.url, ANTHROPIC_API_KEY="sk-local"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), done.stderr[-2000:]
    assert requests_served(gateway) > before  # it went through Routeyard


def test_codex_cli_completes_a_task(agent_bin: Path, gateway: RouterProcess,
                                    tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        'model = "gpt-5-codex"\nmodel_provider = "routeyard"\n\n'
        '[model_providers.routeyard]\nname = "Routeyard"\n'
        f'base_url = "{gateway.base_url}"\nwire_api = "responses"\n')
    before = requests_served(gateway)
    done = subprocess.run(
        [str(agent_bin / "codex"), "exec", "--skip-git-repo-check", TASK], cwd=tmp_path,
        capture_output=True, text=True, timeout=180, check=False, env=agent_env(home))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), done.stderr[-2000:]
    assert requests_served(gateway) > before
