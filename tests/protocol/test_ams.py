"""plan_ams_mapping: the AMS decision print_file sends, as a pure function over plain reports."""

from __future__ import annotations

from typing import Any

import pytest

from bambulab.protocol import threemf
from bambulab.protocol.ams import AmsPlan, loaded_trays, plan_ams_mapping
from bambulab.protocol.models import model_by_code
from bambulab.protocol.views import PrinterStatus

P1S = model_by_code("P1S")
A1M = model_by_code("A1 mini")


def plate(*filaments: tuple[str, str]) -> threemf.Plate:
    return threemf.Plate(
        index=1,
        gcode_path="Metadata/plate_1.gcode",
        prediction_s=None,
        weight_g=None,
        layers=None,
        filaments=tuple(threemf.Filament(i + 1, m, c) for i, (m, c) in enumerate(filaments)),
        objects=(),
        gcode_md5=None,
    )


def status(*trays: tuple[str, str] | None) -> PrinterStatus:
    """One AMS unit with these trays (None = empty slot)."""
    tray_list: list[dict[str, Any]] = []
    for slot, tray in enumerate(trays):
        if tray is None:
            tray_list.append({"id": str(slot)})
        else:
            tray_list.append({"id": str(slot), "tray_type": tray[0], "tray_color": tray[1]})
    return PrinterStatus({"print": {"ams": {"ams": [{"id": "0", "tray": tray_list}]}}}, P1S)


WHITE_PLA = ("PLA", "#FFFFFF")
BLACK_PETG = ("PETG", "#000000")


def test_auto_matches_material_then_colour() -> None:
    s = status(("PETG", "000000FF"), None, ("PLA", "FFFFFFFF"))
    assert [t.global_index for t in loaded_trays(s)] == [0, 2]
    assert plan_ams_mapping(plate(WHITE_PLA, BLACK_PETG), s, P1S) == AmsPlan((2, 0), True)


def test_auto_without_a_matching_tray_names_the_filament() -> None:
    with pytest.raises(threemf.AmsMappingError, match="use_ams=False"):
        plan_ams_mapping(plate(("PA-CF", "#222222")), status(("PLA", "FFFFFFFF")), P1S)
    with pytest.raises(threemf.AmsMappingError, match="lists no filaments"):
        plan_ams_mapping(plate(), status(("PLA", "FFFFFFFF")), P1S)


def test_auto_without_an_ams_sends_no_mapping_unless_forced() -> None:
    bare = PrinterStatus({"print": {"gcode_state": "IDLE"}}, A1M)
    assert plan_ams_mapping(plate(WHITE_PLA), bare, A1M) == AmsPlan(None, False)
    with pytest.raises(threemf.AmsMappingError, match="reports no AMS"):
        plan_ams_mapping(plate(WHITE_PLA), bare, A1M, use_ams=True)


def test_before_any_report_the_model_says_whether_there_is_an_ams() -> None:
    empty = PrinterStatus({}, P1S)
    with pytest.raises(threemf.AmsMappingError):  # P1S has an AMS: auto must match, and nothing is loaded
        plan_ams_mapping(plate(WHITE_PLA), empty, P1S)


def test_explicit_lists_and_none() -> None:
    s = status(WHITE_PLA)
    assert plan_ams_mapping(plate(WHITE_PLA), s, P1S, ams_mapping=[3, -1]) == AmsPlan((3, -1), True)
    assert plan_ams_mapping(plate(WHITE_PLA), s, P1S, ams_mapping=[3], use_ams=False) == AmsPlan((3,), False)
    assert plan_ams_mapping(plate(WHITE_PLA), s, P1S, ams_mapping="auto", use_ams=False) == AmsPlan(None, False)
    assert plan_ams_mapping(plate(WHITE_PLA), s, P1S, ams_mapping=None) == AmsPlan(None, False)
    with pytest.raises(ValueError, match="needs an ams_mapping"):
        plan_ams_mapping(plate(WHITE_PLA), s, P1S, ams_mapping=None, use_ams=True)
