"""Two-extruder nozzle temperatures: ``nozzle`` is the active extruder's (issue 12, point 18).

The payload is our own, shaped like an H2D report: per-extruder packed temperatures in
``device.extruder.info`` (low 16 bits current, high 16 bits target), the active extruder in bits
4-7 of ``device.extruder.state``, and a flat ``nozzle_temper`` that follows the *other* extruder.
"""

from __future__ import annotations

from typing import Any

import pytest

from bambulab.protocol.models import model_by_code
from bambulab.protocol.state import merge
from bambulab.protocol.views import PrinterStatus


def _packed(current: int, target: int) -> int:
    return (target << 16) | current


def h2d_report(active: int | None, flat: float = 40.0) -> dict[str, Any]:
    extruder: dict[str, Any] = {"info": [{"id": 0, "temp": _packed(264, 265)}, {"id": 1, "temp": _packed(40, 0)}]}
    if active is not None:
        extruder["state"] = active << 4 | 2
    return {"print": {
        "command": "push_status", "nozzle_temper": flat, "nozzle_target_temper": 0.0,
        "bed_temper": 80.0, "bed_target_temper": 80.0,
        "device": {"extruder": extruder, "nozzle": {"info": [{"id": 0, "diameter": 0.4, "type": "HS01"},
                                                              {"id": 1, "diameter": 0.6, "type": "HH01"}]}},
    }}


@pytest.mark.parametrize(("active", "current", "target"), [(0, 264.0, 265.0), (1, 40.0, 0.0)])
def test_nozzle_is_the_active_extruders_and_both_stay_available(active: int, current: float, target: float) -> None:
    temps = PrinterStatus(merge({}, h2d_report(active)), model_by_code("H2D")).temperatures
    assert temps.active_extruder == active
    assert (temps.nozzle, temps.nozzle_target) == (current, target)
    assert [(n.index, n.current, n.target, n.diameter) for n in temps.nozzles] == [
        (0, 264.0, 265.0, 0.4), (1, 40.0, 0.0, 0.6)]
    assert (temps.legacy_nozzle, temps.legacy_nozzle_target) == (40.0, 0.0)  # the flat field, as reported


def test_without_a_known_active_extruder_the_flat_field_is_kept() -> None:
    temps = PrinterStatus(merge({}, h2d_report(None)), model_by_code("H2D")).temperatures
    assert temps.nozzle == 40.0 and len(temps.nozzles) == 2


def test_single_extruder_reports_keep_the_finer_flat_value() -> None:
    report = {"print": {"nozzle_temper": 219.97, "nozzle_target_temper": 220.0,
                        "device": {"extruder": {"state": 2, "info": [{"id": 0, "temp": _packed(219, 220)}]}}}}
    temps = PrinterStatus(merge({}, report), model_by_code("P2S")).temperatures
    assert (temps.nozzle, temps.nozzle_target) == (219.97, 220.0)
