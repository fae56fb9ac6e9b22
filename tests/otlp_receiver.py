"""A real OTLP/HTTP trace receiver, run as its own process by the tracing tests.

`python tests/otlp_receiver.py` listens on a free port, prints `otlp-receiver listening on
http://127.0.0.1:PORT`, and for each `POST /v1/traces` decodes the protobuf payload
(`ExportTraceServiceRequest`, the wire format the OTLP exporter sends) and prints every span as
one JSON line prefixed `span `: its name, kind, ids (hex), parent, status, attributes and its
resource's attributes. Anything else gets a 404; a payload that does not decode a 400.
"""

from __future__ import annotations

import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER",
         5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def value_of(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, which) if which else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # the http.server API's name
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path != "/v1/traces":
            self._answer(404, b"")
            return
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError:
            self._answer(400, b"")
            return
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    print("span " + json.dumps({
                        "name": span.name, "kind": KINDS.get(span.kind, str(span.kind)),
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "status": STATUS.get(span.status.code, str(span.status.code)),
                        "attributes": attributes_of(span.attributes),
                        "events": [event.name for event in span.events],
                        "resource": resource,
                        "duration_ns": span.end_time_unix_nano - span.start_time_unix_nano,
                    }), flush=True)
        self._answer(200, ExportTraceServiceResponse().SerializeToString())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:  # keep stdout for spans
        return None


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    print(f"otlp-receiver listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
