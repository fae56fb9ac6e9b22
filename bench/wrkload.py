"""Drive `wrk` with a POST body and read its results exactly.

wrk's Lua `done()` hook prints the summary as one JSON line (latencies in microseconds), which
is read instead of parsing the human table that `--latency` also prints.

`send_requests` is the counted form, for warm-ups and for the memory soak: wrk exits as soon as
that many responses have arrived (one wrk thread, so the count is exact). wrk's own
`thread:stop()` would still sleep out the whole `-d`, hence the exit from Lua.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

_MARK = "WRKJSON "

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
local limit = {limit}
local count = 0
local bad = 0
if limit > 0 then
  function response(status, headers, body)
    count = count + 1
    if status >= 400 then bad = bad + 1 end
    if count >= limit then
      io.write(string.format('{mark}{{"requests":%d,"status":%d}}\\n', count, bad))
      io.flush()
      os.exit(0)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. Latencies in ms; `errors` counts socket errors, timeouts and non-2xx/3xx."""

    connections: int
    requests: int
    duration_s: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CountedRun:
    """A counted wrk run: responses received, wall time, and error responses among them."""

    requests: int
    elapsed_s: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def lua_script(body: bytes, headers: dict[str, str], limit: int = 0) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot contain ']==]'")
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in
             {"Content-Type": "application/json", **headers}.items()]
    return _LUA.format(body=text, headers="\n".join(lines), limit=limit, mark=_MARK)


def _wrk(url: str, body: bytes, connections: int, duration_s: float, headers: dict[str, str],
         limit: int, timeout_s: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua_script(body, headers, limit))
        script.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
                   f"--timeout={timeout_s:g}s", "--latency", "-s", script.name, url]
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=duration_s + timeout_s + 30)
    if ".lua:" in done.stderr:  # wrk runs on (with GETs) when its script fails
        raise RuntimeError(f"wrk script error: {done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            return dict(json.loads(line[len(_MARK):]))
    raise RuntimeError(f"wrk gave no summary (exit {done.returncode}):\n"
                       f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def run_wrk(url: str, body: bytes, *, connections: int, duration_s: float,
            headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> WrkResult:
    """POST `body` to `url` for `duration_s` from one wrk thread with `connections`
    keep-alive connections; latency percentiles and throughput from wrk itself."""
    raw = _wrk(url, body, connections, duration_s, headers or {}, 0, timeout_s)
    return _result(connections, raw)


def send_requests(url: str, body: bytes, count: int, *, connections: int,
                  headers: dict[str, str] | None = None, max_s: float = 600.0) -> CountedRun:
    """POST `body` until `count` responses have arrived (or `max_s` passed)."""
    started = time.monotonic()
    raw = _wrk(url, body, connections, max_s, headers or {}, count, 10.0)
    elapsed = time.monotonic() - started
    errors = raw["status"] + sum(raw.get(k, 0) for k in ("connect", "read", "write", "timeout"))
    return CountedRun(raw["requests"], round(elapsed, 3), errors)


def _result(connections: int, raw: dict[str, Any]) -> WrkResult:
    duration_s = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        connections=connections,
        requests=raw["requests"],
        duration_s=round(duration_s, 3),
        rps=round(raw["requests"] / duration_s, 1) if duration_s else 0.0,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
    )
