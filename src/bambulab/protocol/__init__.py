"""Pure protocol layer: payload shapes, state merging, typed views and command builders.

Nothing in this package performs I/O, reads the clock or keeps global mutable state.
"""

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

__all__ = [
    "MODELS",
    "AmsKind",
    "CameraKind",
    "PrinterFamily",
    "PrinterModel",
    "detect_model",
    "firmware_version",
    "model_by_code",
    "model_for_serial",
]
