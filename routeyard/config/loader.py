"""Loading a config: YAML → `${ENV}` interpolation → pydantic → cross-references.

Every problem is reported with its location (`decisions[2].candidates[0]: unknown model
'gpt5'`). Messages never echo input values, so a secret in a bad field is never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from routeyard.config.references import Problem, check_references
from routeyard.config.schema import RouteyardConfig

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists (location, message) pairs."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} error(s)"]
        lines += [f"  {location}: {message}" if location else f"  {message}"
                  for location, message in self.problems]
        return "\n".join(lines)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> RouteyardConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, [("", f"cannot read file: {error.strerror}")]) from None
    return parse_config(text, source=source, environ=environ)


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> RouteyardConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(source, [(where, f"invalid YAML: {problem}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", "the top level must be a mapping")])
    return build_config(raw, source=source, environ=environ)


def build_config(
    raw: dict[str, Any], *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> RouteyardConfig:
    # Collect every kind of problem before failing, so one run of `validate` lists them all.
    problems: list[Problem] = []
    data = _interpolate(raw, os.environ if environ is None else environ, "", problems)
    config: RouteyardConfig | None = None
    try:
        config = RouteyardConfig.model_validate(data)
    except ValidationError as error:
        problems += [_pydantic_problem(e) for e in error.errors()]
    problems += check_references(data)
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def format_location(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _pydantic_problem(error: Mapping[str, Any]) -> Problem:
    # Union branches add their type name to the location; drop those so paths stay readable.
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return format_location(loc), message


def _interpolate(
    value: Any, environ: Mapping[str, str], where: str, problems: list[Problem]
) -> Any:
    if isinstance(value, str):
        return _ENV_PATTERN.sub(lambda m: _env_value(m, environ, where, problems), value)
    if isinstance(value, dict):
        return {
            key: _interpolate(item, environ, f"{where}.{key}" if where else str(key), problems)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(item, environ, f"{where}[{i}]", problems)
            for i, item in enumerate(value)
        ]
    return value


def _env_value(
    match: re.Match[str], environ: Mapping[str, str], where: str, problems: list[Problem]
) -> str:
    name, default = match.group(1), match.group(2)
    if name in environ:
        return environ[name]
    if default is not None:
        return default
    problems.append((where, f"environment variable {name} is not set"))
    return ""
