"""Render a virtual printer's state into the exact MQTT payloads each real model sends.

Everything here is a pure function of its arguments: no I/O, no clock, no randomness (except
:func:`default_dynamic`, which takes its ``random.Random`` from the caller). The engine diffs
successive :func:`build_report` results to produce P1/A1-style deltas, so the same
:class:`~bambulab.sim.state.Dynamic` must always give an equal dictionary.

Three report shapes exist on the wire (PROTOCOL.md §2):

* **legacy** (P1P, P1S, A1, A1 mini, and A2L as a guess): flat fields, temperatures as
  multiples of 1/32 °C, integer targets, ``chamber_temper`` placeholder 5, trays without a
  ``state`` key, external spool id ``"254"``, no ``device`` object.
* **X1** (current X1/X1C/X1E firmware): the flat fields *plus* the newer ones (``device``,
  ``job``, ``care``, ``cfg``/``aux``/``stat``/``fun`` hex strings, ``vir_slot``, ``info``,
  ``t_utc``), whole-number float temperatures, no ``chamber_temper`` (the chamber reading lives in
  ``device.ctc`` and ``info.temp``), trays with ``state`` 11, external spool id ``"255"``.
* **H2-class** (H2D, H2D Pro, H2S, H2C; P2S and X2D are modelled the same way): the X1 shape
  without ``info``/``t_utc`` but with ``chamber_temper``, ``ctt``, ``2D``/``3D``, ``maintain``,
  ``device.airduct``, ``device.cham_temp``, and one ``device.extruder.info`` entry per nozzle.

The values in the templates are this project's own (serials, ids, colours, capability bits);
only the key names and value types follow real captures.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct
import zlib
from typing import Any

from bambulab.protocol.models import AmsKind, PrinterFamily, PrinterModel
from bambulab.sim.state import AmsUnit, Dynamic, Heater, HmsEntry, Job, Tray

__all__ = [
    "DEFAULT_FIRMWARE",
    "FUN_SIGNING_BIT",
    "HOME_FLAG_DOOR_OPEN",
    "SPEED_MAGNITUDE",
    "STAT_DOOR_OPEN",
    "ams_exist_bits",
    "build_report",
    "default_dynamic",
    "encode_slot",
    "fan_string",
    "firmware_tuple",
    "ip_to_int",
    "model_lights",
    "pack_temperature",
    "quantise_temperature",
    "report_style",
    "signed32",
    "tray_bits",
    "uses_product_name",
    "version_modules",
    "version_reply_has_result",
]

#: ``spd_mag`` (speed percent) for each ``spd_lvl``: silent, standard, sport, ludicrous.
SPEED_MAGNITUDE: dict[int, int] = {1: 50, 2: 100, 3: 124, 4: 166}
#: ``fun`` bit set when the printer requires signed MQTT commands (Developer Mode off).
FUN_SIGNING_BIT = 1 << 29
#: ``home_flag`` bit for "door open" (X1 family).
HOME_FLAG_DOOR_OPEN = 1 << 23
#: ``stat`` bit for "door open" (newer-protocol printers).
STAT_DOOR_OPEN = 1 << 23

#: Firmware a freshly made virtual printer runs, by model code. Chosen so that every model
#: answers ``get_version`` in the newer ``product_name`` style.
DEFAULT_FIRMWARE: dict[str, str] = {
    "BL-P001": "01.09.00.01",  # X1 Carbon
    "BL-P002": "01.09.00.01",  # X1
    "C13": "01.02.00.00",  # X1E
    "C11": "01.09.00.00",  # P1P
    "C12": "01.09.00.00",  # P1S
    "N1": "01.07.00.00",  # A1 mini
    "N2S": "01.07.00.00",  # A1
    "N7": "01.01.00.00",  # P2S
    "O1D": "01.03.00.00",  # H2D
    "O1E": "01.01.00.00",  # H2D Pro
    "O1S": "01.01.00.00",  # H2S
    "O1C2": "01.00.00.00",  # H2C
    "N6": "01.00.00.00",  # X2D
    "N9": "01.00.00.00",  # A2L
}

#: First firmware whose get_version names the product (``product_name`` on the ``ota``
#: module) instead of only ``project_name``. Captures: P1P 01.07 old style, 01.08.02 new style;
#: A1 01.05 old style, 01.07 new style; X1C 01.09 new style. Models not listed always use the
#: new style (they shipped after the change). The exact switch-over versions are guesses.
_PRODUCT_NAME_SINCE: dict[PrinterFamily, tuple[int, ...]] = {
    PrinterFamily.P1: (1, 8, 0, 0),
    PrinterFamily.A1: (1, 6, 0, 0),
    PrinterFamily.X1: (1, 9, 0, 0),
}
#: Per-model overrides of the above (the X1E numbers its firmware on its own scale).
_PRODUCT_NAME_SINCE_BY_CODE: dict[str, tuple[int, ...]] = {"C13": (1, 2, 0, 0)}


# ----------------------------------------------------------------------------- small helpers


def fan_string(value: int) -> str:
    """A 0-255 fan PWM value as the report's ``"0"``-``"15"`` string."""
    clamped = min(max(int(value), 0), 255)
    return str(round(clamped / 255 * 15))


def quantise_temperature(temp: float) -> float:
    """P1/A1 report temperatures in steps of 1/32 °C."""
    return round(float(temp) * 32) / 32


def _whole(temp: float) -> float:
    """X1/H2 report whole degrees, sent as floats."""
    return float(round(float(temp)))


def pack_temperature(current: float, target: float) -> int:
    """The ``device`` object's packed temperature: low 16 bits current, high 16 bits target."""
    cur = min(max(round(float(current)), 0), 0xFFFF)
    tar = min(max(round(float(target)), 0), 0xFFFF)
    return (tar << 16) | cur


def ip_to_int(ip: str) -> int:
    """An IPv4 address as the report's little-endian packed int (0 if it is not IPv4)."""
    try:
        packed = ipaddress.IPv4Address(ip.strip()).packed
    except (ipaddress.AddressValueError, ValueError):
        return 0
    return int.from_bytes(packed, "little")


def signed32(value: int) -> int:
    """Reinterpret the low 32 bits of ``value`` as a signed 32-bit int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def firmware_tuple(version: str) -> tuple[int, ...]:
    """``"01.08.02.00"`` -> ``(1, 8, 2, 0)``; unparsable parts count as 0."""
    parts: list[int] = []
    for piece in version.strip().split("."):
        try:
            parts.append(int(piece))
        except ValueError:
            parts.append(0)
    return tuple(parts)


def _float32(value: float) -> float:
    """``value`` rounded through a 32-bit float, as the printer's own floats are (0.02 -> 0.0199999...)."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _crc(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _pseudo_serial(serial: str, name: str) -> str:
    """A stable 15-character serial for a sub-module (mainboard, toolhead, ...)."""
    return hashlib.sha256(f"{serial}/{name}".encode()).hexdigest()[:15].upper()


def report_style(model: PrinterModel) -> str:
    """``"legacy"`` (P1/A1/A2), ``"x1"`` or ``"h2"`` (H2, P2S, X2D)."""
    if model.family in (PrinterFamily.P1, PrinterFamily.A1, PrinterFamily.A2):
        return "legacy"
    if model.family is PrinterFamily.X1:
        return "x1"
    return "h2"


def model_lights(model: PrinterModel) -> tuple[str, ...]:
    """The ``lights_report`` nodes a model has."""
    if report_style(model) == "legacy":
        return ("chamber_light",)
    if model.family is PrinterFamily.H2 and model.extruders >= 2:
        return ("chamber_light", "work_light", "chamber_light2")
    return ("chamber_light", "work_light")


def encode_slot(tray: int) -> int:
    """A legacy tray number (``tray_now``) as the ``device.extruder.info[].snow`` encoding.

    Bits 0-7 are the slot and bits 8-15 the AMS id; 0xFFFF means none and AMS id 255 the
    external spools (slot 0 for 254, 1 for 255).
    """
    if tray == 255 or tray < 0:
        return 0xFFFF
    if tray == 254:
        return 0xFF00
    if tray >= 128:  # AMS HT: one slot per unit
        return (tray & 0xFF) << 8
    return ((tray // 4) << 8) | (tray % 4)


# ----------------------------------------------------------------------------- AMS bits


def _unit_bit(unit: AmsUnit) -> int:
    return 4 + (unit.unit_id - 128) if unit.unit_id >= 128 else unit.unit_id


def _tray_bit(unit: AmsUnit, tray: Tray) -> int:
    if unit.unit_id >= 128:
        return 16 + (unit.unit_id - 128)
    return unit.unit_id * 4 + tray.slot


def ams_exist_bits(units: list[AmsUnit]) -> str:
    """``ams_exist_bits``: bit n for AMS n, bit 4+k for AMS HT 128+k, lower-case hex."""
    bits = 0
    for unit in units:
        bits |= 1 << _unit_bit(unit)
    return format(bits, "x")


def tray_bits(units: list[AmsUnit], *, bbl_only: bool = False) -> str:
    """``tray_exist_bits`` (or ``tray_is_bbl_bits`` with ``bbl_only``), lower-case hex."""
    bits = 0
    for unit in units:
        for tray in unit.trays:
            if tray.loaded and (tray.is_bbl or not bbl_only):
                bits |= 1 << _tray_bit(unit, tray)
    return format(bits, "x")


_AMS_TYPE_CODE: dict[AmsKind, int] = {
    AmsKind.AMS: 1,
    AmsKind.AMS_LITE: 2,
    AmsKind.AMS_2_PRO: 3,
    AmsKind.AMS_HT: 4,
}


def _unit_info(unit: AmsUnit) -> str:
    """The unit ``info`` hex: bits 0-3 type, 8-11 attached extruder, bit 12/13 generation."""
    code = _AMS_TYPE_CODE.get(unit.kind, 1)
    generation = 0x1000 if unit.kind in (AmsKind.AMS, AmsKind.AMS_LITE) else 0x2000
    return format(generation | ((unit.extruder & 0xF) << 8) | code, "X")


# ----------------------------------------------------------------------------- trays

#: Drying temperature (°C) and time (h) per material, for ``drying_temp``/``drying_time``.
_DRYING: dict[str, tuple[int, int]] = {
    "PLA": (55, 8),
    "PLA-S": (55, 8),
    "PLA-CF": (55, 8),
    "PETG": (65, 8),
    "PETG-CF": (65, 8),
    "ABS": (80, 8),
    "ASA": (80, 8),
    "TPU": (70, 8),
    "PA": (80, 12),
    "PA-CF": (80, 12),
    "PAHT-CF": (80, 12),
    "PC": (80, 8),
    "PVA": (55, 8),
}

_TRAY_K = _float32(0.02)


def _colour_letter(color: str) -> str:
    try:
        r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return "K"
    hi, lo = max(r, g, b), min(r, g, b)
    if hi < 60:
        return "K"
    if lo > 200:
        return "W"
    if hi - lo < 40:
        return "D"
    if r > 150 and g > 150 and b < 120:
        return "Y"
    return "RGB"[(r, g, b).index(hi)]


def _tray_id_name(tray: Tray) -> str:
    if not tray.is_bbl or len(tray.info_idx) < 3:
        return ""
    return f"{tray.info_idx[2:]}-{_colour_letter(tray.color)}0"


def _xcam_info(tray: Tray) -> str:
    if not tray.is_bbl:
        return "0" * 24
    return hashlib.sha256(f"xcam/{tray.tray_uuid}".encode()).hexdigest()[:24].upper()


def _drying(tray: Tray) -> tuple[int, int]:
    return _DRYING.get(tray.material.upper(), (55, 8))


def _legacy_tray(tray: Tray, wire_id: str, *, external: bool = False) -> dict[str, Any]:
    """A P1/A1 tray (no ``state`` key); non-RFID spools report zero weight and diameter."""
    if not tray.loaded and not external:
        return {"id": wire_id}
    loaded = tray.loaded
    bbl = loaded and tray.is_bbl
    dry_temp, dry_time = _drying(tray) if bbl else (0, 0)
    out: dict[str, Any] = {
        "id": wire_id,
        "remain": tray.remain if loaded else 0,
        "k": _TRAY_K,
        "n": 1,
        "cali_idx": -1,
        "tag_uid": tray.tag_uid if bbl else "0" * 16,
        "tray_id_name": _tray_id_name(tray) if bbl else "",
        "tray_info_idx": tray.info_idx if loaded else "",
        "tray_type": tray.material if loaded else "",
        "tray_sub_brands": tray.sub_brand if bbl else "",
        "tray_color": tray.color if loaded else "00000000",
        "tray_weight": str(tray.weight) if bbl else "0",
        "tray_diameter": f"{tray.diameter:.2f}" if bbl else "0.00",
        "tray_temp": str(dry_temp),
        "tray_time": str(dry_time),
        "bed_temp_type": "1" if bbl and tray.bed_temp else "0",
        "bed_temp": str(tray.bed_temp) if bbl else "0",
        "nozzle_temp_max": str(tray.nozzle_temp_max) if loaded else "0",
        "nozzle_temp_min": str(tray.nozzle_temp_min) if loaded else "0",
        "xcam_info": _xcam_info(tray) if bbl else "0" * 24,
        "tray_uuid": tray.tray_uuid if bbl else "0" * 32,
    }
    if external:
        # vt_tray: the same fields in a different order, without ctype/cols
        for key in ("remain", "k", "n", "cali_idx"):
            out[key] = out.pop(key)
    else:
        out["ctype"] = 0
        out["cols"] = [tray.color]
    return out


def _new_tray(tray: Tray, wire_id: str, *, external: bool = False) -> dict[str, Any]:
    """An X1/H2 tray: loaded trays carry ``state`` 11, empty AMS slots are ``{id, state: 0}``."""
    if not tray.loaded and not external:
        return {"id": wire_id, "state": 0}
    loaded = tray.loaded
    dry_temp, dry_time = _drying(tray) if loaded else (0, 0)
    out: dict[str, Any] = {
        "bed_temp": str(tray.bed_temp) if loaded else "0",
        "bed_temp_type": "1" if loaded and tray.bed_temp else "0",
        "cali_idx": -1,
        "cols": [tray.color if loaded else "00000000"],
        "ctype": 0,
        "drying_temp": str(dry_temp),
        "drying_time": str(dry_time),
        "id": wire_id,
        "nozzle_temp_max": str(tray.nozzle_temp_max) if loaded else "0",
        "nozzle_temp_min": str(tray.nozzle_temp_min) if loaded else "0",
        "remain": tray.remain if loaded else 0,
    }
    if not external:
        out["state"] = 11
    out.update(
        {
            "tag_uid": tray.tag_uid if loaded and tray.is_bbl else "0" * 16,
            "total_len": 330000,
            "tray_color": tray.color if loaded else "00000000",
            "tray_diameter": f"{tray.diameter:.2f}",
            "tray_id_name": _tray_id_name(tray) if loaded else "",
            "tray_info_idx": tray.info_idx if loaded else "",
            "tray_sub_brands": tray.sub_brand if loaded else "",
            "tray_type": tray.material if loaded else "",
            "tray_uuid": tray.tray_uuid if loaded and tray.is_bbl else "0" * 32,
            "tray_weight": str(tray.weight) if loaded else "0",
            "xcam_info": _xcam_info(tray) if loaded else "0" * 24,
        }
    )
    return out


def _external_trays(model: PrinterModel, dyn: Dynamic) -> list[tuple[str, Tray]]:
    """The external spools with their wire ids, sorted by id."""
    trays = dyn.external or [Tray(slot=int(model.external_spool_id), loaded=False)]
    if len(trays) == 1:
        return [(model.external_spool_id, trays[0])]
    return sorted(((str(t.slot), t) for t in trays), key=lambda item: item[0])


def _vt_tray(model: PrinterModel, dyn: Dynamic, legacy: bool) -> dict[str, Any]:
    externals = _external_trays(model, dyn)
    wire_id, tray = next(((i, t) for i, t in externals if i == model.external_spool_id), externals[-1])
    if legacy:
        return _legacy_tray(tray, wire_id, external=True)
    return _new_tray(tray, wire_id, external=True)


# ----------------------------------------------------------------------------- AMS object


def _ams_object(model: PrinterModel, dyn: Dynamic, legacy: bool) -> dict[str, Any]:
    units = sorted(dyn.ams, key=lambda u: u.unit_id)
    rendered: list[dict[str, Any]] = []
    for unit in units:
        trays = sorted(unit.trays, key=lambda t: t.slot)
        temp = "0.0" if unit.kind is AmsKind.AMS_LITE else f"{unit.temp:.1f}"
        if legacy:
            rendered.append(
                {
                    "id": str(unit.unit_id),
                    "humidity": str(unit.humidity_level),
                    "temp": temp,
                    "tray": [_legacy_tray(t, str(t.slot)) for t in trays],
                }
            )
        else:
            rendered.append(
                {
                    "dry_time": unit.dry_minutes,
                    "humidity": str(unit.humidity_level),
                    "humidity_raw": str(unit.humidity_raw),
                    "id": str(unit.unit_id),
                    "info": _unit_info(unit),
                    "temp": temp,
                    "tray": [_new_tray(t, str(t.slot)) for t in trays],
                }
            )
    exist = ams_exist_bits(units)
    present = tray_bits(units)
    version = (_crc("ams", exist, present) % 30000) + 1 if units else 1
    out: dict[str, Any] = {
        "ams": rendered,
        "ams_exist_bits": exist,
        "tray_exist_bits": present,
        "tray_is_bbl_bits": tray_bits(units, bbl_only=True),
        "tray_tar": str(dyn.tray_tar),
        "tray_now": str(dyn.tray_now),
        "tray_pre": str(dyn.tray_pre),
        "tray_read_done_bits": present,
        "tray_reading_bits": "0",
        "version": version,
        "insert_flag": True,
        "power_on_flag": False,
    }
    if not legacy:
        out["ams_exist_bits_raw"] = exist
        out["cali_id"] = 0
        out["cali_stat"] = 0
        out["unbind_ams_stat"] = 0
    return out


# ----------------------------------------------------------------------------- flags and ids

_HOME_FLAG_BASE: dict[str, int] = {
    # bit meanings in PROTOCOL.md §2.4; bits 30/31 make X1/H2 values negative as on real printers
    "legacy_p1": sum(1 << b for b in (4, 10, 14, 16, 21, 22, 24, 27)),
    "legacy_a1": sum(1 << b for b in (3, 4, 7, 10, 14, 16, 17, 18, 19, 20, 21, 22, 24, 25, 28, 29)),
    "x1": sum(1 << b for b in (4, 7, 10, 11, 14, 15, 16, 18, 21, 22, 30, 31)),
    "h2": sum(1 << b for b in (3, 4, 7, 10, 11, 12, 14, 15, 16, 17, 18, 21, 22, 30, 31)),
}

# Our own capability words; bit 29 of ``fun`` is left clear here and set from the state.
_FUN_BASE: dict[str, int] = {"legacy": 0x0C18DFF9CFF, "x1": 0x1183D0F9CFB, "h2": 0x18FDF9CFF}
_CFG: dict[str, int] = {"x1": 0xFA2D9, "h2": 0x3C1FDAD9}
_AUX: dict[str, int] = {"x1": 0x2A0100C, "h2": 0x2001004}
_STAT_BASE: dict[str, int] = {"x1": 0x4258000, "h2": 0x1638218170}


def _home_flag(model: PrinterModel, dyn: Dynamic) -> int:
    key = report_style(model)
    if key == "legacy":
        key = "legacy_p1" if model.family is PrinterFamily.P1 else "legacy_a1"
    value = _HOME_FLAG_BASE[key]
    if dyn.homed:
        value |= 0b111
    if dyn.sdcard:
        value |= 1 << 8  # SD state 1 = normal
    if model.family is PrinterFamily.X1 and dyn.door_open:
        value |= HOME_FLAG_DOOR_OPEN
    return signed32(value)


def _fun(model: PrinterModel, dyn: Dynamic) -> str:
    value = _FUN_BASE[report_style(model)] & ~FUN_SIGNING_BIT
    if dyn.signing_required:
        value |= FUN_SIGNING_BIT
    return format(value, "X")


def _stat(model: PrinterModel, dyn: Dynamic) -> str:
    value = _STAT_BASE[report_style(model)] & ~STAT_DOOR_OPEN
    if dyn.door_open:
        value |= STAT_DOOR_OPEN
    return format(value, "X")


def _printing(job: Job) -> bool:
    return job.gcode_state in ("RUNNING", "PAUSE")


_STATE_CODE: dict[str, int] = {
    "INIT": 0,
    "IDLE": 1,
    "PREPARE": 2,
    "SLICING": 3,
    "RUNNING": 4,
    "PAUSE": 5,
    "FINISH": 6,
    "FAILED": 7,
}


def _nozzle(dyn: Dynamic, index: int) -> Heater:
    return dyn.nozzles[index] if 0 <= index < len(dyn.nozzles) else Heater()


def _active_nozzle(dyn: Dynamic) -> Heater:
    return _nozzle(dyn, dyn.active_extruder)


def _hms(entries: list[HmsEntry]) -> list[dict[str, int]]:
    return [{"attr": e.attr, "code": e.code} for e in entries]


def _fan_gear(dyn: Dynamic) -> int:
    def byte(v: int) -> int:
        return min(max(int(v), 0), 255)

    return byte(dyn.fan_part) | (byte(dyn.fan_aux) << 8) | (byte(dyn.fan_chamber) << 16)


def _lights(model: PrinterModel, dyn: Dynamic) -> list[dict[str, str]]:
    return [{"node": node, "mode": dyn.lights.get(node, "off")} for node in model_lights(model)]


def _online_version(model: PrinterModel, dyn: Dynamic) -> int:
    ams_ids = ",".join(str(u.unit_id) for u in sorted(dyn.ams, key=lambda u: u.unit_id))
    crc = _crc(model.code, dyn.firmware, ams_ids)
    if report_style(model) == "legacy":
        return crc & 0x7FFFFFFF
    return crc % 40 + 1


def _mc_print_stage(job: Job) -> str:
    return "2" if _printing(job) else "1"


def _line_number(job: Job) -> str:
    return str(int(job.elapsed_s * 5)) if _printing(job) else "0"


def _nozzle_diameter(dyn: Dynamic) -> str:
    return f"{dyn.nozzle_diameter:g}"


def _tray_mapping(dyn: Dynamic) -> list[int]:
    if dyn.job.gcode_state == "IDLE" or dyn.tray_now == 255:
        return []
    return [encode_slot(dyn.tray_now)]


# ----------------------------------------------------------------------------- legacy report


def _legacy_report(model: PrinterModel, dyn: Dynamic, serial: str) -> dict[str, Any]:
    job = dyn.job
    nozzle = _active_nozzle(dyn)
    stage = 255 if job.stage < 0 else job.stage
    report: dict[str, Any] = {
        "upgrade_state": {
            "sequence_id": 0,
            "progress": "",
            "status": "IDLE",
            "consistency_request": False,
            "dis_state": 0,
            "err_code": 0,
            "force_upgrade": False,
            "message": "0%, 0B/s",
            "module": "",
            "new_version_state": 2,
            "cur_state_code": 0,
            "idx2": _crc("idx2", serial),
            "new_ver_list": [],
        },
        "ipcam": {
            "ipcam_dev": "1",
            "ipcam_record": "enable" if dyn.ipcam_record else "disable",
            "timelapse": "enable" if dyn.timelapse else "disable",
            "resolution": "" if model.family is PrinterFamily.P1 else "1080p",
            "tutk_server": "disable",
            "mode_bits": 3,
        },
    }
    if model.family is not PrinterFamily.P1:
        report["xcam"] = {"buildplate_marker_detector": bool(dyn.xcam.get("buildplate_marker_detector", True))}
    report.update(
        {
            "upload": {"status": "idle", "progress": 0, "message": ""},
            "net": {"conf": 0, "info": [{"ip": ip_to_int(dyn.ip), "mask": 0x00FFFFFF}]},
            "nozzle_temper": quantise_temperature(nozzle.temp),
            "nozzle_target_temper": round(nozzle.target),
            "bed_temper": quantise_temperature(dyn.bed.temp),
            "bed_target_temper": round(dyn.bed.target),
            "chamber_temper": 5,  # P1/A1 have no chamber sensor: a constant placeholder
            "mc_print_stage": _mc_print_stage(job),
            "heatbreak_fan_speed": fan_string(dyn.fan_heatbreak),
            "cooling_fan_speed": fan_string(dyn.fan_part),
            "big_fan1_speed": fan_string(dyn.fan_aux),
            "big_fan2_speed": fan_string(dyn.fan_chamber),
            "mc_percent": job.percent,
            "mc_remaining_time": job.remaining_minutes,
            "ams_status": dyn.ams_status,
            "ams_rfid_status": 0,
            "hw_switch_state": 1 if dyn.filament_present else 0,
            "spd_mag": SPEED_MAGNITUDE.get(dyn.speed_level, 100),
            "spd_lvl": dyn.speed_level,
            "print_error": job.print_error,
            "lifecycle": "product",
            "wifi_signal": f"{dyn.wifi_dbm}dBm",
            "gcode_state": job.gcode_state,
            "gcode_file_prepare_percent": str(job.prepare_percent),
            "queue_number": 0,
            "queue_total": 0,
            "queue_est": 0,
            "queue_sts": 0,
            "project_id": job.project_id,
            "profile_id": job.profile_id,
            "task_id": job.task_id,
            "subtask_id": job.subtask_id,
            "subtask_name": job.subtask_name,
            "gcode_file": job.gcode_file,
            "stg": list(job.stages),
            "stg_cur": stage,
            "print_type": job.print_type,
            "home_flag": _home_flag(model, dyn),
            "mc_print_line_number": _line_number(job),
            "mc_print_sub_stage": 0,
            "sdcard": dyn.sdcard,
            "force_upgrade": False,
            "mess_production_state": "active",
            "layer_num": job.layer,
            "total_layer_num": job.total_layers,
            "s_obj": list(job.skipped_objects),
            "filam_bak": [],
            "fan_gear": _fan_gear(dyn),
            "nozzle_diameter": _nozzle_diameter(dyn),
            "nozzle_type": dyn.nozzle_type,
            "cali_version": 0,
            "k": "0.0200",
            "flag3": 15 if model.family is PrinterFamily.P1 else 31,
            "hms": _hms(dyn.hms),
            "online": {"ahb": False, "rfid": False, "version": _online_version(model, dyn)},
            "ams": _ams_object(model, dyn, legacy=True),
            "vt_tray": _vt_tray(model, dyn, legacy=True),
            "lights_report": _lights(model, dyn),
        }
    )
    if model.family is PrinterFamily.A2:
        # A2L is newer than the A1 and adds the newer job fields (shape partly guessed)
        report.update(
            {
                "job_id": job.task_id if job.print_type == "cloud" else "0",
                "design_id": "",
                "model_id": "",
                "plate_idx": job.plate_index,
                "plate_id": job.plate_index,
                "plate_cnt": 1 if job.plate_index else 0,
                "job_attr": 0,
            }
        )
    if dyn.signing_required:
        # P1/A1 captures in Developer Mode carry no ``fun``; when signing is required we send
        # it so clients can see bit 29 (the only way they can tell).
        report["fun"] = _fun(model, dyn)
    return report


# ----------------------------------------------------------------------------- X1 / H2 report


def _ipcam_new(dyn: Dynamic) -> dict[str, Any]:
    if dyn.lan_liveview:
        host = dyn.ip if dyn.rtsp_port == 322 else f"{dyn.ip}:{dyn.rtsp_port}"
        rtsp_url = f"rtsps://{host}/streaming/live/1"
    else:
        rtsp_url = "disable"
    return {
        "agora_service": "disable",
        "brtc_service": "enable",
        "bs_state": 0,
        "ipcam_dev": "1",
        "ipcam_record": "enable" if dyn.ipcam_record else "disable",
        "laser_preview_res": 5,
        "mode_bits": 2,
        "resolution": "1080p",
        "rtsp_url": rtsp_url,
        "timelapse": "enable" if dyn.timelapse else "disable",
        "tl_store_hpd_type": 2,
        "tl_store_path_type": 2,
        "tutk_server": "disable",
    }


_XCAM_KEYS = (
    ("allow_skip_parts", False),
    ("buildplate_marker_detector", True),
    ("first_layer_inspector", True),
    ("halt_print_sensitivity", "medium"),
    ("print_halt", True),
    ("printing_monitor", True),
    ("spaghetti_detector", True),
)


def _xcam_full(dyn: Dynamic) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, default in _XCAM_KEYS:
        value = dyn.xcam.get(key, default)
        out[key] = str(value) if isinstance(default, str) else bool(value)
    return out


def _heater_state(heater: Heater) -> int:
    if heater.target <= 0:
        return 0
    return 2 if abs(heater.temp - heater.target) <= 2 else 1


def _extruders(model: PrinterModel, dyn: Dynamic) -> int:
    return max(model.extruders, 1)


def _nozzle_code(model: PrinterModel) -> str:
    """``device.nozzle.info[].type``: the hotend kind (X1 hotend vs the newer standard one)."""
    return "HX01" if model.family is PrinterFamily.X1 else "HS01"


def _device(model: PrinterModel, dyn: Dynamic, style: str) -> dict[str, Any]:
    count = _extruders(model, dyn)
    active = min(max(dyn.active_extruder, 0), count - 1)
    bed_packed = pack_temperature(dyn.bed.temp, dyn.bed.target)
    extruders: list[dict[str, Any]] = []
    for index in range(count):
        heater = _nozzle(dyn, index)
        is_active = index == active
        now = encode_slot(dyn.tray_now) if is_active else 0xFFFF
        pre = encode_slot(dyn.tray_pre) if is_active else 0xFFFF
        tar = encode_slot(dyn.tray_tar) if is_active else 0xFFFF
        loaded = now != 0xFFFF and dyn.filament_present
        extruders.append(
            {
                "filam_bak": [],
                "hnow": index,
                "hpre": index,
                "htar": index,
                "id": index,
                "info": 0x4F if loaded else 0x08,
                "snow": now,
                "spre": pre,
                "star": tar,
                "stat": 0x30300 if is_active and _printing(dyn.job) else 0,
                "temp": pack_temperature(heater.temp, heater.target),
            }
        )
    device: dict[str, Any] = {}
    if style == "h2":
        device["airduct"] = _airduct(dyn)
    device.update(
        {
            "bed": {"info": {"temp": bed_packed}, "state": _heater_state(dyn.bed)},
            "bed_temp": bed_packed,
            "cam": {"laser": {"cond": 253, "state": 0}},
        }
    )
    if style == "h2":
        device["cham_temp"] = round(dyn.chamber.temp)
    chamber_target = dyn.chamber.target if model.chamber_heater else 0.0
    device.update(
        {
            "ctc": {
                "info": {"temp": pack_temperature(dyn.chamber.temp, chamber_target)},
                "state": _heater_state(Heater(dyn.chamber.temp, chamber_target)),
            },
            "ext_tool": {"calib": 0, "low_prec": False, "mount": 0, "th_temp": 0, "type": ""},
            "extruder": {"info": extruders, "state": count | (active << 4) | (active << 8)},
            "fan": _fan_gear(dyn),
            "laser": {"power": 0},
            "nozzle": {
                "exist": (1 << count) - 1,
                "info": [
                    {
                        "diameter": float(dyn.nozzle_diameter),
                        "id": index,
                        "tm": 0,
                        "type": _nozzle_code(model),
                        "wear": 0,
                    }
                    for index in range(count)
                ],
                "state": 0,
            },
            "plate": {"base": 1, "cali2d_id": "", "cur_id": "", "mat": 1, "tar_id": ""},
            "type": 1,
        }
    )
    return device


def _airduct(dyn: Dynamic) -> dict[str, Any]:
    """Air-duct modes and parts (H2 class). Part state = fan duty in percent."""

    def pct(v: int) -> int:
        return round(min(max(v, 0), 255) / 255 * 100)

    parts = [
        (16, 0, pct(dyn.fan_part)),
        (32, 1, pct(dyn.fan_aux)),
        (48, 2, pct(dyn.fan_chamber)),
        (96, 3, 0),
    ]
    return {
        "modeCur": 0,
        "modeList": [
            {"ctrl": [16, 32, 48], "modeId": 0, "off": [96]},
            {"ctrl": [16, 48], "modeId": 1, "off": [32]},
            {"ctrl": [48, 96], "modeId": 2, "off": []},
        ],
        "parts": [{"func": func, "id": pid, "range": 100 << 16, "state": state} for pid, func, state in parts],
    }


def _job_object(model: PrinterModel, dyn: Dynamic) -> dict[str, Any]:
    count = _extruders(model, dyn)
    job = dyn.job
    cur_state = {"PREPARE": 1, "RUNNING": 2, "PAUSE": 3}.get(job.gcode_state, 0)
    return {
        "cur_stage": {"idx": 0, "state": cur_state},
        "stage": [
            {
                "clock_in": False,
                "color": [""] * count,
                "diameter": [_float32(dyn.nozzle_diameter)] * count,
                "est_time": int(job.duration_s),
                "heigh": 0.0,
                "idx": 0,
                "platform": "",
                "print_then": False,
                "proc_list": [],
                "tool": [_nozzle_code(model)] * count,
                "type": 2,
            }
        ],
    }


def _two_d(dyn: Dynamic) -> dict[str, Any]:
    """The laser/cutter job object of the H2 class; idle values."""
    return {
        "bs": {
            "bi": [
                {
                    "clock_in": False,
                    "est_time": 0,
                    "idx": 0,
                    "print_then": False,
                    "proc_list": [],
                    "step_type": 1,
                    "tool_info": {
                        "color": "",
                        "diameter": _float32(dyn.nozzle_diameter),
                        "id": 0,
                    },
                    "type": 0,
                }
            ],
            "total_time": 0,
        },
        "cond": 0,
        "cur_stage": {"clock_in_time": 0, "idx": 0, "left_time": 0, "process": 0, "state": 0},
        "first_confirm": False,
        "makeable": False,
        "material": {"cur_id_list": [], "state": 0, "tar_id": "", "tar_name": ""},
    }


def _new_report(model: PrinterModel, dyn: Dynamic, serial: str) -> dict[str, Any]:
    style = report_style(model)
    job = dyn.job
    nozzle = _active_nozzle(dyn)
    printing = _printing(job)
    fail_reason = str(job.print_error) if job.gcode_state == "FAILED" and job.print_error else "0"
    chamber_target = dyn.chamber.target if model.chamber_heater else 0.0
    report: dict[str, Any] = {}
    if style == "h2":
        report["2D"] = _two_d(dyn)
        report["3D"] = {"layer_num": job.layer, "total_layer_num": job.total_layers}
    report.update(
        {
            "ams": _ams_object(model, dyn, legacy=False),
            "ams_rfid_status": 0,
            "ams_status": dyn.ams_status,
            "ap_err": 0,
            "aux": format(_AUX[style], "X"),
            "aux_part_fan": model.family is PrinterFamily.X1,
            "batch_id": 0,
            "bed_target_temper": _whole(dyn.bed.target),
            "bed_temper": _whole(dyn.bed.temp),
            "big_fan1_speed": fan_string(dyn.fan_aux),
            "big_fan2_speed": fan_string(dyn.fan_chamber),
            "cali_version": 0,
            "canvas_id": 0,
            "care": [{"id": "cr", "info": "1A2B3C"}, {"id": "ls", "info": "2F00"}],
            "cfg": format(_CFG[style], "X"),
        }
    )
    if style == "h2":
        report["chamber_temper"] = _whole(dyn.chamber.temp)
    report.update(
        {
            "cooling_fan_speed": fan_string(dyn.fan_part),
        }
    )
    if style == "h2":
        report["ctt"] = _whole(chamber_target)
    report.update(
        {
            "design_id": "",
            "device": _device(model, dyn, style),
            "err": "0",
            "fail_reason": fail_reason,
            "fan_gear": _fan_gear(dyn),
            "file": job.gcode_file,
            "force_upgrade": False,
            "fun": _fun(model, dyn),
            "gcode_file": job.gcode_file,
            "gcode_file_prepare_percent": str(job.prepare_percent),
            "gcode_state": job.gcode_state,
            "heatbreak_fan_speed": fan_string(dyn.fan_heatbreak),
            "hms": _hms(dyn.hms),
            "home_flag": _home_flag(model, dyn),
            "hw_switch_state": 1 if dyn.filament_present else 0,
        }
    )
    if style == "x1":
        report["info"] = {"temp": round(dyn.chamber.temp)}
    report.update(
        {
            "ipcam": _ipcam_new(dyn),
            "job": _job_object(model, dyn),
            "job_attr": 0,
            "job_id": job.task_id if job.print_type == "cloud" else "0",
            "layer_num": job.layer,
            "lights_report": [{"mode": light["mode"], "node": light["node"]} for light in _lights(model, dyn)],
        }
    )
    if style == "h2":
        report["maintain"] = 0
    report.update(
        {
            "mapping": _tray_mapping(dyn),
            "mc_action": 0 if printing else 255,
            "mc_err": 0,
            "mc_percent": job.percent,
            "mc_print_error_code": "0",
            "mc_print_stage": _mc_print_stage(job),
            "mc_print_sub_stage": 0,
            "mc_remaining_time": job.remaining_minutes,
            "mc_stage": 2 if printing else 1,
            "model_id": "",
            "net": {
                "conf": 16,
                "info": [{"ip": ip_to_int(dyn.ip), "mask": 0x00FFFFFF}, {"ip": 0, "mask": 0}],
            },
            "nozzle_diameter": _nozzle_diameter(dyn),
            "nozzle_target_temper": _whole(nozzle.target),
            "nozzle_temper": _whole(nozzle.temp),
            "nozzle_type": dyn.nozzle_type,
            "online": {
                "ahb": bool(dyn.ams),
                "ext": False,
                "version": _online_version(model, dyn),
            },
            "percent": job.percent,
            "plate_cnt": 1 if job.plate_index else 0,
            "plate_id": job.plate_index,
            "plate_idx": job.plate_index,
            "prepare_per": job.prepare_percent,
            "print_error": job.print_error,
            "print_gcode_action": 0 if printing else 255,
            "print_real_action": 0,
            "print_type": job.print_type,
            "profile_id": job.profile_id,
            "project_id": job.project_id,
            "queue": 0,
            "queue_est": 0,
            "queue_number": 0,
            "queue_sts": 0,
            "queue_total": 0,
            "remain_time": job.remaining_minutes,
            "s_obj": list(job.skipped_objects),
            "sdcard": dyn.sdcard,
            "spd_lvl": dyn.speed_level,
            "spd_mag": SPEED_MAGNITUDE.get(dyn.speed_level, 100),
            "stat": _stat(model, dyn),
            "state": _STATE_CODE.get(job.gcode_state, 1),
            "stg": list(job.stages),
            "stg_cur": job.stage,
            "subtask_id": job.subtask_id,
            "subtask_name": job.subtask_name,
        }
    )
    if style == "x1":
        report["t_utc"] = dyn.utc_ms
    report.update(
        {
            "task_id": job.task_id,
            "total_layer_num": job.total_layers,
            "upgrade_state": {
                "ahb_new_version_number": "",
                "ams_new_version_number": "",
                "consistency_request": False,
                "dis_state": 0,
                "err_code": 0,
                "ext_new_version_number": "",
                "force_upgrade": False,
                "idx": 1,
                "idx2": _crc("idx2", serial),
                "lower_limit": "00.00.00.00",
                "message": "",
                "module": "",
                "new_version_state": 2,
                "ota_new_version_number": "",
                "progress": "0",
                "sequence_id": 0,
                "sn": serial,
                "status": "IDLE",
            },
            "upload": {
                "file_size": 0,
                "finish_size": 0,
                "message": "Good",
                "oss_url": "",
                "progress": 0,
                "sequence_id": "0",
                "speed": 0,
                "status": "idle",
                "task_id": "",
                "time_remaining": 0,
                "trouble_id": "",
            },
            "ver": "20010" if style == "x1" else "20000",
            "vir_slot": [_new_tray(t, wire_id, external=True) for wire_id, t in _external_trays(model, dyn)],
            "vt_tray": _vt_tray(model, dyn, legacy=False),
            "wifi_signal": f"{dyn.wifi_dbm}dBm",
            "xcam": _xcam_full(dyn),
            "xcam_status": "0",
        }
    )
    return report


# ----------------------------------------------------------------------------- public API


def build_report(model: PrinterModel, dyn: Dynamic, *, serial: str) -> dict[str, Any]:
    """The full ``print`` object of ``push_status`` for ``model``, without the envelope keys.

    The engine adds ``command``, ``msg`` and ``sequence_id``. The result is a fresh dict of
    plain JSON types, equal for equal ``dyn``.
    """
    if report_style(model) == "legacy":
        return _legacy_report(model, dyn, serial)
    return _new_report(model, dyn, serial)


def version_reply_has_result(model: PrinterModel) -> bool:
    """P1/A1-class ``get_version`` replies carry ``result``/``reason``; X1/H2-class omit them."""
    return report_style(model) == "legacy"


def uses_product_name(model: PrinterModel, firmware: str) -> bool:
    """Whether firmware ``firmware`` of ``model`` answers get_version in the ``product_name`` style."""
    since = _PRODUCT_NAME_SINCE_BY_CODE.get(model.code, _PRODUCT_NAME_SINCE.get(model.family))
    return since is None or firmware_tuple(firmware) >= since


_AMS_MODULE: dict[AmsKind, tuple[str, str, str]] = {
    # module name prefix, hw_ver, product name
    AmsKind.AMS: ("ams", "AMS08", "AMS"),
    AmsKind.AMS_LITE: ("ams_f1", "AMS_F102", "AMS Lite"),
    AmsKind.AMS_2_PRO: ("n3f", "N3F05", "AMS 2 Pro"),
    AmsKind.AMS_HT: ("n3s", "N3S05", "AMS HT"),
}


def _module(
    name: str,
    sw_ver: str,
    hw_ver: str,
    sn: str,
    *,
    new_style: bool,
    product_name: str = "",
    visible: bool = False,
    flag: int = 0,
    project_name: str | None = None,
    loader_ver: str | None = "00.00.00.00",
    ota_ver: str | None = None,
) -> dict[str, Any]:
    if new_style:
        return {
            "name": name,
            "sw_ver": sw_ver,
            "hw_ver": hw_ver,
            "loader_ver": loader_ver or "00.00.00.00",
            "sn": sn,
            "product_name": product_name,
            "visible": visible,
            "flag": flag,
        }
    out: dict[str, Any] = {"name": name}
    if project_name is not None:
        out["project_name"] = project_name
    out["sw_ver"] = sw_ver
    if loader_ver is not None:
        out["loader_ver"] = loader_ver
    if ota_ver is not None:
        out["ota_ver"] = ota_ver
    out["hw_ver"] = hw_ver
    out["sn"] = sn
    out["flag"] = flag
    return out


def _ams_modules(dyn: Dynamic, serial: str, *, new_style: bool) -> list[dict[str, Any]]:
    modules: list[dict[str, Any]] = []
    for unit in sorted(dyn.ams, key=lambda u: u.unit_id):
        prefix, hw, product = _AMS_MODULE.get(unit.kind, _AMS_MODULE[AmsKind.AMS])
        number = unit.unit_id - 127 if unit.unit_id >= 128 else unit.unit_id + 1
        modules.append(
            _module(
                f"{prefix}/{unit.unit_id}",
                unit.firmware,
                hw,
                unit.sn or _pseudo_serial(serial, f"ams{unit.unit_id}"),
                new_style=new_style,
                product_name=f"{product} ({number})",
                visible=True,
                project_name="",
                ota_ver="00.00.00.00",
            )
        )
    return modules


def version_modules(model: PrinterModel, dyn: Dynamic, *, serial: str) -> list[dict[str, Any]]:
    """The ``module`` list of the ``get_version`` reply for ``model`` running ``dyn.firmware``.

    Newer firmware names the product on the ``ota`` module (``product_name``); older P1/A1
    firmware gives ``project_name`` (the model code) on every module and older X1 firmware gives
    neither, so clients fall back to the access-point module's ``hw_ver`` (AP04/AP05/AP02).
    """
    new_style = uses_product_name(model, dyn.firmware)
    fw = dyn.firmware
    ap_hw = model.ap_hw_ver or "AP05"

    def sub_sn(name: str) -> str:
        return _pseudo_serial(serial, name)

    style = report_style(model)
    modules: list[dict[str, Any]] = []
    if style == "legacy":
        board = "P1" if model.family is PrinterFamily.P1 else model.code
        is_p1 = model.family is PrinterFamily.P1
        modules.append(
            _module(
                "ota",
                fw,
                "OTA",
                serial,
                new_style=new_style,
                product_name=model.product_name,
                visible=True,
                flag=3,
                project_name=model.code,
                loader_ver=None,
            )
        )
        modules.append(
            _module(
                "esp32",
                "01.11.35.20" if is_p1 else "01.13.34.10",
                ap_hw,
                sub_sn("esp32"),
                new_style=new_style,
                project_name=model.code,
                loader_ver=None,
            )
        )
        modules.append(
            _module(
                "mc",
                "00.01.30.12" if is_p1 else "00.01.31.05",
                "MC07" if is_p1 else "MC02",
                sub_sn("mc"),
                new_style=new_style,
                project_name=board,
                loader_ver="00.00.00.23" if is_p1 else "00.00.00.32",
            )
        )
        modules.append(
            _module(
                "th",
                "00.00.09.96" if is_p1 else "00.00.07.70",
                "TH09" if is_p1 else "TH01",
                sub_sn("th"),
                new_style=new_style,
                project_name=board,
                loader_ver="00.00.00.14" if is_p1 else "00.00.00.26",
            )
        )
        modules.extend(_ams_modules(dyn, serial, new_style=new_style))
        return modules

    if style == "x1":
        ota_hw = "N/A" if new_style else "OTA"
        modules.append(
            _module(
                "ota", fw, ota_hw, serial, new_style=new_style, product_name=model.product_name, visible=True, flag=3
            )
        )
        modules.extend(_ams_modules(dyn, serial, new_style=new_style))
        if dyn.ams:
            modules.append(
                _module(
                    "ahb",
                    "00.00.00.45",
                    "AHB01",
                    sub_sn("ahb"),
                    new_style=new_style,
                    product_name="AMS Hub",
                    visible=True,
                )
            )
        modules.append(
            _module("mc", "00.00.33.10", "MC07", sub_sn("mc"), new_style=new_style, loader_ver="00.00.00.28")
        )
        modules.append(_module("mc-sub", "00.00.33.10", "N/A", sub_sn("mc-sub"), new_style=new_style))
        modules.append(
            _module("th", "00.00.07.15", "TH09", sub_sn("th"), new_style=new_style, loader_ver="00.00.00.14")
        )
        # The access-point module: "ap" on current firmware and on the X1E, "rv1126" on older X1.
        ap_name = "ap" if new_style or ap_hw == "AP02" else "rv1126"
        modules.append(
            _module(
                ap_name,
                "00.00.51.10",
                ap_hw,
                sub_sn("ap"),
                new_style=new_style,
                project_name="" if not new_style else None,
                loader_ver="00.00.01.10",
            )
        )
        return modules

    # H2 class (H2D, H2D Pro, H2S, H2C) and P2S / X2D: always the newer style
    modules.append(
        _module("ota", fw, "N/A", serial, new_style=True, product_name=model.product_name, visible=True, flag=3)
    )
    modules.extend(_ams_modules(dyn, serial, new_style=True))
    modules.append(_module("ahb", "00.00.09.80", "AHB02", sub_sn("ahb"), new_style=True, loader_ver="00.00.00.21"))
    modules.append(_module("mc", "02.02.57.00", "MC09", sub_sn("mc"), new_style=True, loader_ver="02.02.57.00"))
    modules.append(_module("mc-sub", "02.02.57.00", "N/A", sub_sn("mc-sub"), new_style=True, loader_ver="02.02.57.00"))
    modules.append(_module("th", "02.00.17.50", "TH08", sub_sn("th"), new_style=True, loader_ver="00.00.17.22"))
    if model.family is PrinterFamily.H2:
        modules.append(_module("ext", "00.00.08.20", "EXT07", sub_sn("ext"), new_style=True, loader_ver="00.00.01.00"))
        modules.append(_module("smc", "02.00.11.80", "SMC09", sub_sn("smc"), new_style=True, loader_ver="00.00.09.26"))
    modules.append(_module("ap", "00.00.50.10", ap_hw, sub_sn("ap"), new_style=True, loader_ver="00.00.01.11"))
    return modules


# ----------------------------------------------------------------------------- default state

# (material, sub brand, preset id, nozzle min, nozzle max, bed temperature)
_FILAMENTS: tuple[tuple[str, str, str, int, int, int], ...] = (
    ("PLA", "PLA Basic", "GFA00", 190, 230, 55),
    ("PLA", "PLA Matte", "GFA01", 190, 230, 55),
    ("PLA", "PLA Silk", "GFA05", 200, 230, 55),
    ("PETG", "PETG HF", "GFG02", 230, 260, 70),
    ("ABS", "ABS", "GFB00", 240, 270, 90),
    ("ASA", "ASA", "GFB01", 240, 270, 90),
    ("PLA-S", "Support for PLA", "GFS02", 190, 230, 55),
    ("PA-CF", "PAHT-CF", "GFN04", 260, 290, 80),
)
_LITE_FILAMENTS = _FILAMENTS[:4]  # the AMS Lite does PLA and PETG

_COLOURS: tuple[str, ...] = (
    "1C1C1EFF",
    "F5F3EEFF",
    "C8102EFF",
    "1F5FBFFF",
    "2E8B3AFF",
    "F2C230FF",
    "FF7A1AFF",
    "8A8D91FF",
    "6B3FA0FF",
    "E87BB0FF",
    "00A6A6FF",
    "8B5A2BFF",
)


def _random_tray(
    rng: random.Random, slot: int, choices: tuple[tuple[str, str, str, int, int, int], ...], *, bbl: bool
) -> Tray:
    material, sub_brand, idx, noz_min, noz_max, bed = rng.choice(choices)
    tray = Tray(
        slot=slot,
        loaded=True,
        material=material,
        sub_brand=sub_brand if bbl else "",
        info_idx=idx if bbl else "GFL99",
        color=rng.choice(_COLOURS),
        remain=rng.randint(15, 100) if bbl else -1,
        nozzle_temp_min=noz_min,
        nozzle_temp_max=noz_max,
        bed_temp=bed,
        weight=1000,
        diameter=1.75,
        is_bbl=bbl,
    )
    if bbl:
        tray.tag_uid = f"{rng.getrandbits(32):08X}00000100"
        tray.tray_uuid = f"{rng.getrandbits(128):032X}"
    return tray


def _default_units(model: PrinterModel, rng: random.Random) -> list[AmsUnit]:
    if model.ams is AmsKind.NONE or model.code == "C11":  # the P1P ships without an AMS
        return []
    count = 2 if model.family is PrinterFamily.H2 and model.extruders >= 2 else 1
    kind = model.ams
    units: list[AmsUnit] = []
    for unit_id in range(count):
        lite = kind is AmsKind.AMS_LITE
        choices = _LITE_FILAMENTS if lite else _FILAMENTS
        trays = [
            # Slot 1 of the first unit always holds PLA Basic (what most printers have loaded), so a
            # sliced PLA job can be auto-mapped on any default virtual printer; the rest is random.
            _random_tray(rng, slot, choices[:1] if unit_id == 0 and slot == 0 else choices, bbl=rng.random() < 0.8)
            for slot in range(4)
        ]
        level = rng.randint(3, 5)
        units.append(
            AmsUnit(
                unit_id=unit_id,
                kind=kind,
                humidity_level=level,
                humidity_raw=rng.randint(8, 30) if level >= 4 else rng.randint(30, 45),
                temp=0.0 if lite else round(rng.uniform(23.0, 29.0), 1),
                trays=trays,
                sn=f"{rng.getrandbits(60):015X}",
                firmware={
                    AmsKind.AMS: "00.01.06.70",
                    AmsKind.AMS_LITE: "00.00.07.95",
                    AmsKind.AMS_2_PRO: "02.00.19.50",
                    AmsKind.AMS_HT: "02.00.19.50",
                }.get(kind, "00.01.06.70"),
                # on two-extruder printers the first unit feeds the left nozzle (id 1)
                extruder=(1 - unit_id) if model.extruders >= 2 else 0,
            )
        )
    return units


def default_dynamic(model: PrinterModel, *, rng: random.Random) -> Dynamic:
    """A realistic idle printer of ``model``: room temperatures, loaded AMS trays, lights off-ish.

    Randomness comes only from ``rng``; equal seeds give equal states.
    """
    room = round(rng.uniform(21.0, 26.5), 2)
    extruders = max(model.extruders, 1)
    nozzles = [Heater(temp=round(room + rng.uniform(0.5, 2.5), 2)) for _ in range(extruders)]
    bed = Heater(temp=round(room + rng.uniform(-0.5, 1.0), 2))
    chamber = Heater(temp=round(room + rng.uniform(0.5, 3.0), 1) if model.chamber_sensor else room)

    units = _default_units(model, rng)
    external_id = int(model.external_spool_id)
    if extruders >= 2:
        external = [Tray(slot=254, loaded=False), Tray(slot=255, loaded=False)]
    elif not units:
        spool = _random_tray(rng, external_id, _LITE_FILAMENTS, bbl=False)
        external = [spool]
    else:
        external = [Tray(slot=external_id, loaded=False)]

    lights = dict.fromkeys(model_lights(model), "off")
    lights["chamber_light"] = "on"

    family = model.family
    nozzle_type = (
        "hardened_steel" if family in (PrinterFamily.X1, PrinterFamily.H2, PrinterFamily.X2) else "stainless_steel"
    )

    return Dynamic(
        job=Job(),
        nozzles=nozzles,
        active_extruder=0,
        bed=bed,
        chamber=chamber,
        lights=lights,
        wifi_dbm=-rng.randint(38, 62),
        sdcard=True,
        ams=units,
        external=external,
        filament_present=bool(units) or any(t.loaded for t in external),
        nozzle_diameter=0.4,
        nozzle_type=nozzle_type,
        firmware=DEFAULT_FIRMWARE.get(model.code, "01.00.00.00"),
    )
