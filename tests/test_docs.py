"""The docs' lists of signal families, selection algorithms, plugins and decision statuses match
the code, so that they cannot drift apart again.

Each list has one canonical place in the docs: the first table of a section, one row per item,
whose first cell names it in backticks. Prose may mention items, but a count written in words
("ten signal families") must be right.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

import routeyard
from routeyard.config.signals import FAMILY_NAMES
from routeyard.plugins import PLUGINS, PluginAnswer
from routeyard.selection import SELECTION_ALGORITHMS
from routeyard.signals import FAMILIES
from routeyard.state import DECISION_STATUSES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = Path(routeyard.__file__).resolve().parent
_HEADING = re.compile(r"#{1,6} ")
_NAME = re.compile(r"`([^`]+)`")


def table_names(doc: str, heading: str) -> list[str]:
    """First-cell names of the first table between `heading` and the next heading of doc."""
    lines = (DOCS / doc).read_text().splitlines()
    assert heading in lines, f"{doc}: heading {heading!r} not found"
    rows: list[str] = []
    for line in lines[lines.index(heading) + 1:]:
        if _HEADING.match(line) or (rows and not line.startswith("|")):
            break  # the table ends at a blank line; the section at the next heading
        if line.startswith("|"):
            rows.append(line)
    assert len(rows) > 2, f"{doc}: no table under {heading!r}"
    names = []
    for row in rows[2:]:  # past the header and the |---| line
        match = _NAME.search(row.split("|")[1])
        assert match, f"{doc}: a row under {heading!r} has no `name` in its first cell: {row}"
        names.append(match.group(1))
    assert len(names) == len(set(names)), f"{doc}: duplicate rows under {heading!r}: {names}"
    return names


def test_signal_families_table() -> None:
    documented = set(table_names("signals.md", "## The families"))
    assert documented == set(FAMILY_NAMES)
    assert documented == set(FAMILIES)  # the registry the engine builds from


def test_selection_algorithms_table() -> None:
    assert set(table_names("routing.md", "## Selection algorithms")) == set(SELECTION_ALGORITHMS)


def test_plugins_table() -> None:
    assert set(table_names("plugins.md", "# Plugins")) == set(PLUGINS)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _strings(expr: ast.AST, functions: dict[str, ast.FunctionDef]) -> set[str]:
    """String constants an expression can yield, following calls to the module's own helpers
    (`status=_status(blocked)`) into their return statements."""
    found = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in functions:
            for ret in ast.walk(functions[node.func.id]):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    found |= _strings(ret.value, {})
    return found


def _statuses(tree: ast.Module) -> set[str]:
    """Every string a module passes as `status=`, assigns to `.status`, or gives a `status`
    parameter as its default."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "status":
            found |= _strings(node.value, functions)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                found |= _strings(node.value, functions)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.args[len(node.args.args) - len(node.args.defaults):]
            for arg, default in [*zip(args, node.args.defaults, strict=True),
                                 *zip(node.args.kwonlyargs, node.args.kw_defaults,
                                      strict=True)]:
                if arg.arg == "status" and default is not None:
                    found |= _strings(default, functions)
    return found


def written_statuses() -> set[str]:
    """Every status the serving layer can hand to the accounting, read from the source:
    `serving/accounting.py` is the only writer of decision records."""
    trees = {path: _parse(path) for path in PACKAGE.rglob("*.py")}
    writers = [path.relative_to(PACKAGE).as_posix() for path, tree in trees.items()
               if "state" not in path.relative_to(PACKAGE).parts  # stores rebuild on read
               and any(isinstance(n, ast.Call)
                       and (getattr(n.func, "id", None) or getattr(n.func, "attr", None))
                       == "DecisionRecord" for n in ast.walk(tree))]
    assert writers == ["serving/accounting.py"], f"decision records written elsewhere: {writers}"
    serving = [tree for path, tree in trees.items()
               if path.relative_to(PACKAGE).parts[0] == "serving"]
    # A plugin's answer is logged with its own outcome ("blocked", "cache_hit").
    outcomes = set(typing.get_args(typing.get_type_hints(PluginAnswer)["outcome"]))
    return set().union(outcomes, *(_statuses(tree) for tree in serving))


def test_decision_statuses_table() -> None:
    statuses = written_statuses()
    assert {"ok", "upstream_failed", "blocked", "cache_hit"} <= statuses  # the reading works
    assert statuses <= set(DECISION_STATUSES)  # the code writes no status the list lacks
    assert set(table_names("state.md", "### Statuses")) == set(DECISION_STATUSES)


_COUNT_WORDS = {word: n for n, word in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty"))}
_COUNTED = {"signal families": len(FAMILY_NAMES), "algorithms": len(SELECTION_ALGORITHMS),
            "selection algorithms": len(SELECTION_ALGORITHMS), "plugins": len(PLUGINS)}


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))],
                         ids=lambda p: p.name)
def test_counts_in_prose(path: Path) -> None:
    """A number written before "signal families", "algorithms" or "plugins" is the real one."""
    text = " ".join(path.read_text().split())  # counts may sit across a line break
    pattern = re.compile(r"\b(\d+|[a-z]+) (" + "|".join(_COUNTED) + r")\b", re.IGNORECASE)
    for match in pattern.finditer(text):
        word, thing = match.group(1).lower(), match.group(2).lower()
        count = int(word) if word.isdigit() else _COUNT_WORDS.get(word)
        if count is not None:
            assert count == _COUNTED[thing], f"{path.name}: {match.group(0)!r}"


def _known_lists(message: str) -> list[list[str]]:
    """The `(known: a, b, ...)` lists of every example of `message` in the docs."""
    pattern = re.compile(re.escape(message) + r" '[^']*' \(known: ([^)]*)\)")
    found = []
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for match in pattern.finditer(path.read_text()):
            if "..." not in match.group(1):  # an abridged list is not meant to be complete
                found.append(match.group(1).split(", "))
    return found


def test_error_examples_list_every_known_name() -> None:
    for names in _known_lists("unknown algorithm"):
        assert names == sorted(SELECTION_ALGORITHMS)  # as routeyard.config.references words it
    for names in _known_lists("unknown signal family"):
        assert names == list(FAMILY_NAMES)
    for names in _known_lists("unknown plugin"):
        assert names == sorted(PLUGINS)
