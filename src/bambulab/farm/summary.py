"""Pure JSON summaries of one printer (the shape of ``/api/v1/printers``, SSE deltas, the dashboard).

:func:`build_summary` turns a :class:`~bambulab.protocol.views.PrinterStatus` into the contract's
summary dict (see CONTRACT.md / docs/gateway-api.md). Everything here is pure: no clock, no I/O;
the connection facts (``online``, ``last_seen``, ``age_seconds``) are added by the caller at the
moment it serves the summary, so a cached summary is never served as fresh.

Unknown values are ``None``, never made-up zeros.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from bambulab.protocol.hms import HmsMessage
from bambulab.protocol.models import CameraKind, PrinterModel
from bambulab.protocol.views import PrinterStatus, Tray

__all__ = [
    "LIVE_KEYS",
    "SUMMARY_KEYS",
    "build_summary",
    "diff_summary",
    "hms_json",
    "iso_time",
    "tray_json",
]

#: The keys a summary always has, in order (the contract's shape).
SUMMARY_KEYS: Final = (
    "serial", "name", "model", "source", "online", "last_seen", "age_seconds",
    "state", "stage", "stage_name", "progress", "remaining_minutes", "finish_at",
    "layer", "total_layers", "file", "plate", "speed_level", "temperatures", "fans",
    "ams", "hms", "print_error", "firmware", "camera",
)
#: Keys that describe the connection rather than the state; filled in when a summary is served.
LIVE_KEYS: Final = frozenset({"online", "last_seen", "age_seconds"})


def iso_time(t: float | None) -> str | None:
    """``time.time()`` seconds as ``2026-12-02T02:15:39Z`` (UTC, whole seconds)."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def tray_json(tray: Tray) -> dict[str, Any]:
    return {
        "id": tray.slot if tray.slot is not None else tray.tray_index,
        "material": None if tray.is_empty else tray.material,
        "color": None if tray.is_empty else tray.color,
        "remaining": None if tray.is_empty or tray.remaining is None or tray.remaining < 0 else tray.remaining,
    }


def hms_json(message: HmsMessage) -> dict[str, Any]:
    code = message.key[4:] if message.key.startswith("HMS_") else message.key
    return {"code": code, "severity": message.severity.value, "text": message.text, "url": message.wiki_url}


def _plate(raw: Mapping[str, Any]) -> int | None:
    """The plate number from ``gcode_file`` / ``param`` ("Metadata/plate_2.gcode")."""
    for key in ("param", "gcode_file"):
        value = raw.get(key)
        if isinstance(value, str) and "plate_" in value:
            digits = value.rsplit("plate_", 1)[1].split(".", 1)[0]
            if digits.isdigit():
                return int(digits)
    return None


def _camera(model: PrinterModel | None) -> str | None:
    if model is None or model.camera is CameraKind.NONE:
        return None
    return model.camera.value


def build_summary(
    status: PrinterStatus,
    *,
    serial: str,
    name: str,
    source: str,
    model: PrinterModel | None = None,
    finish_at: float | None = None,
) -> dict[str, Any]:
    """The summary of one printer, without the live keys (``online``, ``last_seen``, ``age_seconds``
    are ``None`` here). ``finish_at`` is the expected end (``time.time()`` seconds) the caller
    derived from ``remaining_minutes`` and its clock."""
    model = model or status.model
    job = status.job
    temps = status.temperatures
    fans = status.fans
    ams = status.ams
    spools = status.external_spools
    external = None
    if spools:
        spool = spools[0]
        external = {"material": None if spool.is_empty else spool.material,
                    "color": None if spool.is_empty else spool.color}
    error = status.print_error
    remaining = job.remaining
    return {
        "serial": serial,
        "name": name,
        "model": model.name if model is not None else None,
        "source": source,
        "online": None,
        "last_seen": None,
        "age_seconds": None,
        "state": job.state.value if job.state_raw is not None else None,
        "stage": job.stage_id,
        "stage_name": job.stage.capitalize() if job.stage else None,
        "progress": job.progress,
        "remaining_minutes": int(remaining.total_seconds() // 60) if remaining is not None else None,
        "finish_at": iso_time(finish_at),
        "layer": job.layer,
        "total_layers": job.total_layers,
        "file": job.name or job.file,
        "plate": _plate(status.raw),
        "speed_level": status.speed.level,
        "temperatures": {
            "nozzle": temps.nozzle,
            "nozzle_target": temps.nozzle_target,
            "bed": temps.bed,
            "bed_target": temps.bed_target,
            "chamber": temps.chamber,
            "chamber_target": temps.chamber_target,
        },
        "fans": {"part": fans.part_cooling, "aux": fans.aux, "chamber": fans.chamber},
        "ams": {
            "units": [
                {
                    "id": unit.id,
                    "humidity": unit.humidity_level,
                    "temperature": unit.temperature,
                    "trays": [tray_json(t) for t in unit.trays],
                }
                for unit in ams.units
            ],
            "external": external,
        },
        "hms": [hms_json(m) for m in status.hms],
        "print_error": (
            {"code": error.display, "text": error.text} if error is not None and error.value != 0 else None
        ),
        "firmware": status.firmware,
        "camera": _camera(model),
    }


def diff_summary(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys whose value differs (live keys excluded): the ``changes`` of a delta."""
    if old is None:
        return {k: v for k, v in new.items() if k not in LIVE_KEYS}
    return {k: v for k, v in new.items() if k not in LIVE_KEYS and old.get(k) != v}
