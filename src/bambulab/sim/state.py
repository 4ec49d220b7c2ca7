"""The virtual printer's physical and job state, independent of any wire format.

The engine (``engine.py``) changes these values as commands arrive and time passes; the payload
renderer (``payloads.py``) writes them into each model's real report fields (flat legacy fields,
packed ``device`` temperatures, fan strings, hex bit masks). Keeping the two apart means a new
model only needs a new renderer, and the engine never knows how a field is spelled on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bambulab.protocol.models import AmsKind

__all__ = ["AmsUnit", "Dynamic", "Heater", "HmsEntry", "Job", "Tray"]


@dataclass
class Heater:
    """A heated element: current and target temperature in °C."""

    temp: float = 25.0
    target: float = 0.0


@dataclass
class Tray:
    """A filament slot (AMS tray or external spool). ``loaded=False`` means an empty slot."""

    slot: int  # 0-3 within its unit; 254/255 for external spools
    loaded: bool = True
    material: str = "PLA"  # tray_type
    sub_brand: str = "PLA Basic"  # tray_sub_brands
    info_idx: str = "GFA00"  # tray_info_idx (filament preset id)
    color: str = "FFFFFFFF"  # RRGGBBAA
    remain: int = 100  # percent, -1 unknown
    nozzle_temp_min: int = 190
    nozzle_temp_max: int = 240
    bed_temp: int = 55
    weight: int = 1000  # grams
    diameter: float = 1.75
    tag_uid: str = "0000000000000000"
    tray_uuid: str = "00000000000000000000000000000000"
    is_bbl: bool = True  # Bambu spool with RFID


@dataclass
class AmsUnit:
    unit_id: int  # 0-3 for AMS / AMS Lite / AMS 2 Pro, 128+ for AMS HT
    kind: AmsKind = AmsKind.AMS
    humidity_level: int = 4  # 1 (wet) .. 5 (dry)
    humidity_raw: int = 18  # percent
    temp: float = 26.0
    trays: list[Tray] = field(default_factory=list)
    sn: str = ""
    firmware: str = "00.01.06.62"
    #: the extruder this unit feeds on multi-extruder printers (H2D: 0 right, 1 left)
    extruder: int = 0
    dry_minutes: int = 0  # drying time left (AMS 2 Pro / AMS HT), ``dry_time`` on the wire


@dataclass
class HmsEntry:
    attr: int
    code: int


@dataclass
class Job:
    """The print job as the printer reports it."""

    gcode_state: str = "IDLE"  # IDLE PREPARE RUNNING PAUSE FINISH FAILED
    print_type: str = "idle"  # idle local cloud
    stage: int = -1  # stg_cur; -1 idle (X1/H2), 255 on P1/A1 after a job; 0 printing
    stages: list[int] = field(default_factory=list)  # stg
    prepare_percent: int = 0  # gcode_file_prepare_percent
    percent: int = 0  # mc_percent
    remaining_minutes: int = 0  # mc_remaining_time
    layer: int = 0
    total_layers: int = 0
    gcode_file: str = ""
    subtask_name: str = ""
    project_id: str = "0"
    profile_id: str = "0"
    task_id: str = "0"
    subtask_id: str = "0"
    plate_index: int = 0
    print_error: int = 0
    skipped_objects: list[int] = field(default_factory=list)
    # Simulated seconds: the full print and how far it has gone. Not on the wire.
    duration_s: float = 0.0
    elapsed_s: float = 0.0
    prepare_s: float = 0.0
    prepare_elapsed_s: float = 0.0


@dataclass
class Dynamic:
    """Everything the renderer needs that changes while the printer runs."""

    job: Job = field(default_factory=Job)
    nozzles: list[Heater] = field(default_factory=lambda: [Heater()])
    active_extruder: int = 0
    bed: Heater = field(default_factory=Heater)
    chamber: Heater = field(default_factory=lambda: Heater(temp=25.0))
    # Fan speeds 0-255 as M106 sets them: part (P1), aux (P2), chamber (P3), heatbreak (hotend).
    fan_part: int = 0
    fan_aux: int = 0
    fan_chamber: int = 0
    fan_heatbreak: int = 0
    speed_level: int = 2  # 1 silent, 2 standard, 3 sport, 4 ludicrous
    lights: dict[str, str] = field(default_factory=lambda: {"chamber_light": "on", "work_light": "off"})
    wifi_dbm: int = -45
    ip: str = "127.0.0.1"
    sdcard: bool = True
    door_open: bool = False
    homed: bool = False
    ams: list[AmsUnit] = field(default_factory=list)
    tray_now: int = 255  # 255 none, 254 external, else unit*4+slot (128+ for AMS HT)
    tray_pre: int = 255
    tray_tar: int = 255
    ams_status: int = 0
    external: list[Tray] = field(default_factory=lambda: [Tray(slot=254, loaded=False)])
    filament_present: bool = True  # hw_switch_state: the runout sensor sees filament
    hms: list[HmsEntry] = field(default_factory=list)
    xcam: dict[str, bool | str] = field(
        default_factory=lambda: {
            "first_layer_inspector": True,
            "spaghetti_detector": True,
            "printing_monitor": True,
            "print_halt": True,
            "halt_print_sensitivity": "medium",
            "buildplate_marker_detector": True,
            "allow_skip_parts": False,
        }
    )
    ipcam_record: bool = True
    timelapse: bool = False
    lan_liveview: bool = True
    rtsp_port: int = 322
    signing_required: bool = False  # fun bit 29
    nozzle_diameter: float = 0.4
    nozzle_type: str = "hardened_steel"
    firmware: str = "01.08.00.00"
    #: increments with every report the printer publishes (push_status sequence_id)
    report_seq: int = 2000
    #: the printer's clock in ms since the epoch (``t_utc`` on X1); set by the engine, 0 = unset
    utc_ms: int = 0
