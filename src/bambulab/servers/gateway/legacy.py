"""The older package's "compatibility layer" routes, with real data and without its leaks.

``/`` (JSON index; browsers get the dashboard), ``/health``, ``/api/version``,
``/api/v1/status?device_id=``, ``/api/v1/print?device_id=`` and ``/api/v1/devices``. The status and
print routes answer ``{"print": {...}}`` shaped as a real report's print section (so a Home
Assistant REST sensor with ``{{ value_json.print.mc_percent }}`` works), plus ``online`` and
``last_seen`` so stale data is never mistaken for fresh. Unknown device ids get a 404 JSON error.
Access codes are never served (the older server returned ``dev_access_code``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bambulab.farm.summary import iso_time
from bambulab.servers.gateway._http import cached_json, error, json_response, redact

if TYPE_CHECKING:
    from bambulab.farm.fleet import Member
    from bambulab.servers.gateway import Gateway

__all__ = ["routes"]

_PRINT_STATUS = {"FINISH": "SUCCESS", "FAILED": "FAILED", "RUNNING": "RUNNING", "PAUSE": "PAUSE",
                 "PREPARE": "PREPARE", "IDLE": "IDLE"}


def _print_section(member: Member) -> dict[str, Any]:
    section = member.printer.state.get("print")
    out = redact(section, [member.config.access_code]) if isinstance(section, dict) else {}
    return out if isinstance(out, dict) else {}


def routes(gateway: Gateway) -> list[BaseRoute]:
    fleet = gateway.fleet

    def pick(request: Request) -> Member | Response:
        device_id = request.query_params.get("device_id") or request.query_params.get("serial")
        if not device_id:
            if len(fleet.members) == 1:
                return next(iter(fleet.members.values()))
            return error(400, "device_id_required",
                         "give ?device_id=SERIAL (GET /api/v1/devices lists them)")
        member = fleet.get(device_id)
        if member is None:
            return error(404, "unknown_device", f"no printer with device_id {device_id.strip().upper()!r}")
        return member

    async def index(request: Request) -> Response:
        if gateway.html_index is not None and "text/html" in request.headers.get("accept", ""):
            response: Response = await gateway.html_index(request)
            return response
        return json_response({
            "name": "bambulab gateway",
            "version": gateway.version,
            "printers": len(fleet.members),
            "endpoints": ["/health", "/api/version", "/api/v1/devices", "/api/v1/status?device_id=",
                          "/api/v1/print?device_id=", "/api/v1/printers", "/api/v1/events", "/openapi.json"],
        })

    async def health(request: Request) -> Response:
        members = list(fleet.members.values())
        online = sum(1 for m in members if m.fresh)
        return json_response({
            "status": "ok" if online == len(members) else "degraded",
            "version": gateway.version,
            "printers": len(members),
            "online": online,
            "uptime_seconds": round(time.time() - gateway.started_at, 1),
        })

    async def version(request: Request) -> Response:
        return json_response({"version": gateway.version, "api": "v1", "name": "bambulab"})

    async def devices(request: Request) -> Response:
        out = []
        for m in fleet.members.values():
            model = m.printer.model
            state = m.printer.status.job.state.value
            out.append({
                "dev_id": m.serial,
                "name": m.name,
                "online": m.fresh,
                "print_status": _PRINT_STATUS.get(state, state),
                "dev_model_name": model.code if model is not None else None,
                "dev_product_name": model.name if model is not None else m.config.model,
                "last_seen": iso_time(m.last_seen),
                "source": m.source,
            })
        return json_response({"devices": out})

    def printable(with_meta: bool) -> Any:
        async def handler(request: Request) -> Response:
            found = pick(request)
            if isinstance(found, Response):
                return found
            member = found

            def body() -> dict[str, Any]:
                out: dict[str, Any] = {"print": _print_section(member)}
                if with_meta:
                    out = {"device_id": member.serial, "name": member.name, **out}
                out["online"] = member.fresh
                out["last_seen"] = iso_time(member.last_seen)
                return out

            tag = f"legacy:{with_meta}:{member.serial}:{member.messages}:{member.revision}:{int(member.fresh)}"
            return cached_json(request, tag, body, member.changed_at or member.added_at)
        return handler

    return [
        Route("/", index, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/v1/devices", devices, methods=["GET"]),
        Route("/api/v1/status", printable(True), methods=["GET"]),
        Route("/api/v1/print", printable(False), methods=["GET"]),
    ]
