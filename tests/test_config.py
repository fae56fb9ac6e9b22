"""Config loading: every error with its location, env interpolation, secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from routeyard.catalog import parse_config
from routeyard.config import ConfigError

GOOD = """
models:
  - name: small
    pricing: {input_per_mtok: 0.15, output_per_mtok: 0.6}
    endpoints: [{base_url: "http://127.0.0.1:9/v1", api_key: "${SMALL_KEY}"}]
  - name: large
    context_window: 128000
    endpoints: [{base_url: "http://127.0.0.1:9/v1"}]
decisions:
  - name: hard
    when: {keywords_any: [prove]}
    candidates: [large]
    fallback: [small]
default: {candidates: [small], fallback: [large]}
"""


def test_good_config_loads_with_env_secret() -> None:
    config = parse_config(GOOD, environ={"SMALL_KEY": "sk-very-secret"})
    endpoint = config.models[0].endpoints[0]
    assert endpoint.api_key is not None
    assert endpoint.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(config)
    assert [c.model for c in config.decisions[0].candidates] == ["large"]


def test_env_default_syntax() -> None:
    text = GOOD.replace("${SMALL_KEY}", "${SMALL_KEY:-fallback-key}")
    config = parse_config(text, environ={})
    assert config.models[0].endpoints[0].api_key.get_secret_value() == "fallback-key"  # type: ignore[union-attr]


def test_missing_env_var_is_reported_with_location() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD, environ={})
    assert caught.value.problems == [
        ("models[0].endpoints[0].api_key", "environment variable SMALL_KEY is not set")
    ]


def test_every_error_listed_with_location() -> None:
    text = """
models:
  - name: small
    endpoints: [{base_url: "ftp://nope"}]
  - name: small
    endpoints: [{base_url: "http://x/v1", weight: -1}]
decisions:
  - {name: a, candidates: [small]}
  - {name: b, candidates: [small]}
  - {name: c, candidates: [gpt5], fallback: [small, nope], algorithm: magic}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    locations = [loc for loc, _ in caught.value.problems]
    # Structure errors come first (both of them), before references are checked.
    assert "models[0].endpoints[0].base_url" in locations
    assert "models[1].endpoints[0].weight" in locations


def test_reference_errors_all_reported() -> None:
    text = """
models:
  - {name: small, endpoints: [{base_url: "http://x/v1"}]}
  - {name: small, endpoints: [{base_url: "http://x/v1"}]}
decisions:
  - {name: a, candidates: [small]}
  - {name: b, candidates: [small]}
  - {name: c, candidates: [gpt5], fallback: [small, nope], algorithm: magic}
state: {backend: cassandra}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    rendered = caught.value.render()
    assert "decisions[2].candidates[0]: unknown model 'gpt5'" in rendered
    assert "decisions[2].fallback[1]: unknown model 'nope'" in rendered
    assert "decisions[2].algorithm: unknown algorithm 'magic'" in rendered
    assert "models[1].name: duplicate model name 'small'" in rendered
    assert "state.backend: unknown backend 'cassandra'" in rendered


@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_a_shared_backend_needs_its_url(backend: str) -> None:
    text = f"""
models:
  - {{name: m, endpoints: [{{base_url: "http://x/v1"}}]}}
state: {{backend: {backend}}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert f"state.{backend}_url: required when state.backend is '{backend}'" \
        in caught.value.render()


def test_unknown_key_and_wrong_type() -> None:
    text = """
models:
  - {name: m, context_window: lots, endpoints: [{base_url: "http://x/v1"}], fallbak: []}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    problems = dict(caught.value.problems)
    assert problems["models[0].fallbak"] == "unknown key"
    assert "integer" in problems["models[0].context_window"]


def test_invalid_yaml_has_line_number() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("models: [\n  {name: x,\n", environ={})
    assert caught.value.problems[0][0].startswith("line ")


def test_secret_never_echoed_in_errors() -> None:
    text = """
models:
  - name: m
    endpoints: [{base_url: "http://x/v1", api_key: 12345678, weight: "sk-leak-me"}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert "sk-leak-me" not in caught.value.render()
    assert "12345678" not in caught.value.render()


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "routeyard", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD.replace("${SMALL_KEY}", "k"))
    result = _validate(good)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("candidates: [large]", "candidates: [large, gpt5]"))
    result = _validate(bad)
    assert result.returncode != 0
    # Both problems in one run: the unset variable and the unknown model.
    assert "models[0].endpoints[0].api_key: environment variable SMALL_KEY" in result.stderr
    assert "decisions[0].candidates[1]: unknown model 'gpt5'" in result.stderr
    assert "Traceback" not in result.stderr

    missing = _validate(tmp_path / "absent.yaml")
    assert missing.returncode != 0 and "cannot read file" in missing.stderr


def test_reference_errors_reported_beside_structure_errors() -> None:
    text = """
models:
  - {name: small, context_window: -5, endpoints: [{base_url: "http://x/v1"}]}
decisions:
  - {name: default, candidates: [gpt5]}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    problems = dict(caught.value.problems)
    assert "models[0].context_window" in problems
    assert problems["decisions[0].candidates[0]"] == "unknown model 'gpt5'"
    assert problems["decisions[0].name"] == "'default' is the default decision's name"


def test_empty_client_api_key_is_refused() -> None:
    text = GOOD.replace("${SMALL_KEY}", "k") + "server: {api_keys: ['${TEAM_KEY:-}']}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert caught.value.problems == [("server.api_keys", "Value error, API keys must not be empty")]
