"""The gateway's OpenAPI description (``GET /openapi.json``) and the Markdown reference made from it.

The description is written here by hand, next to the routes, so it says what the routes promise
(shapes, errors, caching) rather than what a framework can infer. ``docs/gateway-api.md`` is
generated from it (a test checks the checked-in file matches)::

    PYTHONPATH=src python3 -m bambulab.servers.gateway.openapi > docs/gateway-api.md
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["openapi_spec", "render_markdown"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error: a stable code, a human message, and the printer's own code when it sent one.",
        "required": ["error", "message", "printer_code"],
        "properties": {
            "error": {"type": "string", "examples": ["unknown_printer", "busy", "signature_required", "timeout"]},
            "message": {"type": "string"},
            "printer_code": _nullable("integer"),
        },
    },
    "Tray": {
        "type": "object",
        "properties": {"id": _nullable("integer"), "material": _nullable("string"),
                       "color": _nullable("string", description="#RRGGBB"),
                       "remaining": _nullable("integer", description="percent")},
    },
    "Hms": {
        "type": "object",
        "properties": {"code": {"type": "string", "examples": ["0300_0100_0001_0001"]},
                       "severity": {"type": "string", "enum": ["fatal", "serious", "common", "info", "unknown"]},
                       "text": _nullable("string", description="decoded English text"),
                       "url": {"type": "string", "description": "the Bambu wiki page"}},
    },
    "Summary": {
        "type": "object",
        "description": "One printer. Values are null when unknown, never made-up zeros. `online` is false when "
                       "the connection is down or nothing was heard for `stale_after` seconds; `last_seen` and "
                       "`age_seconds` say when the gateway last heard from the printer.",
        "properties": {
            "serial": {"type": "string"}, "name": {"type": "string"}, "model": _nullable("string"),
            "source": {"type": "string", "enum": ["lan", "cloud"]},
            "online": {"type": "boolean"}, "last_seen": _nullable("string", format="date-time"),
            "age_seconds": _nullable("number"),
            "state": _nullable("string", examples=["IDLE", "PREPARE", "RUNNING", "PAUSE", "FINISH", "FAILED"]),
            "stage": _nullable("integer"), "stage_name": _nullable("string"),
            "progress": _nullable("integer"), "remaining_minutes": _nullable("integer"),
            "finish_at": _nullable("string", format="date-time"),
            "layer": _nullable("integer"), "total_layers": _nullable("integer"),
            "file": _nullable("string"), "plate": _nullable("integer"), "speed_level": _nullable("integer"),
            "temperatures": {"type": "object", "properties": {
                **{k: _nullable("number") for k in
                   ("nozzle", "nozzle_target", "bed", "bed_target", "chamber", "chamber_target")},
                "nozzles": {"type": "array", "description": "one per extruder: {temp, target}",
                            "items": {"type": "object", "properties": {"temp": _nullable("number"),
                                                                       "target": _nullable("number")}}}}},
            "fans": {"type": "object", "properties": {k: _nullable("integer") for k in ("part", "aux", "chamber")}},
            "ams": {"type": "object", "properties": {
                "units": {"type": "array", "items": {"type": "object", "properties": {
                    "id": _nullable("integer"), "humidity": _nullable("integer"),
                    "temperature": _nullable("number"), "trays": {"type": "array", "items": _ref("Tray")}}}},
                "external": {"type": ["object", "null"]}}},
            "hms": {"type": "array", "items": _ref("Hms")},
            "print_error": {"type": ["object", "null"], "properties": {"code": {"type": "string"},
                                                                     "text": _nullable("string")}},
            "ended": _nullable("string", enum=["finished", "cancelled", "failed", None],
                               description="how the job the printer still shows ended (a cancelled print "
                                           "is FAILED on the printer; this tells them apart)"),
            "firmware": _nullable("string"), "camera": _nullable("string", enum=["jpeg", "rtsp", None]),
        },
    },
    "Connection": {
        "type": "object",
        "properties": {"online": {"type": "boolean"}, "last_seen": _nullable("string", format="date-time"),
                       "reconnects": {"type": "integer"}, "messages": {"type": "integer"},
                       "error": _nullable("string"), "revision": {"type": "integer"}},
    },
    "LegacyPrint": {
        "type": "object",
        "description": "A real report's print section, as the printer sent it (merged), plus online/last_seen.",
        "properties": {"print": {"type": "object"}, "online": {"type": "boolean"},
                       "last_seen": _nullable("string", format="date-time")},
    },
}


def _ok(description: str, schema: dict[str, Any] | None = None, *, etag: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {_JSON: {"schema": schema}}
    if etag:
        response["headers"] = {"ETag": {"schema": {"type": "string"}},
                               "Last-Modified": {"schema": {"type": "string"}}}
    return response


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


_SERIAL = {"name": "serial", "in": "path", "required": True, "schema": {"type": "string"}}
_DEVICE = {"name": "device_id", "in": "query", "required": False, "schema": {"type": "string"},
           "description": "the printer's serial (optional when the gateway serves one printer)"}
_NOT_MODIFIED = {"description": "Not modified (the `If-None-Match` ETag is current)"}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _get(tag: str, summary: str, ok: dict[str, Any], *, params: list[Any] | None = None,
         etag: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    if etag:
        responses["304"] = _NOT_MODIFIED
    if params and params[0] is _SERIAL:
        responses["404"] = _err("No printer with this serial")
    responses.update(extra or {})
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return {"get": op}


def _paths() -> dict[str, Any]:
    printer_part = {"type": "object", "allOf": [_ref("Connection")]}
    paths: dict[str, Any] = {
        "/api/v1/gateway": _get("read", "The gateway itself", _ok("Version, control, printer count", {
            "type": "object", "properties": {"version": {"type": "string"}, "control_enabled": {"type": "boolean"},
                                             "printers": {"type": "integer"}, "history": {"type": "boolean"}}})),
        "/api/v1/printers": {
            **_get("read", "Every printer's summary",
                   _ok("The printers", {"type": "object", "properties": {
                       "printers": {"type": "array", "items": _ref("Summary")}}}, etag=True), etag=True),
            "post": {"tags": ["admin"], "summary": "Add a printer at runtime (token required)", "security": _AUTH,
                     "requestBody": {"content": {_JSON: {"schema": {"type": "object", "properties": {
                         "serial": {"type": "string"}, "host": {"type": "string"}, "name": {"type": "string"},
                         "access_code": {"type": "string", "writeOnly": True},
                         "access_code_env": {"type": "string"}, "profile": {"type": "string"},
                         "port": {"type": "integer"}, "model": {"type": "string"},
                         "source": {"type": "string", "enum": ["lan", "cloud"]}, "cloud": {"type": "string"}}}}}},
                     "responses": {"201": _ok("Added (connecting)", _ref("Summary")), "400": _err("Bad request"),
                                   "401": _err("No valid token"), "409": _err("Already in the gateway")}},
        },
        "/api/v1/printers/{serial}": {
            **_get("read", "One printer: summary, connection and the merged raw state (`state_raw`)",
                   _ok("The printer", {"allOf": [_ref("Summary"), _ref("Connection"), {
                       "type": "object", "properties": {"state_raw": {"type": "object"}}}]}, etag=True),
                   params=[_SERIAL], etag=True),
            "delete": {"tags": ["admin"], "summary": "Remove a printer (token required); the others are untouched",
                       "security": _AUTH, "parameters": [_SERIAL],
                       "responses": {"200": _ok("Removed"), "401": _err("No valid token"),
                                     "404": _err("No printer with this serial")}},
        },
        "/api/v1/printers/{serial}/ams": _get("read", "AMS units, trays and external spools",
                                              _ok("AMS", printer_part, etag=True), params=[_SERIAL], etag=True),
        "/api/v1/printers/{serial}/hms": _get("read", "Current HMS alerts with decoded text, and the print error",
                                              _ok("HMS", printer_part, etag=True), params=[_SERIAL], etag=True),
        "/api/v1/printers/{serial}/job": _get("read", "The current (or last) job",
                                              _ok("Job", printer_part, etag=True), params=[_SERIAL], etag=True),
        "/api/v1/printers/{serial}/firmware": _get("read", "Firmware and module versions",
                                                   _ok("Firmware", printer_part, etag=True), params=[_SERIAL],
                                                   etag=True),
        "/api/v1/events": _get("live", "Server-Sent Events: a snapshot, then one event per change", {
            "description": "`text/event-stream`. First `event: snapshot` with `{\"printers\": [Summary]}` (again "
                           "after `Last-Event-ID` and after a resync), then `id: <seq>` events: `delta` "
                           "`{serial, changes, revision, last_seen}`, `online`, `offline`, `added`, `removed`, "
                           "`printer_event` `{serial, type, ...}`. A slow client is resynced with a snapshot. The same "
                           "stream is served over a WebSocket at `/api/v1/ws` (JSON messages `{event, id, data}`).",
            "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            params=[{"name": "printer", "in": "query", "required": False, "description": "repeat to filter",
                     "schema": {"type": "array", "items": {"type": "string"}}, "explode": True}],
            extra={"404": _err("None of the given printers is in the gateway"),
                   "503": _err("Too many event-stream clients")}),
        "/api/v1/printers/{serial}/control/{action}": {"post": {
            "tags": ["control"], "summary": "Control a printer (enabled in the config, token required)",
            "security": _AUTH,
            "parameters": [_SERIAL, {"name": "action", "in": "path", "required": True, "schema": {
                "type": "string", "enum": ["pause", "resume", "stop", "light", "speed", "print", "clear_hms"]}}],
            "requestBody": {"required": False, "content": {_JSON: {"schema": {"type": "object", "description":
                            'light: {"on": bool}; speed: {"level": 1-4}; print: {"file": str, "plate": int}'}}}},
            "responses": {"200": _ok("Acknowledged by the printer"), "400": _err("Bad request"),
                          "401": _err("No valid token"), "403": _err("Control disabled, or signature required "
                                                                     "(with the Developer Mode advice)"),
                          "404": _err("Unknown printer or action"), "409": _err("The printer is busy"),
                          "502": _err("The printer refused the command"),
                          "503": _err("The printer is not connected"), "504": _err("No acknowledgement in time")}}},
        "/": _get("legacy", "Index (browsers get the dashboard)", _ok("Name, version, endpoints")),
        "/health": _get("legacy", "Health: ok when every printer is online, else degraded", _ok("Health")),
        "/api/version": _get("legacy", "Version", _ok("Version")),
        "/api/v1/devices": _get("legacy", "Devices in the cloud's bind-list shape (without access codes)",
                                _ok("Devices")),
        "/api/v1/status": _get("legacy", "One printer's print section plus device_id and name",
                               _ok("Status", _ref("LegacyPrint"), etag=True), params=[_DEVICE], etag=True,
                               extra={"400": _err("device_id missing"), "404": _err("Unknown device_id")}),
        "/api/v1/print": _get("legacy", "`{\"print\": {...}}` as a real report (Home Assistant REST sensors)",
                              _ok("Print section", _ref("LegacyPrint"), etag=True), params=[_DEVICE], etag=True,
                              extra={"400": _err("device_id missing"), "404": _err("Unknown device_id")}),
        "/openapi.json": _get("meta", "This description", _ok("OpenAPI 3.1")),
    }
    return paths


def module_paths(modules: list[str] | None = None) -> dict[str, Any]:
    """Paths described by the other route modules (their ``openapi_paths()``), in route order."""
    import importlib

    from bambulab.servers.gateway.app import ROUTE_MODULES

    out: dict[str, Any] = {}
    for name in modules if modules is not None else ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        describe = getattr(module, "openapi_paths", None)
        if describe is not None:
            for path, item in describe().items():
                out.setdefault(path, {}).update(item)
    return out


def openapi_spec(version: str = "0", extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description; ``extra_paths`` defaults to :func:`module_paths`."""
    paths = _paths()
    for path, item in (module_paths() if extra_paths is None else extra_paths).items():
        paths.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bambulab gateway", "version": version,
                 "description": "One connection per printer, served to everyone else. Read routes need no token; "
                                "admin and control routes need `Authorization: Bearer <token>`."},
        "paths": paths,
        "components": {"schemas": _SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _schema_text(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[1]}`"
    if "allOf" in schema:
        return " + ".join(_schema_text(s) or "object" for s in schema["allOf"])
    return "object"


def render_markdown(spec: dict[str, Any]) -> str:
    """The API reference page (docs/gateway-api.md), generated from :func:`openapi_spec`."""
    lines = [
        "# Gateway API reference",
        "",
        "<!-- Generated by `python3 -m bambulab.servers.gateway.openapi`; do not edit by hand. -->",
        "",
        spec["info"]["description"],
        "",
        "The same description is served as OpenAPI 3.1 at `GET /openapi.json`.",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((path, method, op))
    titles = {"read": "Read", "live": "Live updates", "admin": "Adding and removing printers",
              "control": "Control", "legacy": "Legacy routes (the older compatibility server)", "meta": "Meta"}
    known = ["read", "live", "admin", "control", "legacy", "meta"]
    for tag in [*known, *sorted(t for t in by_tag if t not in known)]:
        if tag not in by_tag:
            continue
        lines += [f"## {titles.get(tag, tag.capitalize())}", ""]
        for path, method, op in by_tag[tag]:
            summary = op.get("summary", "")
            lines += [f"### `{method.upper()} {path}`", "", summary + ("" if summary.endswith(".") else "."), ""]
            if op.get("security"):
                lines += ["Needs `Authorization: Bearer <token>`.", ""]
            for param in op.get("parameters", []):
                desc = f": {param['description']}" if param.get("description") else ""
                lines.append(f"- `{param['name']}` ({param['in']}){desc}")
            if op.get("parameters"):
                lines.append("")
            lines += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in op["responses"].items():
                content: dict[str, Any] = response.get("content", {})
                first: dict[str, Any] = next(iter(content.values()), {})
                schema = first.get("schema")
                lines.append(f"| {status} | {response.get('description', '')} | {_schema_text(schema)} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in spec["components"]["schemas"].items():
        lines += [f"### `{name}`", ""]
        if schema.get("description"):
            lines += [schema["description"], ""]
        lines += ["```json", json.dumps(schema.get("properties", {}), indent=1, sort_keys=False)[:4000], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    from bambulab._version import __version__

    sys.stdout.write(render_markdown(openapi_spec(__version__)))
