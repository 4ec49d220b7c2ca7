"""Typed, read-only views over a merged printer state (see :mod:`bambulab.protocol.state`).

``PrinterStatus(state, model)`` is the entry point; each view is a frozen dataclass decoded on
first access and cached. Views never raise on missing or wrongly typed fields: a value that is
absent or cannot be decoded reads as ``None`` (or an empty tuple / ``UNKNOWN``). Field names
follow the wire where a reader would look them up there; decoding rules are documented on each
view and come from PROTOCOL.md §2.

Decisions worth knowing:

* Temperatures prefer the flat legacy fields (``nozzle_temper`` …, 1/32 °C resolution on P1/A1)
  and fall back to the packed ``device`` values (low 16 bits current, high 16 bits target).
  Where a report has per-extruder values (two-extruder H2D, H2C, X2D), ``nozzle`` is the active
  extruder's: the flat ``nozzle_temper`` there may follow the other one (in an H2D capture with
  extruder 0 active at 264 °C it read 40 °C). The flat value stays in ``legacy_nozzle``.
* The chamber temperature is reported only where the model has a sensor; P1/A1/A2L send a
  placeholder 5. Without a known model a bare ``chamber_temper`` of exactly 5 is taken as the
  placeholder.
* Fan strings "0"-"15" become percent in 10 % steps, rounded up (the convention Home Assistant
  users see: "4" reads 30 %).
* Door: X1 models report it in ``home_flag`` bit 23; H2/P2S/X2D in ``stat`` bit 23 (0x00800000).
  The H2D capture (door closed, bit clear) agrees; in the X1C capture with newer firmware
  ``stat`` has bit 23 set while ``home_flag`` has it clear, so ``stat`` is not used on X1.
  Models without a door sensor, and an unknown model, read ``None``.
* The active tray comes from ``ams.tray_now`` on single-extruder printers and from the current
  extruder's ``device.extruder.info[].snow`` (bits 8-15 AMS id, 0-7 slot) on two-extruder ones:
  in the H2D capture ``tray_now`` is "3" while ``snow`` says AMS 1 slot 3, so ``tray_now`` does
  not name the unit there.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final

from bambulab.protocol.hms import HmsMessage, PrintError, decode_hms_list, decode_print_error
from bambulab.protocol.models import AmsKind, PrinterFamily, PrinterModel, detect_model, firmware_version

__all__ = [
    "STAGE_NAMES",
    "AmsStatus",
    "AmsUnit",
    "Fans",
    "GcodeState",
    "Job",
    "Network",
    "Nozzle",
    "PrinterStatus",
    "Speed",
    "Temperatures",
    "Tray",
    "fan_percent",
    "ip_from_int",
    "stage_name",
    "unpack_temperature",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MAX_MINUTES: Final = 10_000_000  # about 19 years; anything larger is garbage


# --------------------------------------------------------------------------- coercion helpers


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _seq(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _path(root: Mapping[str, Any], *keys: str) -> object:
    value: object = root
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# Numbers are read by value: an int, an integral float and a bool that compare equal decode the
# same (True is 1). Garbage either way, but it keeps decoding a function of ``==``-equality,
# which is what lets PrinterStatus reuse views of equal wire objects (``previous=``).


def _int(value: object) -> int | None:
    """An int from an int, an integral finite float or a decimal string (``"5"``, ``"26.0"``)."""
    if type(value) is int:
        return value
    if isinstance(value, int):  # bool
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and 0 < len(value) <= 24:
        try:
            return int(value)
        except ValueError:
            number = _float(value)
            return int(number) if number is not None and number.is_integer() else None
    return None


def _float(value: object) -> float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, int):  # int or bool
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and 0 < len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _hex(value: object) -> int | None:
    """A bit field sent as a hex string (``"1001"``, ``"7A58000"``) or as a number."""
    if isinstance(value, str):
        if 0 < len(value) <= 32:
            try:
                return int(value, 16)
            except ValueError:
                return None
        return None
    number = _int(value)
    return number if number is not None and number >= 0 else None


def _text(value: object) -> str | None:
    """A non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _u32(value: object) -> int | None:
    """A 32-bit field that may arrive signed (``home_flag`` is often negative)."""
    number = _int(value)
    if number is None or not -(1 << 31) <= number < 1 << 32:
        return None
    return number & 0xFFFFFFFF


def _minutes(value: object) -> timedelta | None:
    number = _int(value)
    if number is None or not 0 <= number <= _MAX_MINUTES:
        return None
    return timedelta(minutes=number)


def _same(a: object, b: object) -> bool:
    """Identity or equality of two wire objects (equality of pathologically deep ones: no)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except RecursionError:
        return False


def _percent(value: object) -> int | None:
    number = _int(value)
    return number if number is not None and 0 <= number <= 100 else None


# --------------------------------------------------------------------------- public decoders


def unpack_temperature(value: object) -> tuple[float | None, float | None]:
    """Decode a packed ``device`` temperature: low 16 bits current, high 16 bits target.

    ``4587590`` (0x00460046) is 70 °C at target 70 °C; a small plain int such as ``23`` (X1)
    reads 23 °C with target 0. A non-integral float is taken as a plain current value.
    """
    if isinstance(value, bool):
        return None, None
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return value, None
    number = _int(value) if isinstance(value, int | float) else None
    if number is None or not 0 <= number < 1 << 32:
        return None, None
    return float(number & 0xFFFF), float((number >> 16) & 0xFFFF)


def fan_percent(value: object) -> int | None:
    """A fan level "0"-"15" (string or int) as percent in 10 % steps, rounded up."""
    level = _int(value)
    if level is None or not 0 <= level <= 15:
        return None
    return -(-level * 10 // 15) * 10


def ip_from_int(value: object) -> str | None:
    """The dotted IPv4 address of ``net.info[].ip``: a little-endian packed int."""
    number = _int(value)
    if number is None or not 0 < number < 1 << 32:
        return None
    return ".".join(str((number >> shift) & 0xFF) for shift in (0, 8, 16, 24))


#: English names of the stage ids in ``stg`` / ``stg_cur`` (PROTOCOL.md §2.8, reworded).
STAGE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        -1: "idle",
        0: "printing",
        1: "auto bed levelling",
        2: "preheating heatbed",
        3: "vibration compensation",
        4: "changing filament",
        5: "M400 pause",
        6: "paused: filament ran out",
        7: "heating hotend",
        8: "calibrating extrusion",
        9: "scanning bed surface",
        10: "inspecting first layer",
        11: "identifying build plate type",
        12: "calibrating Micro Lidar",
        13: "homing toolhead",
        14: "cleaning nozzle tip",
        15: "checking extruder temperature",
        16: "paused by the user",
        17: "paused: front cover came off",
        18: "calibrating Micro Lidar",
        19: "calibrating extrusion flow",
        20: "paused: nozzle temperature fault",
        21: "paused: heatbed temperature fault",
        22: "unloading filament",
        23: "paused: skipped step",
        24: "loading filament",
        25: "calibrating motor noise",
        26: "paused: AMS lost",
        27: "paused: heatbreak fan too slow",
        28: "paused: chamber temperature control fault",
        29: "cooling chamber",
        30: "paused by G-code",
        31: "motor noise showoff",
        32: "paused: filament covering the nozzle",
        33: "paused: cutter fault",
        34: "paused: first layer defect",
        35: "paused: nozzle clog",
        39: "calibrating nozzle offset",
        49: "heating chamber",
        77: "preparing AMS",
        255: "idle",
    }
)


def stage_name(stage_id: int | None) -> str | None:
    """The English name of a stage id; ``"stage N"`` for ids we have no name for."""
    if stage_id is None:
        return None
    return STAGE_NAMES.get(stage_id, f"stage {stage_id}")


# --------------------------------------------------------------------------- job


class GcodeState(enum.StrEnum):
    """``gcode_state``; ``UNKNOWN`` stands for a missing or unrecognised value."""

    IDLE = "IDLE"
    PREPARE = "PREPARE"
    RUNNING = "RUNNING"
    PAUSE = "PAUSE"
    FINISH = "FINISH"
    FAILED = "FAILED"
    SLICING = "SLICING"
    INIT = "INIT"
    OFFLINE = "OFFLINE"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: object) -> GcodeState:
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN


_ACTIVE_STATES = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING})


@dataclass(frozen=True, slots=True)
class Job:
    """The current (or last) print job.

    ``stage`` is the English name of ``stg_cur``; stage 0 ("printing") reads "idle" when the
    printer is not printing (P1/A1 send 0 at boot). ``remaining`` is ``mc_remaining_time``
    (minutes on the wire).
    """

    state: GcodeState
    state_raw: str | None
    stage_id: int | None
    stage: str | None
    stages: tuple[int, ...]
    progress: int | None
    layer: int | None
    total_layers: int | None
    remaining: timedelta | None
    file: str | None
    name: str | None
    print_type: str | None
    prepare_percent: int | None
    task_id: str | None

    @property
    def is_active(self) -> bool:
        """Preparing, printing or paused."""
        return self.state in _ACTIVE_STATES

    @classmethod
    def from_print(cls, p: Mapping[str, Any]) -> Job:
        state = GcodeState.parse(p.get("gcode_state"))
        stage_id = _int(p.get("stg_cur"))
        name = stage_name(stage_id)
        if stage_id == 0 and state not in _ACTIVE_STATES:
            name = "idle"
        three_d = _map(p.get("3D"))
        layer = _int(p.get("layer_num"))
        total = _int(p.get("total_layer_num"))
        progress = _percent(p.get("mc_percent"))
        remaining = _minutes(p.get("mc_remaining_time"))
        return cls(
            state=state,
            state_raw=_text(p.get("gcode_state")),
            stage_id=stage_id,
            stage=name,
            stages=tuple(s for s in (_int(v) for v in _seq(p.get("stg"))) if s is not None),
            progress=progress if progress is not None else _percent(p.get("percent")),
            layer=layer if layer is not None else _int(three_d.get("layer_num")),
            total_layers=total if total is not None else _int(three_d.get("total_layer_num")),
            remaining=remaining if remaining is not None else _minutes(p.get("remain_time")),
            file=_text(p.get("gcode_file")) or _text(p.get("file")),
            name=_text(p.get("subtask_name")),
            print_type=_text(p.get("print_type")),
            prepare_percent=_percent(p.get("gcode_file_prepare_percent")),
            task_id=_text(p.get("task_id")),
        )


# --------------------------------------------------------------------------- temperatures


@dataclass(frozen=True, slots=True)
class Nozzle:
    """One extruder's nozzle: temperatures (°C) and, where reported, diameter (mm) and type."""

    index: int
    current: float | None
    target: float | None
    diameter: float | None
    type: str | None


@dataclass(frozen=True, slots=True)
class Temperatures:
    """Temperatures in °C. ``nozzle`` is the active nozzle; ``nozzles`` has one entry per
    extruder (two on the H2D, H2C and X2D). ``legacy_nozzle`` / ``legacy_nozzle_target`` are the
    flat ``nozzle_temper`` fields as reported, which on two-extruder printers need not be the
    active extruder's."""

    nozzle: float | None
    nozzle_target: float | None
    nozzles: tuple[Nozzle, ...]
    active_extruder: int | None
    bed: float | None
    bed_target: float | None
    chamber: float | None
    chamber_target: float | None
    legacy_nozzle: float | None = None
    legacy_nozzle_target: float | None = None

    @classmethod
    def from_print(cls, p: Mapping[str, Any], model: PrinterModel | None) -> Temperatures:
        device = _map(p.get("device"))
        extruder = _map(device.get("extruder"))
        infos = sorted(
            (i for i in _seq(extruder.get("info")) if isinstance(i, Mapping) and _int(i.get("id")) is not None),
            key=lambda i: _int(i.get("id")) or 0,
        )
        ext_state = _int(extruder.get("state"))
        active = (ext_state >> 4) & 0xF if ext_state is not None and ext_state >= 0 else None

        nozzle_infos = {
            _int(i.get("id")): i for i in _seq(_map(device.get("nozzle")).get("info")) if isinstance(i, Mapping)
        }
        flat_nozzle = (_float(p.get("nozzle_temper")), _float(p.get("nozzle_target_temper")))
        nozzles: list[Nozzle] = []
        if len(infos) >= 2 or (infos and flat_nozzle == (None, None)):
            for info in infos:
                index = _int(info.get("id")) or 0
                current, target = unpack_temperature(info.get("temp"))
                spec = _map(nozzle_infos.get(index))
                nozzles.append(Nozzle(index, current, target, _float(spec.get("diameter")), _text(spec.get("type"))))
        elif flat_nozzle != (None, None) or p.get("nozzle_diameter") is not None:
            spec = _map(nozzle_infos.get(0))
            diameter = _float(p.get("nozzle_diameter"))
            nozzles.append(
                Nozzle(
                    0,
                    flat_nozzle[0],
                    flat_nozzle[1],
                    diameter if diameter is not None else _float(spec.get("diameter")),
                    _text(p.get("nozzle_type")) or _text(spec.get("type")),
                )
            )

        nozzle, nozzle_target = flat_nozzle
        per_extruder = len(infos) >= 2
        if nozzles and (nozzle is None or (per_extruder and active is not None)):
            active_nozzle = next((n for n in nozzles if n.index == active), nozzles[0])
            if active_nozzle.current is not None or nozzle is None:
                nozzle, nozzle_target = active_nozzle.current, active_nozzle.target

        bed_packed = unpack_temperature(_path(device, "bed", "info", "temp"))
        bed = _float(p.get("bed_temper"))
        bed_target = _float(p.get("bed_target_temper"))

        chamber, chamber_target = cls._chamber(p, device, model)
        return cls(
            nozzle=nozzle,
            nozzle_target=nozzle_target,
            nozzles=tuple(nozzles),
            active_extruder=active if infos else None,
            bed=bed if bed is not None else bed_packed[0],
            bed_target=bed_target if bed_target is not None else bed_packed[1],
            chamber=chamber,
            chamber_target=chamber_target,
            legacy_nozzle=flat_nozzle[0],
            legacy_nozzle_target=flat_nozzle[1],
        )

    @staticmethod
    def _chamber(
        p: Mapping[str, Any], device: Mapping[str, Any], model: PrinterModel | None
    ) -> tuple[float | None, float | None]:
        if model is not None and not model.chamber_sensor:
            return None, None
        flat = _float(p.get("chamber_temper"))
        ctc_raw = _path(device, "ctc", "info", "temp")
        ctc_current, ctc_target = unpack_temperature(ctc_raw)
        if model is None and ctc_raw is None and flat == 5.0:
            return None, None  # the P1/A1 placeholder
        current = flat if flat is not None else ctc_current
        if model is not None and not model.chamber_heater:
            return current, None
        target = _float(p.get("ctt"))
        return current, target if target is not None else ctc_target


# --------------------------------------------------------------------------- fans, speed, network


@dataclass(frozen=True, slots=True)
class Fans:
    """Fan speeds in percent (10 % steps): part cooling, auxiliary, chamber and hotend
    (heatbreak) fans, from ``cooling_fan_speed``, ``big_fan1_speed``, ``big_fan2_speed`` and
    ``heatbreak_fan_speed``. Reported as sent: a model without a given fan sends "0"."""

    part_cooling: int | None
    aux: int | None
    chamber: int | None
    heatbreak: int | None

    @classmethod
    def from_print(cls, p: Mapping[str, Any]) -> Fans:
        return cls(
            part_cooling=fan_percent(p.get("cooling_fan_speed")),
            aux=fan_percent(p.get("big_fan1_speed")),
            chamber=fan_percent(p.get("big_fan2_speed")),
            heatbreak=fan_percent(p.get("heatbreak_fan_speed")),
        )


_SPEED_NAMES: Final = MappingProxyType({1: "silent", 2: "standard", 3: "sport", 4: "ludicrous"})


@dataclass(frozen=True, slots=True)
class Speed:
    """Speed profile: ``spd_lvl`` (1 silent, 2 standard, 3 sport, 4 ludicrous) and ``spd_mag``
    (speed percent, 100 for standard)."""

    level: int | None
    name: str | None
    percent: int | None

    @classmethod
    def from_print(cls, p: Mapping[str, Any]) -> Speed:
        level = _int(p.get("spd_lvl"))
        magnitude = _int(p.get("spd_mag"))
        return cls(
            level=level,
            name=_SPEED_NAMES.get(level) if level is not None else None,
            percent=magnitude if magnitude is not None and 0 <= magnitude <= 1000 else None,
        )


@dataclass(frozen=True, slots=True)
class Network:
    """Wi-Fi signal in dBm (``wifi_signal`` "-53dBm") and the IPv4 address and netmask from the
    first non-zero ``net.info`` entry."""

    wifi_dbm: int | None
    ip: str | None
    netmask: str | None

    @classmethod
    def from_print(cls, p: Mapping[str, Any]) -> Network:
        signal = p.get("wifi_signal")
        if isinstance(signal, str):
            text = signal.strip()
            if text[-3:].lower() == "dbm":
                text = text[:-3].strip()
            dbm = _int(text)
        else:
            dbm = _int(signal)
        ip = netmask = None
        for entry in _seq(_map(p.get("net")).get("info")):
            if isinstance(entry, Mapping) and (address := ip_from_int(entry.get("ip"))) is not None:
                ip, netmask = address, ip_from_int(entry.get("mask"))
                break
        return cls(wifi_dbm=dbm if dbm is not None and -200 <= dbm <= 50 else None, ip=ip, netmask=netmask)


# --------------------------------------------------------------------------- AMS and spools

_AMS_KIND_BITS: Final = MappingProxyType({1: AmsKind.AMS, 2: AmsKind.AMS_LITE, 3: AmsKind.AMS_2_PRO, 4: AmsKind.AMS_HT})
_AMS_MODULE_KINDS: Final = (
    ("ams_f1/", AmsKind.AMS_LITE),
    ("ams/", AmsKind.AMS),
    ("n3f/", AmsKind.AMS_2_PRO),
    ("n3s/", AmsKind.AMS_HT),
)
_AMS_STATUS_NAMES: Final = MappingProxyType(
    {
        0x00: "idle",
        0x01: "filament_change",
        0x02: "rfid_identifying",
        0x03: "assist",
        0x04: "calibration",
        0x07: "cold_pull",
        0x10: "self_check",
        0x20: "debug",
    }
)
_HEX_COLOR: Final = re.compile(r"[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?")
_NO_TRAY: Final = 255
_EXTERNAL_TRAY: Final = 254


def _color(value: object) -> tuple[str | None, int | None]:
    """``"RRGGBBAA"`` → ``("#RRGGBB", alpha)``; six digits read as opaque."""
    if not isinstance(value, str) or _HEX_COLOR.fullmatch(value) is None:
        return None, None
    alpha = int(value[6:8], 16) if len(value) == 8 else 255
    return "#" + value[:6].upper(), alpha


@dataclass(frozen=True, slots=True)
class Tray:
    """A filament slot: an AMS tray or an external spool (``unit_id`` and ``slot`` ``None``).

    ``tray_index`` is the number ``tray_now`` uses: unit*4+slot for AMS units 0-3, the unit id
    (128+) for an AMS HT, 254/255 for external spools. ``is_empty`` follows ``state`` when the
    firmware sends it (bit 0 = spool present on newer firmware; 0 = empty in the legacy 0-3
    scheme) and otherwise the absence of ``tray_type`` (P1/A1 send empty slots as bare ids).
    ``color`` is ``#RRGGBB`` with ``alpha`` 0-255 from ``tray_color`` (RRGGBBAA).
    """

    id: str | None
    unit_id: int | None
    slot: int | None
    tray_index: int | None
    is_empty: bool
    state: int | None
    material: str | None
    sub_brand: str | None
    filament_id: str | None
    color: str | None
    alpha: int | None
    colors: tuple[str, ...]
    remaining: int | None
    nozzle_temp_min: int | None
    nozzle_temp_max: int | None
    diameter: float | None
    weight: int | None
    tag_uid: str | None
    k: float | None

    @classmethod
    def from_wire(cls, t: Mapping[str, Any], unit_id: int | None) -> Tray:
        raw_id = t.get("id")
        number = _int(raw_id)
        ident = raw_id if isinstance(raw_id, str) else (str(number) if number is not None else None)
        if unit_id is None:
            slot, index = None, number
        else:
            slot = number
            in_unit = number is not None and 0 <= number < 4
            index = unit_id if unit_id >= 128 else (unit_id * 4 + number if number is not None and in_unit else None)
        state = _int(t.get("state"))
        material = _text(t.get("tray_type"))
        if state is not None and state > 3:
            empty = not state & 0x01
        elif state is not None:
            empty = state == 0 or material is None
        else:
            empty = material is None
        color, alpha = _color(t.get("tray_color"))
        colors = tuple(c for c in (_color(v)[0] for v in _seq(t.get("cols"))) if c is not None)
        diameter = _float(t.get("tray_diameter"))
        weight = _int(t.get("tray_weight"))
        tag = _text(t.get("tag_uid"))
        return cls(
            id=ident,
            unit_id=unit_id,
            slot=slot,
            tray_index=index,
            is_empty=empty,
            state=state,
            material=material,
            sub_brand=_text(t.get("tray_sub_brands")),
            filament_id=_text(t.get("tray_info_idx")),
            color=color,
            alpha=alpha,
            colors=colors,
            remaining=_percent(t.get("remain")),
            nozzle_temp_min=_int(t.get("nozzle_temp_min")) or None,
            nozzle_temp_max=_int(t.get("nozzle_temp_max")) or None,
            diameter=diameter if diameter else None,
            weight=weight if weight and weight > 0 else None,
            tag_uid=tag if tag and tag.strip("0") else None,
            k=_float(t.get("k")),
        )


@dataclass(frozen=True, slots=True)
class AmsUnit:
    """One AMS unit. ``kind`` comes from ``info`` bits 0-3 (1 AMS, 2 AMS Lite, 3 AMS 2 Pro,
    4 AMS HT), else the get_version module name, else the id (128+ is an AMS HT), else the
    model's default AMS. ``humidity_level`` is "1"-"5" (5 driest), ``humidity`` the percent
    newer firmware sends; ``temperature`` is ``None`` on the AMS Lite (no sensor) and wherever
    the unit sends "0.0" (the original AMS on P1 printers reports no reading).
    ``extruder`` (``info`` bits 8-11) says which extruder the unit feeds on two-nozzle printers.
    """

    id: int | None
    kind: AmsKind | None
    humidity_level: int | None
    humidity: int | None
    temperature: float | None
    dry_remaining: timedelta | None
    extruder: int | None
    trays: tuple[Tray, ...]

    @classmethod
    def from_wire(
        cls, u: Mapping[str, Any], module_kinds: Mapping[int, AmsKind], model: PrinterModel | None
    ) -> AmsUnit:
        unit_id = _int(u.get("id"))
        if unit_id is not None and not 0 <= unit_id < 256:
            unit_id = None
        info = _hex(u.get("info"))
        kind: AmsKind | None = _AMS_KIND_BITS.get(info & 0xF) if info is not None else None
        if kind is None and unit_id is not None:
            kind = module_kinds.get(unit_id)
        if kind is None and unit_id is not None and unit_id >= 128:
            kind = AmsKind.AMS_HT
        if kind is None and model is not None and model.ams is not AmsKind.NONE:
            kind = model.ams
        extruder = (info >> 8) & 0xF if info is not None else None
        level = _int(u.get("humidity"))
        humidity = _int(u.get("humidity_raw"))
        temperature = None if kind is AmsKind.AMS_LITE else _float(u.get("temp"))
        if temperature == 0.0:
            temperature = None  # "0.0" is what units without a reading send (AMS Lite, AMS on P1)
        return cls(
            id=unit_id,
            kind=kind,
            humidity_level=level if level is not None and 1 <= level <= 5 else None,
            humidity=humidity if humidity is not None and 0 <= humidity <= 100 else None,
            temperature=temperature,
            dry_remaining=_minutes(u.get("dry_time")),
            extruder=None if extruder is None or extruder == 0xE else extruder,
            trays=tuple(Tray.from_wire(t, unit_id) for t in _seq(u.get("tray")) if isinstance(t, Mapping)),
        )

    def tray(self, slot: int) -> Tray | None:
        return next((t for t in self.trays if t.slot == slot), None)


@dataclass(frozen=True, slots=True)
class AmsStatus:
    """All AMS units plus the loaded / previous / target tray numbers and the AMS status
    (``ams_status``: main status in bits 8-15, sub status in bits 0-7)."""

    units: tuple[AmsUnit, ...]
    tray_now: int | None
    tray_previous: int | None
    tray_target: int | None
    status: str | None
    status_code: int | None
    sub_status: int | None

    def unit(self, unit_id: int) -> AmsUnit | None:
        return next((u for u in self.units if u.id == unit_id), None)

    def find_tray(self, unit_id: int, slot: int) -> Tray | None:
        unit = self.unit(unit_id)
        return unit.tray(slot) if unit is not None else None

    @classmethod
    def from_print(
        cls,
        p: Mapping[str, Any],
        info: Mapping[str, Any],
        model: PrinterModel | None,
        reuse: Sequence[tuple[object, AmsUnit]] = (),
    ) -> AmsStatus:
        """Decode ``p["ams"]``. ``reuse`` pairs earlier wire units with their decoded views: a unit
        equal to the one at the same position is not decoded again (same model and get_version
        assumed)."""
        ams = _map(p.get("ams"))
        module_kinds: dict[int, AmsKind] = {}
        for module in _seq(info.get("module")):
            name = module.get("name") if isinstance(module, Mapping) else None
            if not isinstance(name, str):
                continue
            for prefix, kind in _AMS_MODULE_KINDS:
                if name.startswith(prefix) and (number := _int(name[len(prefix) :])) is not None:
                    module_kinds[number] = kind
                    break
        status = _int(p.get("ams_status"))
        main = (status >> 8) & 0xFF if status is not None and status >= 0 else None
        units: list[AmsUnit] = []
        for wire in _seq(ams.get("ams")):
            if not isinstance(wire, Mapping):
                continue
            index = len(units)
            if index < len(reuse) and _same(reuse[index][0], wire):
                units.append(reuse[index][1])
            else:
                units.append(AmsUnit.from_wire(wire, module_kinds, model))
        return cls(
            units=tuple(units),
            tray_now=_int(ams.get("tray_now")),
            tray_previous=_int(ams.get("tray_pre")),
            tray_target=_int(ams.get("tray_tar")),
            status=_AMS_STATUS_NAMES.get(main, f"unknown ({main})") if main is not None else None,
            status_code=main,
            sub_status=status & 0xFF if status is not None and status >= 0 else None,
        )


# --------------------------------------------------------------------------- the whole printer

_SD_STATES: Final = ("none", "normal", "abnormal", "read_only")
_DOOR_BIT: Final = 1 << 23


_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})


def _jsonable(value: object) -> Any:
    """Views → JSON-ready data. Ordered by frequency: this runs for every field of every view."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is tuple or kind is list:
        return [v if type(v) in _PLAIN_TYPES else _jsonable(v) for v in value]  # type: ignore[attr-defined]
    fields = getattr(kind, "__dataclass_fields__", None)
    if fields is not None:
        out = {}
        for name in fields:
            field_value = getattr(value, name)
            out[name] = field_value if type(field_value) in _PLAIN_TYPES else _jsonable(field_value)
        if kind is HmsMessage:
            out["code_id"] = value.code_id  # type: ignore[attr-defined]
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class PrinterStatus:
    """Read-only access to everything decoded from a merged state.

    ``model`` defaults to the one detected from the stored get_version reply (``state["info"]``);
    pass it when you know it (from SSDP, the cloud or configuration): chamber temperature, door
    and AMS kind depend on it. Every attribute is computed on first access and cached; the view
    reflects the state it was built from, so build a new one after each merge.

    ``previous``, the status of the same printer before the merge, lets the AMS units and the
    external spools that did not change (same object, or equal) be reused instead of decoded
    again: the AMS is most of the decoding work and rarely changes. It applies when both have
    the same ``model`` argument and the same ``state["info"]`` object (merge keeps it until a new
    get_version reply). Only decoded views and wire objects of that one status are kept, never
    the status itself, so chains do not grow.
    """

    def __init__(
        self,
        state: Mapping[str, Any] | None,
        model: PrinterModel | None = None,
        *,
        previous: PrinterStatus | None = None,
    ) -> None:
        self._state: Mapping[str, Any] = state if isinstance(state, Mapping) else _EMPTY
        self._print = _map(self._state.get("print"))
        self._info = _map(self._state.get("info"))
        self._model_arg = model
        self._reuse_ams: tuple[object, AmsStatus] | None = None
        self._reuse_spools: tuple[object, object, tuple[Tray, ...]] | None = None
        if previous is not None and previous._model_arg is model and previous._info is self._info:
            decoded = previous.__dict__  # what cached_property has computed so far
            if "ams" in decoded:
                self._reuse_ams = (previous._print.get("ams"), decoded["ams"])
            if "external_spools" in decoded:
                old = previous._print
                self._reuse_spools = (old.get("vir_slot"), old.get("vt_tray"), decoded["external_spools"])

    def __repr__(self) -> str:
        name = self.model.name if self.model is not None else "unknown model"
        return f"<PrinterStatus {name} {self.job.state.value} {self.job.progress}%>"

    @property
    def raw(self) -> Mapping[str, Any]:
        """The merged ``print`` object as the printer sent it."""
        return self._print

    @cached_property
    def model(self) -> PrinterModel | None:
        if self._model_arg is not None:
            return self._model_arg
        return detect_model(self._info) if self._info else None

    @cached_property
    def firmware(self) -> str | None:
        """The ``ota`` module's version from the stored get_version reply."""
        return firmware_version(self._info) if self._info else None

    @cached_property
    def job(self) -> Job:
        return Job.from_print(self._print)

    @cached_property
    def temperatures(self) -> Temperatures:
        return Temperatures.from_print(self._print, self.model)

    @cached_property
    def fans(self) -> Fans:
        return Fans.from_print(self._print)

    @cached_property
    def speed(self) -> Speed:
        return Speed.from_print(self._print)

    @cached_property
    def network(self) -> Network:
        return Network.from_print(self._print)

    @cached_property
    def lights(self) -> Mapping[str, str]:
        """``lights_report`` as node → mode (``{"chamber_light": "on", "work_light": "flashing"}``)."""
        lights: dict[str, str] = {}
        for entry in _seq(self._print.get("lights_report")):
            if isinstance(entry, Mapping):
                node, mode = entry.get("node"), entry.get("mode")
                if isinstance(node, str) and isinstance(mode, str):
                    lights[node] = mode
        return MappingProxyType(lights)

    @cached_property
    def home_flag(self) -> int | None:
        """``home_flag`` as an unsigned 32-bit value (the wire often has it negative)."""
        return _u32(self._print.get("home_flag"))

    @cached_property
    def sdcard(self) -> bool | None:
        """Whether an SD card is present (``sdcard``; else ``home_flag`` bits 8-9)."""
        present = _bool(self._print.get("sdcard"))
        if present is None and self.home_flag is not None:
            return (self.home_flag >> 8) & 0x3 != 0
        return present

    @cached_property
    def sdcard_state(self) -> str | None:
        """``home_flag`` bits 8-9: "none", "normal", "abnormal" or "read_only"."""
        return _SD_STATES[(self.home_flag >> 8) & 0x3] if self.home_flag is not None else None

    @cached_property
    def door_open(self) -> bool | None:
        """Door state where the model has a sensor (see the module docstring); else ``None``."""
        model = self.model
        if model is None or not model.door_sensor:
            return None
        if model.family is PrinterFamily.X1:
            flag = self.home_flag
            return bool(flag & _DOOR_BIT) if flag is not None else None
        stat = _hex(self._print.get("stat"))
        return bool(stat & _DOOR_BIT) if stat is not None else None

    @cached_property
    def ams(self) -> AmsStatus:
        reuse: list[tuple[object, AmsUnit]] = []
        if self._reuse_ams is not None:
            old_wire, old_status = self._reuse_ams
            self._reuse_ams = None
            old_units = [u for u in _seq(_map(old_wire).get("ams")) if isinstance(u, Mapping)]
            reuse = list(zip(old_units, old_status.units, strict=False))
        return AmsStatus.from_print(self._print, self._info, self.model, reuse)

    @cached_property
    def external_spools(self) -> tuple[Tray, ...]:
        """``vir_slot`` entries (newer firmware, ids 254/255), else the single ``vt_tray``."""
        if self._reuse_spools is not None:
            old_vir, old_vt, old_spools = self._reuse_spools
            self._reuse_spools = None
            if _same(old_vir, self._print.get("vir_slot")) and _same(old_vt, self._print.get("vt_tray")):
                return old_spools
        spools = [Tray.from_wire(v, None) for v in _seq(self._print.get("vir_slot")) if isinstance(v, Mapping)]
        if not spools:
            vt = self._print.get("vt_tray")
            if isinstance(vt, Mapping):
                spools.append(Tray.from_wire(vt, None))
        return tuple(spools)

    def _external(self, tray_id: int) -> Tray | None:
        spools = self.external_spools
        match = next((s for s in spools if s.tray_index == tray_id), None)
        if match is None and tray_id == _EXTERNAL_TRAY and len(spools) == 1:
            return spools[0]  # "254" is the external spool on single-extruder printers, whatever its id
        return match

    @cached_property
    def active_tray(self) -> Tray | None:
        """The tray feeding the active extruder, or ``None`` when nothing is loaded."""
        extruder = _map(_map(self._print.get("device")).get("extruder"))
        infos = [i for i in _seq(extruder.get("info")) if isinstance(i, Mapping)]
        if len(infos) >= 2:
            active = self.temperatures.active_extruder or 0
            info = next((i for i in infos if _int(i.get("id")) == active), infos[0])
            loaded = _int(info.get("snow"))
            if loaded is None or not 0 <= loaded < 0xFFFF:
                return None
            unit_id, slot = (loaded >> 8) & 0xFF, loaded & 0xFF
            if unit_id in (_EXTERNAL_TRAY, _NO_TRAY):
                return self._external(unit_id)
            return self.ams.find_tray(unit_id, 0 if unit_id >= 128 else slot)
        now = self.ams.tray_now
        if now is None or now == _NO_TRAY:
            return None
        if now == _EXTERNAL_TRAY:
            return self._external(now)
        if 0 <= now < 16:
            return self.ams.find_tray(now // 4, now % 4)
        if 128 <= now < 136:
            return self.ams.find_tray(now, 0)
        return None

    @cached_property
    def hms(self) -> tuple[HmsMessage, ...]:
        return decode_hms_list(self._print.get("hms"))

    @cached_property
    def print_error(self) -> PrintError | None:
        return decode_print_error(self._print.get("print_error"))

    def to_dict(self) -> dict[str, Any]:
        """Everything decoded, as JSON-ready data (durations in seconds, enums as values)."""
        model = self.model
        return {
            "model": model.name if model is not None else None,
            "firmware": self.firmware,
            "job": _jsonable(self.job),
            "temperatures": _jsonable(self.temperatures),
            "fans": _jsonable(self.fans),
            "speed": _jsonable(self.speed),
            "lights": dict(self.lights),
            "network": _jsonable(self.network),
            "sdcard": self.sdcard,
            "sdcard_state": self.sdcard_state,
            "door_open": self.door_open,
            "ams": _jsonable(self.ams),
            "active_tray": _jsonable(self.active_tray),
            "external_spools": _jsonable(self.external_spools),
            "hms": _jsonable(self.hms),
            "print_error": _jsonable(self.print_error),
        }
