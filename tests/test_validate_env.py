"""`routeyard validate` without the secrets: unset variables are warnings unless --strict-env.

Run as real processes, as CI or a pre-commit hook would; `serve` keeps refusing them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from routeyard.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
HOSTED = ROOT / "examples" / "hosted.yaml"
UNSET = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RY_TEST_BASE", "RY_TEST_PORT", "RY_TEST_KEY",
         "RY_TEST_LEVEL", "RY_TEST_SET")
WARNING = "models[0].endpoints[0].api_key: environment variable OPENAI_API_KEY is not set"

SMALL = """
models:
  - name: small
    endpoints: [{base_url: "http://127.0.0.1:9/v1", api_key: "${OPENAI_API_KEY}"}]
"""


def routeyard(*args: str, env: dict[str, str] | None = None, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in UNSET}
    return subprocess.run([sys.executable, "-m", "routeyard", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**clean, **(env or {})})


def test_unset_variable_is_a_warning() -> None:
    result = routeyard("validate", str(HOSTED))
    assert result.returncode == 0, result.stderr
    assert WARNING in result.stderr
    assert "models[2].endpoints[0].api_key: environment variable ANTHROPIC_API_KEY" \
        in result.stderr
    assert "warning" in result.stderr and "error" not in result.stderr
    assert ": ok (" in result.stdout


def test_strict_env_makes_it_an_error() -> None:
    result = routeyard("validate", "--strict-env", str(HOSTED))
    assert result.returncode == 1, result.stderr
    assert WARNING in result.stderr and "error(s)" in result.stderr
    assert "ok" not in result.stdout


def test_unset_variable_and_a_real_error_both_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL + "default: {candidates: [gpt5]}\n")
    result = routeyard("validate", str(bad))
    assert result.returncode == 1
    assert WARNING in result.stderr
    assert "default.candidates[0]: unknown model 'gpt5'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_still_refuses_an_unset_variable(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    result = routeyard("serve", "--config", str(config), "--port", "0", timeout=30)
    assert result.returncode != 0
    assert WARNING in result.stderr


def test_route_still_refuses_an_unset_variable(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    result = routeyard("route", "--config", str(config), "hello")
    assert result.returncode == 1
    assert WARNING in result.stderr


def test_placeholder_adds_no_error_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # A URL, an int, a literal and a client key from unset variables: whatever stands in for
    # them must not fail the checks of those fields (their value is unknown, not wrong).
    config = tmp_path / "vars.yaml"
    config.write_text("""
server: {port: "${RY_TEST_PORT}", log_level: "${RY_TEST_LEVEL}", api_keys: ["${RY_TEST_KEY}"]}
models:
  - name: small
    endpoints: [{base_url: "${RY_TEST_BASE}"}]
""")
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["validate", str(config)])
    err = capsys.readouterr().err
    assert code == 0, err
    for where, name in [("server.port", "RY_TEST_PORT"), ("server.log_level", "RY_TEST_LEVEL"),
                        ("server.api_keys[0]", "RY_TEST_KEY"),
                        ("models[0].endpoints[0].base_url", "RY_TEST_BASE")]:
        assert f"{where}: environment variable {name} is not set" in err
    assert err.count("environment variable") == 4  # nothing else, e.g. "must not be empty"


def test_placeholder_hides_no_real_error(tmp_path: Path) -> None:
    # An unknown key stays an error even when its value comes from an unset variable.
    config = tmp_path / "typo.yaml"
    config.write_text(SMALL.replace("api_key:", "api_kee:"))
    result = routeyard("validate", str(config))
    assert result.returncode == 1
    assert "models[0].endpoints[0].api_kee: unknown key" in result.stderr


def test_no_value_is_echoed(tmp_path: Path) -> None:
    config = tmp_path / "mixed.yaml"
    config.write_text(SMALL + """  - name: other
    endpoints: [{base_url: "http://127.0.0.1:9/v1", api_key: "${RY_TEST_SET}", weight: -1}]
""")
    result = routeyard("validate", str(config), env={"RY_TEST_SET": "sk-do-not-print"})
    assert result.returncode == 1
    assert WARNING in result.stderr and "models[1].endpoints[0].weight" in result.stderr
    assert "sk-do-not-print" not in result.stderr + result.stdout
    assert "unset.invalid" not in result.stderr + result.stdout  # no placeholder either


def test_artifact_path_from_unset_variable_is_not_built(tmp_path: Path) -> None:
    # Deep checks build signal families and algorithms; one built from a placeholder path
    # would fail for a reason that is not in the file.
    config = tmp_path / "artifact.yaml"
    config.write_text(SMALL + """signals:
  domain: {artifact: "${RY_TEST_BASE}/domain.npz"}
""")
    result = routeyard("validate", str(config))
    assert result.returncode == 0, result.stderr
    assert "signals.domain.artifact: environment variable RY_TEST_BASE is not set" \
        in result.stderr
    assert "cannot build" not in result.stderr
