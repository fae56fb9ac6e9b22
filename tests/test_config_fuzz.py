"""A fuzz corpus for the config loader (issue 13): whatever the file holds, loading it gives a
config or a `ConfigError` whose problems each say where and what; never a traceback.

Generated configs start from a valid one and break it: a value of the wrong type, an unknown
key, a reference to nothing, a huge or deeply nested value, `${VAR}` syntax, unhashable
names; the text is YAML or JSON. Then invalid YAML and binary junk, and YAML's own traps
(aliases that refer to themselves, alias bombs, tags). `routeyard validate` runs on a handful
of them as a subprocess: exit 0 or 1, no traceback.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from routeyard.catalog import parse_config
from routeyard.config import ConfigError, RouteyardConfig

VALID: dict[str, Any] = {
    "server": {"port": 8080, "api_keys": ["k1"], "max_body_bytes": 1_048_576},
    "models": [
        {"name": "small", "context_window": 16384, "pricing": {"input_per_mtok": 0.1},
         "capabilities": {"tools": True},
         "endpoints": [{"base_url": "http://127.0.0.1:9000/v1", "api_key": "${KEY:-none}"}]},
        {"name": "claude", "endpoints": [{"base_url": "https://api.anthropic.com/v1",
                                          "provider": "anthropic", "headers": {"x": "y"}}]},
        {"name": "embed", "kind": "embedding",
         "endpoints": [{"base_url": "http://127.0.0.1:9000/v1"}]},
    ],
    "aliases": ["auto"],
    "model_routes": [{"match": "claude-*", "decision": "hard"}],
    "signals": {"keyword": {"sets": {"maths": {"any": ["prove", "integral"]}}}},
    "decisions": [
        {"name": "hard", "priority": 10, "rules": {"any": ["keyword:maths"]},
         "candidates": ["claude", {"model": "small", "reasoning_effort": "low"}],
         "fallback": ["small"], "algorithm": "first_healthy",
         "plugins": [{"type": "system_prompt", "text": "Be brief."}]},
        {"name": "long", "when": {"min_prompt_tokens": 1000}, "candidates": ["small"]},
    ],
    "default": {"name": "everyday", "candidates": ["small"], "algorithm": "static"},
    "pool": {"retry": {"max_retries": 1}, "breaker": {"failure_threshold": 3},
             "health_check": {"interval_s": 0}},
    "state": {"backend": "memory"},
}

ENVIRON = {"KEY": "secret", "PORT": "8081", "EMPTY": "", "YAMLISH": "{a: [1, 2]}",
           "WEIRD": "${KEY}\x00\n: - [", "HUGE": "9" * 400}

_NAMES = st.sampled_from(["small", "claude", "embed", "auto", "nope", "hard", "everyday", "",
                          "keyword:maths", "keyword:nope", "nofamily:x", "claude-*"])
_ENV_SYNTAX = st.sampled_from(["${KEY}", "${PORT}", "${UNSET}", "${UNSET:-8082}", "${UNSET:-}",
                               "${EMPTY}", "${YAMLISH}", "${WEIRD}", "${HUGE}", "$KEY", "${",
                               "${KEY", "${1BAD}", "${KEY:-${PORT}}", "http://${UNSET}/v1",
                               "${UNSET}${UNSET}"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), _NAMES, _ENV_SYNTAX,
    st.just("x" * 100_000), st.just(-0.0), st.just(""))


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"not": value}
    return value


_JUNK = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), _NAMES), _SCALARS, max_size=4),
    # (Deeper values are in _YAML_TRAPS: the YAML and JSON writers here cannot write them.)
    st.sampled_from([[], {}, [[1]], {"name": [1]}, [{"name": ["x"]}], _nested(50),
                     _nested(101), _nested(300), list(range(50_000))]),
)
_UNKNOWN_KEYS = st.sampled_from(["fallbak", "modles", "extra", "", "1", "name ", "NAME"])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `value` a mutation can go (the root excluded)."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found += _paths(child, (*prefix, key))
    return found


_PLACES = _paths(VALID)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """VALID with a few places replaced, removed, or given an unknown key."""
    config = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_PLACES))
        parent: Any = config
        for step in path[:-1]:
            if not isinstance(parent, dict | list):
                break
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            action = draw(st.sampled_from(["replace", "replace", "remove", "unknown_key"]))
            key = path[-1]
            # An earlier mutation may have changed what is there: a list where a mapping was.
            fits = (isinstance(parent, dict) and isinstance(key, str)) or (
                isinstance(parent, list) and isinstance(key, int) and key < len(parent))
            if action == "replace" and fits:
                parent[key] = draw(_JUNK)
            elif action == "remove" and fits and isinstance(parent, dict):
                parent.pop(key, None)
            elif action == "unknown_key" and isinstance(parent, dict):
                parent[draw(_UNKNOWN_KEYS)] = draw(_JUNK)
    return config


def _as_text(config: dict[str, Any], form: str) -> str:
    if form == "json":
        return json.dumps(config, allow_nan=True)
    return yaml.safe_dump(config, allow_unicode=True)


def _check(text: str, env_warnings: list[tuple[str, str]] | None = None) -> None:
    """The property: a config, or a ConfigError with located, readable problems."""
    try:
        config = parse_config(text, source="fuzz.yaml", environ=ENVIRON,
                              env_warnings=env_warnings)
    except ConfigError as error:
        assert error.problems, "a ConfigError without problems"
        for problem in error.problems:
            location, message = problem
            assert isinstance(location, str) and isinstance(message, str) and message
        assert error.render().startswith("fuzz.yaml: ")
    else:
        assert isinstance(config, RouteyardConfig)


_FUZZ = settings(max_examples=700, database=None, deadline=None,
                 suppress_health_check=list(HealthCheck))


def test_the_valid_config_loads() -> None:
    config = parse_config(_as_text(VALID, "yaml"), environ=ENVIRON)
    assert [m.name for m in config.models] == ["small", "claude", "embed"]


@_FUZZ
@given(config=mutated(), form=st.sampled_from(["yaml", "json"]),
       warn=st.booleans())
def test_broken_configs_give_located_problems(config: dict[str, Any], form: str,
                                             warn: bool) -> None:
    _check(_as_text(config, form), [] if warn else None)


@pytest.mark.parametrize("form", ["yaml", "json"])
@pytest.mark.parametrize("text", ["\ud800\udc00", "\udc00", "x\ud800"])
def test_surrogate_escapes_give_located_problems(form: str, text: str) -> None:
    """Found by the fuzz: a plugin type written as a "\\ud800\\udc00" escape failed while its
    error message was made (a surrogate cannot be encoded), instead of being reported."""
    broken = copy.deepcopy(VALID)
    broken["decisions"][0]["plugins"][0]["type"] = text
    broken["models"][0][text] = 1  # and as a key
    _check(_as_text(broken, form))


_YAML_TRAPS = [
    "a: &x [*x]\n",  # an alias inside itself
    "models: &x {b: *x}\n",
    "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,"
    "*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "models: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n",  # an alias bomb: 9**8 leaves once expanded
    "a: " + "[" * 5_000 + "]" * 5_000 + "\n",
    '{"models": ' + '{"a": ' * 3_000 + "1" + "}" * 3_000 + "}",  # JSON, as deep
    "a:\n" + "".join("  " * i + "- \n" for i in range(1, 400)),
    "? [a, b]\n: 1\n",  # an unhashable key
    "a: !!python/object/apply:os.system ['true']\n",
    "a: !!binary aGVsbG8=\nmodels: !!set {x}\n",
    "models: 2001-12-14\n",
    "\tmodels: []\n",
    "models: [\n",
    "models:\n- name: m\n  endpoints: [{base_url: http://x}]\n  name: n\n",  # a duplicate key
    "%YAML 9.9\n---\na: 1\n",
    "---\na: 1\n---\nb: 2\n",  # two documents
    "", "   ", "null", "[]", "42", "'text'", "\x00", "\ufeffmodels: []", "\x85\u2028\u2029",
]


@pytest.mark.parametrize("text", _YAML_TRAPS, ids=range(len(_YAML_TRAPS)))
def test_yaml_traps_give_located_problems(text: str) -> None:
    _check(text)


@pytest.mark.parametrize(("text", "says"), [
    (_YAML_TRAPS[0], "nested more than 100 levels deep (or a YAML alias that contains itself)"),
    (_YAML_TRAPS[2], "more than 1,000,000 values once YAML aliases are expanded"),
    (_YAML_TRAPS[3], "invalid YAML: nested more than 100 levels deep"),
])
def test_self_reference_depth_and_alias_bombs_are_refused_at_once(text: str, says: str) -> None:
    # The bomb used to be expanded (~25 s, and memory to match) before any error. The message
    # says which guard refused it, as it counts, before anything is expanded; no wall-clock
    # bound, which a busy machine would break.
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert [message for _, message in raised.value.problems] == [says]


@_FUZZ
@given(junk=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(
    lambda b: b.decode("latin-1"))))
@example(junk="models: [{name: m, endpoints: [{base_url: '${UNSET'}]}]")
@example(junk="{models: [{name: !!int x}]}")
def test_text_junk_gives_located_problems(junk: str) -> None:
    _check(junk)


@_FUZZ
@given(config=mutated(), cut=st.floats(0, 1))
def test_truncated_configs_give_located_problems(config: dict[str, Any], cut: float) -> None:
    text = _as_text(config, "yaml")
    _check(text[:int(len(text) * cut)])


# -- `routeyard validate`, as a user runs it ---------------------------------------------------

_VALIDATE_CASES: dict[str, bytes] = {
    "valid": _as_text(VALID, "yaml").encode(),
    "not_utf8": b"models:\n  - name: \xff\xfe\n",
    "binary": bytes(range(256)) * 4,
    "self_alias": _YAML_TRAPS[0].encode(),
    "alias_bomb": _YAML_TRAPS[2].encode(),
    "deep": _YAML_TRAPS[3].encode(),
    "unhashable_names": yaml.safe_dump({**VALID, "aliases": [["a"]], "decisions": [
        {"name": ["x"], "candidates": ["small"]}], "default": {"name": {"a": 1},
                                                               "candidates": ["small"]}}).encode(),
    "bad_references": yaml.safe_dump({**VALID, "decisions": [
        {"name": "d", "candidates": ["ghost"], "rules": "keyword:ghost"}]}).encode(),
}


@pytest.mark.parametrize("name", list(_VALIDATE_CASES))
def test_routeyard_validate_never_prints_a_traceback(tmp_path: Path, name: str) -> None:
    path = tmp_path / "routeyard.yaml"
    path.write_bytes(_VALIDATE_CASES[name])
    done = subprocess.run([sys.executable, "-m", "routeyard", "validate", str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KEY": "k"})
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == (0 if name == "valid" else 1), done.stderr
    if name != "valid":
        assert "error(s)" in done.stderr, done.stderr
