"""Plays a request plan out over ASGI: waits for the latency model, injects faults, streams."""

from __future__ import annotations

import asyncio
from typing import Any

from routeyard.simulator.engine import Plan
from routeyard.simulator.wire import Surface

Scope = dict[str, Any]
Receive = Any
Send = Any


class SimulatedDisconnect(RuntimeError):
    """Raised when the server gives no transport to abort; the server then drops the link."""


class Peer:
    """Watches the client so that long waits end as soon as it goes away.

    The watcher task is only created once the request has to wait, keeping the 0 ms path free
    of extra tasks.
    """

    __slots__ = ("_receive", "_watcher")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Future[Any] | None = None

    def _watch(self) -> asyncio.Future[Any]:
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._receive())
        return self._watcher

    def gone(self) -> bool:
        watcher = self._watcher
        if watcher is None or not watcher.done():
            return False
        if watcher.cancelled() or watcher.exception() is not None:
            return True
        return watcher.result().get("type") == "http.disconnect"

    async def pause(self, delay: float) -> bool:
        """Wait `delay` seconds or until the client leaves; True if it left."""
        if delay > 0:
            watcher = self._watch()
            if delay >= 0.02:
                await asyncio.wait((watcher,), timeout=delay)
            else:  # short token gaps: a plain sleep is cheaper than asyncio.wait
                await asyncio.sleep(delay)
        return self.gone()

    async def wait_gone(self, timeout: float) -> None:
        await asyncio.wait((self._watch(),), timeout=timeout)

    def close(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if headers:
        head.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _transport(receive: Receive, send: Send) -> Any:
    # uvicorn passes bound methods of its request cycle, which holds the connection's transport.
    # Aborting that transport is the only way to drop a connection before any response bytes.
    for fn in (receive, send):
        transport = getattr(getattr(fn, "__self__", None), "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            return transport
    return None


async def abort_connection(receive: Receive, send: Send, peer: Peer) -> None:
    transport = _transport(receive, send)
    if transport is None:
        raise SimulatedDisconnect("simulated backend disconnect")
    # Let chunks already written reach the socket, so the client sees a stream cut mid-way.
    for _ in range(100):
        if not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.001)
    transport.abort()
    # Return only once the server has seen the loss, or it would write a 500 into the dead socket.
    await peer.wait_gone(timeout=1.0)


def _retry_after(seconds: float) -> bytes:
    return f"{seconds:g}".encode()


async def run_plan(
    plan: Plan, surface: Surface, stream: bool, include_usage: bool, receive: Receive, send: Send
) -> None:
    peer = Peer(receive)
    active = plan.state.active  # in flight while it is played: what /metrics reports
    active[id(plan)] = plan
    try:
        outcome = await _play(plan, surface, stream, include_usage, receive, send, peer)
    finally:
        del active[id(plan)]
        peer.close()
    plan.state.outcomes[outcome] += 1


async def _play(
    plan: Plan,
    surface: Surface,
    stream: bool,
    include_usage: bool,
    receive: Receive,
    send: Send,
    peer: Peer,
) -> str:
    fault, profile = plan.fault, plan.profile
    extra = [(b"x-sim-replay", plan.replay)] if plan.replay else []
    if fault is None:
        pass
    elif fault in ("500", "503"):
        status = int(fault)
        await send_json(send, status, surface.error(status, "simulated backend error"), extra)
        return "5xx"
    elif fault in ("400", "422"):
        # A backend refusing the request itself, as for a parameter it does not accept.
        status = int(fault)
        body = surface.error(status, f"simulated {status}: the backend rejected the request")
        await send_json(send, status, body, extra)
        return "4xx"
    elif fault == "429":
        body = surface.error(429, "simulated rate limit", "rate_limit_exceeded")
        extra.append((b"retry-after", _retry_after(profile.retry_after_s)))
        await send_json(send, 429, body, extra)
        return "429"
    elif fault == "hang":
        if not await peer.pause(profile.hang_s):
            await send_json(send, 504, surface.error(504, "simulated hang timed out"), extra)
        return "hang"
    elif fault == "disconnect_first" or not stream:
        # The backend accepted the call and died during prefill: no status, no bytes.
        if await peer.pause(plan.first_token_s):
            return "client_disconnect"
        await abort_connection(receive, send, peer)
        return fault
    if stream:
        return await _stream(plan, surface, include_usage, receive, send, peer, extra)
    if await peer.pause(plan.total_s):
        return "client_disconnect"
    await send_json(send, 200, surface.completion(plan), extra)
    return "ok"


async def _stream(
    plan: Plan,
    surface: Surface,
    include_usage: bool,
    receive: Receive,
    send: Send,
    peer: Peer,
    extra: list[tuple[bytes, bytes]],
) -> str:
    encoder = surface.stream(plan, include_usage)
    pieces = plan.pieces_json()
    n = len(pieces)
    cut = plan.fault == "disconnect"
    stop_at = max(1, n // 2) if cut and n else n
    # Headers go out at once, as real servers do; the first chunk waits for the first token.
    headers = [(b"content-type", surface.sse_content_type), (b"cache-control", b"no-cache"), *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    latency = plan.profile.latency
    ttft, tpot = plan.first_token_s, latency.tpot_s
    loop = asyncio.get_running_loop()
    start = loop.time()
    if await peer.pause(ttft):
        return "client_disconnect"
    # Pieces that are already due are batched into one write; with tpot 0 that is all of them.
    buf = [encoder.head()]
    for i in range(stop_at):
        if tpot > 0 and i:
            delay = start + ttft + i * tpot - loop.time()
            if delay > 0.0005:
                await send({"type": "http.response.body", "body": b"".join(buf), "more_body": True})
                buf.clear()
                if await peer.pause(delay):
                    return "client_disconnect"
        buf.append(encoder.piece(pieces[i]))
    if cut:
        await send({"type": "http.response.body", "body": b"".join(buf), "more_body": True})
        await abort_connection(receive, send, peer)
        return "disconnect"
    buf.append(encoder.tail())
    await send({"type": "http.response.body", "body": b"".join(buf), "more_body": False})
    return "ok"
