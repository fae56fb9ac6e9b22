"""Fuzz every HTTP endpoint of a real `routeyard serve` over the simulator, and count what comes
back: no 5xx, and every 4xx in its surface's error schema.

Two sources of requests:
- schemathesis, from the OpenAPI description (`routeyard.api.openapi.openapi_document`):
  valid bodies (half of them naming a configured model, so they reach routing, the backends and
  the renderers) and invalid ones (wrong types, missing fields), for every operation;
- `fuzz_bodies`, the bodies a spec cannot express: deep nesting, invalid UTF-8, huge numbers,
  NaN literals, duplicate keys, huge strings, NUL bytes, lone surrogates, wrong content types,
  truncated bodies and lying framing.

    python bench/fuzz.py                          # 10,000 schemathesis cases + every hand-made
    python bench/fuzz.py --cases 1500 --raw 500   # the test suite's size
    python bench/fuzz.py --base-url http://127.0.0.1:8080   # a router that is already running

A finding is a 5xx (always a bug: the simulator is healthy), a 4xx outside its error schema, an
answer that contradicts the OpenAPI description (status, content type or body schema), or a
hand-made body that must be refused (not JSON, say) and was accepted. Findings are printed with
the request that caused them; the run's figures go to bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fuzz_bodies import sample, send_raw
from procs import start_simulator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "fuzz.json"
_READY = re.compile(r"routeyard listening on (\S+)")

# Anthropic's error types (the envelope of every /v1/messages* answer).
ANTHROPIC_ERROR_TYPES = frozenset({
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error"})
# Model names a valid generated body is given half of the time, so it gets past the 404 of an
# unknown model: aliases, each kind of configured model, and a model_routes pattern.
# What uvicorn answers (text/plain) when its HTTP parser refuses a request.
HTTP_PARSER_REJECTION = b"Invalid HTTP request received."
ALL_RAW = 1_000_000  # more than there are: every hand-made body
BROKEN = "broken"  # the status key of a request whose connection broke without an answer
KNOWN_MODELS = ("auto", "sim-small", "sim-tools", "sim-claude", "sim-embed", "claude-fuzz")
# Share of the schemathesis budget per operation (unlisted: 1); each gets half valid cases and
# half invalid ones. Operations without parameters have only a few distinct cases.
WEIGHTS = {"POST /v1/chat/completions": 6, "POST /v1/messages": 6, "POST /v1/responses": 6,
           "POST /v1/completions": 4, "POST /v1/embeddings": 4,
           "POST /v1/messages/count_tokens": 3, "POST /v1/route": 3, "POST /v1/feedback": 2,
           "GET /v1/responses/{response_id}": 2, "DELETE /v1/responses/{response_id}": 1,
           "GET /v1/responses/{response_id}/input_items": 2}


def simulator_config() -> dict[str, Any]:
    """Fast, healthy backends: any 5xx the router answers is its own."""
    return {"default": {"ttft_ms": 0, "tpot_ms": 0, "output_tokens_mean": 3,
                        "output_tokens_max": 8},
            "models": ["sim-small", "sim-large", "sim-embed"], "seed": 7}


def router_config(sim_url: str, tmp: Path) -> dict[str, Any]:
    """Every kind of model (plain, capable, Anthropic-protocol, embedding), an alias, a
    model_routes pattern, a keyword decision and plugins: the paths a fuzzed body can take."""
    every = {"tools": True, "vision": True, "reasoning": True, "structured_output": True}
    v1 = sim_url + "/v1"
    return {
        "models": [
            {"name": "sim-small", "context_window": 32768, "endpoints": [{"base_url": v1}]},
            {"name": "sim-tools", "capabilities": every, "context_window": 32768,
             "endpoints": [{"base_url": v1, "upstream_model": "sim-large"}]},
            {"name": "sim-claude", "capabilities": every, "context_window": 32768,
             "endpoints": [{"base_url": v1, "provider": "anthropic",
                            "upstream_model": "sim-small"}]},
            {"name": "sim-embed", "kind": "embedding", "endpoints": [{"base_url": v1}]},
        ],
        "aliases": ["auto"],
        "model_routes": [{"match": "claude-*"}],
        "decisions": [{"name": "hard", "priority": 10, "when": {"keywords_any": ["prove"]},
                       "candidates": ["sim-small"], "fallback": ["sim-tools"],
                       "plugins": [{"type": "system_prompt", "text": "Be brief."}]}],
        "default": {"name": "everyday", "candidates": ["sim-claude", "sim-small", "sim-tools"],
                    "algorithm": "first_healthy"},
        "pool": {"retry": {"max_retries": 0}, "health_check": {"interval_s": 0}},
        "state": {"backend": "sqlite", "path": str(tmp / "state.db")},
    }


@dataclass
class Served:
    """A running router: its root URL, its pid, and the file its output goes to."""

    url: str
    pid: int
    log: Path

    def log_problems(self) -> list[str]:
        """Tracebacks and ERROR lines the router logged: a bug even when the client saw a
        clean answer (a stream renderer failing after the status line, say)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "Traceback" in line or " ERROR " in line]


@contextlib.contextmanager
def serve_logged(config: dict[str, Any], tmp: Path, timeout: float = 30.0) -> Iterator[Served]:
    """`routeyard serve` with `config`, its output in tmp/router.log; stopped on exit."""
    path = tmp / "routeyard.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "router.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "routeyard", "serve", "--config", str(path), "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": str(tmp / "xdg")})
    try:
        deadline = time.monotonic() + timeout
        while not (found := _READY.search(log.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"routeyard did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.05)
        yield Served(found.group(1), process.pid, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def fuzz_target(tmp: Path) -> Iterator[Served]:
    """A simulator and a `routeyard serve` in front of it."""
    with start_simulator(simulator_config(), tmp) as (sim_url, _):
        (tmp / "router").mkdir()
        with serve_logged(router_config(sim_url, tmp), tmp / "router") as served:
            yield served


# -- what a response must be ---------------------------------------------------------------------


def error_schema_problem(path: str, content_type: str, body: bytes) -> str | None:
    """Why an error body is not in its surface's schema (None: it is)."""
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}, not application/json"
    try:
        data = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if path.startswith("/v1/messages"):
        inner = data.get("error") if isinstance(data, dict) else None
        if not (isinstance(data, dict) and data.get("type") == "error"
                and isinstance(inner, dict) and inner.get("type") in ANTHROPIC_ERROR_TYPES
                and isinstance(inner.get("message"), str)):
            return f"not Anthropic's error envelope: {body[:200]!r}"
        return None
    inner = data.get("error") if isinstance(data, dict) else None
    if not (isinstance(inner, dict) and isinstance(inner.get("message"), str)
            and isinstance(inner.get("type"), str)
            and all(k in inner and (inner[k] is None or isinstance(inner[k], str))
                    for k in ("param", "code"))):
        return f"not OpenAI's error schema: {body[:200]!r}"
    return None


@dataclass
class Finding:
    endpoint: str
    source: str  # "schemathesis:positive", "raw:deep_nesting", ...
    status: int
    problem: str
    request: str  # enough to reproduce: a curl command or the bytes sent
    response: str


@dataclass
class Tally:
    """Cases and outcomes per endpoint ("POST /v1/messages")."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    by_source: Counter[str] = field(default_factory=Counter)
    http_parser: list[str] = field(default_factory=list)  # refused before the app ran

    def count(self, endpoint: str, source: str, status: int) -> None:
        self.cases[endpoint] += 1
        self.by_source[source.split(":")[0]] += 1
        self.statuses.setdefault(endpoint, Counter())[str(status)] += 1

    @property
    def server_errors(self) -> int:
        """5xx answers, and connections that broke instead of answering."""
        return sum(n for counts in self.statuses.values() for status, n in counts.items()
                   if status.startswith("5") or status == BROKEN)

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if 0 < f.status < 500]

    def broken(self, endpoint: str, source: str, error: Exception, request: str) -> None:
        self.cases[endpoint] += 1
        self.by_source[source.split(":")[0]] += 1
        self.statuses.setdefault(endpoint, Counter())[BROKEN] += 1
        self.findings.append(Finding(endpoint, source, 0, f"the connection broke: "
                                     f"{type(error).__name__}: {error}", request, ""))

    def check(self, endpoint: str, path: str, source: str, status: int, content_type: str,
              body: bytes, request: str, *, must_reject: bool = False) -> None:
        self.count(endpoint, source, status)
        problem = None
        if status >= 500:
            problem = "a server error"
        elif 400 <= status < 500 and not endpoint.startswith("HEAD"):
            problem = error_schema_problem(path, content_type, body)
        elif must_reject and status < 400:
            problem = f"accepted ({status}) a body that must be refused"
        if problem is not None:
            self.findings.append(Finding(endpoint, source, status, problem, request,
                                         body[:500].decode("utf-8", "replace")))


# -- schemathesis ----------------------------------------------------------------------------------


def run_schemathesis(base_url: str, cases: int, seed: int, tally: Tally,
                     log: Any = print) -> None:
    """At least `cases` generated cases over every operation, valid and invalid."""
    import requests
    import schemathesis

    from routeyard.api.openapi import openapi_document

    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [op.ok() for op in schema.get_all_operations()]
    session = requests.Session()
    weights = {op: WEIGHTS.get(f"{op.method.upper()} {op.path}", 1) for op in operations}
    unit = cases / sum(weights.values()) / 2
    round_ = 0
    while tally.by_source["schemathesis"] < cases:
        for operation in operations:
            for mode in schemathesis.GenerationMode:
                examples = max(1, round(unit * weights[operation]))
                _fuzz_operation(operation, mode, examples, seed + round_, base_url, session,
                                tally)
        round_ += 1
        log(f"  schemathesis round {round_}: {tally.by_source['schemathesis']} cases so far")


def _fuzz_operation(operation: Any, mode: Any, examples: int, seed: int, base_url: str,
                    session: Any, tally: Tally) -> None:
    """Up to `examples` cases of one operation in one mode (fewer when Hypothesis runs out of
    distinct ones), each sent, counted and checked."""
    import hypothesis
    import requests
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    endpoint = f"{operation.method.upper()} {operation.path}"
    source = f"schemathesis:{mode.value}"
    positive = mode is GenerationMode.POSITIVE

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=examples, database=None, deadline=None,
                         phases=[hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck),
                         verbosity=hypothesis.Verbosity.quiet)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode),
                      pick=st.sampled_from((None, *KNOWN_MODELS)))
    def one(case: Any, pick: str | None) -> None:
        # A known model, so the body gets past the model lookup into the translations and
        # providers; an invalid case keeps its other faults (or its invalid model, if any).
        if pick and isinstance(case.body, dict) and (
                positive or isinstance(case.body.get("model"), str)):
            case.body["model"] = pick
        curl = case.as_curl_command()
        try:
            response = case.call(base_url=base_url, session=session, timeout=60)
        except requests.RequestException as error:
            tally.broken(endpoint, source, error, curl)
            return
        ctype = response.headers.get("content-type", [""])[0]
        tally.check(endpoint, operation.path, source, response.status_code, ctype,
                    response.content, curl)
        if response.status_code >= 500:
            return
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.findings.append(Finding(
                    endpoint, source, response.status_code,
                    f"{failure.title}: {failure.message}"[:600], curl,
                    response.content[:500].decode("utf-8", "replace")))

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # no invalid form (no inputs)
        one()


# -- hand-made bodies ------------------------------------------------------------------------------


def run_raw(base_url: str, count: int, seed: int, tally: Tally) -> None:
    with httpx.Client(timeout=60) as client:
        for case in sample(count, seed):
            endpoint = f"{case.method} {case.path.split('?')[0]}"
            if "/v1/responses/" in endpoint:
                endpoint = endpoint.split("/v1/responses/")[0] + "/v1/responses/{response_id}"
            source = f"raw:{case.kind}"
            if case.raw_request is not None:
                status, ctype, body = send_raw(base_url, case.raw_request)
                if status == 0:  # closed without answering a body that never came: right
                    tally.count(endpoint, source, 0)
                    continue
            else:
                try:
                    response = client.request(case.method, base_url + case.path,
                                              content=case.body, headers=case.headers)
                except httpx.HTTPError as error:
                    tally.broken(endpoint, source, error, case.preview())
                    continue
                status, body = response.status_code, response.content
                ctype = response.headers.get("content-type", "")
            if status == 400 and body == HTTP_PARSER_REJECTION:
                # uvicorn's HTTP parser refused the request itself (bad framing, a NUL byte in
                # a header): no Routeyard code ran. Counted apart, not in any surface's schema.
                tally.count(endpoint, "raw:http_parser", status)
                tally.http_parser.append(f"{case.kind}: {case.preview(200)}")
                continue
            tally.check(endpoint, case.path.split("?")[0], source, status, ctype, body,
                        f"{case.method} {case.path} {case.headers} {case.preview()}",
                        must_reject=case.reject)


# -- the report ------------------------------------------------------------------------------------


def report(tally: Tally, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cases": sum(tally.cases.values()),
        "by_source": dict(tally.by_source),
        "server_errors": tally.server_errors,
        "schema_violations": len(tally.violations),
        "per_endpoint": {endpoint: {"cases": tally.cases[endpoint],
                                    "statuses": dict(sorted(tally.statuses[endpoint].items()))}
                         for endpoint in sorted(tally.cases)},
        "findings": [asdict(f) for f in tally.findings],
        "http_parser_rejections": tally.http_parser,
        "seconds": round(seconds, 1),
        "seed": args.seed,
        "requested": {"schemathesis": args.cases,
                      "raw": args.raw if args.raw < ALL_RAW else "all"},
    }


def print_report(data: dict[str, Any]) -> None:
    print(f"\n{'endpoint':48} {'cases':>6}  statuses")
    for endpoint, row in data["per_endpoint"].items():
        statuses = " ".join(f"{s}:{n}" for s, n in row["statuses"].items())
        print(f"{endpoint:48} {row['cases']:>6}  {statuses}")
    print(f"\n{data['cases']} cases ({data['by_source']}) in {data['seconds']} s: "
          f"{data['server_errors']} 5xx, {data['schema_violations']} schema violations, "
          f"{len(data['http_parser_rejections'])} refused by the HTTP parser before the app")
    for line in data.get("router_log_errors", [])[:20]:
        print(f"router log: {line}")
    for finding in data["findings"][:40]:
        print(f"\n- {finding['endpoint']} [{finding['source']}] {finding['status']}: "
              f"{finding['problem']}\n  request: {finding['request'][:400]}\n"
              f"  response: {finding['response'][:300]}")


def run(args: argparse.Namespace, base_url: str, served: Served | None = None
        ) -> dict[str, Any]:
    tally = Tally()
    started = time.monotonic()
    if args.raw:
        run_raw(base_url, args.raw, args.seed, tally)
    if args.cases:
        run_schemathesis(base_url, args.cases, args.seed, tally)
    data = report(tally, time.monotonic() - started, args)
    data["router_log_errors"] = served.log_problems() if served is not None else []
    return data


def failed(data: dict[str, Any]) -> bool:
    return bool(data["server_errors"] or data["schema_violations"] or data["router_log_errors"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000,
                        help="schemathesis cases, at least (default 10000)")
    parser.add_argument("--raw", type=int, default=ALL_RAW,
                        help="hand-made bodies, sampled by --seed (default: every one, ~8,500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-url", help="fuzz this running router instead of starting one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.base_url:
        data = run(args, args.base_url.rstrip("/"))
    else:
        with tempfile.TemporaryDirectory() as tmp, fuzz_target(Path(tmp)) as served:
            data = run(args, served.url, served)
    print_report(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 1 if failed(data) else 0


if __name__ == "__main__":
    sys.exit(main())
