"""Command builders, acknowledgement matching and command classification.

Pure: no I/O, no clock, no module-level mutable state. Every builder returns a **new** dict of the
form ``{"<section>": {"sequence_id": "<str>", "command": "<name>", ...}}`` ready to be serialised
to JSON and published on ``device/<SERIAL>/request``.

Sequence ids come from a :class:`SequenceCounter` that the caller owns (one per connection, or one
per printer): there is no global counter. Ids are decimal strings in ``1 .. 2**31 - 1``; they grow
by one per command and wrap from ``2**31 - 1`` back to ``1``. They are never ``"0"``, because the
stock software uses ``"0"`` for cloud traffic and fixed constants, and firmware that enforces signed
commands rejects a reused id (err_code 84033544, anti-replay). Ids of ``2**31`` or more make AMS
commands hang on some firmware.

The printer acknowledges a command on ``device/<SERIAL>/report`` in the **same section**, with the
**same command** and the request's ``sequence_id`` echoed back (as it received it: a string, an
int, or not at all). :func:`is_ack_for` recognises that reply and :func:`ack_result` decodes its
``result``/``reason``/``err_code``/``errno`` fields, including the "unsigned command rejected"
failure of authorization-control firmware.

Validation: builders raise :class:`ValueError` with a message that names the bad argument and the
allowed range (``bool`` is never accepted where a number is expected).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from bambulab.protocol.models import PrinterFamily, PrinterModel, model_by_code

__all__ = [
    "ERR_REPLAY",
    "ERR_SIGNATURE_REQUIRED",
    "EXTERNAL_SPOOL_TARGET",
    "MAX_SEQUENCE_ID",
    "MD5_FROM_SD_CARD",
    "RETRYABLE_ERRORS",
    "UNLOAD_TARGET",
    "AckResult",
    "AmsControlAction",
    "BedType",
    "CaliMode",
    "Command",
    "CommandClass",
    "Fan",
    "LedMode",
    "LightNode",
    "PrintOption",
    "PrinterErrorCode",
    "SequenceCounter",
    "SpeedLevel",
    "XcamModule",
    "XcamSensitivity",
    "ack_result",
    "ams_change_filament",
    "ams_control",
    "ams_filament_setting",
    "ams_mapping2_from",
    "calibration",
    "classify",
    "clean_print_error",
    "gcode_file",
    "gcode_line",
    "get_access_code",
    "get_version",
    "home",
    "ipcam_record_set",
    "ipcam_timelapse",
    "is_ack_for",
    "ledctrl",
    "pause",
    "print_option",
    "print_speed",
    "project_file",
    "project_url",
    "pushall",
    "resume",
    "set_bed_temp",
    "set_chamber_temp",
    "set_fan",
    "set_nozzle_temp",
    "skip_objects",
    "start_pushing",
    "start_url",
    "stop",
    "stop_pushing",
    "xcam_control_set",
]

#: A command message: ``{section: {"sequence_id": ..., "command": ..., ...}}``.
Command = dict[str, dict[str, Any]]

#: The largest sequence id we hand out; ids at or above 2**31 make AMS commands hang.
MAX_SEQUENCE_ID: Final = 2**31 - 1


class PrinterErrorCode(enum.IntEnum):
    """The ``err_code`` / ``print_error`` values the library acts on (PROTOCOL.md §2.6, §3.8).

    Compare with ints freely (``ack.err_code == PrinterErrorCode.REPLAY``). The retryable ones are
    in :data:`RETRYABLE_ERRORS` (:attr:`retryable`): the same request can succeed later, or with
    a fresh ``sequence_id``.
    """

    #: The print was cancelled (``stop``, or on the printer's screen).
    TASK_CANCELLED = 0x0300400C
    #: The file named by a print command is not on the printer's storage.
    FILE_NOT_AVAILABLE = 0x0300800E
    #: The printer is busy with another job: retry when it has finished. Retryable.
    PRINTER_BUSY = 0x05004004
    #: The uploaded file does not match the MD5 the print command gave.
    MD5_MISMATCH = 0x0500403F
    #: The build plate on the printer is not the one the file was sliced for.
    BUILD_PLATE_MISMATCH = 0x05008051
    #: The AMS mapping table of a print command is not usable.
    AMS_MAPPING = 0x07008012
    #: "mqtt message verify failed": the command had to be signed (Developer Mode is off).
    SIGNATURE_REQUIRED = 0x05024007
    #: A reused ``sequence_id`` on signing firmware (anti-replay): resend with a new id. Retryable.
    REPLAY = 0x05024008
    #: The signing header of the command was malformed.
    MALFORMED_HEADER = 0x05024009

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_ERRORS


#: The error codes after which the same command can succeed (later, or with a fresh sequence id).
RETRYABLE_ERRORS: Final = frozenset({PrinterErrorCode.PRINTER_BUSY, PrinterErrorCode.REPLAY})

#: ``err_code`` of "mqtt message verify failed": the command had to be signed (0x05024007).
ERR_SIGNATURE_REQUIRED: Final = PrinterErrorCode.SIGNATURE_REQUIRED
#: ``err_code`` of a reused ``sequence_id`` on signing firmware (anti-replay).
ERR_REPLAY: Final = PrinterErrorCode.REPLAY
#: The documented authorization error block (84033543..84033548).
_AUTH_ERR_RANGE: Final = range(PrinterErrorCode.SIGNATURE_REQUIRED, PrinterErrorCode.SIGNATURE_REQUIRED + 6)
_SIGNATURE_REASON: Final = "mqtt message verify failed"

#: ``ams_change_filament`` target that unloads the current filament.
UNLOAD_TARGET: Final = 255
#: ``ams_change_filament`` target of the external spool (legacy single-extruder numbering).
EXTERNAL_SPOOL_TARGET: Final = 254
#: The ``md5`` Bambu Studio sends in ``project_file`` for a file already on the printer's storage.
MD5_FROM_SD_CARD: Final = "from_sd_card"

# Sanity limits for temperature helpers: far above any current printer, low enough to catch typos
# such as 2200 for 220.
_MAX_NOZZLE_C: Final = 400
_MAX_BED_C: Final = 150
_MAX_CHAMBER_C: Final = 100
_MAX_LED_MS: Final = 60_000
_IDENT = re.compile(r"[A-Za-z0-9_]+\Z")


# --------------------------------------------------------------------------------------------
# Sequence ids
# --------------------------------------------------------------------------------------------


class SequenceCounter:
    """Hands out fresh ``sequence_id`` strings for one connection.

    Ids are decimal strings in ``1 .. MAX_SEQUENCE_ID``, increase by one per call and wrap from
    ``MAX_SEQUENCE_ID`` back to ``1``. ``"0"`` is never produced.

    Printers that enforce signed commands also reject an id they have already seen, across
    reconnects. A counter that starts at 1 on every connection would repeat ids, so a client
    talking to such firmware should seed ``start`` from something that grows between sessions
    (for example the current Unix time in seconds; values above the range are folded into it).
    Reading the clock is the caller's job: this module stays pure.
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = 1) -> None:
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"sequence start must be an int, got {type(start).__name__}")
        if start < 1:
            raise ValueError(f"sequence start must be >= 1, got {start}")
        self._next = (start - 1) % MAX_SEQUENCE_ID + 1

    def next(self) -> str:
        """Return the next id and advance."""
        value = self._next
        self._next = 1 if value >= MAX_SEQUENCE_ID else value + 1
        return str(value)

    def peek(self) -> int:
        """The id the next call to :meth:`next` returns, without consuming it."""
        return self._next

    def __repr__(self) -> str:
        return f"SequenceCounter(next={self._next})"


def _envelope(section: str, command: str, seq: SequenceCounter, /, **fields: Any) -> Command:
    if not isinstance(seq, SequenceCounter):
        raise ValueError(f"seq must be a SequenceCounter, got {type(seq).__name__}")
    body: dict[str, Any] = {"sequence_id": seq.next(), "command": command}
    body.update(fields)
    return {section: body}


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _number(name: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in {lo:g}..{hi:g}, got {value!r}")
    if not lo <= value <= hi:  # also rejects NaN
        raise ValueError(f"{name} must be in {lo:g}..{hi:g}, got {value!r}")
    return float(value)


def _temperature(name: str, value: object, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a temperature in °C (a number), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    if not value <= hi:  # also rejects NaN and infinity
        raise ValueError(f"{name} must be at most {hi} °C, got {value}")
    return round(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _text(name: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty")
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError(f"{name} must be a single line without NUL, got {value!r}")
    return value


def _identifier(name: str, value: object) -> str:
    text = _text(name, value)
    if not _IDENT.match(text):
        raise ValueError(f"{name} must contain only letters, digits and '_', got {text!r}")
    return text


_E = TypeVar("_E", bound=enum.StrEnum)


def _choice(name: str, value: object, kind: type[_E]) -> _E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip().lower())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in kind)
    raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


class SpeedLevel(enum.IntEnum):
    """``print_speed`` levels (report field ``spd_lvl``)."""

    SILENT = 1
    STANDARD = 2
    SPORT = 3
    LUDICROUS = 4


class Fan(enum.IntEnum):
    """The ``P`` index of ``M106``."""

    PART = 1  # part-cooling fan
    AUX = 2  # auxiliary fan
    CHAMBER = 3  # chamber / exhaust fan
    AUX2 = 10  # secondary auxiliary fan (H2 / P2S) [single source]


class LightNode(enum.StrEnum):
    """``led_node`` of ``system.ledctrl``: which light."""

    CHAMBER = "chamber_light"
    WORK = "work_light"  # X1 toolhead light
    CHAMBER2 = "chamber_light2"  # H2
    HEATBED = "heatbed_light"


class LedMode(enum.StrEnum):
    """``led_mode`` of ``system.ledctrl``."""

    ON = "on"
    OFF = "off"
    FLASHING = "flashing"


class BedType(enum.StrEnum):
    """``bed_type`` of ``project_file``: the build plate the file was sliced for."""

    AUTO = "auto"
    COOL_PLATE = "cool_plate"
    ENG_PLATE = "eng_plate"
    HOT_PLATE = "hot_plate"
    TEXTURED_PLATE = "textured_plate"
    SUPERTACK_PLATE = "supertack_plate"


class CaliMode(enum.IntEnum):
    """Newer ``project_file`` tri-state fields (``auto_bed_leveling`` and friends)."""

    OFF = 0
    ON = 1
    AUTO = 2


class AmsControlAction(enum.StrEnum):
    """``param`` of ``ams_control``: what to tell the AMS (resume, reset, pause, done, abort)."""

    RESUME = "resume"
    RESET = "reset"
    PAUSE = "pause"
    DONE = "done"
    ABORT = "abort"


class XcamModule(enum.StrEnum):
    """``module_name`` of ``xcam_control_set``: an X1 camera/lidar detector."""

    FIRST_LAYER_INSPECTOR = "first_layer_inspector"
    SPAGHETTI_DETECTOR = "spaghetti_detector"
    PRINTING_MONITOR = "printing_monitor"
    BUILDPLATE_MARKER_DETECTOR = "buildplate_marker_detector"
    ALLOW_SKIP_PARTS = "allow_skip_parts"


class XcamSensitivity(enum.StrEnum):
    """``halt_print_sensitivity`` of ``xcam_control_set``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PrintOption(enum.StrEnum):
    """Keys ``print_option`` accepts, one per message."""

    AUTO_RECOVERY = "auto_recovery"
    SOUND_ENABLE = "sound_enable"
    FILAMENT_TANGLE_DETECT = "filament_tangle_detect"
    NOZZLE_BLOB_DETECT = "nozzle_blob_detect"
    AIR_PRINT_DETECT = "air_print_detect"
    AUTO_SWITCH_FILAMENT = "auto_switch_filament"


# --------------------------------------------------------------------------------------------
# pushing / info / system
# --------------------------------------------------------------------------------------------


def pushall(seq: SequenceCounter) -> Command:
    """Ask for a full status report (``print.push_status`` with ``msg: 0``). There is no ack.

    Do not send it often: P1-series printers degrade under frequent pushalls (Studio waits at
    least 3 s between two; once per few minutes is plenty after the first).
    """
    return _envelope("pushing", "pushall", seq, version=1, push_target=1)


def start_pushing(seq: SequenceCounter) -> Command:
    """Turn periodic status pushes on (``pushing.start``)."""
    return _envelope("pushing", "start", seq)


def stop_pushing(seq: SequenceCounter) -> Command:
    """Turn periodic status pushes off (``pushing.stop``)."""
    return _envelope("pushing", "stop", seq)


def get_version(seq: SequenceCounter) -> Command:
    """Ask for the module/firmware list (``info.get_version``)."""
    return _envelope("info", "get_version", seq)


def get_access_code(seq: SequenceCounter) -> Command:
    """Ask for the printer's LAN access code (``system.get_access_code``)."""
    return _envelope("system", "get_access_code", seq)


def ledctrl(
    seq: SequenceCounter,
    node: LightNode | str,
    mode: LedMode | str,
    *,
    on_time: int = 500,
    off_time: int = 500,
    loop_times: int = 0,
    interval_time: int = 0,
) -> Command:
    """Switch a light: ``mode`` is ``on``, ``off`` or ``flashing``.

    The timing fields (milliseconds; ``loop_times`` is a count) matter only for ``flashing`` but
    are always sent, as the stock software does. ``node`` may be any of :class:`LightNode` or
    another node name a newer printer reports in ``lights_report``.
    """
    led_node = node.value if isinstance(node, LightNode) else _identifier("led_node", node)
    led_mode = _choice("led_mode", mode, LedMode)
    return _envelope(
        "system",
        "ledctrl",
        seq,
        led_node=led_node,
        led_mode=led_mode.value,
        led_on_time=_int("on_time", on_time, 0, _MAX_LED_MS),
        led_off_time=_int("off_time", off_time, 0, _MAX_LED_MS),
        loop_times=_int("loop_times", loop_times, 0, 10_000),
        interval_time=_int("interval_time", interval_time, 0, _MAX_LED_MS),
    )


# --------------------------------------------------------------------------------------------
# Print control
# --------------------------------------------------------------------------------------------


def pause(seq: SequenceCounter) -> Command:
    """Pause the current print."""
    return _envelope("print", "pause", seq, param="")


def resume(seq: SequenceCounter) -> Command:
    """Resume a paused print."""
    return _envelope("print", "resume", seq, param="")


def stop(seq: SequenceCounter) -> Command:
    """Cancel the print. The printer then reports ``gcode_state`` FAILED with ``print_error``
    50348044 (0x0300400C, "cancelled") for a few seconds."""
    return _envelope("print", "stop", seq, param="")


def print_speed(seq: SequenceCounter, level: SpeedLevel | int | str) -> Command:
    """Set the speed profile. ``param`` goes out as a **string** ``"1"``..``"4"`` (some P1
    firmware misbehaves when it gets a number). ``level`` may be a :class:`SpeedLevel`, an int
    1..4, a digit string, or a level name such as ``"sport"``."""
    if isinstance(level, str) and not level.strip().isdecimal():
        try:
            parsed = SpeedLevel[level.strip().upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in SpeedLevel)
            raise ValueError(f"speed level must be 1..4 or one of {names}; got {level!r}") from None
    else:
        raw: object = int(level) if isinstance(level, str) else level
        parsed = SpeedLevel(_int("speed level", raw, 1, 4))
    return _envelope("print", "print_speed", seq, param=str(int(parsed)))


def skip_objects(seq: SequenceCounter, object_ids: Iterable[int]) -> Command:
    """Skip objects of the running print by their ids (the 3MF ``identify_id`` values)."""
    if isinstance(object_ids, str | bytes):
        raise ValueError("object_ids must be an iterable of ints, not a string")
    ids = [_int("object id", oid, 0, 2**63 - 1) for oid in object_ids]
    if not ids:
        raise ValueError("skip_objects needs at least one object id")
    return _envelope("print", "skip_objects", seq, obj_list=ids)


def clean_print_error(seq: SequenceCounter, *, print_error: int = 0, subtask_id: str = "") -> Command:
    """Clear a displayed print error (``print_error`` is the 32-bit code being acknowledged)."""
    return _envelope(
        "print",
        "clean_print_error",
        seq,
        subtask_id=_text("subtask_id", subtask_id, allow_empty=True),
        print_error=_int("print_error", print_error, 0, 2**32 - 1),
    )


def gcode_line(seq: SequenceCounter, lines: str | Iterable[str]) -> Command:
    """Send raw G-code. Lines are joined with ``"\\n"`` and a trailing ``"\\n"`` is added.

    ``lines`` is a single line, a multi-line string, or an iterable of lines; blank lines and
    trailing whitespace are dropped. At least one non-blank line is required.
    """
    if isinstance(lines, str):
        items: list[str] = lines.splitlines()
    else:
        items = []
        for line in lines:
            if not isinstance(line, str):
                raise ValueError(f"gcode lines must be str, got {type(line).__name__}")
            items.extend(line.splitlines())
    if any("\x00" in line for line in items):
        raise ValueError("gcode must not contain NUL characters")
    cleaned = [line.rstrip() for line in items if line.strip()]
    if not cleaned:
        raise ValueError("gcode_line needs at least one non-blank line")
    return _envelope("print", "gcode_line", seq, param="\n".join(cleaned) + "\n")


def set_nozzle_temp(seq: SequenceCounter, celsius: float) -> Command:
    """``M104 S<t>``: set the nozzle target (does not wait)."""
    return gcode_line(seq, f"M104 S{_temperature('nozzle temperature', celsius, _MAX_NOZZLE_C)}")


def set_bed_temp(seq: SequenceCounter, celsius: float) -> Command:
    """``M140 S<t>``: set the bed target (does not wait)."""
    return gcode_line(seq, f"M140 S{_temperature('bed temperature', celsius, _MAX_BED_C)}")


def set_chamber_temp(seq: SequenceCounter, celsius: float) -> Command:
    """``M141 S<t>``: set the chamber target (printers with a chamber heater: X1E, H2)."""
    return gcode_line(seq, f"M141 S{_temperature('chamber temperature', celsius, _MAX_CHAMBER_C)}")


def set_fan(seq: SequenceCounter, fan: Fan | int, percent: float) -> Command:
    """``M106 P<fan> S<0-255>`` from a percentage 0..100 (rounded half up).

    The printer later reports the speed in 16 steps (``"0"``..``"15"``) in its ``*_fan_speed``
    fields.
    """
    if isinstance(fan, Fan):
        index = int(fan)
    else:
        raw = _int("fan", fan, 0, 255)
        try:
            index = int(Fan(raw))
        except ValueError:
            allowed = ", ".join(f"{m.value} ({m.name.lower()})" for m in Fan)
            raise ValueError(f"fan must be one of {allowed}; got {raw}") from None
    pct = _number("fan percent", percent, 0, 100)
    speed = int(pct * 255 / 100 + 0.5)
    return gcode_line(seq, f"M106 P{index} S{speed}")


def home(seq: SequenceCounter) -> Command:
    """``G28``: home all axes."""
    return gcode_line(seq, "G28")


def gcode_file(seq: SequenceCounter, path: str) -> Command:
    """Print a plain ``.gcode`` file already on the printer's storage (e.g. ``/sdcard/a.gcode``)."""
    return _envelope("print", "gcode_file", seq, param=_text("path", path))


def calibration(
    seq: SequenceCounter,
    *,
    lidar: bool = False,
    bed_leveling: bool = False,
    vibration: bool = False,
    motor_noise: bool = False,
    extra_bits: int = 0,
) -> Command:
    """Run calibrations. ``option`` is a bit mask: 1 micro-lidar, 2 bed leveling, 4 vibration
    compensation, 8 motor-noise cancellation; ``extra_bits`` carries newer, undocumented bits."""
    option = _int("extra_bits", extra_bits, 0, 2**31 - 1)
    for bit, flag, name in (
        (1, lidar, "lidar"),
        (2, bed_leveling, "bed_leveling"),
        (4, vibration, "vibration"),
        (8, motor_noise, "motor_noise"),
    ):
        if _bool(name, flag):
            option |= bit
    if option == 0:
        raise ValueError("calibration needs at least one of lidar, bed_leveling, vibration, motor_noise")
    return _envelope("print", "calibration", seq, option=option)


def print_option(seq: SequenceCounter, option: PrintOption | str, enabled: bool) -> Command:
    """Toggle one printer option (one key per message, as the stock software sends it)."""
    key = _choice("print option", option, PrintOption)
    return _envelope("print", "print_option", seq, **{key.value: _bool("enabled", enabled)})


# --------------------------------------------------------------------------------------------
# Starting a 3MF print
# --------------------------------------------------------------------------------------------

_LEGACY_URL_FAMILIES: Final = frozenset({PrinterFamily.X1, PrinterFamily.P1, PrinterFamily.A1})


def _storage_path(path: object) -> str:
    text = _text("path", path).replace("\\", "/").lstrip("/")
    if not text:
        raise ValueError("path must name a file, got only slashes")
    if ".." in text.split("/"):
        raise ValueError(f"path must not contain '..' segments, got {path!r}")
    if any(ord(ch) < 0x20 for ch in text):
        raise ValueError(f"path must not contain control characters, got {path!r}")
    return text


def _resolve_model(model: PrinterModel | str) -> PrinterModel:
    if isinstance(model, PrinterModel):
        return model
    try:
        return model_by_code(model)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None


def project_url(path: str, model: PrinterModel | str) -> str:
    """The ``url`` of ``project_file`` for a file at ``path`` on the printer's storage.

    X1, P1 and A1 families get ``file:///sdcard/<path>``; the newer H2, P2, X2 and A2 families get
    ``ftp:///<path>`` (three slashes). ``path`` is relative to the storage root (the FTPS root);
    leading slashes are ignored.
    """
    rel = _storage_path(path)
    resolved = _resolve_model(model)
    if resolved.family in _LEGACY_URL_FAMILIES:
        return f"file:///sdcard/{rel}"
    return f"ftp:///{rel}"


def start_url(path: str, model: PrinterModel | str | None, *, gcode: bool = False) -> str:
    """Where a start command points for a file at ``path`` on the printer's storage: the one place
    that decides the URL form.

    ``project_file`` (``gcode=False``) takes :func:`project_url`; with the model unknown,
    ``file:///sdcard/<path>``, the form every family before the H2 reads. ``gcode_file``
    (``gcode=True``) takes :func:`project_url` on the newer families and a bare ``/sdcard/<path>``
    on X1, P1 and A1 (and when the model is unknown).
    """
    rel = _storage_path(path)
    resolved = _resolve_model(model) if model is not None else None
    if resolved is None:
        return f"/sdcard/{rel}" if gcode else f"file:///sdcard/{rel}"
    if gcode and resolved.family in _LEGACY_URL_FAMILIES:
        return f"/sdcard/{rel}"
    return project_url(rel, resolved)


def _ams_index(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or 0 <= value <= 255):
        raise ValueError(f"{name} entries must be -1 (unmapped) or a tray index 0..255, got {value!r}")
    return value


def ams_mapping2_from(ams_mapping: Sequence[int]) -> list[dict[str, int]]:
    """Derive the newer ``ams_mapping2`` list from a flat ``ams_mapping``.

    ``-1`` becomes ``{"ams_id": 255, "slot_id": 255}``; a 4-slot unit's global index ``u*4+s``
    becomes ``{"ams_id": u, "slot_id": s}``; an AMS HT index 128..135 becomes
    ``{"ams_id": index, "slot_id": 0}``. External spools (254/255) are also written as 255/255,
    which is how the protocol notes describe them; that encoding is not confirmed by a capture.
    """
    out: list[dict[str, int]] = []
    for raw in ams_mapping:
        value = _ams_index("ams_mapping", raw)
        if value == -1 or value >= 254:
            out.append({"ams_id": 255, "slot_id": 255})
        elif value >= 128:
            out.append({"ams_id": value, "slot_id": 0})
        else:
            out.append({"ams_id": value // 4, "slot_id": value % 4})
    return out


def _ams_mapping2(value: Iterable[Mapping[str, int] | tuple[int, int]]) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for entry in value:
        if isinstance(entry, Mapping):
            ams_id, slot_id = entry.get("ams_id"), entry.get("slot_id")
        elif isinstance(entry, tuple) and len(entry) == 2:
            ams_id, slot_id = entry
        else:
            raise ValueError(
                f"ams_mapping2 entries must be {{ams_id, slot_id}} or (ams_id, slot_id), got {entry!r}"
            )
        out.append({"ams_id": _int("ams_mapping2 ams_id", ams_id, 0, 255),
                    "slot_id": _int("ams_mapping2 slot_id", slot_id, 0, 255)})
    return out


def _stem(name: str) -> str:
    for suffix in (".gcode.3mf", ".3mf", ".gcode"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def project_file(
    seq: SequenceCounter,
    path: str,
    *,
    model: PrinterModel | str | None = None,
    url: str | None = None,
    plate: int = 1,
    subtask_name: str | None = None,
    md5: str | None = MD5_FROM_SD_CARD,
    bed_type: BedType | str = BedType.AUTO,
    timelapse: bool = False,
    bed_leveling: bool = True,
    flow_cali: bool = False,
    vibration_cali: bool = True,
    layer_inspect: bool = False,
    use_ams: bool | None = None,
    ams_mapping: Sequence[int] | None = None,
    ams_mapping2: Iterable[Mapping[str, int] | tuple[int, int]] | None = None,
    nozzle_mapping: Sequence[int] | None = None,
    auto_bed_leveling: CaliMode | int | None = None,
    extrude_cali_flag: CaliMode | int | None = None,
    nozzle_offset_cali: CaliMode | int | None = None,
    cfg: str | None = None,
    skip_objects: Sequence[int] | None = None,
    project_id: str = "0",
    profile_id: str = "0",
    task_id: str = "0",
    subtask_id: str = "0",
    extra: Mapping[str, Any] | None = None,
) -> Command:
    """Start printing plate ``plate`` of a ``.gcode.3mf`` already uploaded to ``path``.

    ``url`` defaults to :func:`project_url` for ``model`` (one of the two is required). ``file`` is
    the basename of ``path`` and ``subtask_name`` (shown on the printer's screen) defaults to it
    without ``.gcode.3mf``. ``md5`` defaults to the value Bambu Studio sends for files on the
    printer's storage; pass ``None`` to leave the key out.

    AMS: ``ams_mapping[i]`` is the global tray (``unit*4+slot``, 128..135 for AMS HT, 254/255 for an
    external spool, -1 unmapped) for filament ``i+1`` of the 3MF (see
    :func:`bambulab.protocol.threemf.match_ams_mapping`). ``use_ams`` defaults to whether a mapping
    was given; ``use_ams=True`` without a mapping is an error. ``ams_mapping2`` (newer firmware) is
    sent only when given (:func:`ams_mapping2_from` derives one).

    The tri-state ``auto_bed_leveling``/``extrude_cali_flag``/``nozzle_offset_cali``, ``cfg``,
    ``nozzle_mapping`` and ``skip_objects`` are sent only when given. ``extra`` adds further keys
    (cloud-dispatch fields such as ``job_id``); it cannot replace ``command`` or ``sequence_id``.
    """
    rel = _storage_path(path)
    if url is None:
        if model is None:
            raise ValueError("project_file needs model= (to choose the url form) or an explicit url=")
        resolved_url = project_url(rel, model)
    else:
        resolved_url = _text("url", url)
    plate_no = _int("plate", plate, 1, 10_000)
    file_name = rel.rsplit("/", 1)[-1]
    name = _stem(file_name) if subtask_name is None else _text("subtask_name", subtask_name)
    bed = bed_type.value if isinstance(bed_type, BedType) else _identifier("bed_type", bed_type)

    use_ams_flag = ams_mapping is not None if use_ams is None else _bool("use_ams", use_ams)
    if use_ams_flag and ams_mapping is None:
        raise ValueError("use_ams=True needs an ams_mapping (see threemf.match_ams_mapping)")

    body: dict[str, Any] = {
        "param": f"Metadata/plate_{plate_no}.gcode",
        "url": resolved_url,
        "file": file_name,
    }
    if md5 is not None:
        body["md5"] = _text("md5", md5)
    body.update(
        subtask_name=name,
        project_id=_text("project_id", project_id),
        profile_id=_text("profile_id", profile_id),
        task_id=_text("task_id", task_id),
        subtask_id=_text("subtask_id", subtask_id),
        bed_type=bed,
        timelapse=_bool("timelapse", timelapse),
        bed_leveling=_bool("bed_leveling", bed_leveling),
        flow_cali=_bool("flow_cali", flow_cali),
        vibration_cali=_bool("vibration_cali", vibration_cali),
        layer_inspect=_bool("layer_inspect", layer_inspect),
        use_ams=use_ams_flag,
    )
    if ams_mapping is not None:
        if isinstance(ams_mapping, str | bytes):
            raise ValueError("ams_mapping must be a sequence of ints")
        body["ams_mapping"] = [_ams_index("ams_mapping", v) for v in ams_mapping]
    if ams_mapping2 is not None:
        body["ams_mapping2"] = _ams_mapping2(ams_mapping2)
    if nozzle_mapping is not None:
        body["nozzle_mapping"] = [_int("nozzle_mapping", v, -1, 255) for v in nozzle_mapping]
    for key, value in (
        ("auto_bed_leveling", auto_bed_leveling),
        ("extrude_cali_flag", extrude_cali_flag),
        ("nozzle_offset_cali", nozzle_offset_cali),
    ):
        if value is not None:
            body[key] = int(CaliMode(_int(key, value, 0, 2)))
    if cfg is not None:
        body["cfg"] = _text("cfg", cfg)
    if skip_objects is not None:
        body["skip_objects"] = [_int("skip_objects", v, 0, 2**63 - 1) for v in skip_objects]
    if extra:
        for key, value in extra.items():
            if not isinstance(key, str) or key in ("command", "sequence_id"):
                raise ValueError(f"extra may not set {key!r}")
            body[key] = value
    return _envelope("print", "project_file", seq, **body)


# --------------------------------------------------------------------------------------------
# AMS and filament
# --------------------------------------------------------------------------------------------


def _tray_location(target: int) -> tuple[int, int]:
    if target == UNLOAD_TARGET:
        return 255, 255
    if target == EXTERNAL_SPOOL_TARGET:
        return 255, 0
    if 128 <= target <= 135:  # AMS HT: one slot per unit, the unit id is the index
        return target, 0
    if 0 <= target < 128:
        return target // 4, target % 4
    raise ValueError(
        f"target must be a tray index 0..127, an AMS HT unit 128..135, {EXTERNAL_SPOOL_TARGET} "
        f"(external spool) or {UNLOAD_TARGET} (unload); got {target}"
    )


def ams_change_filament(
    seq: SequenceCounter,
    target: int,
    *,
    tar_temp: int,
    curr_temp: int | None = None,
    extruder_id: int | None = None,
) -> Command:
    """Load or unload filament.

    ``target`` is the global tray to load (``unit*4+slot``; 128..135 for AMS HT units),
    :data:`EXTERNAL_SPOOL_TARGET` (254) for the external spool, or :data:`UNLOAD_TARGET` (255) to
    unload. ``tar_temp`` is the nozzle temperature for the new filament and ``curr_temp`` the one
    for the filament being pulled out (defaults to ``tar_temp``); both are sent as ints.
    ``ams_id``/``slot_id`` are derived from ``target`` (unload: 255/255; external: 255/0).
    """
    tray = _int("target", target, 0, 255)
    ams_id, slot_id = _tray_location(tray)
    tar = _temperature("tar_temp", tar_temp, _MAX_NOZZLE_C)
    cur = tar if curr_temp is None else _temperature("curr_temp", curr_temp, _MAX_NOZZLE_C)
    fields: dict[str, Any] = {
        "target": tray,
        "curr_temp": cur,
        "tar_temp": tar,
        "ams_id": ams_id,
        "slot_id": slot_id,
    }
    if extruder_id is not None:
        fields["extruder_id"] = _int("extruder_id", extruder_id, 0, 15)
    return _envelope("print", "ams_change_filament", seq, **fields)


_HEX_COLOR = re.compile(r"#?([0-9A-Fa-f]{6})([0-9A-Fa-f]{2})?\Z")


def _tray_color(value: object) -> str:
    if isinstance(value, str):
        match = _HEX_COLOR.match(value.strip())
        if match:
            return (match.group(1) + (match.group(2) or "FF")).upper()
    raise ValueError(f"color must be RRGGBB or RRGGBBAA hex (optionally with '#'), got {value!r}")


def ams_filament_setting(
    seq: SequenceCounter,
    *,
    ams_id: int,
    tray_id: int,
    tray_type: str,
    color: str,
    nozzle_temp_min: int,
    nozzle_temp_max: int,
    tray_info_idx: str = "",
    setting_id: str | None = None,
    slot_id: int | None = None,
) -> Command:
    """Tell the printer what filament is in a tray.

    ``tray_id`` is the slot **within** the unit (0..3; 0 for an AMS HT unit 128..135). The external
    spool is ``ams_id=255, tray_id=254`` (H2-class printers also have ``tray_id=255``).
    ``color`` is written as ``RRGGBBAA`` (alpha ``FF`` when not given). ``tray_info_idx`` is the
    filament preset id (``GFA00`` Bambu PLA Basic, ``GFL99`` generic PLA, ...). ``slot_id``
    defaults to ``tray_id`` for AMS units and is left out for the external spool.
    """
    unit = _int("ams_id", ams_id, 0, 255)
    if unit == 255:
        tray = _int("tray_id of the external spool (ams_id 255)", tray_id, 254, 255)
    elif 128 <= unit <= 135:
        tray = _int("tray_id (AMS HT has one slot)", tray_id, 0, 0)
    elif unit < 128:
        tray = _int("tray_id (slot within the unit)", tray_id, 0, 3)
    else:
        raise ValueError(f"ams_id must be 0..127, 128..135 (AMS HT) or 255 (external), got {unit}")
    tmin = _temperature("nozzle_temp_min", nozzle_temp_min, _MAX_NOZZLE_C)
    tmax = _temperature("nozzle_temp_max", nozzle_temp_max, _MAX_NOZZLE_C)
    if tmin > tmax:
        raise ValueError(f"nozzle_temp_min ({tmin}) must not exceed nozzle_temp_max ({tmax})")
    fields: dict[str, Any] = {"ams_id": unit, "tray_id": tray}
    if slot_id is not None:
        fields["slot_id"] = _int("slot_id", slot_id, 0, 255)
    elif unit != 255:
        fields["slot_id"] = tray
    fields["tray_info_idx"] = _text("tray_info_idx", tray_info_idx, allow_empty=True)
    if setting_id is not None:
        fields["setting_id"] = _text("setting_id", setting_id, allow_empty=True)
    fields.update(
        tray_color=_tray_color(color),
        nozzle_temp_min=tmin,
        nozzle_temp_max=tmax,
        tray_type=_text("tray_type", tray_type),
    )
    return _envelope("print", "ams_filament_setting", seq, **fields)


def ams_control(seq: SequenceCounter, action: AmsControlAction | str) -> Command:
    """Answer a filament-change prompt or control the AMS: resume, reset, pause, done, abort."""
    param = _choice("ams_control action", action, AmsControlAction).value
    return _envelope("print", "ams_control", seq, param=param)


# --------------------------------------------------------------------------------------------
# Camera and xcam
# --------------------------------------------------------------------------------------------


def _enable(name: str, value: object) -> str:
    return "enable" if _bool(name, value) else "disable"


def ipcam_record_set(seq: SequenceCounter, enabled: bool) -> Command:
    """Turn camera recording on or off."""
    return _envelope("camera", "ipcam_record_set", seq, control=_enable("enabled", enabled))


def ipcam_timelapse(seq: SequenceCounter, enabled: bool) -> Command:
    """Turn timelapse recording on or off."""
    return _envelope("camera", "ipcam_timelapse", seq, control=_enable("enabled", enabled))


def xcam_control_set(
    seq: SequenceCounter,
    module: XcamModule | str,
    enabled: bool,
    *,
    print_halt: bool = True,
    sensitivity: XcamSensitivity | str = XcamSensitivity.MEDIUM,
) -> Command:
    """Switch an AI/camera detector (``first_layer_inspector``, ``spaghetti_detector``, ...).

    ``print_halt`` says whether a detection pauses the print; ``sensitivity`` is low/medium/high.
    ``module`` may also be a detector name newer firmware reports in its ``xcam`` object.
    """
    name = module.value if isinstance(module, XcamModule) else _identifier("module_name", module)
    on = _bool("enabled", enabled)
    return _envelope(
        "xcam",
        "xcam_control_set",
        seq,
        module_name=name,
        control=on,
        enable=on,
        print_halt=_bool("print_halt", print_halt),
        halt_print_sensitivity=_choice("sensitivity", sensitivity, XcamSensitivity).value,
    )


# --------------------------------------------------------------------------------------------
# Classification, ack matching and results
# --------------------------------------------------------------------------------------------


class CommandClass(enum.StrEnum):
    """Whether a command must be signed on "authorization control" firmware (Developer Mode off)."""

    SIGNED = "signed"  # print.*: rejected unsigned with err_code 84033543
    UNSIGNED = "unsigned"  # pushing, info, system, camera, xcam: accepted unsigned
    UNKNOWN = "unknown"  # a section nobody has documented either way (upgrade, security, ...)

    @property
    def needs_signature(self) -> bool:
        return self is CommandClass.SIGNED


_UNSIGNED_SECTIONS: Final = frozenset({"pushing", "info", "system", "camera", "xcam"})
_SIGNED_SECTIONS: Final = frozenset({"print"})


def classify(section: str, command: str) -> CommandClass:
    """Classify ``section.command`` for signing firmware.

    Everything in ``print`` needs a signature (print start/stop/pause, gcode_line, AMS, options);
    ``pushing``, ``info``, ``system`` (lights, access code), ``camera`` and ``xcam`` are accepted
    unsigned. The command name is accepted for future refinement; today the section decides.
    """
    del command  # the section decides; kept in the signature so callers need not change later
    if section in _SIGNED_SECTIONS:
        return CommandClass.SIGNED
    if section in _UNSIGNED_SECTIONS:
        return CommandClass.UNSIGNED
    return CommandClass.UNKNOWN


def _is_mapping(value: object) -> bool:
    return isinstance(value, Mapping)


def _seq_key(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) else repr(value)


def is_ack_for(request: Mapping[str, Any], reply: Mapping[str, Any]) -> bool:
    """Whether ``reply`` (a message from ``report``) acknowledges ``request``.

    True when, for a section of the request that carries a ``command``, the reply has the same
    section with the same ``command`` and the same ``sequence_id`` compared as strings (``5`` and
    ``"5"`` match; a request without an id matches a reply without one). Never raises.
    """
    if not (_is_mapping(request) and _is_mapping(reply)):
        return False
    for section, body in request.items():
        if section == "header" or not isinstance(body, Mapping):
            continue
        command = body.get("command")
        if not isinstance(command, str):
            continue
        answer = reply.get(section)
        if not isinstance(answer, Mapping) or answer.get("command") != command:
            continue
        if _seq_key(body.get("sequence_id")) == _seq_key(answer.get("sequence_id")):
            return True
    return False


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an acknowledgement says.

    ``success`` follows these rules: a ``result`` of ``success`` in any letter case is success, any
    other ``result`` is failure; with no ``result`` at all (P1S 01.10 sometimes acks with only
    ``command`` and ``sequence_id``) the ack counts as success unless it carries a non-zero
    ``err_code`` or a negative ``errno``. The signing errors are always failures.
    """

    success: bool
    section: str | None = None
    command: str | None = None
    sequence_id: str | None = None
    result: str | None = None
    reason: str | None = None
    err_code: int | None = None
    errno: int | None = None
    #: The printer wants signed commands (err_code 84033543 / "mqtt message verify failed"):
    #: Developer Mode is off on authorization-control firmware.
    signature_required: bool = False
    #: The printer rejected a reused ``sequence_id`` (err_code 84033544).
    replay: bool = False

    @property
    def authorization_error(self) -> bool:
        """Any error of the authorization-control block (84033543..84033548)."""
        return self.signature_required or self.replay or (
            self.err_code is not None and self.err_code in _AUTH_ERR_RANGE
        )


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= 20 and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    return None


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def _ack_body(reply: Mapping[Any, Any]) -> tuple[str | None, Mapping[Any, Any]]:
    for section, body in reply.items():
        if section == "header" or not isinstance(section, str):
            continue
        if isinstance(body, Mapping) and "command" in body:
            return section, body
    return None, reply


def ack_result(reply: Mapping[str, Any]) -> AckResult:
    """Decode an acknowledgement. ``reply`` is the whole message (``{"print": {...}}``) or just the
    section body. Never raises, whatever the dict holds."""
    if not _is_mapping(reply):
        return AckResult(success=False, reason="not a mapping")
    section, body = _ack_body(reply)
    command = body.get("command")
    result = _as_text(body.get("result"))
    reason = _as_text(body.get("reason"))
    err_code = _as_int(body.get("err_code"))
    errno = _as_int(body.get("errno"))
    signature_required = err_code == ERR_SIGNATURE_REQUIRED or (
        reason is not None and _SIGNATURE_REASON in reason.strip().lower()
    )
    replay = err_code == ERR_REPLAY
    if signature_required or replay:
        success = False
    elif result is not None:
        success = result.strip().lower() == "success"
    else:
        success = not err_code and not (errno is not None and errno < 0)
    return AckResult(
        success=success,
        section=section,
        command=command if isinstance(command, str) else None,
        sequence_id=_seq_key(body.get("sequence_id")),
        result=result,
        reason=reason,
        err_code=err_code,
        errno=errno,
        signature_required=signature_required,
        replay=replay,
    )
