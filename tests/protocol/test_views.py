"""Typed views over merged state: each model's fixture, each decoding rule, and never raising."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_fixtures import (
    ALL_FIXTURES,
    JSON,
    Fixture,
    a1_mini,
    a1_with_ams_lite,
    a2l,
    empty_tray,
    h2c,
    h2d,
    h2s,
    p1p_with_ams,
    p1p_without_ams,
    p2s,
    spool,
    tray,
    unit,
    x1c_multi_ams,
    x2d,
)

from bambulab.protocol.hms import HmsSeverity
from bambulab.protocol.models import MODELS, AmsKind, model_by_code
from bambulab.protocol.state import merge
from bambulab.protocol.views import (
    GcodeState,
    PrinterStatus,
    Tray,
    fan_percent,
    ip_from_int,
    stage_name,
    unpack_temperature,
)


def status(fx: Fixture, *, with_version: bool = True, model: str | None = None) -> PrinterStatus:
    state = merge(None, fx.report)
    if with_version:
        state = merge(state, fx.version)
    return PrinterStatus(state, model_by_code(model) if model else None)


def from_print(model: str | None = None, **fields: Any) -> PrinterStatus:
    return PrinterStatus({"print": fields}, model_by_code(model) if model else None)


# --------------------------------------------------------------------------- every fixture


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda f: f.__name__)
def test_every_fixture_decodes_to_json(fixture: Any) -> None:
    fx: Fixture = fixture()
    view = status(fx)
    assert view.model is not None
    assert view.model.name == fx.model
    data = view.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["model"] == fx.model
    assert data["firmware"] == "01.08.00.00"
    assert view.network.ip is not None
    assert view.temperatures.nozzle is not None
    assert view.temperatures.bed is not None
    assert view.speed.name == "standard"
    assert view.job.state is not GcodeState.UNKNOWN
    assert fx.model in repr(view)


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda f: f.__name__)
def test_explicit_model_without_get_version(fixture: Any) -> None:
    fx: Fixture = fixture()
    detected = status(fx)
    explicit = status(fx, with_version=False, model=fx.model)
    assert explicit.to_dict() == detected.to_dict() | {"firmware": None}


# --------------------------------------------------------------------------- per model


def test_x1c_multi_ams() -> None:
    view = status(x1c_multi_ams())
    job = view.job
    assert (job.state, job.stage_id, job.stage, job.stages) == (GcodeState.RUNNING, 0, "printing", (2, 14, 1))
    assert (job.progress, job.layer, job.total_layers) == (42, 120, 480)
    assert job.remaining == timedelta(minutes=95)
    assert job.file == "/data/Metadata/plate_1.gcode"
    assert (job.name, job.print_type, job.task_id) == ("Hose fitting", "cloud", "702383065")
    assert job.is_active

    temps = view.temperatures
    assert (temps.nozzle, temps.nozzle_target, temps.bed, temps.bed_target) == (220.0, 220.0, 55.0, 55.0)
    assert temps.chamber == 25.0  # from device.ctc: newer X1 firmware sends no chamber_temper
    assert temps.chamber_target is None  # the X1C has no chamber heater
    assert len(temps.nozzles) == 1
    assert temps.nozzles[0].type == "hardened_steel"

    assert (view.fans.part_cooling, view.fans.aux, view.fans.chamber, view.fans.heatbreak) == (100, 70, 30, 100)
    assert view.lights == {"chamber_light": "on", "work_light": "flashing"}
    assert view.network.wifi_dbm == -66
    assert view.home_flag == 0xC065CD90
    assert view.door_open is False  # home_flag bit 23 is clear; stat's bit 23 is ignored on X1
    assert view.sdcard is True
    assert view.sdcard_state == "normal"

    ams = view.ams
    assert [u.id for u in ams.units] == [0, 1, 2, 128]
    assert [u.kind for u in ams.units] == [AmsKind.AMS, AmsKind.AMS, AmsKind.AMS_2_PRO, AmsKind.AMS_HT]
    pro = ams.units[2]
    assert (pro.humidity_level, pro.humidity, pro.temperature) == (4, 9, 65.0)
    assert pro.dry_remaining == timedelta(minutes=583)
    assert [t.is_empty for t in pro.trays] == [True, False, False, True]
    assert [t.tray_index for t in pro.trays] == [8, 9, 10, 11]
    assert ams.units[3].trays[0].tray_index == 128

    active = view.active_tray  # tray_now "5" = unit 1, slot 1
    assert active is not None
    assert (active.unit_id, active.slot, active.material, active.color) == (1, 1, "ABS", "#489FDF")
    assert active.remaining is None  # remain -1 = unknown

    assert [s.id for s in view.external_spools] == ["255"]
    assert view.external_spools[0].is_empty
    assert len(view.hms) == 1
    assert view.hms[0].key == "HMS_0300_0100_0001_0007"
    assert view.hms[0].severity is HmsSeverity.FATAL
    assert view.print_error is None


def test_p1p_with_ams() -> None:
    view = status(p1p_with_ams())
    assert view.job.state is GcodeState.FAILED
    assert view.job.stage == "idle"  # stg_cur 0 while not printing
    assert view.temperatures.nozzle == 21.25
    assert view.temperatures.bed == 19.84375
    assert view.temperatures.chamber is None  # P1 sends the placeholder 5
    assert view.door_open is None
    assert view.ams.status == "assist"
    assert (view.ams.status_code, view.ams.sub_status) == (3, 0)
    (ams_unit,) = view.ams.units
    assert ams_unit.kind is AmsKind.AMS
    assert ams_unit.temperature is None
    assert ams_unit.humidity_level == 3
    assert all(not t.is_empty and t.state is None for t in ams_unit.trays)
    first = ams_unit.trays[0]
    assert (first.diameter, first.weight, first.tag_uid, first.k) == (None, None, None, 0.02)
    active = view.active_tray
    assert active is not None
    assert (active.unit_id, active.slot) == (0, 0)
    assert view.external_spools[0].material == "PLA"
    assert view.external_spools[0].color == "#161616"
    error = view.print_error
    assert error is not None
    assert (error.code, error.display) == ("0300400C", "0300_400C")
    assert error.text is not None
    assert "cancel" in error.text


def test_p1p_without_ams_uses_the_external_spool() -> None:
    view = status(p1p_without_ams())
    assert view.ams.units == ()
    assert view.ams.tray_now == 254
    active = view.active_tray
    assert active is not None
    assert (active.id, active.unit_id, active.slot, active.material) == ("254", None, None, "PETG")
    assert view.network.ip == "192.168.50.122"
    assert view.job.stage == "idle"
    assert view.job.progress == 100


def test_a1_with_ams_lite() -> None:
    view = status(a1_with_ams_lite())
    (lite,) = view.ams.units
    assert lite.kind is AmsKind.AMS_LITE  # from the get_version module name ams_f1/0
    assert lite.temperature is None
    assert [t.color for t in lite.trays] == ["#76D9F4", "#FFF144", "#FF80FF", "#0ACC38"]
    assert view.active_tray is None
    assert view.temperatures.chamber is None
    assert view.door_open is None


def test_a1_lite_kind_falls_back_to_the_model() -> None:
    view = status(a1_with_ams_lite(), with_version=False, model="A1")
    assert view.ams.units[0].kind is AmsKind.AMS_LITE
    unknown = status(a1_with_ams_lite(), with_version=False)
    assert unknown.ams.units[0].kind is None


def test_a1_mini() -> None:
    view = status(a1_mini())
    assert view.job.state is GcodeState.PREPARE
    assert view.job.stage == "preheating heatbed"
    assert view.job.remaining == timedelta(minutes=31)
    assert (view.temperatures.nozzle, view.temperatures.nozzle_target) == (140.5, 220.0)
    assert view.sdcard is False
    assert view.sdcard_state == "none"


def test_h2d_two_extruders() -> None:
    view = status(h2d())
    temps = view.temperatures
    assert [(n.index, n.current, n.target, n.type) for n in temps.nozzles] == [
        (0, 245.0, 245.0, "HS01"),
        (1, 47.0, 0.0, "HS01"),
    ]
    assert temps.active_extruder == 0
    assert (temps.bed, temps.bed_target) == (70.0, 70.0)
    assert (temps.chamber, temps.chamber_target) == (36.0, 0.0)
    assert view.door_open is False  # stat "16382181F0": bit 23 clear
    assert [u.extruder for u in view.ams.units] == [1, 0]
    # tray_now is "3" but the active extruder's snow 0x0103 says AMS 1, slot 3.
    active = view.active_tray
    assert active is not None
    assert (active.unit_id, active.slot, active.material) == (1, 3, "PETG")
    assert [s.id for s in view.external_spools] == ["254", "255"]
    assert view.lights["chamber_light2"] == "on"
    assert view.fans.chamber == 30


def test_h2c_active_external_spool_and_open_door() -> None:
    view = status(h2c())
    assert view.temperatures.active_extruder == 1
    assert view.temperatures.chamber_target == 0.0  # ctt wins over the packed ctc target
    active = view.active_tray  # extruder 1, snow 0xFF00: external spool 255
    assert active is not None
    assert (active.id, active.material, active.color) == ("255", "PLA", "#00AE42")
    assert view.door_open is True


def test_h2s_single_extruder_new_protocol() -> None:
    view = status(h2s())
    assert len(view.temperatures.nozzles) == 1
    assert view.temperatures.nozzles[0].type == "stainless_steel"
    active = view.active_tray
    assert active is not None
    assert (active.unit_id, active.slot) == (1, 0)


def test_p2s() -> None:
    view = status(p2s())
    assert view.temperatures.chamber == 33.0  # device.ctc, packed
    assert view.temperatures.chamber_target is None  # no chamber heater
    assert view.door_open is False
    trays = view.ams.units[0].trays
    assert [t.is_empty for t in trays] == [False, True, False, True]
    active = view.active_tray
    assert active is not None
    assert active.material == "PETG"


def test_x2d() -> None:
    view = status(x2d())
    assert len(view.temperatures.nozzles) == 2
    assert view.temperatures.chamber_target == 0.0
    tray0 = view.ams.units[0].trays[0]
    assert tray0.state == 27
    assert not tray0.is_empty
    active = view.active_tray
    assert active is not None
    assert (active.unit_id, active.slot) == (0, 0)


def test_a2l_bare_empty_slots() -> None:
    view = status(a2l())
    assert [t.is_empty for t in view.ams.units[0].trays] == [True, False, True, True]
    assert view.ams.units[0].kind is AmsKind.AMS_LITE  # info bits 0-3 = 2
    assert view.temperatures.chamber is None
    active = view.active_tray
    assert active is not None
    assert active.slot == 1


def test_after_a_delta_the_views_follow() -> None:
    state = merge(merge(None, p1p_with_ams().report), p1p_with_ams().version)
    state = merge(state, {"print": {"command": "push_status", "msg": 1, "sequence_id": 3, "mc_percent": 12,
                                    "gcode_state": "RUNNING", "stg_cur": 0, "ams": {"tray_now": "2"}}})
    view = PrinterStatus(state)
    assert view.job.progress == 12
    assert view.job.stage == "printing"
    active = view.active_tray
    assert active is not None
    assert active.slot == 2


# --------------------------------------------------------------------------- decoders


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4587590, (70.0, 70.0)),
        (0x00F500F5, (245.0, 245.0)),
        (23, (23.0, 0.0)),
        (23.0, (23.0, 0.0)),
        (23.5, (23.5, None)),
        (0, (0.0, 0.0)),
        (-5, (None, None)),
        (1 << 40, (None, None)),
        ("4587590", (None, None)),
        (True, (None, None)),
        (None, (None, None)),
        (float("nan"), (None, None)),
    ],
)
def test_unpack_temperature(value: object, expected: tuple[float | None, float | None]) -> None:
    assert unpack_temperature(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1", 10), ("4", 30), ("7", 50), ("10", 70), ("15", 100), (15, 100), (6, 40), ("16", None),
     ("-1", None), ("abc", None), ("", None), (None, None), (True, 10), (7.0, 50), (7.5, None)],
)
def test_fan_percent(value: object, expected: int | None) -> None:
    assert fan_percent(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1359612426, "10.10.10.81"), (16777215, "255.255.255.0"), (3607496970, "10.9.6.215"), (0, None),
     (-1, None), (1 << 32, None), ("1359612426", "10.10.10.81"), (None, None), (1.5, None)],
)
def test_ip_from_int(value: object, expected: str | None) -> None:
    assert ip_from_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("-53dBm", -53), ("-53 dBm", -53), ("-53DBM", -53), ("-53", -53), (-60, -60), ("dBm", None), ("", None),
     ("strong", None), (None, None), ("-9999dBm", None)],
)
def test_wifi_signal(value: object, expected: int | None) -> None:
    assert from_print(wifi_signal=value).network.wifi_dbm == expected


def test_ip_uses_the_first_non_zero_entry() -> None:
    net = {"info": [{"ip": 0, "mask": 0}, "junk", {"ip": 1359612426, "mask": 16777215}]}
    network = from_print(net=net).network
    assert (network.ip, network.netmask) == ("10.10.10.81", "255.255.255.0")


@pytest.mark.parametrize(
    ("stage", "expected"),
    [(-1, "idle"), (255, "idle"), (0, "printing"), (2, "preheating heatbed"), (14, "cleaning nozzle tip"),
     (35, "paused: nozzle clog"), (39, "calibrating nozzle offset"), (77, "preparing AMS"), (60, "stage 60"),
     (None, None)],
)
def test_stage_name(stage: int | None, expected: str | None) -> None:
    assert stage_name(stage) == expected


@pytest.mark.parametrize(
    ("raw", "state"),
    [("RUNNING", GcodeState.RUNNING), ("running", GcodeState.RUNNING), ("SLICING", GcodeState.SLICING),
     ("INIT", GcodeState.INIT), ("HEATING", GcodeState.UNKNOWN), (5, GcodeState.UNKNOWN), (None, GcodeState.UNKNOWN)],
)
def test_gcode_state(raw: object, state: GcodeState) -> None:
    job = from_print(gcode_state=raw).job
    assert job.state is state
    assert job.state_raw == (raw if isinstance(raw, str) else None)


def test_job_fallbacks_for_newer_fields() -> None:
    newer: JSON = {"percent": 7, "remain_time": 12, "file": "/sdcard/a.gcode",
                   "3D": {"layer_num": 3, "total_layer_num": 9}}
    job = from_print(**newer).job
    assert (job.progress, job.remaining, job.file, job.layer, job.total_layers) == (
        7, timedelta(minutes=12), "/sdcard/a.gcode", 3, 9)


@pytest.mark.parametrize("value", [-1, 101, "x", 1e30, None])
def test_bad_progress_and_remaining_read_none(value: object) -> None:
    job = from_print(mc_percent=value, mc_remaining_time=value if value != 101 else 10**9).job
    assert job.progress is None
    assert job.remaining is None


def test_chamber_placeholder_with_unknown_model() -> None:
    assert from_print(chamber_temper=5).temperatures.chamber is None
    assert from_print(chamber_temper=31.0).temperatures.chamber == 31.0
    assert from_print("X1C", chamber_temper=5).temperatures.chamber == 5.0
    assert from_print("P1S", chamber_temper=31.0).temperatures.chamber is None


def test_packed_bed_when_flat_fields_are_missing() -> None:
    temps = from_print(device={"bed": {"info": {"temp": 4587590}}}).temperatures
    assert (temps.bed, temps.bed_target) == (70.0, 70.0)


def test_single_extruder_without_flat_nozzle_uses_device() -> None:
    temps = from_print(device={"extruder": {"state": 1, "info": [{"id": 0, "temp": 0x00DC00D2}]},
                               "nozzle": {"info": [{"id": 0, "diameter": 0.6, "type": "HS01"}]}}).temperatures
    assert (temps.nozzle, temps.nozzle_target) == (210.0, 220.0)
    assert temps.nozzles[0].diameter == 0.6


@pytest.mark.parametrize(
    ("model", "fields", "expected"),
    [
        ("X1C", {"home_flag": -1067070064 | (1 << 23)}, True),
        ("X1C", {"home_flag": 0x00800000}, True),
        ("X1C", {"home_flag": 0}, False),
        ("X1E", {"home_flag": "x"}, None),
        ("X1C", {"stat": "800000"}, None),  # X1: stat is not used
        ("H2D", {"stat": "800000"}, True),
        ("H2D", {"stat": "16382181F0"}, False),
        ("P2S", {"stat": "7F800000"}, True),
        ("H2D", {"stat": "zz"}, None),
        ("H2D", {"home_flag": 0x00800000}, None),
        ("P1S", {"home_flag": 0x00800000}, None),  # no door sensor
        (None, {"home_flag": 0x00800000}, None),
    ],
)
def test_door_open(model: str | None, fields: JSON, expected: bool | None) -> None:
    assert from_print(model, **fields).door_open is expected


@pytest.mark.parametrize(
    ("fields", "present", "sd_state"),
    [
        ({"sdcard": True}, True, None),
        ({"sdcard": False, "home_flag": 0}, False, "none"),
        ({"home_flag": 0x100}, True, "normal"),
        ({"home_flag": 0x200}, True, "abnormal"),
        ({"home_flag": 0x300}, True, "read_only"),
        ({"sdcard": "yes"}, None, None),
    ],
)
def test_sdcard(fields: JSON, present: bool | None, sd_state: str | None) -> None:
    view = from_print(**fields)
    assert view.sdcard is present
    assert view.sdcard_state == sd_state


def test_home_flag_is_unsigned() -> None:
    assert from_print(home_flag=-1).home_flag == 0xFFFFFFFF
    assert from_print(home_flag=1 << 40).home_flag is None
    assert from_print(home_flag="224478464").home_flag == 224478464


def test_lights_skip_malformed_entries() -> None:
    lights = from_print(lights_report=[{"node": "chamber_light", "mode": "on"}, {"node": 1}, "x", None]).lights
    assert lights == {"chamber_light": "on"}


@pytest.mark.parametrize(
    ("state", "material", "empty"),
    [(0, None, True), (0, "PLA", True), (3, "PLA", False), (8, "PLA", True), (9, None, False), (10, "PLA", True),
     (11, "PLA", False), (5, "PLA", False), (17, None, False), (27, "PLA", False), (None, "PLA", False),
     (None, None, True), ("11", "PLA", False)],
)
def test_tray_is_empty(state: object, material: str | None, empty: bool) -> None:
    wire: JSON = {"id": "0"}
    if state is not None:
        wire["state"] = state
    if material is not None:
        wire["tray_type"] = material
    assert Tray.from_wire(wire, 0).is_empty is empty


@pytest.mark.parametrize(
    ("raw", "color", "alpha"),
    [("FF000080", "#FF0000", 128), ("00ae42ff", "#00AE42", 255), ("123456", "#123456", 255), ("XYZXYZXY", None, None),
     ("0x1234", None, None), ("", None, None), (123, None, None)],
)
def test_tray_colour(raw: object, color: str | None, alpha: int | None) -> None:
    t = Tray.from_wire({"id": "1", "tray_color": raw, "cols": [raw, "00FF00FF"]}, 2)
    assert (t.color, t.alpha) == (color, alpha)
    assert t.colors[-1] == "#00FF00"
    assert t.tray_index == 9


def test_ams_kind_sources() -> None:
    units = [unit(0, [], info="1003"), unit(1, []), unit(129, []), unit(2, [], info="zz")]
    view = from_print("P1S", ams={"ams": units})
    assert [u.kind for u in view.ams.units] == [AmsKind.AMS_2_PRO, AmsKind.AMS, AmsKind.AMS_HT, AmsKind.AMS]
    view = PrinterStatus({"print": {"ams": {"ams": units}},
                          "info": {"command": "get_version", "module": [{"name": "n3f/1"}, {"name": "ams_f1/x"}]}})
    assert [u.kind for u in view.ams.units] == [AmsKind.AMS_2_PRO, AmsKind.AMS_2_PRO, AmsKind.AMS_HT, None]


def test_ams_unit_extruder_bits_and_uninitialised() -> None:
    view = from_print(ams={"ams": [unit(0, [], info="E03"), unit(1, [], info="103")]})
    assert [u.extruder for u in view.ams.units] == [None, 1]


@pytest.mark.parametrize(
    ("tray_now", "expected"),
    [("0", (0, 0)), ("7", (1, 3)), ("128", (128, 0)), ("255", None), ("254", ("254",)), ("99", None),
     ("15", None), (None, None), ("x", None)],
)
def test_active_tray_from_tray_now(tray_now: str | None, expected: tuple[Any, ...] | None) -> None:
    units = [unit(0, [tray(i) for i in range(4)]), unit(1, [tray(i) for i in range(4)]), unit(128, [tray(0)])]
    view = from_print(ams={"ams": units, "tray_now": tray_now}, vt_tray=spool("254", "PLA"))
    active = view.active_tray
    if expected is None:
        assert active is None
    elif len(expected) == 1:
        assert active is not None
        assert active.id == expected[0]
    else:
        assert active is not None
        assert (active.unit_id, active.slot) == expected


def test_external_254_maps_to_a_single_spool_whatever_its_id() -> None:
    view = from_print(ams={"tray_now": "254"}, vt_tray=spool("255", "PETG"))
    active = view.active_tray
    assert active is not None
    assert active.material == "PETG"


@pytest.mark.parametrize(("snow", "expected"), [(0xFFFF, None), (0x0001, (0, 1)), (0x8000, (128, 0)),
                                                 (0xFE00, "254"), (0x0500, None), (-1, None), ("x", None)])
def test_active_tray_from_extruder_snow(snow: object, expected: Any) -> None:
    device = {"extruder": {"state": 0x02, "info": [{"id": 0, "snow": snow}, {"id": 1, "snow": 0xFFFF}]}}
    view = from_print(device=device, ams={"ams": [unit(0, [tray(0), tray(1)]), unit(128, [tray(0)])], "tray_now": "0"},
                      vir_slot=[spool("254", "TPU"), spool("255")])
    active = view.active_tray
    if expected is None:
        assert active is None
    elif isinstance(expected, str):
        assert active is not None
        assert (active.id, active.material) == (expected, "TPU")
    else:
        assert active is not None
        assert (active.unit_id, active.slot) == expected


def test_external_spools_prefer_vir_slot() -> None:
    assert [s.id for s in from_print(vt_tray=spool("254"), vir_slot=[spool("255")]).external_spools] == ["255"]
    assert [s.id for s in from_print(vt_tray=spool("254"), vir_slot=[]).external_spools] == ["254"]
    assert from_print(vt_tray="x").external_spools == ()


def test_hms_and_print_error_in_status() -> None:
    view = from_print(hms=[{"attr": 0x05000500, "code": 0x00010007}, {"attr": "x"}, 5], print_error=0x07008012)
    (entry,) = view.hms
    assert entry.key == "HMS_0500_0500_0001_0007"
    assert entry.text is not None
    assert "verif" in entry.text
    assert view.print_error is not None
    assert view.print_error.display == "0700_8012"
    assert view.to_dict()["hms"][0]["code_id"] == "0500050000010007"


def test_empty_tray_helper_shapes() -> None:
    assert empty_tray(2) == {"id": "2", "state": 0}
    assert Tray.from_wire(empty_tray(2, None), None).tray_index == 2


def test_views_are_cached_and_read_only() -> None:
    view = status(x1c_multi_ams())
    assert view.job is view.job
    with pytest.raises(AttributeError):
        view.job.progress = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        view.lights["x"] = "on"  # type: ignore[index]


@pytest.mark.parametrize("state", [None, {}, {"print": None}, {"print": []}, {"info": "x"}, "junk", []])
def test_empty_or_junk_state(state: Any) -> None:
    view = PrinterStatus(state)
    data = view.to_dict()
    assert data["job"]["state"] == "UNKNOWN"
    assert data["ams"]["units"] == []
    assert data["active_tray"] is None
    assert view.model is None


# --------------------------------------------------------------------------- never raise

_VOCABULARY = [
    "print", "info", "module", "name", "ams", "tray", "id", "info", "temp", "humidity", "humidity_raw", "dry_time",
    "tray_now", "tray_type", "tray_color", "cols", "remain", "state", "vt_tray", "vir_slot", "device", "extruder",
    "nozzle", "bed", "ctc", "snow", "gcode_state", "stg", "stg_cur", "mc_percent", "mc_remaining_time", "layer_num",
    "3D", "home_flag", "stat", "sdcard", "wifi_signal", "net", "ip", "mask", "lights_report", "node", "mode", "hms",
    "attr", "code", "print_error", "cooling_fan_speed", "big_fan2_speed", "spd_lvl", "spd_mag", "nozzle_temper",
    "bed_temper", "chamber_temper", "ctt", "ams_status", "product_name", "project_name", "hw_ver", "sw_ver",
    "diameter", "type", "tray_diameter", "tray_weight", "tag_uid", "k", "nozzle_diameter", "percent", "remain_time",
]
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(1 << 33), max_value=1 << 33) | st.floats()
    | st.text(max_size=10) | st.sampled_from(["0", "15", "254", "255", "-53dBm", "FF0000FF", "1001", "0.0", "nan",
                                              "1e999", "9" * 30, "Bambu Lab H2D", "ams_f1/0", "n3s/128"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(_VOCABULARY) | st.text(max_size=3), children, max_size=8),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(state=_JSON, model=st.sampled_from([None, *MODELS]))
def test_views_never_raise(state: Any, model: Any) -> None:
    view = PrinterStatus(state, model)
    data = view.to_dict()
    json.dumps(data)
    repr(view)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(_VOCABULARY), _JSON, max_size=25), model=st.sampled_from([None, *MODELS]))
def test_views_never_raise_on_print_sections(fields: JSON, model: Any) -> None:
    view = PrinterStatus({"print": fields}, model)
    json.dumps(view.to_dict())
    assert isinstance(view.job.state, GcodeState)


@settings(max_examples=200, deadline=None)
@given(reports=st.lists(_JSON, max_size=5))
def test_views_of_merged_arbitrary_reports_never_raise(reports: list[Any]) -> None:
    state: JSON = {}
    for report in reports:
        state = merge(state, {"print": report} if isinstance(report, dict) else report)
    json.dumps(PrinterStatus(state).to_dict())


# --------------------------------------------------------------------------- reuse of the previous status


def _decode_all(view: PrinterStatus) -> dict[str, Any]:
    return view.to_dict()


def test_previous_status_reuses_unchanged_ams_units_and_spools() -> None:
    fx = x1c_multi_ams()
    state = merge(merge(None, fx.report), fx.version)
    first = PrinterStatus(state)
    _decode_all(first)
    # A delta that touches one tray of unit 1 and nothing else of the AMS.
    state2 = merge(state, {"print": {"command": "push_status", "msg": 1,
                                     "ams": {"ams": [{"id": "0"}, {"id": "1", "tray": [{"id": "2", "state": 8}]},
                                                     {"id": "2"}, {"id": "128"}]}}})
    second = PrinterStatus(state2, previous=first)
    assert second.to_dict() == PrinterStatus(state2).to_dict()
    assert second.ams.units[0] is first.ams.units[0]  # equal wire unit: reused
    assert second.ams.units[1] is not first.ams.units[1]  # changed: decoded again
    assert second.ams.units[1].trays[2].is_empty
    assert second.external_spools is first.external_spools
    # A full push brings new, equal objects: still reused.
    third = PrinterStatus(merge(state2, copy.deepcopy(fx.report)), previous=second)
    assert third.ams.units[0] is first.ams.units[0]
    assert not third.ams.units[1].trays[2].is_empty


def test_previous_status_with_another_model_or_version_is_not_reused() -> None:
    fx = a1_with_ams_lite()
    state = merge(None, fx.report)
    first = PrinterStatus(state, model_by_code("A1"))
    _decode_all(first)
    other_model = PrinterStatus(state, model_by_code("P1S"), previous=first)
    assert other_model.ams.units[0].kind is AmsKind.AMS
    with_version = PrinterStatus(merge(state, fx.version), model_by_code("A1"), previous=first)
    assert with_version.ams.units[0] is not first.ams.units[0]


@pytest.mark.parametrize(("old", "new"), [(1, True), (True, 1), (1, 1.0), (0, False), (2**60, 2.0**60), (3, 3.0)])
def test_reuse_by_equality_holds_for_equal_numbers_of_other_types(old: object, new: object) -> None:
    # Python says 1 == True == 1.0, so reuse by equality is only right if decoding agrees.
    def state_with(value: object) -> JSON:
        wire = {"id": value, "humidity": value, "temp": value, "info": value, "dry_time": value,
                "tray": [{"id": value, "state": value, "remain": value, "tray_weight": value, "k": value,
                          "tray_diameter": value, "nozzle_temp_min": value}]}
        return {"print": {"ams": {"ams": [wire]}, "vt_tray": {"id": value, "remain": value}}}

    first = PrinterStatus(state_with(old))
    first.to_dict()
    reused = PrinterStatus(state_with(new), previous=first)
    assert reused.to_dict() == PrinterStatus(state_with(new)).to_dict()
    assert reused.ams.units[0] is first.ams.units[0]


def test_previous_status_that_decoded_nothing_is_harmless() -> None:
    fx = h2d()
    state = merge(None, fx.report)
    assert PrinterStatus(state, previous=PrinterStatus(state)).to_dict() == PrinterStatus(state).to_dict()


@settings(max_examples=200, deadline=None)
@given(first=_JSON, second=_JSON, model=st.sampled_from([None, *MODELS]))
def test_reuse_never_changes_the_result(first: Any, second: Any, model: Any) -> None:
    fx = x1c_multi_ams()
    base = merge(None, fx.report)
    s1 = merge(base, {"print": first} if isinstance(first, dict) else first)
    s2 = merge(s1, {"print": second} if isinstance(second, dict) else second)
    before = PrinterStatus(s1, model)
    _decode_all(before)
    assert PrinterStatus(s2, model, previous=before).to_dict() == PrinterStatus(s2, model).to_dict()
