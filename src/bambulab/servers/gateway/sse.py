"""Server-Sent Events: ``GET /api/v1/events?printer=SERIAL&printer=...``.

The stream opens with ``event: snapshot`` (``{"printers": [summary, ...]}``), also sent again on a
reconnect that carries ``Last-Event-ID`` and after a resync. Then one event per change, each with
``id: <seq>``: ``delta`` (``{"serial", "changes", "revision", "last_seen"}``), ``online``,
``offline``, ``added``, ``removed`` and ``printer_event`` (``{"serial", "type", ...}``). A comment
line every 15 s keeps proxies from closing an idle stream.

Memory is bounded per client: the fleet subscription holds at most ``QUEUE`` events; a client
that reads slower than the farm changes (or stops reading: the socket's buffers fill and our
writes block) loses its queue and gets a fresh snapshot when it catches up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bambulab.farm.fleet import FleetEvent
from bambulab.servers.gateway._http import error

if TYPE_CHECKING:
    from bambulab.servers.gateway import Gateway

__all__ = ["QUEUE", "format_event", "routes"]

log = logging.getLogger("bambulab.gateway.sse")

#: Events buffered per client before it is resynced with a snapshot.
QUEUE: Final = 256
KEEPALIVE: Final = 15.0
_KIND = {"event": "printer_event"}


def format_event(kind: str, data: Any, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def routes(gateway: Gateway) -> list[BaseRoute]:
    fleet = gateway.fleet

    def snapshot(serials: set[str] | None) -> bytes:
        members = [m for m in fleet.members.values() if serials is None or m.serial in serials]
        now = time.time()
        body = b'{"printers":[' + b",".join(m.summary_json(now) for m in members) + b"]}"
        return f"id: {fleet.seq}\nevent: snapshot\ndata: ".encode() + body + b"\n\n"

    # Every viewer gets the same events: encode each once (the last few hundred are kept).
    encoded: OrderedDict[int, bytes] = OrderedDict()

    def wire(event: FleetEvent) -> bytes:
        data = encoded.get(event.seq)
        if data is None:
            data = format_event(_KIND.get(event.kind, event.kind), event.data, event.seq)
            encoded[event.seq] = data
            if len(encoded) > 1024:
                encoded.popitem(last=False)
        return data

    async def events(request: Request) -> Response:
        wanted = {s.strip().upper() for s in request.query_params.getlist("printer") if s.strip()} or None
        if wanted is not None:
            unknown = sorted(s for s in wanted if s not in fleet.members)
            if unknown and len(unknown) == len(wanted):
                return error(404, "unknown_printer", f"no printer with serial {unknown[0]!r} in this gateway")
        if gateway.sse_clients >= gateway.config.max_sse_clients:
            return error(503, "too_many_clients", "too many event-stream clients; try again later")
        subscription = fleet.subscribe(wanted, maxsize=QUEUE)

        async def stream() -> AsyncIterator[bytes]:
            gateway.sse_clients += 1
            try:
                yield b"retry: 2000\n\n"
                yield snapshot(wanted)
                while True:
                    try:
                        event: FleetEvent = await subscription.get(timeout=KEEPALIVE)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    except StopAsyncIteration:
                        return
                    if event.kind == "resync":
                        yield snapshot(wanted)
                        continue
                    yield wire(event)
            except asyncio.CancelledError:
                raise
            finally:
                gateway.sse_clients -= 1
                subscription.close()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [Route("/api/v1/events", events, methods=["GET"])]
