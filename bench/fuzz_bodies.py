"""Requests the OpenAPI description cannot express, for `bench/fuzz.py`: JSON nested past every
limit, invalid UTF-8, numbers no double holds (1e400, 2**80, -0, NaN literals), duplicate keys,
huge strings, lone surrogates and NUL bytes in escapes, wrong content types, truncated bodies,
bodies whose framing lies (Content-Length, chunked), and wrong methods.

Each case is raw bytes: a valid body of the endpoint with one JSON fragment spliced in at one
place (`spliced`), or a whole-body change (`framed`). Cases are enumerated deterministically and
sampled with a seed, so a run is reproducible from its seed and count.
"""

from __future__ import annotations

import gzip
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

_HOLE = "\x00hole\x00"  # a placeholder string no real body contains

# Each POST endpoint's smallest valid body, and where a fragment may go: a path of keys and
# indexes into the body (a new key when it is absent).
BASES: dict[str, tuple[dict[str, object], list[tuple[object, ...]]]] = {
    "/v1/chat/completions": (
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        [("model",), ("messages",), ("messages", 0), ("messages", 0, "content"),
         ("messages", 0, "role"), ("max_tokens",), ("temperature",), ("n",), ("stop",),
         ("metadata",), ("tools",), ("stream",), ("stream_options",), ("response_format",),
         ("reasoning_effort",), ("unknown_field",)]),
    "/v1/messages": (
        {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        [("model",), ("max_tokens",), ("messages",), ("messages", 0, "content"),
         ("system",), ("tools",), ("tool_choice",), ("thinking",), ("metadata",),
         ("stop_sequences",), ("top_k",), ("temperature",), ("stream",), ("unknown_field",)]),
    "/v1/messages/count_tokens": (
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        [("model",), ("messages",), ("messages", 0, "content"), ("system",), ("tools",)]),
    "/v1/responses": (
        {"model": "auto", "input": "hi", "max_output_tokens": 4},
        [("model",), ("input",), ("instructions",), ("max_output_tokens",), ("tools",),
         ("tool_choice",), ("text",), ("reasoning",), ("previous_response_id",), ("store",),
         ("metadata",), ("temperature",), ("unknown_field",)]),
    "/v1/embeddings": (
        {"model": "auto", "input": "hi"},
        [("model",), ("input",), ("dimensions",), ("encoding_format",), ("user",),
         ("unknown_field",)]),
    "/v1/completions": (
        {"model": "auto", "prompt": "hi", "max_tokens": 4},
        [("model",), ("prompt",), ("max_tokens",), ("n",), ("echo",), ("best_of",),
         ("suffix",), ("stream",), ("unknown_field",)]),
    "/v1/route": (
        {"prompt": "hi"},
        [("prompt",), ("messages",), ("model",), ("unknown_field",)]),
    "/v1/feedback": (
        {"request_id": "req_0", "rating": 5},
        [("request_id",), ("rating",), ("score",), ("preferred_over",), ("unknown_field",)]),
}


def _nest(depth: int, open_: str = "[", close: str = "]", core: str = "") -> bytes:
    return (open_ * depth + core + close * depth).encode()


# JSON fragments (raw bytes, valid or not) spliced into a valid body, by what they probe.
FRAGMENTS: dict[str, list[bytes]] = {
    "big_number": [b"1e400", b"-1e400", b"1e-400", b"1e308", b"-0", b"-0.0", b"0",
                    b"18446744073709551615", b"18446744073709551616",
                    b"1208925819614629174706176", b"-9223372036854775809",
                    b"9223372036854775807", b"-9223372036854775808", b"4.9e-324",
                    b"123456789012345678901234567890.5", b"1" * 400],
    "number_literal": [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"0x10", b"01", b"+1",
                       b".5", b"1.", b"1e", b"-", b"1_000", b"\xef\xbc\x91"],
    "lone_surrogate": [b'"\\ud800"', b'"\\udfff"', b'"\\ud800\\ud800"', b'"\\udc00\\ud800"',
                       b'"a\\ud83d"', b'"\\ud83d\\ude00"', b'"\\uDBFF\\uDFFF"'],
    "nul": [b'"\\u0000"', b'"a\\u0000b"', b'{"\\u0000": 1}', b'"a\x00b"', b"\x00",
            b'["\\u0000", "\\u0000"]'],
    "invalid_utf8": [b'"\xff\xfe"', b'"\xc3\x28"', b'"\xed\xa0\x80"', b'"\xc0\xaf"',
                     b'"\xe2\x82"', b'"\xf4\x90\x80\x80"', b'"\x80"', b'{"\xff": 1}'],
    "bad_escape": [b'"\\x41"', b'"\\u12"', b'"\\u12G4"', b'"\\"', b'"\\a"', b'"\n"', b'"\t"',
                   b'"\x1f"'],
    "deep_nesting": [_nest(d) for d in (64, 127, 128, 129, 254, 255, 1023, 1024, 1025, 5000)]
    + [_nest(d, '{"a":', "}", "1") for d in (128, 129, 600, 1100)]
    + [_nest(d, '[{"type":"text","text":"x","c":', "}]", "1") for d in (64, 200)]
    + [b"[" * 100_000],
    "huge_string": [b'"' + b"a" * n + b'"' for n in (65_536, 1_000_000)]
    + [b'"' + "é".encode() * 300_000 + b'"', b'"' + b"\\u00e9" * 200_000 + b'"',
       b'"' + b"\\n" * 200_000 + b'"'],
    "huge_container": [b"[" + b",".join([b"1"] * 100_000) + b"]",
                       b"[" + b",".join([b'"x"'] * 50_000) + b"]",
                       b"{" + b",".join(b'"k%d":1' % i for i in range(50_000)) + b"}",
                       b"[" + b",".join([b'{"role":"user","content":"hi"}'] * 20_000) + b"]"],
    "wrong_type": [b"null", b"true", b"false", b"[]", b"{}", b'""', b"[null]", b'{"":""}',
                   b"0", b"-1", b"1.5", b'"auto"', b'["auto"]', b'{"type":null}',
                   b'[{"type":5}]', b'[{"role":"user"}]', b'[{"role":"user","content":[1]}]',
                   b'[{"role":"user","content":[{"type":"image_url"}]}]',
                   b'[{"role":"user","content":[{"type":"text","text":5}]}]',
                   # The shapes of the crashes this fuzzing found (see docs/reliability.md).
                   b'[{"type":[]}]', b'{"type":{}}', b"[[]]", b'[{"type":"text","text":5}]',
                   b'{"type":"enabled","budget_tokens":"x"}', b'[{"type":"function",'
                   b'"function":"f"}]', b'[{"type":"file","file":"f"}]',
                   b'[{"type":"image_url","image_url":{"url":5}}]'],
    "unterminated": [b'"abc', b"[1,2", b'{"a":', b"tru", b"[,]", b"{,}", b'{"a" 1}',
                     b"[1,]", b'{"a":1,}'],
}

_DUPLICATES = [  # whole bodies with repeated keys: the last one wins (as in orjson)
    b'{"model":"auto","model":5,"messages":[{"role":"user","content":"hi"}]}',
    b'{"model":5,"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":4}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"messages":"x"}',
    b'{"model":"auto","messages":[{"role":"user","role":"nobody","content":"hi"}]}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi","content":null}],'
    b'"max_tokens":4,"max_tokens":-1}',
    b'{"model":"auto","input":"hi","input":[],"prompt":"a","prompt":7,"request_id":"r",'
    b'"request_id":"s","rating":1,"rating":9,"max_tokens":4}',
    b'{"model":"auto","max_tokens":4,"messages":[{"role":"user","content":"hi"}],'
    b'"stream":true,"stream":false}',
    b'{"' + b'","'.join(b"model" for _ in range(1000)) + b'":1}',
]

_WHOLE_BODIES = [b"", b" ", b"\n\t ", b"null", b"true", b"0", b'"text"', b"[]", b"[{}]",
                 b"{}", b"{}{}", b"{} x", b"\xef\xbb\xbf{}", b"\x00", b"\x00{}",
                 b"\xff\xfe{\x00}\x00", b"{'model': 'auto'}", b"model=auto&messages=hi",
                 b"--x\r\nContent-Disposition: form-data\r\n\r\n{}\r\n--x--"]

_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "application/json; charset=latin-1", "application/xml", "", "*/*",
                  "application/json\x7f"]

_WRONG_METHODS = ["PUT", "PATCH", "DELETE", "OPTIONS", "GET", "TRACE"]


@dataclass(frozen=True, slots=True)
class RawCase:
    """One request as bytes. `kind`: what it probes (the report's key). `reject`: a 4xx is
    the only right answer (not JSON, say); otherwise any non-5xx is."""

    kind: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    reject: bool = False
    # Sent over a bare socket exactly as given (the framing itself is the probe).
    raw_request: bytes | None = None

    def preview(self, limit: int = 300) -> str:
        data = self.raw_request if self.raw_request is not None else self.body
        text = repr(data[:limit])
        return text + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def _splice(base: dict[str, object], where: tuple[object, ...], fragment: bytes) -> bytes:
    """`base` as JSON with `fragment` at `where` (replacing what is there, or a new key)."""
    body = orjson.loads(orjson.dumps(base))  # a deep copy
    target = body
    for step in where[:-1]:
        target = target[step]  # type: ignore[index]
    target[where[-1]] = _HOLE  # type: ignore[index]
    return orjson.dumps(body).replace(orjson.dumps(_HOLE), fragment, 1)


# Fragments that can never be valid JSON: the body must be refused.
_NOT_JSON = {"number_literal", "invalid_utf8", "bad_escape", "unterminated"}
_ALWAYS_BAD = {b"1e400", b"-1e400", b'"\\ud800"', b'"\\udfff"', b'"\\ud800\\ud800"',
               b'"\\udc00\\ud800"', b'"a\\ud83d"', b'"a\x00b"', b"\x00", b"[" * 100_000}


def _spliced(path: str) -> Iterator[RawCase]:
    base, places = BASES[path]
    for kind, fragments in FRAGMENTS.items():
        for fragment in fragments:
            # The costly fragments go to two places per endpoint, the others to every one.
            chosen = places[:2] if kind.startswith("huge") or len(fragment) > 50_000 else places
            for where in chosen:
                reject = kind in _NOT_JSON or fragment in _ALWAYS_BAD or (
                    kind == "deep_nesting" and fragment.count(b"[") + fragment.count(b"{")
                    > 128)
                yield RawCase(kind, "POST", path, _splice(base, where, fragment), reject=reject)


def _framed(path: str) -> Iterator[RawCase]:
    base, _ = BASES[path]
    valid = orjson.dumps(base)
    for body in _DUPLICATES:
        yield RawCase("duplicate_keys", "POST", path, body)
    for body in _WHOLE_BODIES:
        # Not an object, not JSON, or an object without the required fields: all 400s.
        yield RawCase("whole_body", "POST", path, body, reject=True)
    for content_type in _CONTENT_TYPES:
        yield RawCase("content_type", "POST", path, valid, headers={"content-type": content_type})
    yield RawCase("content_type", "POST", path, valid, headers={})
    yield RawCase("content_encoding", "POST", path, gzip.compress(valid),
                  headers={"content-type": "application/json", "content-encoding": "gzip"})
    yield RawCase("content_encoding", "POST", path, valid,
                  headers={"content-type": "application/json", "content-encoding": "br"})
    for cut in sorted({1, 2, len(valid) // 3, len(valid) // 2, len(valid) - 1}):
        yield RawCase("truncated", "POST", path, valid[:cut], reject=True)
    yield from _bad_framing(path, valid)
    for method in _WRONG_METHODS:
        yield RawCase("wrong_method", method, path, valid, reject=True)


def _bad_framing(path: str, valid: bytes) -> Iterator[RawCase]:
    head = f"POST {path} HTTP/1.1\r\nhost: fuzz\r\ncontent-type: application/json\r\n"
    # The client promises more than it sends, then closes: the server sees a disconnect.
    short = (head + f"content-length: {len(valid) + 100}\r\n\r\n").encode() + valid
    yield RawCase("framing", "POST", path, valid, raw_request=short)
    # Fewer bytes promised than sent: the body is cut where the length says.
    cut = (head + f"content-length: {len(valid) // 2}\r\n\r\n").encode() + valid
    yield RawCase("framing", "POST", path, valid, raw_request=cut, reject=True)
    chunked = (head + "transfer-encoding: chunked\r\n\r\n").encode()
    yield RawCase("framing", "POST", path, valid, raw_request=chunked + b"%x\r\n%s\r\n0\r\n\r\n"
                  % (len(valid), valid))
    yield RawCase("framing", "POST", path, valid, raw_request=chunked + b"zz\r\n{}\r\n0\r\n\r\n")
    yield RawCase("framing", "POST", path, valid,
                  raw_request=chunked + b"%x\r\n%s" % (len(valid) + 50, valid))
    # A huge Content-Length: refused from the header, before any body is read.
    yield RawCase("framing", "POST", path, valid, reject=True, raw_request=(
        head + "content-length: 99999999999\r\n\r\n").encode() + valid)
    # A NUL byte and a non-latin-1 byte in header values.
    yield RawCase("header_bytes", "POST", path, valid, raw_request=(
        head.encode() + b"x-api-key: a\x00b\r\nx-title: \xff\xfe\r\n" +
        b"content-length: %d\r\n\r\n" % len(valid) + valid))


def _queries() -> Iterator[RawCase]:
    for query in ("limit=0", "limit=101", "limit=-1", "limit=1e3", "limit=%00", "order=up",
                  "after=%ff%fe", "limit=" + "9" * 400, "stream=true", "%zz=1"):
        for suffix in ("", "/input_items"):
            yield RawCase("query", "GET", f"/v1/responses/resp_x{suffix}?{query}", b"",
                          headers={})
    for raw_id in ("%00", "%ff", "..%2f..%2fadmin", "a" * 10_000, "%ed%a0%80"):
        yield RawCase("path", "GET", f"/v1/responses/{raw_id}", b"", headers={})
        yield RawCase("path", "DELETE", f"/v1/responses/{raw_id}", b"", headers={})


def all_cases() -> list[RawCase]:
    cases: list[RawCase] = []
    for path in BASES:
        cases += _spliced(path)
        cases += _framed(path)
    cases += _queries()
    return cases


def sample(count: int, seed: int) -> list[RawCase]:
    """`count` cases (every one when count is at least their number), in a seeded order."""
    cases = all_cases()
    rng = random.Random(seed)
    if count < len(cases):
        cases = rng.sample(cases, count)
    else:
        rng.shuffle(cases)
    return cases


# -- sending a framed request over a bare socket -------------------------------------------------


def send_raw(base_url: str, request: bytes, timeout: float = 10.0
             ) -> tuple[int, str, bytes]:
    """Send `request` as it is; (status, content type, body) of the first answer. Status 0:
    the server closed without answering, the right answer to a client that never finishes its
    body."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the client is done: a short body is now truncated
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return 0, "", b""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(rest)
    else:
        body = rest[:int(headers.get("content-length", len(rest)))]
    return int(lines[0].split(" ", 2)[1]), headers.get("content-type", ""), body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out
