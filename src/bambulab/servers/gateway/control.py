"""Control: ``POST /api/v1/printers/{serial}/control/{action}`` with ``Authorization: Bearer``.

Refused with 403 unless ``[gateway] control = true`` and tokens are configured, and with 401
without a valid token. Actions: ``pause``, ``resume``, ``stop``, ``light`` (``{"on": bool}``),
``speed`` (``{"level": 1-4}``), ``print`` (``{"file": "name.gcode.3mf", "plate": 1}``: a file
already on the printer's storage) and ``clear_hms``. Every call is logged (token label, action,
printer, result) on the ``bambulab.gateway.control`` logger and kept in ``gateway.control_log``;
never a token or an access code. Printer errors come back as ``{"error", "message",
"printer_code"}``: ``busy`` (409), ``signature_required`` (with the Developer Mode advice),
``command_failed``, ``timeout`` (504), ``not_connected`` (503).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bambulab.exceptions import (
    BambuError,
    BambuTimeoutError,
    CommandFailedError,
    NotConnectedError,
    SignatureRequiredError,
)
from bambulab.protocol import commands as cmd
from bambulab.servers.gateway._http import bearer_token, error, json_response, member_or_404

if TYPE_CHECKING:
    from bambulab.farm.fleet import Member
    from bambulab.servers.gateway import Gateway

__all__ = ["ACTIONS", "routes"]

log = logging.getLogger("bambulab.gateway.control")

ACTIONS = ("pause", "resume", "stop", "light", "speed", "print", "clear_hms")
_BUSY = 0x0500_4004  # the printer's "busy with another job" print_error / err_code


class _BadRequest(Exception):
    pass


async def _run(member: Member, action: str, body: dict[str, Any]) -> dict[str, Any]:
    printer = member.printer
    if action == "pause":
        return await printer.pause()
    if action == "resume":
        return await printer.resume()
    if action == "stop":
        return await printer.stop()
    if action == "light":
        on = body.get("on")
        if not isinstance(on, bool):
            raise _BadRequest('light needs {"on": true|false}')
        return await printer.set_light(on)
    if action == "speed":
        level = body.get("level")
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 4:
            raise _BadRequest('speed needs {"level": 1-4} (1 silent, 2 standard, 3 sport, 4 ludicrous)')
        return await printer.set_speed(level)
    if action == "print":
        name = body.get("file")
        plate = body.get("plate", 1)
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            raise _BadRequest('print needs {"file": "name.gcode.3mf"} (a file already on the printer)')
        if isinstance(plate, bool) or not isinstance(plate, int) or plate < 1:
            raise _BadRequest("plate must be a whole number >= 1")
        job = printer.status.job
        if job.is_active:
            what = job.name or job.file or "a job"
            raise CommandFailedError(f"the printer is busy ({job.state.value}: {what}); stop it first",
                                     command="project_file", reason="printer is busy", code=_BUSY)
        use_ams = body.get("use_ams")
        mapping = body.get("ams_mapping")
        try:
            request = cmd.project_file(
                printer.sequence, name.strip(), model=printer.model, plate=plate,
                use_ams=use_ams if isinstance(use_ams, bool) else None,
                ams_mapping=mapping if isinstance(mapping, list) else None,
            )
        except (ValueError, TypeError) as exc:
            raise _BadRequest(str(exc)) from None
        return await printer.command(request)
    if action == "clear_hms":
        return await printer.clean_print_error()
    raise _BadRequest(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


def _failure(exc: BaseException) -> Response:
    if isinstance(exc, SignatureRequiredError):
        return error(403, "signature_required", f"{exc} {SignatureRequiredError.ADVICE}".strip(), exc.code)
    if isinstance(exc, CommandFailedError):
        if exc.code == _BUSY or "busy" in (exc.reason or "").lower():
            return error(409, "busy", str(exc), exc.code)
        return error(502, "command_failed", str(exc), exc.code)
    if isinstance(exc, BambuTimeoutError):
        return error(504, "timeout", str(exc))
    if isinstance(exc, NotConnectedError):
        return error(503, "not_connected", str(exc))
    return error(502, "printer_error", str(exc))


def routes(gateway: Gateway) -> list[BaseRoute]:
    async def control(request: Request) -> Response:
        action = request.path_params["action"]
        serial = request.path_params["serial"].strip().upper()
        if not gateway.control_enabled:
            return error(403, "control_disabled",
                         "control is disabled; set [gateway] control = true and configure [[tokens]]")
        token = bearer_token(gateway, request)
        if token is None:
            return error(401, "unauthorized", "control needs a valid API token (Authorization: Bearer ...)")
        found = member_or_404(gateway, serial)
        if isinstance(found, Response):
            return found
        if action not in ACTIONS:
            return error(404, "unknown_action", f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        try:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error(400, "bad_request", "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        started = time.monotonic()
        response: Response
        try:
            reply = await _run(found, action, body)
            result = "ok"
            response = json_response({"ok": True, "action": action, "serial": serial,
                                      "result": reply.get(next(iter(reply), ""), {}) if reply else {}})
        except _BadRequest as exc:
            result = "bad_request"
            response = error(400, "bad_request", str(exc))
        except BambuError as exc:
            response = _failure(exc)
            result = json.loads(bytes(response.body))["error"]
        entry = {"t": time.time(), "who": token.label, "action": action, "printer": serial, "result": result,
                 "ms": round((time.monotonic() - started) * 1000, 1)}
        gateway.control_log.append(entry)
        log.warning("control: %s %s %s -> %s (%.0f ms)", token.label, action, serial, result, entry["ms"])
        return response

    return [Route("/api/v1/printers/{serial}/control/{action}", control, methods=["POST"])]
