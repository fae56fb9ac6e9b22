"""An OTLP/HTTP trace receiver that accepts and discards: the far end of a traced router in a
benchmark (bench/ab.py --trace-b), costing as little CPU as a receiver can.

    python bench/otlp_sink.py        # prints "otlp-sink listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import socket

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


def main() -> None:
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/traces", accept)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"otlp-sink listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None)


if __name__ == "__main__":
    main()
