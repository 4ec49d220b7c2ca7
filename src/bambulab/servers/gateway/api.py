"""The read API under ``/api/v1/`` (summaries, merged state, AMS, HMS, job, firmware) and the
admin calls that add and remove printers at runtime (token required)."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bambulab.config import ConfigError
from bambulab.exceptions import BambuError
from bambulab.farm.config import PrinterConfig
from bambulab.farm.summary import iso_time, tray_json
from bambulab.servers.gateway._http import (
    RawJson,
    bearer_token,
    cached_json,
    error,
    json_response,
    member_or_404,
    redact,
)

if TYPE_CHECKING:
    from bambulab.farm.fleet import Member
    from bambulab.servers.gateway import Gateway

__all__ = ["routes"]

log = logging.getLogger("bambulab.gateway.api")


def printers_body(members: list[Member]) -> RawJson:
    """``{"printers": [summary, ...]}`` from the members' pre-encoded summaries."""
    now = time.time()
    return RawJson(b'{"printers":[' + b",".join(m.summary_json(now) for m in members) + b"]}")


def member_tag(member: Member) -> str:
    return f"{member.serial}:{member.revision}:{int(member.fresh)}"


def _connection(member: Member) -> dict[str, Any]:
    return {
        "online": member.fresh,
        "last_seen": iso_time(member.last_seen),
        "reconnects": member.reconnects,
        "messages": member.messages,
        "error": member.error,
        "revision": member.revision,
    }


def ams_json(member: Member) -> dict[str, Any]:
    status = member.printer.status
    ams = status.ams
    return {
        "serial": member.serial,
        **_connection(member),
        "tray_now": ams.tray_now,
        "units": [
            {
                "id": u.id,
                "kind": u.kind.value if u.kind is not None else None,
                "humidity_level": u.humidity_level,
                "humidity": u.humidity,
                "temperature": u.temperature,
                "trays": [
                    {**tray_json(t), "tray_index": t.tray_index, "empty": t.is_empty, "sub_brand": t.sub_brand,
                     "nozzle_temp_min": t.nozzle_temp_min, "nozzle_temp_max": t.nozzle_temp_max}
                    for t in u.trays
                ],
            }
            for u in ams.units
        ],
        "external": [
            {**tray_json(t), "tray_index": t.tray_index, "empty": t.is_empty} for t in status.external_spools
        ],
    }


def hms_json(member: Member) -> dict[str, Any]:
    summary = member.summary()
    return {"serial": member.serial, **_connection(member), "hms": summary["hms"],
            "print_error": summary["print_error"]}


def job_json(member: Member) -> dict[str, Any]:
    summary = member.summary()
    job = member.printer.status.job
    keys = ("state", "stage", "stage_name", "progress", "remaining_minutes", "finish_at", "layer", "total_layers",
            "file", "plate", "speed_level")
    return {
        "serial": member.serial,
        **_connection(member),
        **{k: summary[k] for k in keys},
        "task_id": job.task_id,
        "print_type": job.print_type,
        "gcode_file": job.file,
        "prepare_percent": job.prepare_percent,
    }


def firmware_json(member: Member) -> dict[str, Any]:
    info = member.printer.state.get("info")
    modules = []
    if isinstance(info, dict):
        for module in info.get("module") or []:
            if isinstance(module, dict):
                modules.append({k: module.get(k) for k in ("name", "product_name", "sw_ver", "hw_ver", "visible")
                                if k in module})
    return {"serial": member.serial, **_connection(member), "firmware": member.printer.status.firmware,
            "model": member.model, "modules": modules}


def full_json(member: Member) -> dict[str, Any]:
    state = member.printer.state
    raw = {k: state[k] for k in ("print", "info") if k in state}
    return {**member.summary(), **_connection(member),
            "state_raw": redact(raw, [member.config.access_code])}


def routes(gateway: Gateway) -> list[BaseRoute]:
    fleet = gateway.fleet

    async def info(request: Request) -> Response:
        return json_response({
            "version": gateway.version,
            "control_enabled": gateway.control_enabled,
            "printers": len(fleet.members),
            "online": sum(1 for m in fleet.members.values() if m.fresh),
            "messages": sum(m.messages for m in fleet.members.values()),
            "history": gateway.history is not None,
            "uptime_seconds": round(time.time() - gateway.started_at, 1),
            "sse_clients": gateway.sse_clients,
        })

    async def printers(request: Request) -> Response:
        members = list(fleet.members.values())
        tag = f"list:{fleet.version}:" + ",".join(str(int(m.fresh)) for m in members)
        changed = max((m.changed_at or m.added_at for m in members), default=gateway.started_at)
        return cached_json(request, tag, lambda: printers_body(members), changed)

    def one(builder: Any, part: str, raw: bool = False) -> Any:
        async def handler(request: Request) -> Response:
            found = member_or_404(gateway, request.path_params["serial"])
            if isinstance(found, Response):
                return found
            # The raw state changes with reports the summary ignores: tag it by the message count.
            tag = f"{part}:{member_tag(found)}:{found.messages if raw else ''}"
            return cached_json(request, tag, lambda: builder(found),
                               found.changed_at or found.added_at)
        return handler

    async def add_printer(request: Request) -> Response:
        token = bearer_token(gateway, request)
        if token is None:
            return error(401, "unauthorized", "adding printers needs an API token (Authorization: Bearer ...)")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "bad_request", "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        from bambulab.farm.config import parse_config

        try:
            if body.get("source") == "cloud":
                serial = str(body.get("serial", "")).strip().upper()
                if not serial:
                    return error(400, "bad_request", "serial is required")
                cfg = PrinterConfig(serial=serial, name=str(body.get("name") or serial), source="cloud",
                                    cloud=str(body.get("cloud") or ""))
            else:
                allowed = {"serial", "name", "host", "access_code", "access_code_env", "port", "model", "profile",
                           "ca_file", "insecure", "ftps_port", "camera_port", "watchdog"}
                cfg = parse_config({"printers": [{k: v for k, v in body.items() if k in allowed}]}).printers[0]
                unknown = set(body) - allowed - {"source"}
                if unknown:
                    return error(400, "bad_request", f"unknown field(s): {', '.join(sorted(unknown))}")
            if fleet.get(cfg.serial) is not None:
                return error(409, "exists", f"printer {cfg.serial} is already in the gateway")
            member = await gateway.add_printer(cfg)
        except (ConfigError, BambuError) as exc:
            text = str(exc).replace(str(body.get("access_code", "\0")), "***")
            return error(400, "bad_request", text)
        log.warning("admin: %s added printer %s (%s)", token.label, member.serial, member.source)
        return json_response(member.summary(), 201)

    async def remove_printer(request: Request) -> Response:
        token = bearer_token(gateway, request)
        if token is None:
            return error(401, "unauthorized", "removing printers needs an API token (Authorization: Bearer ...)")
        serial = request.path_params["serial"]
        if not await gateway.remove_printer(serial):
            return error(404, "unknown_printer", f"no printer with serial {serial.strip().upper()!r} in this gateway")
        log.warning("admin: %s removed printer %s", token.label, serial.strip().upper())
        return json_response({"removed": serial.strip().upper()})

    async def openapi(request: Request) -> Response:
        from bambulab.servers.gateway.openapi import openapi_spec

        return json_response(openapi_spec(gateway.version))

    return [
        Route("/api/v1/gateway", info, methods=["GET"]),
        Route("/api/v1/printers", printers, methods=["GET"]),
        Route("/api/v1/printers", add_printer, methods=["POST"]),
        Route("/api/v1/printers/{serial}", one(full_json, "full", raw=True), methods=["GET"]),
        Route("/api/v1/printers/{serial}", remove_printer, methods=["DELETE"]),
        Route("/api/v1/printers/{serial}/ams", one(ams_json, "ams"), methods=["GET"]),
        Route("/api/v1/printers/{serial}/hms", one(hms_json, "hms"), methods=["GET"]),
        Route("/api/v1/printers/{serial}/job", one(job_json, "job"), methods=["GET"]),
        Route("/api/v1/printers/{serial}/firmware", one(firmware_json, "firmware"), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
