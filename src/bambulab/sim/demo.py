"""A small, realistic print job for demos: a sliced 3MF made on the fly, nobody else's file."""

from __future__ import annotations

from bambulab.protocol.threemf import Filament, PlateObject, PlateSpec, build_project

__all__ = ["demo_project"]


def demo_project(*, minutes: int = 45, layers: int = 120, printer_model_id: str | None = None) -> bytes:
    """A one-plate ``.gcode.3mf`` with two objects in PLA, ``minutes`` long and ``layers`` tall."""
    plate = PlateSpec(
        index=1,
        layers=layers,
        prediction_s=minutes * 60,
        filaments=(Filament(id=1, material="PLA", color="#F2A33A", used_g=18.4, used_m=6.1),),
        objects=(PlateObject(id=101, name="Benchy"), PlateObject(id=202, name="Calibration cube")),
    )
    return build_project([plate], printer_model_id=printer_model_id)
