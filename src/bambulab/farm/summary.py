"""Pure JSON summaries of one printer (the shape of ``/api/v1/printers``, SSE deltas, the dashboard).

:func:`build_summary` turns a :class:`~bambulab.protocol.views.PrinterStatus` into the contract's
summary dict (see docs/gateway-api.md). Everything here is pure: no clock, no I/O;
the connection facts (``online``, ``last_seen``, ``age_seconds``) are added by the caller at the
moment it serves the summary, so a cached summary is never served as fresh.

Unknown values are ``None``, never made-up zeros.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

from bambulab.protocol.commands import PrinterErrorCode
from bambulab.protocol.hms import HmsMessage
from bambulab.protocol.models import CameraKind, PrinterModel
from bambulab.protocol.views import PrinterStatus, Tray

__all__ = [
    "CANCELLED_ERROR",
    "LIVE_KEYS",
    "SUMMARY_KEYS",
    "SummaryCache",
    "build_summary",
    "diff_summary",
    "hms_json",
    "iso_time",
    "job_ended",
    "render_summary",
    "summary_fragments",
    "tray_json",
]

#: The keys a summary always has, in order (the contract's shape).
SUMMARY_KEYS: Final = (
    "serial", "name", "model", "source", "online", "last_seen", "age_seconds",
    "state", "stage", "stage_name", "progress", "remaining_minutes", "finish_at",
    "layer", "total_layers", "file", "plate", "speed_level", "temperatures", "fans",
    "ams", "hms", "print_error", "ended", "firmware", "camera",
)
#: ``print_error`` after a stop (on the printer's screen or by a command): "the print was cancelled".
CANCELLED_ERROR: Final = int(PrinterErrorCode.TASK_CANCELLED)
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


_JOB_KEYS: Final = ("gcode_state", "stg_cur", "mc_percent", "percent", "layer_num", "total_layer_num", "3D",
                    "mc_remaining_time", "remain_time", "gcode_file", "file", "subtask_name", "param", "spd_lvl")
_TEMP_KEYS: Final = ("nozzle_temper", "nozzle_target_temper", "bed_temper", "bed_target_temper", "chamber_temper",
                     "ctt", "device", "nozzle_diameter", "nozzle_type")
_FAN_KEYS: Final = ("cooling_fan_speed", "big_fan1_speed", "big_fan2_speed")
_AMS_KEYS: Final = ("ams", "vt_tray", "vir_slot")


def _job_part(status: PrinterStatus) -> dict[str, Any]:
    job = status.job
    remaining = job.remaining
    return {
        "state": job.state.value if job.state_raw is not None else None,
        "stage": job.stage_id,
        "stage_name": job.stage.capitalize() if job.stage else None,
        "progress": job.progress,
        "remaining_minutes": int(remaining.total_seconds() // 60) if remaining is not None else None,
        "layer": job.layer,
        "total_layers": job.total_layers,
        "file": job.name or job.file,
        "plate": _plate(status.raw),
        "speed_level": status.speed.level,
    }


def _temperatures(status: PrinterStatus) -> dict[str, Any]:
    temps = status.temperatures
    return {
        "nozzle": temps.nozzle,
        "nozzle_target": temps.nozzle_target,
        "bed": temps.bed,
        "bed_target": temps.bed_target,
        "chamber": temps.chamber,
        "chamber_target": temps.chamber_target,
        # One entry per extruder (two on the H2D/H2C/X2D); nozzle/nozzle_target are the active one.
        "nozzles": [{"temp": n.current, "target": n.target} for n in temps.nozzles],
    }


def _fans(status: PrinterStatus) -> dict[str, Any]:
    fans = status.fans
    return {"part": fans.part_cooling, "aux": fans.aux, "chamber": fans.chamber}


def _ams(status: PrinterStatus) -> dict[str, Any]:
    spools = status.external_spools
    external = None
    if spools:
        spool = spools[0]
        external = {"material": None if spool.is_empty else spool.material,
                    "color": None if spool.is_empty else spool.color}
    return {
        "units": [
            {
                "id": unit.id,
                "humidity": unit.humidity_level,
                "temperature": unit.temperature,
                "trays": [tray_json(t) for t in unit.trays],
            }
            for unit in status.ams.units
        ],
        "external": external,
    }


def _print_error(status: PrinterStatus) -> dict[str, Any] | None:
    error = status.print_error
    return {"code": error.display, "text": error.text} if error is not None and error.value != 0 else None


def build_summary(
    status: PrinterStatus,
    *,
    serial: str,
    name: str,
    source: str,
    model: PrinterModel | None = None,
    finish_at: float | None = None,
    cancelled: bool = False,
) -> dict[str, Any]:
    """The summary of one printer, without the live keys (``online``, ``last_seen``, ``age_seconds``
    are ``None`` here). ``finish_at`` is the expected end (``time.time()`` seconds) the caller
    derived from ``remaining_minutes`` and its clock; ``cancelled`` whether the caller saw this
    FAILED state begin as a cancellation (see :func:`job_ended`)."""
    return SummaryCache().build(status, serial=serial, name=name, source=source, model=model, finish_at=finish_at,
                                cancelled=cancelled)


def job_ended(status: PrinterStatus, cancelled: bool) -> str | None:
    """How the job the printer still shows ended: ``finished``, ``cancelled``, ``failed``, or None.

    A printer reports a cancelled print as ``FAILED`` too; only ``print_error`` 0x0300400C tells
    them apart, and the printer clears it a few seconds later while staying ``FAILED`` until the
    next job. So the caller remembers (``cancelled``) whether it saw that code during this FAILED
    state; the code itself, while it lasts, counts as well.
    """
    state = status.job.state_raw
    if state == "FINISH":
        return "finished"
    if state != "FAILED":
        return None
    error = status.print_error
    return "cancelled" if cancelled or (error is not None and error.value == CANCELLED_ERROR) else "failed"


class SummaryCache:
    """Builds one printer's summaries, re-decoding only the sections whose wire fields changed.

    A farm printer sends a report or more per second, and most of them move a temperature or the
    progress and nothing else. Each section of the summary depends on a known set of raw
    ``print`` fields; when those are equal to last time (``merge`` keeps unchanged sub-objects,
    so the comparison is mostly identity), the previous section is reused. Still pure: the
    result equals :func:`build_summary` of the same status.
    """

    __slots__ = ("_fingerprints", "_info", "_model", "_parts")

    def __init__(self) -> None:
        self._fingerprints: dict[str, tuple[Any, ...]] = {}
        self._parts: dict[str, Any] = {}
        self._info: object = None
        self._model: object = None

    def _part(self, key: str, raw: Mapping[str, Any], fields: tuple[str, ...], make: Any, status: PrinterStatus) -> Any:
        fingerprint = tuple([raw.get(f) for f in fields])
        if self._fingerprints.get(key) == fingerprint and key in self._parts:
            return self._parts[key]
        part = make(status)
        self._fingerprints[key] = fingerprint
        self._parts[key] = part
        return part

    def build(
        self,
        status: PrinterStatus,
        *,
        serial: str,
        name: str,
        source: str,
        model: PrinterModel | None = None,
        finish_at: float | None = None,
        info: object = None,
        cancelled: bool = False,
    ) -> dict[str, Any]:
        """The summary (see :func:`build_summary`). ``info`` is the state's ``info`` object (the
        get_version reply): when it or the model changes, every section is decoded again."""
        model = model or status.model
        if info is not self._info or model is not self._model:  # another model: every section may differ
            self._fingerprints.clear()
            self._parts.clear()
            self._info, self._model = info, model
        raw = status.raw
        job = self._part("job", raw, _JOB_KEYS, _job_part, status)
        if "firmware" not in self._parts:
            self._parts["firmware"] = status.firmware
        return {
            "serial": serial,
            "name": name,
            "model": model.name if model is not None else None,
            "source": source,
            "online": None,
            "last_seen": None,
            "age_seconds": None,
            "state": job["state"],
            "stage": job["stage"],
            "stage_name": job["stage_name"],
            "progress": job["progress"],
            "remaining_minutes": job["remaining_minutes"],
            "finish_at": iso_time(finish_at),
            "layer": job["layer"],
            "total_layers": job["total_layers"],
            "file": job["file"],
            "plate": job["plate"],
            "speed_level": job["speed_level"],
            "temperatures": self._part("temperatures", raw, _TEMP_KEYS, _temperatures, status),
            "fans": self._part("fans", raw, _FAN_KEYS, _fans, status),
            "ams": self._part("ams", raw, _AMS_KEYS, _ams, status),
            "hms": self._part("hms", raw, ("hms",), lambda st: [hms_json(m) for m in st.hms], status),
            "print_error": self._part("print_error", raw, ("print_error",), _print_error, status),
            "ended": job_ended(status, cancelled),
            "firmware": self._parts["firmware"],
            "camera": _camera(model),
        }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def summary_fragments(summary: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A summary's JSON around its live keys: ``head + live + tail`` is the whole object.

    Serving 1,000 summaries as JSON many times a second is the gateway's biggest cost after the
    reports themselves; the fragments are encoded once per state change and the live keys
    (``online``, ``last_seen``, ``age_seconds``) are spliced in when the summary is served.
    """
    head = _dumps({k: summary[k] for k in SUMMARY_KEYS[:4]})[:-1] + ","
    tail = "," + _dumps({k: summary[k] for k in SUMMARY_KEYS[7:]})[1:]
    return head.encode(), tail.encode()


def render_summary(fragments: tuple[bytes, bytes], online: bool, last_seen: float | None,
                   age_seconds: float | None) -> bytes:
    """The JSON of a summary from :func:`summary_fragments` and its live values."""
    seen = _dumps(iso_time(last_seen))
    age = "null" if age_seconds is None else repr(age_seconds)
    live = f'"online":{"true" if online else "false"},"last_seen":{seen},"age_seconds":{age}'
    return fragments[0] + live.encode() + fragments[1]


def diff_summary(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys whose value differs (live keys excluded): the ``changes`` of a delta."""
    if old is None:
        return {k: v for k, v in new.items() if k not in LIVE_KEYS}
    return {k: v for k, v in new.items() if k not in LIVE_KEYS and old.get(k) != v}
