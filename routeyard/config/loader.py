"""Loading a config: YAML → `${ENV}` interpolation → pydantic → cross-references.

Every problem is reported with its location (`decisions[2].candidates[0]: unknown model
'gpt5'`). Messages never echo input values, so a secret in a bad field is never printed.

An unset `${VAR}` is an error, unless the caller passes `env_warnings` (`routeyard validate`
without --strict-env): then it is listed there and the rest of the file is still judged.
Either way a placeholder stands in for the unknown value, and no problem that depends on that
value is reported: an unknown value is not a wrong one.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from routeyard.config.catalog import Catalog
from routeyard.config.references import Problem, check_references
from routeyard.config.schema import RouteyardConfig

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Stands in for an unset variable: non-empty (server.api_keys refuses "") and URL-shaped (a
# base_url must be one), so the common fields accept it; reserved TLD, never a real host.
UNSET_PLACEHOLDER = "http://unset.invalid"
_PLACEHOLDER_MARK = "unset.invalid"  # survives use as a path ("http:/unset.invalid/x.npz")
# What a config may hold: far above any real one (rule trees nest ~10 levels; keyword lists
# run to thousands), far below what would overflow a recursive walk or take seconds.
MAX_DEPTH = 100
MAX_NODES = 1_000_000
_SHOWN_LEVELS = 6  # of a location too deep to print whole
# Pydantic errors about the key, not its value: reported even where the value is unknown.
_KEY_ERRORS = frozenset({"extra_forbidden"})


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


def load_config(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    catalog: Catalog | None = None,
    env_warnings: list[Problem] | None = None,
) -> RouteyardConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(source, [("", f"cannot read file: {error.strerror}")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(source, [("", f"not UTF-8 text: byte {error.object[error.start]:#04x} "
                                        f"at offset {error.start}")]) from None
    return parse_config(text, source=source, environ=environ, catalog=catalog,
                        env_warnings=env_warnings)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    env_warnings: list[Problem] | None = None,
) -> RouteyardConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(source, [(where, f"invalid YAML: {problem}")]) from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise ConfigError(source, [("", f"invalid YAML: nested more than {MAX_DEPTH} levels "
                                        "deep")]) from None
    except (ValueError, TypeError) as error:  # a tag's constructor refusing its value (!!int x)
        raise ConfigError(source, [("", f"invalid YAML: {error}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", "the top level must be a mapping")])
    return build_config(raw, source=source, environ=environ, catalog=catalog,
                        env_warnings=env_warnings)


def build_config(
    raw: dict[str, Any],
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    env_warnings: list[Problem] | None = None,
) -> RouteyardConfig:
    """`catalog`: the known plugins, algorithms and state backends (routeyard.catalog has the
    full one; without it, those names are not checked). `env_warnings`: None makes an unset
    variable an error; a list collects them instead."""
    shape = _shape_problem(raw)
    if shape is not None:  # nothing below may walk it
        raise ConfigError(source, [shape])
    # Collect every kind of problem before failing, so one run of `validate` lists them all.
    unset: list[Problem] = []
    data = _interpolate(raw, os.environ if environ is None else environ, "", unset)
    config, errors = _validate(data, unset, catalog)
    problems = [_pydantic_problem(e) for e in errors if not _unknown_value(e, unset)]
    problems += [p for p in check_references(data, catalog)
                 if not depends_on_unset(p, unset)]
    if env_warnings is None:
        problems = unset + problems
    elif config is None and not problems:
        # Only unknown values failed, in fields without a default: nothing to judge them by.
        problems = [(where, f"{message}; the config cannot be checked without it")
                    for where, message in unset]
    else:
        env_warnings += unset
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def _shape_problem(raw: Any) -> Problem | None:
    """Whether the data is too deep or too large to walk: deeper than MAX_DEPTH (a YAML alias
    inside itself is infinitely deep), or more than MAX_NODES values once YAML aliases are
    expanded (an alias bomb expands exponentially). Iterative, so it cannot overflow."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(raw, ())]
    nodes = 0
    while stack:
        value, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return ("", f"more than {MAX_NODES:,} values once YAML aliases are expanded")
        if isinstance(value, dict):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if len(path) >= MAX_DEPTH:
            where = format_location(path[:_SHOWN_LEVELS]) + "…"  # where it starts to go deep
            return (where, f"nested more than {MAX_DEPTH} levels deep (or a YAML alias that "
                    "contains itself)")
        stack.extend((child, (*path, key if isinstance(key, int) else str(key)))
                     for key, child in children)
    return None


def depends_on_unset(problem: Problem, unset: Iterable[Problem], *, enclosing: bool = False
                     ) -> bool:
    """Whether `problem` is about a value that came from an unset variable (so is unknown).
    `enclosing`: also when its location holds such a value (a signal family built from it)."""
    location, message = problem
    return _PLACEHOLDER_MARK in message or any(
        _within(location, where) or (enclosing and location and _within(where, location))
        for where, _ in unset)


def format_location(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _validate(
    data: dict[str, Any], unset: list[Problem], catalog: Catalog | None
) -> tuple[RouteyardConfig | None, list[Mapping[str, Any]]]:
    """The config, or None with the pydantic errors. When only unknown values fail (say, a
    port from an unset variable), they are dropped so their defaults apply, and it is retried."""
    context = {"catalog": catalog}
    data = _without_surrogates(data)
    try:
        return RouteyardConfig.model_validate(data, context=context), []
    except ValidationError as error:
        errors = list(error.errors())
    if not unset or not all(_unknown_value(e, unset) for e in errors):
        return None, errors
    trimmed = copy.deepcopy(data)
    for e in errors:
        _drop(trimmed, _data_path(e))
    try:
        return RouteyardConfig.model_validate(trimmed, context=context), errors
    except ValidationError:
        return None, errors


def _without_surrogates(value: Any) -> Any:
    """Strings with UTF-16 surrogates (a YAML or JSON "\\ud800" escape) as real text: a pair
    joined, a lone one replaced. They cannot be encoded, not even in an error message."""
    if isinstance(value, str):
        if not any("\ud800" <= ch <= "\udfff" for ch in value):
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _unknown_value(error: Mapping[str, Any], unset: list[Problem]) -> bool:
    return error["type"] not in _KEY_ERRORS and depends_on_unset(_pydantic_problem(error), unset)


def _within(location: str, where: str) -> bool:
    return location == where or location.startswith((f"{where}.", f"{where}["))


def _data_path(error: Mapping[str, Any]) -> tuple[int | str, ...]:
    # Union branches add their type name to the location; drop those so paths stay readable.
    return tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))


def _drop(data: Any, path: tuple[int | str, ...]) -> None:
    for part in path[:-1]:
        if not isinstance(data, dict | list):
            return
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    if path and isinstance(data, dict):
        data.pop(path[-1], None)


def _pydantic_problem(error: Mapping[str, Any]) -> Problem:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return format_location(_data_path(error)), message


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
    return UNSET_PLACEHOLDER
