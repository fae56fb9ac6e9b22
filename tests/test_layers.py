"""The layer test: the request path runs one way, and this keeps it so.

It reads every module's imports from the source (AST: module level, inside functions and
under TYPE_CHECKING alike, since a lazy import is still a dependency) and fails on:
- any import cycle;
- any module below `routeyard.router` importing it;
- config importing anything outside config (a registry above all);
- a module importing from a layer above its own.

The layer order is written here, once, top to bottom. A module may import from its own layer
and from any layer below it. `docs/architecture.md` draws the same picture.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1] / "routeyard"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("routeyard.cli", "routeyard.__main__", "routeyard.serve")),
    ("HTTP edge and offline tools", ("routeyard.api", "routeyard.reload", "routeyard.eval",
                                     "routeyard.safety", "routeyard.dbtools",
                                     "routeyard.fleet")),
    ("composition root", ("routeyard.router", "routeyard.preflight")),
    ("catalog", ("routeyard.catalog",)),
    ("serving", ("routeyard.serving",)),
    ("gateway", ("routeyard.gateway",)),
    ("plugins", ("routeyard.plugins", "routeyard.cache")),
    ("decisions", ("routeyard.decisions",)),
    ("selection", ("routeyard.selection",)),
    ("signals", ("routeyard.signals",)),
    ("pool", ("routeyard.pool",)),
    ("state", ("routeyard.state",)),
    ("config", ("routeyard.config",)),
    ("simulator", ("routeyard.simulator",)),
    ("leaves", ("routeyard.errors", "routeyard.jsonl", "routeyard.tokens", "routeyard.tracing",
                "routeyard.metrics", "routeyard.wire", "routeyard.answers", "routeyard.tasks",
                "routeyard.dataset")),
]
# The package itself only re-exports the Router lazily (`from routeyard import Router`).
EXEMPT = {"routeyard"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The routeyard modules `path` imports (a `from pkg import name` of a submodule counts
    as that submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "routeyard"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "routeyard":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in known else source)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def layer_of(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {__file__}")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        if name not in EXEMPT:
            layer_of(name)


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_nothing_below_the_router_imports_it() -> None:
    router = layer_of("routeyard.router")
    offenders = [name for name, targets in graph().items()
                 if name not in EXEMPT and layer_of(name) > router
                 and "routeyard.router" in targets]
    assert offenders == []


def test_config_is_a_leaf_that_imports_no_registry() -> None:
    outside = {name: sorted(t for t in targets if not t.startswith("routeyard.config"))
               for name, targets in graph().items() if name.startswith("routeyard.config")}
    assert {name: found for name, found in outside.items() if found} == {}


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for name, targets in graph().items():
        if name in EXEMPT:
            continue
        for target in targets:
            if layer_of(target) < layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_the_checks_see_real_violations() -> None:
    """The reader itself: an upward import and a cycle in a made-up graph are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = graph()
    assert "routeyard.router" in edges["routeyard.api.chat"]  # lazy and typed imports count
    assert layer_of("routeyard.serving.relay") > layer_of("routeyard.router")


def test_importing_config_loads_neither_plugins_nor_numpy() -> None:
    code = ("import sys, routeyard.config; "
            "print(any(m.startswith('routeyard.plugins') for m in sys.modules), "
            "'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


async def test_one_request_enters_the_router_at_most_three_times() -> None:
    """Follow one chat request, whole and streamed, as the HTTP edge makes it: the Router's
    code is entered for the plan and for the call, and never again from below."""
    from echo_backend import echo_backend

    from routeyard.catalog import build_config
    from routeyard.router import Router
    from routeyard.state import MemoryStore

    router_file = str(PACKAGE / "router.py")
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with echo_backend() as (url, _):
        config = build_config({"models": [{"name": "m", "endpoints": [{"base_url": url}]}],
                               "default": {"candidates": ["m"], "plugins": [
                                   {"type": "headers", "set": {"x-a": "1"}}]},
                               "pool": {"health_check": {"interval_s": 0}}})
        async with Router(config, store=MemoryStore()) as router:
            for stream in (False, True):
                # A coroutine's every resumption is a "call" event too: count frames, once
                # each (kept alive, so that no id is reused).
                entered: dict[int, Any] = {}

                def profile(frame: Any, event: str, _: Any,
                            entered: dict[int, Any] = entered) -> None:
                    if event == "call" and frame.f_code.co_filename == router_file \
                            and frame.f_back is not None \
                            and frame.f_back.f_code.co_filename != router_file:
                        entered.setdefault(id(frame), frame)

                sys.setprofile(profile)
                try:
                    plan = await router.plan({**body, "stream": stream})
                    if stream:
                        relay = await router.open_stream({**body, "stream": True}, plan)
                        frames = [frame async for frame in relay.frames()]
                    else:
                        answer = await router.complete(body, plan)
                finally:
                    sys.setprofile(None)
                names = [f.f_code.co_name for f in entered.values()]
                assert 1 <= len(names) <= 3, names
                if stream:
                    assert frames[-1] == b"data: [DONE]\n\n"
                else:
                    assert answer.headers == {"x-a": "1"}
