"""Pure protocol layer: payload shapes, state merging, typed views and command builders.

Nothing in this package performs I/O, reads the clock or keeps global mutable state (the HMS text
table is read from package data once, on first use). Command builders are used as
``from bambulab.protocol import commands``.
"""

from bambulab.protocol import commands, threemf
from bambulab.protocol.commands import (
    AckResult,
    CommandClass,
    PrinterErrorCode,
    SequenceCounter,
    SpeedLevel,
    ack_result,
    classify,
    is_ack_for,
)
from bambulab.protocol.hms import HmsMessage, HmsSeverity, PrintError, decode_hms, decode_print_error
from bambulab.protocol.models import (
    MODELS,
    AmsKind,
    CameraKind,
    PrinterFamily,
    PrinterModel,
    detect_model,
    firmware_version,
    model_by_code,
    model_for_serial,
)
from bambulab.protocol.state import merge
from bambulab.protocol.threemf import (
    AmsMappingError,
    Project,
    ThreeMFError,
    TrayInfo,
    build_project,
    match_ams_mapping,
    read_project,
)
from bambulab.protocol.views import (
    AmsStatus,
    AmsUnit,
    Fans,
    GcodeState,
    Job,
    Network,
    Nozzle,
    PrinterStatus,
    Speed,
    Temperatures,
    Tray,
)

__all__ = [
    "MODELS",
    "AckResult",
    "AmsKind",
    "AmsMappingError",
    "AmsStatus",
    "AmsUnit",
    "CameraKind",
    "CommandClass",
    "Fans",
    "GcodeState",
    "HmsMessage",
    "HmsSeverity",
    "Job",
    "Network",
    "Nozzle",
    "PrintError",
    "PrinterErrorCode",
    "PrinterFamily",
    "PrinterModel",
    "PrinterStatus",
    "Project",
    "SequenceCounter",
    "Speed",
    "SpeedLevel",
    "Temperatures",
    "ThreeMFError",
    "Tray",
    "TrayInfo",
    "ack_result",
    "build_project",
    "classify",
    "commands",
    "decode_hms",
    "decode_print_error",
    "detect_model",
    "firmware_version",
    "is_ack_for",
    "match_ams_mapping",
    "merge",
    "model_by_code",
    "model_for_serial",
    "read_project",
    "threemf",
]
