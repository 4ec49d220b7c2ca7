"""The virtual printer's brain: commands in, state changes and reports out.

The engine knows nothing about sockets. :meth:`PrinterEngine.handle` takes one request payload
and returns the messages to publish (acknowledgements, replies, an immediate push);
:meth:`PrinterEngine.advance` moves simulated time forward (heaters, print progress, timed
events); :meth:`PrinterEngine.periodic_report` returns the next periodic push, full or delta
according to the model. The MQTT service and the simulator's clock drive it.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from bambulab.protocol.models import PrinterFamily, PrinterModel
from bambulab.sim import payloads
from bambulab.sim.config import AuthMode, DeltaMode, Quirks
from bambulab.sim.state import Dynamic, Heater, HmsEntry, Job, Tray

__all__ = ["ERR_SIGNATURE", "PrinterEngine", "diff_report"]

# print_error codes (32-bit) the engine raises.
ERR_CANCELLED = 0x0300400C
ERR_BUSY = 0x05004004
ERR_FILE_MISSING = 0x0300800E
# MQTT signature enforcement (authorization-control firmware with Developer Mode off).
ERR_SIGNATURE = 84033543
ERR_REPLAY = 84033544
SIGNATURE_REASON = "mqtt message verify failed"

# HMS raised on filament runout ("AMS A slot 1 filament has run out" family) and for the
# external spool (toolhead filament sensor).
HMS_RUNOUT_AMS = HmsEntry(attr=0x07002000, code=0x00020001)
HMS_RUNOUT_EXTERNAL = HmsEntry(attr=0x07FF2000, code=0x00020001)

# Sections that signature-enforcing firmware still accepts unsigned.
_UNSIGNED_OK = {"system", "info", "pushing", "camera", "xcam", "upgrade", "security"}
_HEADER_FIELDS = ("sign_ver", "sign_alg", "sign_string", "cert_id", "payload_len")

AMBIENT = 25.0
NOZZLE_RATE = 2.5  # °C per simulated second
BED_RATE = 0.8
CHAMBER_RATE = 0.05
COOL_RATE = 0.6

_GCODE_WORD = re.compile(r"([A-Za-z])\s*(-?\d+(?:\.\d+)?)")

Message = dict[str, Any]


def diff_report(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Keys of ``new`` whose values differ from ``old``; nested objects as changed sub-trees.

    Lists are compared and sent whole, as the printers do (AMS units, HMS, stages).
    """
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            out[key] = value
            continue
        before = old[key]
        if isinstance(value, dict) and isinstance(before, dict):
            sub = diff_report(before, value)
            if sub:
                out[key] = sub
        elif value != before or type(value) is not type(before):
            out[key] = value
    return out


def _approach(heater: Heater, goal: float, step: float) -> None:
    """Move a heater's temperature towards ``goal`` by at most ``step`` degrees."""
    gap = goal - heater.temp
    heater.temp = goal if abs(gap) <= step else heater.temp + math.copysign(step, gap)


@dataclass
class _Timer:
    at: float  # simulated time
    action: Callable[[], None]


class PrinterEngine:
    """One printer's command handling and physics. Single-threaded; not thread-safe."""

    def __init__(
        self,
        *,
        model: PrinterModel,
        serial: str,
        access_code: str,
        storage: Path,
        quirks: Quirks,
        dynamic: Dynamic | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.model = model
        self.serial = serial
        self._access_code = access_code
        self.storage = storage
        self.quirks = quirks.resolved(model)
        self.rng = rng or random.Random()
        self.dyn = dynamic or payloads.default_dynamic(model, rng=self.rng)
        self.dyn.signing_required = self.quirks.auth_mode is AuthMode.ENFORCED
        self.dyn.lan_liveview = self.quirks.lan_liveview
        self.now = 0.0  # simulated seconds since start
        self.pushing = True  # periodic pushes on (pushing.start / pushing.stop)
        self._timers: list[_Timer] = []
        self._last_sent: dict[str, Any] | None = None
        self._seen_seq: set[str] = set()
        self.pushall_count = 0
        self.commands_handled = 0
        #: Resolves a non-local project_file URL (e.g. a cloud https link) to a local file.
        self.url_resolver: Callable[[str], Path | None] | None = None

    # ------------------------------------------------------------------ reports

    def _next_seq(self) -> str:
        self.dyn.report_seq += 1
        return str(self.dyn.report_seq)

    def current_report(self) -> dict[str, Any]:
        return payloads.build_report(self.model, self.dyn, serial=self.serial)

    def full_report(self) -> Message:
        """A full ``push_status`` (``msg: 0``); the baseline for later deltas."""
        body = self.current_report()
        self._last_sent = body
        return {"print": {**body, "command": "push_status", "msg": 0, "sequence_id": self._next_seq()}}

    def delta_report(self) -> Message | None:
        """Only what changed since the last report, or ``None`` when nothing did."""
        body = self.current_report()
        if self._last_sent is None:
            self._last_sent = body
            return {"print": {**body, "command": "push_status", "msg": 0, "sequence_id": self._next_seq()}}
        changed = diff_report(self._last_sent, body)
        self._last_sent = body
        if not changed:
            return None
        return {"print": {**changed, "command": "push_status", "msg": 1, "sequence_id": self._next_seq()}}

    def periodic_report(self) -> Message | None:
        """The next periodic push: full on X1-class printers, a delta on P1/A1-class ones."""
        if not self.pushing:
            return None
        self._wifi_noise()
        if self.quirks.delta_mode is DeltaMode.FULL_ALWAYS:
            return self.full_report()
        return self.delta_report()

    def change_report(self) -> Message | None:
        """What a printer publishes right after a command changed its state."""
        if self.quirks.delta_mode is DeltaMode.FULL_ALWAYS:
            body = self.current_report()
            if body == self._last_sent:
                return None
            self._last_sent = body
            return {"print": {**body, "command": "push_status", "msg": 0, "sequence_id": self._next_seq()}}
        return self.delta_report()

    def _wifi_noise(self) -> None:
        # Real P1/A1 printers emit a delta every few seconds just because the signal moves.
        if self.rng.random() < 0.6:
            self.dyn.wifi_dbm = max(-90, min(-30, self.dyn.wifi_dbm + self.rng.choice((-1, 1))))

    def version_reply(self, sequence_id: Any, has_seq: bool) -> Message:
        info: dict[str, Any] = {
            "command": "get_version",
            "module": payloads.version_modules(self.model, self.dyn, serial=self.serial),
        }
        if has_seq:
            info["sequence_id"] = sequence_id
        if payloads.version_reply_has_result(self.model):
            info["result"] = self._ok()
            info["reason"] = ""
        return {"info": info}

    # ------------------------------------------------------------------ acks

    def _ok(self) -> str:
        return "SUCCESS" if self.quirks.result_upper else "success"

    def _fail_word(self) -> str:
        return "FAIL" if self.quirks.result_upper else "fail"

    @staticmethod
    def _ack(section: str, body: dict[str, Any], **fields: Any) -> Message:
        out: dict[str, Any] = {"command": body.get("command", "")}
        if "sequence_id" in body:
            out["sequence_id"] = body["sequence_id"]
        out.update(fields)
        return {section: out}

    def _success(self, section: str, body: dict[str, Any], **extra: Any) -> Message:
        return self._ack(section, body, result=self._ok(), reason="", **extra)

    def _failure(self, section: str, body: dict[str, Any], reason: str, **extra: Any) -> Message:
        return self._ack(section, body, result=self._fail_word(), reason=reason, **extra)

    # ------------------------------------------------------------------ requests

    def handle(self, raw: bytes) -> list[Message]:
        """Handle one payload published to the request topic; return what to publish."""
        self.commands_handled += 1
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return [{"system": {"command": "", "result": self._fail_word(), "reason": "malformed JSON"}}]
        if not isinstance(message, dict) or not message:
            return [{"system": {"command": "", "result": self._fail_word(), "reason": "not a JSON object"}}]
        header = message.get("header")
        out: list[Message] = []
        changed = False
        for section, body in message.items():
            if section == "header":
                continue
            if not isinstance(body, dict):
                out.append({section: {"command": "", "result": self._fail_word(),
                                      "reason": "section is not an object"}})
                continue
            replies, did_change = self._handle_section(section, body, header)
            out.extend(replies)
            changed = changed or did_change
        if changed:
            push = self.change_report()
            if push is not None:
                out.append(push)
        return out

    def _signature_problem(self, section: str, body: dict[str, Any], header: Any) -> Message | None:
        if self.quirks.auth_mode is not AuthMode.ENFORCED or section in _UNSIGNED_OK:
            return None
        if not isinstance(header, dict) or any(k not in header for k in _HEADER_FIELDS):
            return self._ack(section, body, result="failed", reason=SIGNATURE_REASON, err_code=ERR_SIGNATURE)
        seq = str(body.get("sequence_id", ""))
        if seq in self._seen_seq or seq in ("", "0"):
            return self._ack(section, body, result="failed", reason="mqtt message replay", err_code=ERR_REPLAY)
        self._seen_seq.add(seq)
        return None

    def handle_local(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        """Run a command given on the printer's own screen: no signature is involved."""
        return self._handle_section(section, body, None, trusted=True)

    def _handle_section(
        self, section: str, body: dict[str, Any], header: Any, *, trusted: bool = False
    ) -> tuple[list[Message], bool]:
        command = body.get("command")
        if not isinstance(command, str) or not command:
            return [self._failure(section, body, "missing command")], False
        problem = None if trusted else self._signature_problem(section, body, header)
        if problem is not None:
            return [problem], False
        handler = self._HANDLERS.get((section, command))
        if handler is None:
            return [self._failure(section, body, f"unsupported command {section}.{command}")], False
        try:
            return handler(self, section, body)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return [self._failure(section, body, f"invalid parameters: {exc}")], False

    # pushing / info ------------------------------------------------------

    def _cmd_pushall(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        self.pushall_count += 1
        return [self.full_report()], False

    def _cmd_push_start(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        self.pushing = True
        return [self._success(section, body)], False

    def _cmd_push_stop(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        self.pushing = False
        return [self._success(section, body)], False

    def _cmd_get_version(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        return [self.version_reply(body.get("sequence_id"), "sequence_id" in body)], False

    # print control ---------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.dyn.job.gcode_state in ("PREPARE", "RUNNING", "PAUSE", "SLICING")

    def _idle_stage(self) -> int:
        return 255 if self.model.family in (PrinterFamily.P1, PrinterFamily.A1) else -1

    def _cmd_pause(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        job = self.dyn.job
        if job.gcode_state not in ("RUNNING", "PREPARE"):
            return [self._failure(section, body, "no print is running")], False
        job.gcode_state = "PAUSE"
        job.stage = 16
        return [self._success(section, body)], True

    def _cmd_resume(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        job = self.dyn.job
        if job.gcode_state != "PAUSE":
            return [self._failure(section, body, "the print is not paused")], False
        job.gcode_state = "RUNNING" if job.prepare_s <= 0 or job.elapsed_s > 0 else "PREPARE"
        job.stage = 0 if job.gcode_state == "RUNNING" else (job.stages[0] if job.stages else 0)
        self.dyn.filament_present = True
        self.dyn.hms = [h for h in self.dyn.hms if h not in (HMS_RUNOUT_AMS, HMS_RUNOUT_EXTERNAL)]
        return [self._success(section, body)], True

    def _cmd_stop(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        if not self.busy:
            return [self._failure(section, body, "no print to stop")], False
        self.cancel_print()
        return [self._success(section, body)], True

    def cancel_print(self) -> None:
        job = self.dyn.job
        job.gcode_state = "FAILED"
        job.stage = self._idle_stage()
        job.print_error = ERR_CANCELLED
        self._cool_down()

        def clear() -> None:
            if self.dyn.job.print_error == ERR_CANCELLED:
                self.dyn.job.print_error = 0

        self._at(self.quirks.stop_error_seconds, clear)

    def _cmd_print_speed(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        level = int(str(body.get("param", "")).strip())
        if level not in (1, 2, 3, 4):
            return [self._failure(section, body, "param must be 1-4")], False
        self.dyn.speed_level = level
        return [self._success(section, body, param=body.get("param"))], True

    def _cmd_skip_objects(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        objs = body.get("obj_list")
        if not isinstance(objs, list) or not all(isinstance(o, int) for o in objs):
            return [self._failure(section, body, "obj_list must be a list of integers")], False
        if not self.busy:
            return [self._failure(section, body, "no print is running")], False
        for obj in objs:
            if obj not in self.dyn.job.skipped_objects:
                self.dyn.job.skipped_objects.append(obj)
        return [self._success(section, body, obj_list=objs)], True

    def _cmd_clean_print_error(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        self.dyn.job.print_error = 0
        return [self._success(section, body)], True

    def _cmd_print_option(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        return [self._success(section, body)], False

    # G-code ----------------------------------------------------------------

    def _cmd_gcode_line(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        param = body.get("param")
        if not isinstance(param, str) or not param.strip():
            return [self._failure(section, body, "param must be G-code text")], False
        changed = False
        for line in param.splitlines():
            changed = self.apply_gcode(line) or changed
        return [self._success(section, body, param=param)], changed

    def apply_gcode(self, line: str) -> bool:
        """Apply one G-code line to the simulated hardware; True when the state changed."""
        code = line.split(";", 1)[0].strip().upper()
        if not code:
            return False
        head, _, rest = code.partition(" ")
        words = {k.upper(): float(v) for k, v in _GCODE_WORD.findall(rest)}
        dyn = self.dyn
        if head in ("M104", "M109"):
            index = int(words.get("T", dyn.active_extruder))
            if 0 <= index < len(dyn.nozzles) and "S" in words:
                dyn.nozzles[index].target = max(0.0, min(320.0, words["S"]))
                return True
        elif head in ("M140", "M190"):
            if "S" in words:
                dyn.bed.target = max(0.0, min(120.0, words["S"]))
                return True
        elif head == "M141":
            if "S" in words and self.model.chamber_heater:
                dyn.chamber.target = max(0.0, min(65.0, words["S"]))
                return True
        elif head == "M106":
            speed = int(max(0.0, min(255.0, words.get("S", 255.0))))
            fan = int(words.get("P", 1))
            attr = {1: "fan_part", 2: "fan_aux", 3: "fan_chamber"}.get(fan)
            if attr:
                setattr(dyn, attr, speed)
                return True
        elif head == "M107":
            dyn.fan_part = 0
            return True
        elif head == "G28":
            dyn.homed = True
            return True
        elif head == "M220" and "S" in words:
            # Feed-rate percent: the speed profile whose percent is nearest (M220 S166 = ludicrous).
            wanted = words["S"]
            level = min(payloads.SPEED_MAGNITUDE, key=lambda lvl: abs(payloads.SPEED_MAGNITUDE[lvl] - wanted))
            changed = level != dyn.speed_level
            dyn.speed_level = level
            return changed
        return False

    # lights ----------------------------------------------------------------

    def _cmd_ledctrl(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        node, mode = body.get("led_node"), body.get("led_mode")
        if not isinstance(node, str) or node not in self.dyn.lights:
            return [self._failure(section, body, f"unknown led_node {node!r}")], False
        if not isinstance(mode, str) or mode not in ("on", "off", "flashing"):
            return [self._failure(section, body, "led_mode must be on, off or flashing")], False
        self.dyn.lights[node] = mode
        echo = {k: body[k] for k in ("led_node", "led_mode", "led_on_time", "led_off_time",
                                     "loop_times", "interval_time") if k in body}
        return [self._success(section, body, **echo)], True

    def _cmd_get_access_code(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        return [self._success(section, body, access_code=self._access_code)], False

    # printing files ---------------------------------------------------------

    def resolve_url(self, url: str) -> Path | None:
        """Map every URL form real clients send to a file in the printer's storage."""
        if not isinstance(url, str) or not url:
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return self.url_resolver(url) if self.url_resolver else None
        if scheme == "file":
            path = unquote(parts.path)
            for prefix in ("/sdcard/", "/mnt/sdcard/", "/media/usb0/", "/mnt/usb0/"):
                if path.startswith(prefix):
                    return self._in_storage(path[len(prefix):])
            return self._in_storage(path)
        if scheme == "ftp":
            # ftp:///name (three slashes) has the path; ftp://name (two) puts it in the netloc.
            return self._in_storage(unquote((parts.netloc + "/" + parts.path.lstrip("/")).strip("/")))
        if scheme == "brtc":
            return self._in_storage(unquote(parts.path))
        if not scheme:
            return self._in_storage(unquote(url))
        return None

    def _in_storage(self, relative: str) -> Path | None:
        clean = PurePosixPath("/" + relative.lstrip("/"))
        parts = [p for p in clean.parts if p not in ("/", "", ".")]
        if ".." in parts:
            return None
        candidate = self.storage.joinpath(*parts) if parts else self.storage
        return candidate if candidate.is_file() else None

    def _cmd_project_file(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        echo = {k: body[k] for k in ("param", "url", "file", "subtask_name", "md5", "bed_type",
                                     "ams_mapping", "use_ams") if k in body}
        if self.busy:
            self.dyn.job.print_error = ERR_BUSY
            self._at(self.quirks.stop_error_seconds, self._clear_error(ERR_BUSY))
            return [self._failure(section, body, "printer is busy", err_code=ERR_BUSY, **echo)], True
        url = body.get("url")
        if url is None and "url_enc" in body:
            return [self._failure(section, body, "url_enc needs the device certificate", **echo)], False
        path = self.resolve_url(str(url or ""))
        if path is None:
            self._fail_job(ERR_FILE_MISSING)
            return [self._failure(section, body, "file not found", err_code=ERR_FILE_MISSING, **echo)], True
        plate = _plate_from_param(body.get("param"))
        info = _read_project_info(path, plate)
        mapping = body.get("ams_mapping")
        use_ams = bool(body.get("use_ams", bool(self.dyn.ams)))
        tray = 255
        if use_ams and isinstance(mapping, list) and mapping and isinstance(mapping[0], int) and mapping[0] >= 0:
            tray = mapping[0]
        elif not use_ams:
            tray = 254
        name = str(body.get("subtask_name") or body.get("file") or path.name)
        for suffix in (".gcode.3mf", ".3mf", ".gcode"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        stages = [2, 13]
        if body.get("bed_leveling", body.get("bed_levelling", True)):
            stages.append(1)
        if body.get("vibration_cali"):
            stages.append(3)
        if body.get("flow_cali"):
            stages.append(8)
        self.start_job(
            gcode_file=str(body.get("param") or path.name),
            subtask_name=name,
            duration_s=info.duration_s,
            layers=info.layers,
            stages=stages,
            tray=tray,
            print_type="cloud" if str(url).startswith("http") else "local",
            ids={k: str(body.get(k, "0")) for k in ("project_id", "profile_id", "task_id", "subtask_id")},
            plate=plate,
            nozzle_target=info.nozzle_temp,
            bed_target=info.bed_temp,
        )
        return [self._success(section, body, **echo)], True

    def _cmd_gcode_file(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        param = str(body.get("param", ""))
        if self.busy:
            return [self._failure(section, body, "printer is busy", err_code=ERR_BUSY)], False
        path = self.resolve_url(param if "://" in param else "file://" + ("" if param.startswith("/") else "/")
                                + param)
        if path is None:
            self._fail_job(ERR_FILE_MISSING)
            return [self._failure(section, body, "file not found", err_code=ERR_FILE_MISSING)], True
        info = _read_gcode_info(path)
        self.start_job(gcode_file=param, subtask_name=path.stem, duration_s=info.duration_s,
                       layers=info.layers, stages=[2, 13], tray=self.dyn.tray_now, print_type="local",
                       ids={}, plate=0, nozzle_target=info.nozzle_temp, bed_target=info.bed_temp)
        return [self._success(section, body, param=param)], True

    def _fail_job(self, error: int) -> None:
        job = self.dyn.job
        job.gcode_state = "FAILED"
        job.print_error = error
        job.stage = self._idle_stage()

    def _clear_error(self, code: int) -> Callable[[], None]:
        def clear() -> None:
            if self.dyn.job.print_error == code:
                self.dyn.job.print_error = 0

        return clear

    def start_job(
        self,
        *,
        gcode_file: str,
        subtask_name: str,
        duration_s: float,
        layers: int,
        stages: list[int],
        tray: int,
        print_type: str,
        ids: dict[str, str],
        plate: int,
        nozzle_target: float = 220.0,
        bed_target: float = 55.0,
    ) -> None:
        """Start a print: PREPARE (stages, prepare percent), then RUNNING, then FINISH."""
        job = Job(
            gcode_state="PREPARE",
            print_type=print_type,
            stage=stages[0] if stages else 2,
            stages=list(stages),
            prepare_percent=0,
            total_layers=max(1, layers),
            gcode_file=gcode_file,
            subtask_name=subtask_name,
            plate_index=plate,
            duration_s=max(1.0, duration_s),
            prepare_s=30.0 * max(1, len(stages)),
            remaining_minutes=math.ceil(max(1.0, duration_s) / 60),
        )
        for key, value in ids.items():
            setattr(job, key, value)
        self.dyn.job = job
        self.dyn.tray_pre, self.dyn.tray_now = self.dyn.tray_now, tray
        self.dyn.tray_tar = tray
        nozzle = self.dyn.nozzles[self.dyn.active_extruder]
        nozzle.target = nozzle_target
        self.dyn.bed.target = bed_target
        self.dyn.homed = True

    # AMS -------------------------------------------------------------------

    def _tray(self, global_index: int) -> Tray | None:
        for unit in self.dyn.ams:
            base = unit.unit_id if unit.unit_id >= 128 else unit.unit_id * 4
            for tray in unit.trays:
                if base + tray.slot == global_index:
                    return tray
        return None

    def _cmd_ams_change_filament(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        target = int(body.get("target", -1))
        if self.dyn.job.gcode_state in ("RUNNING", "PREPARE"):
            return [self._failure(section, body, "printer is busy", errno=-1)], False
        if target == 255:
            new = 255
        elif target == 254:
            if not any(t.loaded for t in self.dyn.external):
                return [self._failure(section, body, "external spool is empty", errno=-2)], False
            new = 254
        else:
            tray = self._tray(target)
            if tray is None or not tray.loaded:
                return [self._failure(section, body, f"tray {target} is empty or missing", errno=-2)], False
            new = target
        self.dyn.tray_pre, self.dyn.tray_now, self.dyn.tray_tar = self.dyn.tray_now, new, new
        return [self._success(section, body, target=target)], True

    def _cmd_ams_filament_setting(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        ams_id = int(body["ams_id"])
        tray_id = int(body["tray_id"])
        tray: Tray | None
        if ams_id == 255:
            idx = 0 if tray_id == 254 or len(self.dyn.external) == 1 else 1
            tray = self.dyn.external[idx] if idx < len(self.dyn.external) else None
        else:
            unit = next((u for u in self.dyn.ams if u.unit_id == ams_id), None)
            tray = next((t for t in unit.trays if t.slot == tray_id), None) if unit else None
        if tray is None:
            return [self._failure(section, body, f"no tray {ams_id}/{tray_id}")], False
        color = str(body.get("tray_color", tray.color)).upper()
        if not re.fullmatch(r"[0-9A-F]{8}", color):
            return [self._failure(section, body, "tray_color must be RRGGBBAA hex")], False
        tray.loaded = True
        tray.color = color
        tray.material = str(body.get("tray_type", tray.material))
        tray.info_idx = str(body.get("tray_info_idx", tray.info_idx))
        tray.nozzle_temp_min = int(body.get("nozzle_temp_min", tray.nozzle_temp_min))
        tray.nozzle_temp_max = int(body.get("nozzle_temp_max", tray.nozzle_temp_max))
        tray.is_bbl = False
        echo = {k: body[k] for k in ("ams_id", "tray_id", "tray_color", "tray_type", "tray_info_idx",
                                     "nozzle_temp_min", "nozzle_temp_max") if k in body}
        return [self._success(section, body, **echo)], True

    def _cmd_ams_control(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        if body.get("param") not in ("resume", "reset", "pause", "done", "abort"):
            return [self._failure(section, body, "unknown ams_control param")], False
        return [self._success(section, body, param=body.get("param"))], False

    # calibration, cameras, xcam ---------------------------------------------

    def _cmd_calibration(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        if self.busy:
            return [self._failure(section, body, "printer is busy", err_code=ERR_BUSY)], False
        option = int(body.get("option", 0))
        stages = [s for bit, s in ((1, 12), (2, 1), (4, 3), (8, 25)) if option & bit] or [1, 3]
        self.start_job(gcode_file="/usr/etc/print/auto_cali_for_user.gcode", subtask_name="calibration",
                       duration_s=120.0 * len(stages), layers=1, stages=stages, tray=self.dyn.tray_now,
                       print_type="system", ids={}, plate=0, nozzle_target=0.0, bed_target=60.0)
        self.dyn.job.prepare_s = 120.0 * len(stages)
        self.dyn.job.duration_s = 1.0
        return [self._success(section, body, option=option)], True

    def _cmd_xcam_control_set(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        module = body.get("module_name")
        if not isinstance(module, str) or not module:
            return [self._failure(section, body, "module_name is required")], False
        control = body.get("control", body.get("enable"))
        if not isinstance(control, bool):
            return [self._failure(section, body, "control must be true or false")], False
        self.dyn.xcam[module] = control
        if "print_halt" in body and isinstance(body["print_halt"], bool):
            self.dyn.xcam["print_halt"] = body["print_halt"]
        if body.get("halt_print_sensitivity") in ("low", "medium", "high"):
            self.dyn.xcam["halt_print_sensitivity"] = body["halt_print_sensitivity"]
        echo = {k: body[k] for k in ("module_name", "control", "enable", "print_halt",
                                     "halt_print_sensitivity") if k in body}
        return [self._success(section, body, **echo)], True

    def _enable_flag(self, section: str, body: dict[str, Any], attr: str) -> tuple[list[Message], bool]:
        control = body.get("control")
        if control not in ("enable", "disable"):
            return [self._failure(section, body, "control must be enable or disable")], False
        setattr(self.dyn, attr, control == "enable")
        return [self._success(section, body, control=control)], True

    def _cmd_ipcam_record_set(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        return self._enable_flag(section, body, "ipcam_record")

    def _cmd_ipcam_timelapse(self, section: str, body: dict[str, Any]) -> tuple[list[Message], bool]:
        return self._enable_flag(section, body, "timelapse")

    _HANDLERS: dict[tuple[str, str], Callable[[PrinterEngine, str, dict[str, Any]], tuple[list[Message], bool]]]

    # ------------------------------------------------------------------ time

    def _at(self, delay: float, action: Callable[[], None]) -> None:
        self._timers.append(_Timer(self.now + delay, action))

    def advance(self, dt: float) -> None:
        """Move simulated time forward by ``dt`` seconds."""
        if dt <= 0:
            return
        self.now += dt
        due = [t for t in self._timers if t.at <= self.now]
        if due:
            self._timers = [t for t in self._timers if t.at > self.now]
            for timer in due:
                timer.action()
        self._advance_job(dt)
        self._advance_heaters(dt)

    def _advance_job(self, dt: float) -> None:
        job = self.dyn.job
        if job.gcode_state == "PREPARE":
            job.prepare_elapsed_s += dt
            done = job.prepare_elapsed_s / max(job.prepare_s, 1e-9)
            job.prepare_percent = min(100, int(done * 100))
            if job.stages:
                job.stage = job.stages[min(len(job.stages) - 1, int(done * len(job.stages)))]
            if done >= 1.0:
                if job.print_type == "system":  # calibration runs end back at idle
                    self._finish(job, idle=True)
                    return
                job.gcode_state = "RUNNING"
                job.stage = 0
                job.prepare_percent = 100
                self.dyn.fan_part = 255
                self.dyn.fan_heatbreak = 255
        elif job.gcode_state == "RUNNING":
            speed = {1: 0.5, 2: 1.0, 3: 1.24, 4: 1.66}.get(self.dyn.speed_level, 1.0)
            job.elapsed_s += dt * speed
            frac = min(1.0, job.elapsed_s / job.duration_s)
            job.percent = min(100, int(frac * 100))
            job.layer = min(job.total_layers, max(1, math.ceil(frac * job.total_layers)))
            job.remaining_minutes = max(0, math.ceil((job.duration_s - job.elapsed_s) / 60 / speed))
            if frac >= 1.0:
                self._finish(job)
        if self.dyn.fan_heatbreak == 0 and self.dyn.nozzles[0].temp > 50:
            self.dyn.fan_heatbreak = 255
        elif self.dyn.fan_heatbreak and self.dyn.nozzles[0].temp < 45 and not self.busy:
            self.dyn.fan_heatbreak = 0

    def _finish(self, job: Job, *, idle: bool = False) -> None:
        job.gcode_state = "IDLE" if idle else "FINISH"
        job.percent = 0 if idle else 100
        job.remaining_minutes = 0
        job.layer = 0 if idle else job.total_layers
        job.stage = self._idle_stage()
        self._cool_down()

    def _cool_down(self) -> None:
        for nozzle in self.dyn.nozzles:
            nozzle.target = 0.0
        self.dyn.bed.target = 0.0
        self.dyn.fan_part = 0
        self.dyn.fan_aux = 0

    def _advance_heaters(self, dt: float) -> None:
        for heater, rate in [(n, NOZZLE_RATE) for n in self.dyn.nozzles] + [(self.dyn.bed, BED_RATE)]:
            goal = heater.target if heater.target > 0 else AMBIENT
            _approach(heater, goal, (rate if goal > heater.temp else COOL_RATE) * dt)
        chamber = self.dyn.chamber
        goal = max(AMBIENT + (self.dyn.bed.temp - AMBIENT) * 0.15, chamber.target or 0.0)
        _approach(chamber, goal, CHAMBER_RATE * dt)

    # ------------------------------------------------------------------ use cases

    def inject_hms(self, attr: int, code: int) -> None:
        entry = HmsEntry(attr=attr, code=code)
        if entry not in self.dyn.hms:
            self.dyn.hms.append(entry)

    def clear_hms(self, attr: int | None = None, code: int | None = None) -> None:
        self.dyn.hms = [
            h for h in self.dyn.hms
            if not ((attr is None or h.attr == attr) and (code is None or h.code == code))
        ]

    def filament_runout(self) -> None:
        """The filament sensor runs dry: a print pauses (stage 6) and an HMS error is raised."""
        self.dyn.filament_present = False
        if self.dyn.tray_now == 254 or not self.dyn.ams:
            self.inject_hms(HMS_RUNOUT_EXTERNAL.attr, HMS_RUNOUT_EXTERNAL.code)
        else:
            self.inject_hms(HMS_RUNOUT_AMS.attr, HMS_RUNOUT_AMS.code)
        if self.dyn.job.gcode_state in ("RUNNING", "PREPARE"):
            self.dyn.job.gcode_state = "PAUSE"
            self.dyn.job.stage = 6


PrinterEngine._HANDLERS = {
    ("pushing", "pushall"): PrinterEngine._cmd_pushall,
    ("pushing", "start"): PrinterEngine._cmd_push_start,
    ("pushing", "stop"): PrinterEngine._cmd_push_stop,
    ("info", "get_version"): PrinterEngine._cmd_get_version,
    ("print", "pause"): PrinterEngine._cmd_pause,
    ("print", "resume"): PrinterEngine._cmd_resume,
    ("print", "stop"): PrinterEngine._cmd_stop,
    ("print", "print_speed"): PrinterEngine._cmd_print_speed,
    ("print", "skip_objects"): PrinterEngine._cmd_skip_objects,
    ("print", "clean_print_error"): PrinterEngine._cmd_clean_print_error,
    ("print", "print_option"): PrinterEngine._cmd_print_option,
    ("print", "gcode_line"): PrinterEngine._cmd_gcode_line,
    ("print", "project_file"): PrinterEngine._cmd_project_file,
    ("print", "gcode_file"): PrinterEngine._cmd_gcode_file,
    ("print", "ams_change_filament"): PrinterEngine._cmd_ams_change_filament,
    ("print", "ams_filament_setting"): PrinterEngine._cmd_ams_filament_setting,
    ("print", "ams_control"): PrinterEngine._cmd_ams_control,
    ("print", "calibration"): PrinterEngine._cmd_calibration,
    ("system", "ledctrl"): PrinterEngine._cmd_ledctrl,
    ("system", "get_access_code"): PrinterEngine._cmd_get_access_code,
    ("xcam", "xcam_control_set"): PrinterEngine._cmd_xcam_control_set,
    ("camera", "ipcam_record_set"): PrinterEngine._cmd_ipcam_record_set,
    ("camera", "ipcam_timelapse"): PrinterEngine._cmd_ipcam_timelapse,
}


# ---------------------------------------------------------------------- files


@dataclass(frozen=True)
class _FileInfo:
    duration_s: float = 1800.0
    layers: int = 100
    nozzle_temp: float = 220.0
    bed_temp: float = 55.0


def _plate_from_param(param: Any) -> int:
    match = re.search(r"plate_(\d+)", str(param or ""))
    return int(match.group(1)) if match else 1


_MAX_READ = 64 * 1024 * 1024


def _read_project_info(path: Path, plate: int) -> _FileInfo:
    """Duration and layer count from the 3MF's metadata, or defaults when it has none."""
    if path.suffix.lower() != ".3mf":
        return _read_gcode_info(path)
    try:
        from bambulab.protocol import threemf

        if path.stat().st_size > _MAX_READ:
            return _FileInfo()
        project = threemf.read_project(path.read_bytes())
        chosen = project.plate(plate)
    except Exception:  # a broken or foreign 3MF still prints, with default timings
        return _FileInfo()
    nozzle, bed = 220.0, 55.0
    materials = {f.material.upper() for f in chosen.filaments}
    if materials & {"PETG", "ABS", "ASA", "PC", "PA"}:
        nozzle, bed = 255.0, 80.0
    return _FileInfo(
        duration_s=float(chosen.prediction_s or 1800),
        layers=int(chosen.layers or 100),
        nozzle_temp=nozzle,
        bed_temp=bed,
    )


def _read_gcode_info(path: Path) -> _FileInfo:
    """Duration and layers from a plain G-code file's header comments, when present."""
    from bambulab.protocol.threemf import read_gcode_header

    try:
        with path.open("rb") as fh:
            header = read_gcode_header(fh.read(64 * 1024))
    except OSError:
        return _FileInfo()
    return _FileInfo(duration_s=float(header.estimated_s or 1800), layers=int(header.layers or 100))
