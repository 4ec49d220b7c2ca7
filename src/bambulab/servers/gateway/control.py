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
    ControlError,
    NotConnectedError,
    SignatureRequiredError,
)
from bambulab.protocol import commands as cmd
from bambulab.servers.gateway._http import bearer_token, error, json_response

if TYPE_CHECKING:
    from bambulab.farm.fleet import Member
    from bambulab.servers.gateway import Gateway

__all__ = ["ACTIONS", "ControlError", "routes", "run_control"]

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


def _failure(exc: BambuError) -> ControlError:
    if isinstance(exc, SignatureRequiredError):
        return ControlError(403, "signature_required", f"{exc} {SignatureRequiredError.ADVICE}".strip(), exc.code)
    if isinstance(exc, CommandFailedError):
        if exc.code == _BUSY or "busy" in (exc.reason or "").lower():
            return ControlError(409, "busy", str(exc), exc.code)
        return ControlError(502, "command_failed", str(exc), exc.code)
    if isinstance(exc, BambuTimeoutError):
        return ControlError(504, "timeout", str(exc))
    if isinstance(exc, NotConnectedError):
        return ControlError(503, "not_connected", str(exc))
    return ControlError(502, "printer_error", str(exc))


async def run_control(gateway: Gateway, serial: str, action: str, body: dict[str, Any], *, who: str) -> dict[str, Any]:
    """Run one control action (what the HTTP route does once the caller is authenticated).

    Checks that control is enabled, finds the printer, runs the command, logs it (``who``, action,
    printer, result) and keeps it in ``gateway.control_log``. Raises :class:`ControlError`.
    The MQTT publisher's Home Assistant buttons call this with ``who="mqtt:<gateway id>"``.
    """
    serial = serial.strip().upper()
    if not gateway.control_enabled:
        raise ControlError(403, "control_disabled",
                           "control is disabled; set [gateway] control = true and configure [[tokens]]")
    member = gateway.fleet.get(serial)
    if member is None:
        raise ControlError(404, "unknown_printer", f"no printer with serial {serial!r} in this gateway")
    if action not in ACTIONS:
        raise ControlError(404, "unknown_action", f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    started = time.monotonic()
    result = "ok"
    try:
        reply = await _run(member, action, body)
    except _BadRequest as exc:
        result = "bad_request"
        raise ControlError(400, "bad_request", str(exc)) from None
    except ControlError as exc:
        result = exc.code
        raise
    except BambuError as exc:
        failure = _failure(exc)
        result = failure.code
        raise failure from None
    finally:
        entry = {"t": time.time(), "who": who, "action": action, "printer": serial, "result": result,
                 "ms": round((time.monotonic() - started) * 1000, 1)}
        gateway.control_log.append(entry)
        log.warning("control: %s %s %s -> %s (%.0f ms)", who, action, serial, result, entry["ms"])
    section: Any = next(iter(reply.values()), {}) if reply else {}
    ack = section.get("result") if isinstance(section, dict) else None
    return {"ok": True, "action": action, "serial": serial, "ack": ack}


def routes(gateway: Gateway) -> list[BaseRoute]:
    async def control(request: Request) -> Response:
        action = request.path_params["action"]
        serial = request.path_params["serial"]
        if not gateway.control_enabled:
            return error(403, "control_disabled",
                         "control is disabled; set [gateway] control = true and configure [[tokens]]")
        token = bearer_token(gateway, request)
        if token is None:
            return error(401, "unauthorized", "control needs a valid API token (Authorization: Bearer ...)")
        try:
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error(400, "bad_request", "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be a JSON object")
        try:
            return json_response(await run_control(gateway, serial, action, body, who=token.label))
        except ControlError as exc:
            return error(exc.status, exc.code, exc.message, exc.printer_code)

    return [Route("/api/v1/printers/{serial}/control/{action}", control, methods=["POST"])]
