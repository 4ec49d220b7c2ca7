"""Tests for ``bambulab.sim.payloads``: the per-model report and get_version renderers.

The expected key sets and value types below are this project's own compact tables, written
down from real printer captures (pushall reports of a P1P with and without an AMS, an A1, an
X1 Carbon with several AMS units, and an H2D). Paths are flattened: ``a.b`` is key ``b`` inside
object ``a`` and ``a[].b`` is key ``b`` inside the objects of list ``a``. Every capture key is
rendered, and nothing else, so there is no exception list: the only key that depends on state
is ``fun`` on P1/A1-class printers, which appears only while signing is required (checked in
``test_fun_bit_29_*``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambulab.protocol.models import (
    MODELS,
    AmsKind,
    PrinterFamily,
    PrinterModel,
    detect_model,
    firmware_version,
    model_by_code,
)
from bambulab.sim import payloads
from bambulab.sim.payloads import (
    build_report,
    default_dynamic,
    fan_string,
    ip_to_int,
    pack_temperature,
    quantise_temperature,
    version_modules,
    version_reply_has_result,
)
from bambulab.sim.state import AmsUnit, Dynamic, Heater, HmsEntry, Job, Tray

SERIAL = "0ZZTESTSERIAL01"
TypeTable = dict[str, str]


def _t(spec: str) -> TypeTable:
    """``"key:type key:type ..."`` -> ``{key: type}``."""
    table: TypeTable = {}
    for item in spec.split():
        key, _, type_name = item.partition(":")
        table[key] = type_name
    return table


def _under(prefix: str, table: TypeTable) -> TypeTable:
    return {f"{prefix}.{key}": value for key, value in table.items()}


def _without(table: TypeTable, *keys: str) -> TypeTable:
    return {k: v for k, v in table.items() if k not in keys}


LEGACY_TOP = _t(
    """
    ams:dict ams_rfid_status:int ams_status:int bed_target_temper:int bed_temper:float big_fan1_speed:str
    big_fan2_speed:str cali_version:int chamber_temper:int cooling_fan_speed:str fan_gear:int filam_bak:list
    flag3:int force_upgrade:bool gcode_file:str gcode_file_prepare_percent:str gcode_state:str
    heatbreak_fan_speed:str hms:list home_flag:int hw_switch_state:int ipcam:dict k:str layer_num:int
    lifecycle:str lights_report:list mc_percent:int mc_print_line_number:str mc_print_stage:str
    mc_print_sub_stage:int mc_remaining_time:int mess_production_state:str net:dict nozzle_diameter:str
    nozzle_target_temper:int nozzle_temper:float nozzle_type:str online:dict print_error:int print_type:str
    profile_id:str project_id:str queue_est:int queue_number:int queue_sts:int queue_total:int s_obj:list
    sdcard:bool spd_lvl:int spd_mag:int stg:list stg_cur:int subtask_id:str subtask_name:str task_id:str
    total_layer_num:int upgrade_state:dict upload:dict vt_tray:dict wifi_signal:str
    """
)

X1_TOP = _t(
    """
    ams:dict ams_rfid_status:int ams_status:int ap_err:int aux:str aux_part_fan:bool batch_id:int
    bed_target_temper:float bed_temper:float big_fan1_speed:str big_fan2_speed:str cali_version:int
    canvas_id:int care:list cfg:str cooling_fan_speed:str design_id:str device:dict err:str fail_reason:str
    fan_gear:int file:str force_upgrade:bool fun:str gcode_file:str gcode_file_prepare_percent:str
    gcode_state:str heatbreak_fan_speed:str hms:list home_flag:int hw_switch_state:int info:dict ipcam:dict
    job:dict job_attr:int job_id:str layer_num:int lights_report:list mapping:list mc_action:int mc_err:int
    mc_percent:int mc_print_error_code:str mc_print_stage:str mc_print_sub_stage:int mc_remaining_time:int
    mc_stage:int model_id:str net:dict nozzle_diameter:str nozzle_target_temper:float nozzle_temper:float
    nozzle_type:str online:dict percent:int plate_cnt:int plate_id:int plate_idx:int prepare_per:int
    print_error:int print_gcode_action:int print_real_action:int print_type:str profile_id:str project_id:str
    queue:int queue_est:int queue_number:int queue_sts:int queue_total:int remain_time:int s_obj:list
    sdcard:bool spd_lvl:int spd_mag:int stat:str state:int stg:list stg_cur:int subtask_id:str subtask_name:str
    t_utc:int task_id:str total_layer_num:int upgrade_state:dict upload:dict ver:str vir_slot:list vt_tray:dict
    wifi_signal:str xcam:dict xcam_status:str
    """
)

H2D_TOP = _t(
    """
    2D:dict 3D:dict ams:dict ams_rfid_status:int ams_status:int ap_err:int aux:str aux_part_fan:bool
    batch_id:int bed_target_temper:float bed_temper:float big_fan1_speed:str big_fan2_speed:str cali_version:int
    canvas_id:int care:list cfg:str chamber_temper:float cooling_fan_speed:str ctt:float design_id:str
    device:dict err:str fail_reason:str fan_gear:int file:str force_upgrade:bool fun:str gcode_file:str
    gcode_file_prepare_percent:str gcode_state:str heatbreak_fan_speed:str hms:list home_flag:int
    hw_switch_state:int ipcam:dict job:dict job_attr:int job_id:str layer_num:int lights_report:list
    maintain:int mapping:list mc_action:int mc_err:int mc_percent:int mc_print_error_code:str mc_print_stage:str
    mc_print_sub_stage:int mc_remaining_time:int mc_stage:int model_id:str net:dict nozzle_diameter:str
    nozzle_target_temper:float nozzle_temper:float nozzle_type:str online:dict percent:int plate_cnt:int
    plate_id:int plate_idx:int prepare_per:int print_error:int print_gcode_action:int print_real_action:int
    print_type:str profile_id:str project_id:str queue:int queue_est:int queue_number:int queue_sts:int
    queue_total:int remain_time:int s_obj:list sdcard:bool spd_lvl:int spd_mag:int stat:str state:int stg:list
    stg_cur:int subtask_id:str subtask_name:str task_id:str total_layer_num:int upgrade_state:dict upload:dict
    ver:str vir_slot:list vt_tray:dict wifi_signal:str xcam:dict xcam_status:str
    """
)

UPGRADE_LEGACY = _t(
    """
    consistency_request:bool cur_state_code:int dis_state:int err_code:int force_upgrade:bool idx2:int
    message:str module:str new_ver_list:list new_version_state:int progress:str sequence_id:int status:str
    """
)

UPGRADE_NEW = _t(
    """
    ahb_new_version_number:str ams_new_version_number:str consistency_request:bool dis_state:int err_code:int
    ext_new_version_number:str force_upgrade:bool idx:int idx2:int lower_limit:str message:str module:str
    new_version_state:int ota_new_version_number:str progress:str sequence_id:int sn:str status:str
    """
)

IPCAM_LEGACY = _t(
    """
    ipcam_dev:str ipcam_record:str mode_bits:int resolution:str timelapse:str tutk_server:str
    """
)

IPCAM_NEW = _t(
    """
    agora_service:str brtc_service:str bs_state:int ipcam_dev:str ipcam_record:str laser_preview_res:int
    mode_bits:int resolution:str rtsp_url:str timelapse:str tl_store_hpd_type:int tl_store_path_type:int
    tutk_server:str
    """
)

UPLOAD_LEGACY = _t(
    """
    message:str progress:int status:str
    """
)

UPLOAD_NEW = _t(
    """
    file_size:int finish_size:int message:str oss_url:str progress:int sequence_id:str speed:int status:str
    task_id:str time_remaining:int trouble_id:str
    """
)

NET = _t(
    """
    conf:int info:list info[].ip:int info[].mask:int
    """
)

ONLINE_LEGACY = _t(
    """
    ahb:bool rfid:bool version:int
    """
)

ONLINE_NEW = _t(
    """
    ahb:bool ext:bool version:int
    """
)

LIGHTS = _t(
    """
    mode:str node:str
    """
)

AMS_LEGACY = _t(
    """
    ams:list ams_exist_bits:str insert_flag:bool power_on_flag:bool tray_exist_bits:str tray_is_bbl_bits:str
    tray_now:str tray_pre:str tray_read_done_bits:str tray_reading_bits:str tray_tar:str version:int
    """
)

AMS_NEW = _t(
    """
    ams:list ams_exist_bits:str ams_exist_bits_raw:str cali_id:int cali_stat:int insert_flag:bool
    power_on_flag:bool tray_exist_bits:str tray_is_bbl_bits:str tray_now:str tray_pre:str
    tray_read_done_bits:str tray_reading_bits:str tray_tar:str unbind_ams_stat:int version:int
    """
)

UNIT_LEGACY = _t(
    """
    humidity:str id:str temp:str tray:list
    """
)

UNIT_NEW = _t(
    """
    dry_time:int humidity:str humidity_raw:str id:str info:str temp:str tray:list
    """
)

TRAY_LEGACY = _t(
    """
    bed_temp:str bed_temp_type:str cali_idx:int cols:list ctype:int id:str k:float n:int nozzle_temp_max:str
    nozzle_temp_min:str remain:int tag_uid:str tray_color:str tray_diameter:str tray_id_name:str
    tray_info_idx:str tray_sub_brands:str tray_temp:str tray_time:str tray_type:str tray_uuid:str
    tray_weight:str xcam_info:str
    """
)

TRAY_NEW = _t(
    """
    bed_temp:str bed_temp_type:str cali_idx:int cols:list ctype:int drying_temp:str drying_time:str id:str
    nozzle_temp_max:str nozzle_temp_min:str remain:int state:int tag_uid:str total_len:int tray_color:str
    tray_diameter:str tray_id_name:str tray_info_idx:str tray_sub_brands:str tray_type:str tray_uuid:str
    tray_weight:str xcam_info:str
    """
)

XCAM_FULL = _t(
    """
    allow_skip_parts:bool buildplate_marker_detector:bool first_layer_inspector:bool halt_print_sensitivity:str
    print_halt:bool printing_monitor:bool spaghetti_detector:bool
    """
)

DEVICE_X1 = _t(
    """
    bed:dict bed.info:dict bed.info.temp:int bed.state:int bed_temp:int cam:dict cam.laser:dict
    cam.laser.cond:int cam.laser.state:int ctc:dict ctc.info:dict ctc.info.temp:int ctc.state:int ext_tool:dict
    ext_tool.calib:int ext_tool.low_prec:bool ext_tool.mount:int ext_tool.th_temp:int ext_tool.type:str
    extruder:dict extruder.info:list extruder.info[].filam_bak:list extruder.info[].hnow:int
    extruder.info[].hpre:int extruder.info[].htar:int extruder.info[].id:int extruder.info[].info:int
    extruder.info[].snow:int extruder.info[].spre:int extruder.info[].star:int extruder.info[].stat:int
    extruder.info[].temp:int extruder.state:int fan:int laser:dict laser.power:int nozzle:dict nozzle.exist:int
    nozzle.info:list nozzle.info[].diameter:float nozzle.info[].id:int nozzle.info[].tm:int
    nozzle.info[].type:str nozzle.info[].wear:int nozzle.state:int plate:dict plate.base:int plate.cali2d_id:str
    plate.cur_id:str plate.mat:int plate.tar_id:str type:int
    """
)

DEVICE_H2_EXTRA = _t(
    """
    airduct:dict airduct.modeCur:int airduct.modeList:list airduct.modeList[].ctrl:list
    airduct.modeList[].modeId:int airduct.modeList[].off:list airduct.parts:list airduct.parts[].func:int
    airduct.parts[].id:int airduct.parts[].range:int airduct.parts[].state:int cham_temp:int
    """
)

JOB = _t(
    """
    cur_stage:dict cur_stage.idx:int cur_stage.state:int stage:list stage[].clock_in:bool stage[].color:list
    stage[].diameter:list stage[].est_time:int stage[].heigh:float stage[].idx:int stage[].platform:str
    stage[].print_then:bool stage[].proc_list:list stage[].tool:list stage[].type:int
    """
)

CARE = _t(
    """
    id:str info:str
    """
)

TWO_D = _t(
    """
    bs:dict bs.bi:list bs.bi[].clock_in:bool bs.bi[].est_time:int bs.bi[].idx:int bs.bi[].print_then:bool
    bs.bi[].proc_list:list bs.bi[].step_type:int bs.bi[].tool_info:dict bs.bi[].tool_info.color:str
    bs.bi[].tool_info.diameter:float bs.bi[].tool_info.id:int bs.bi[].type:int bs.total_time:int cond:int
    cur_stage:dict cur_stage.clock_in_time:int cur_stage.idx:int cur_stage.left_time:int cur_stage.process:int
    cur_stage.state:int first_confirm:bool makeable:bool material:dict material.cur_id_list:list
    material.state:int material.tar_id:str material.tar_name:str
    """
)

THREE_D = _t(
    """
    layer_num:int total_layer_num:int
    """
)

INFO_X1 = _t(
    """
    temp:int
    """
)


# ----------------------------------------------------------------------------- composed tables

_LEGACY_VT = _without(TRAY_LEGACY, "cols", "ctype")
_NEW_VT = _without(TRAY_NEW, "state")

LEGACY_NO_AMS: TypeTable = {
    **LEGACY_TOP,
    **_under("upgrade_state", UPGRADE_LEGACY),
    **_under("ipcam", IPCAM_LEGACY),
    **_under("upload", UPLOAD_LEGACY),
    **_under("net", NET),
    **_under("online", ONLINE_LEGACY),
    **_under("lights_report[]", LIGHTS),
    **_under("ams", AMS_LEGACY),
    **_under("vt_tray", _LEGACY_VT),
}
LEGACY_WITH_AMS: TypeTable = {
    **LEGACY_NO_AMS,
    **_under("ams.ams[]", UNIT_LEGACY),
    **_under("ams.ams[].tray[]", TRAY_LEGACY),
}
A1_TABLE: TypeTable = {**LEGACY_WITH_AMS, "xcam": "dict", "xcam.buildplate_marker_detector": "bool"}

_NEW_COMMON: TypeTable = {
    **_under("upgrade_state", UPGRADE_NEW),
    **_under("ipcam", IPCAM_NEW),
    **_under("upload", UPLOAD_NEW),
    **_under("net", NET),
    **_under("online", ONLINE_NEW),
    **_under("lights_report[]", LIGHTS),
    **_under("ams", AMS_NEW),
    **_under("ams.ams[]", UNIT_NEW),
    **_under("ams.ams[].tray[]", TRAY_NEW),
    **_under("vt_tray", _NEW_VT),
    **_under("vir_slot[]", _NEW_VT),
    **_under("xcam", XCAM_FULL),
    **_under("job", JOB),
    **_under("care[]", CARE),
    **_under("device", DEVICE_X1),
}
X1C_TABLE: TypeTable = {**X1_TOP, **_NEW_COMMON, **_under("info", INFO_X1)}
H2D_TABLE: TypeTable = {
    **H2D_TOP,
    **_NEW_COMMON,
    **_under("device", DEVICE_H2_EXTRA),
    **_under("2D", TWO_D),
    **_under("3D", THREE_D),
}


# ----------------------------------------------------------------------------- helpers

_TYPE_NAMES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def flatten(obj: dict[str, Any], prefix: str = "") -> TypeTable:
    """Every key path of ``obj`` with its JSON type; objects inside lists are merged under ``[]``."""
    out: TypeTable = {}
    for key, value in obj.items():
        path = prefix + key
        out[path] = _TYPE_NAMES[type(value)]
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        elif isinstance(value, list):
            for element in value:
                if isinstance(element, dict):
                    for sub, type_name in flatten(element, path + "[].").items():
                        previous = out.setdefault(sub, type_name)
                        assert previous == type_name, f"{sub}: mixed types {previous} and {type_name}"
    return out


def model(name: str) -> PrinterModel:
    return model_by_code(name)


def dyn_for(name: str, seed: int = 7) -> Dynamic:
    return default_dynamic(model(name), rng=random.Random(seed))


def report(name: str, dyn: Dynamic | None = None) -> dict[str, Any]:
    return build_report(model(name), dyn if dyn is not None else dyn_for(name), serial=SERIAL)


def _bbl_tray(slot: int, material: str = "PLA", color: str = "2850E0FF") -> Tray:
    return Tray(
        slot=slot,
        material=material,
        color=color,
        tag_uid="A1B2C3D400000100",
        tray_uuid="0123456789ABCDEF0123456789ABCDEF",
    )


def _with_p1_ams(dyn: Dynamic) -> None:
    dyn.ams = [
        AmsUnit(
            unit_id=0, kind=AmsKind.AMS, trays=[Tray(slot=i, is_bbl=i % 2 == 0, color="D0D0D0FF") for i in range(4)]
        )
    ]


def _with_x1_multi_ams(dyn: Dynamic) -> None:
    dyn.ams = [
        AmsUnit(unit_id=0, kind=AmsKind.AMS, trays=[_bbl_tray(i) for i in range(4)]),
        AmsUnit(unit_id=1, kind=AmsKind.AMS, trays=[_bbl_tray(i, "ABS") for i in range(4)]),
        AmsUnit(
            unit_id=2,
            kind=AmsKind.AMS_2_PRO,
            trays=[Tray(slot=0, loaded=False), *(_bbl_tray(i, "PETG") for i in range(1, 4))],
        ),
        AmsUnit(unit_id=128, kind=AmsKind.AMS_HT, trays=[_bbl_tray(0, "PA-CF")]),
    ]


def _printing(dyn: Dynamic) -> None:
    """A mid-print state: heaters at temperature, fans on, a tray in use."""
    dyn.job = Job(
        gcode_state="RUNNING",
        print_type="local",
        stage=0,
        stages=[2, 13, 1],
        percent=42,
        remaining_minutes=17,
        layer=12,
        total_layers=80,
        gcode_file="/data/Metadata/plate_1.gcode",
        subtask_name="Bracket",
        plate_index=1,
        elapsed_s=600.0,
        duration_s=1800.0,
    )
    for nozzle in dyn.nozzles:
        nozzle.temp, nozzle.target = 219.7, 220.0
    dyn.bed = Heater(59.9, 60.0)
    dyn.fan_part, dyn.fan_aux, dyn.fan_chamber, dyn.fan_heatbreak = 255, 128, 60, 255
    dyn.homed = True
    if dyn.ams:
        dyn.tray_now = dyn.tray_tar = 1


# name, model, how the state is shaped like the capture, expected table
CAPTURE_CASES: list[tuple[str, str, Callable[[Dynamic], None] | None, TypeTable]] = [
    ("P1P with AMS", "P1P", _with_p1_ams, LEGACY_WITH_AMS),
    ("P1P without AMS", "P1P", None, LEGACY_NO_AMS),
    ("A1 with AMS Lite", "A1", None, A1_TABLE),
    ("X1C with four AMS units", "X1C", _with_x1_multi_ams, X1C_TABLE),
    ("H2D with two AMS 2 Pro", "H2D", None, H2D_TABLE),
]


# ----------------------------------------------------------------------------- key sets and types


@pytest.mark.parametrize("printing", [False, True], ids=["idle", "printing"])
@pytest.mark.parametrize(("case", "code", "shape", "expected"), CAPTURE_CASES, ids=[c[0] for c in CAPTURE_CASES])
def test_report_keys_and_types_match_capture(
    case: str, code: str, shape: Callable[[Dynamic], None] | None, expected: TypeTable, printing: bool
) -> None:
    dyn = dyn_for(code)
    if shape is not None:
        shape(dyn)
    if printing:
        _printing(dyn)
    got = flatten(report(code, dyn))
    assert sorted(set(expected) - set(got)) == [], f"{case}: keys the real printer sends are missing"
    assert sorted(set(got) - set(expected)) == [], f"{case}: keys the real printer does not send"
    wrong = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert wrong == {}, f"{case}: (expected, got) types differ"


def test_tables_cover_top_level_keys() -> None:
    # guard against the composed tables silently losing a section
    assert len(LEGACY_TOP) == 60 and len(X1_TOP) == 92 and len(H2D_TOP) == 95
    assert {"device", "vir_slot", "fun", "info"} <= set(X1_TOP)
    assert "chamber_temper" not in X1_TOP and H2D_TOP["chamber_temper"] == "float"
    assert {"fun", "device", "xcam"}.isdisjoint(LEGACY_TOP)


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_every_model_renders_a_consistent_report(m: PrinterModel) -> None:
    dyn = default_dynamic(m, rng=random.Random(3))
    body = build_report(m, dyn, serial=SERIAL)
    assert not {"command", "msg", "sequence_id"} & set(body)
    assert body["vt_tray"]["id"] == m.external_spool_id
    assert [u["id"] for u in body["ams"]["ams"]] == [str(u.unit_id) for u in dyn.ams]
    legacy = m.family in (PrinterFamily.P1, PrinterFamily.A1, PrinterFamily.A2)
    assert ("device" in body) is not legacy
    assert body["chamber_temper"] == 5 if legacy else isinstance(body.get("chamber_temper", 0.0), float)
    if not legacy:
        assert len(body["device"]["extruder"]["info"]) == max(m.extruders, 1)
        assert body["device"]["extruder"]["state"] & 0xF == max(m.extruders, 1)
        assert [s["id"] for s in body["vir_slot"]] == (["254", "255"] if m.extruders == 2 else ["255"])
    for key in ("cooling_fan_speed", "big_fan1_speed", "big_fan2_speed", "heatbreak_fan_speed"):
        assert body[key] == "0"
    assert json.loads(json.dumps(body, allow_nan=False)) == body


# ----------------------------------------------------------------------------- conversions


@pytest.mark.parametrize(
    ("pwm", "text"), [(0, "0"), (17, "1"), (128, "8"), (170, "10"), (255, "15"), (-3, "0"), (400, "15")]
)
def test_fan_string(pwm: int, text: str) -> None:
    assert fan_string(pwm) == text


@given(st.integers(min_value=0, max_value=255))
def test_fan_string_matches_rounded_fifteenths(pwm: int) -> None:
    assert fan_string(pwm) == str(round(pwm / 255 * 15))
    assert 0 <= int(fan_string(pwm)) <= 15


@pytest.mark.parametrize("code", ["P1S", "A1", "X1C", "H2D"])
def test_fan_fields_in_report(code: str) -> None:
    dyn = dyn_for(code)
    dyn.fan_part, dyn.fan_aux, dyn.fan_chamber, dyn.fan_heatbreak = 255, 128, 17, 170
    body = report(code, dyn)
    assert (body["cooling_fan_speed"], body["big_fan1_speed"], body["big_fan2_speed"], body["heatbreak_fan_speed"]) == (
        "15",
        "8",
        "1",
        "10",
    )
    assert body["fan_gear"] == 255 | (128 << 8) | (17 << 16)


def test_packed_temperatures_on_h2d() -> None:
    dyn = dyn_for("H2D")
    dyn.nozzles = [Heater(245.0, 245.0), Heater(47.2, 0.0)]
    dyn.bed = Heater(70.0, 70.0)
    dyn.chamber = Heater(35.4, 45.0)
    device = report("H2D", dyn)["device"]
    assert device["bed"]["info"]["temp"] == 0x00460046 == 4587590
    assert device["bed_temp"] == 0x00460046
    assert [e["temp"] for e in device["extruder"]["info"]] == [0x00F500F5, 47]
    assert device["ctc"]["info"]["temp"] == (45 << 16) | 35
    temp = device["extruder"]["info"][0]["temp"]
    assert (temp & 0xFFFF, temp >> 16) == (245, 245)
    assert device["extruder"]["state"] == 2  # two extruders, the first one active
    assert device["nozzle"]["exist"] == 0b11


def test_h2d_flat_fields_follow_the_active_extruder() -> None:
    dyn = dyn_for("H2D")
    dyn.nozzles = [Heater(30.0, 0.0), Heater(250.4, 250.0)]
    dyn.active_extruder = 1
    body = report("H2D", dyn)
    assert body["nozzle_temper"] == 250.0 and body["nozzle_target_temper"] == 250.0
    assert body["device"]["extruder"]["state"] == 2 | (1 << 4) | (1 << 8)


def test_chamber_target_only_where_a_heater_exists() -> None:
    for code, heats in (("H2D", True), ("P2S", False)):
        dyn = dyn_for(code)
        dyn.chamber = Heater(30.0, 50.0)
        body = report(code, dyn)
        assert body["ctt"] == (50.0 if heats else 0.0)
        assert body["device"]["ctc"]["info"]["temp"] >> 16 == (50 if heats else 0)


@given(st.integers(0, 500), st.integers(0, 500))
def test_pack_temperature_round_trip(current: int, target: int) -> None:
    packed = pack_temperature(current, target)
    assert (packed & 0xFFFF, packed >> 16) == (current, target)


@pytest.mark.parametrize("code", ["P1P", "P1S", "A1", "A1 mini"])
def test_p1_a1_temperatures_are_multiples_of_1_32(code: str) -> None:
    dyn = dyn_for(code)
    dyn.nozzles[0] = Heater(21.26, 220.0)
    dyn.bed = Heater(19.851, 0.0)
    body = report(code, dyn)
    assert body["nozzle_temper"] == 21.25
    assert body["bed_temper"] == 19.84375
    for key in ("nozzle_temper", "bed_temper"):
        assert isinstance(body[key], float) and (body[key] * 32).is_integer()
    assert body["nozzle_target_temper"] == 220 and isinstance(body["nozzle_target_temper"], int)
    assert body["chamber_temper"] == 5


@given(st.floats(min_value=-20, max_value=400, allow_nan=False))
def test_quantise_temperature_property(temp: float) -> None:
    q = quantise_temperature(temp)
    assert (q * 32).is_integer() and abs(q - temp) <= 1 / 64 + 1e-9


@pytest.mark.parametrize("code", ["X1C", "H2D"])
def test_x1_h2_temperatures_are_whole_floats(code: str) -> None:
    dyn = dyn_for(code)
    dyn.nozzles[0] = Heater(219.6, 220.0)
    dyn.bed = Heater(23.4, 0.0)
    body = report(code, dyn)
    assert body["nozzle_temper"] == 220.0 and isinstance(body["nozzle_temper"], float)
    assert body["bed_temper"] == 23.0 and isinstance(body["bed_temper"], float)
    assert body["bed_target_temper"] == 0.0 and isinstance(body["bed_target_temper"], float)


@pytest.mark.parametrize(
    ("ip", "packed"),
    [
        ("10.10.10.81", 1359612426),
        ("192.168.1.122", 0x7A01A8C0),
        ("127.0.0.1", 16777343),
        ("255.255.255.0", 16777215),
        ("printer.local", 0),
    ],
)
def test_ip_packing(ip: str, packed: int) -> None:
    assert ip_to_int(ip) == packed


@pytest.mark.parametrize("code", ["P1P", "A1", "X1C", "H2D"])
def test_net_info_carries_packed_ip(code: str) -> None:
    dyn = dyn_for(code)
    dyn.ip = "10.10.10.81"
    info = report(code, dyn)["net"]["info"]
    assert info[0] == {"ip": 1359612426, "mask": 16777215}


# ----------------------------------------------------------------------------- bit fields


@pytest.mark.parametrize("code", ["X1C", "X1E", "H2D", "P2S"])
def test_fun_bit_29_on_newer_reports(code: str) -> None:
    dyn = dyn_for(code)
    dyn.signing_required = False
    off = int(report(code, dyn)["fun"], 16)
    dyn.signing_required = True
    on_text = report(code, dyn)["fun"]
    on = int(on_text, 16)
    assert not off & (1 << 29)
    assert on & (1 << 29)
    assert on ^ off == 1 << 29
    assert on_text == on_text.upper()


@pytest.mark.parametrize("code", ["P1P", "A1"])
def test_fun_bit_29_on_p1_a1_only_while_signing(code: str) -> None:
    dyn = dyn_for(code)
    assert "fun" not in report(code, dyn)  # as in the Developer Mode captures
    dyn.signing_required = True
    assert int(report(code, dyn)["fun"], 16) & (1 << 29)


def test_home_flag_door_bit_on_x1() -> None:
    dyn = dyn_for("X1C")
    closed = report("X1C", dyn)["home_flag"]
    dyn.door_open = True
    opened = report("X1C", dyn)["home_flag"]
    assert not closed & (1 << 23) and opened & (1 << 23)
    assert -(2**31) <= opened < 0  # signed 32-bit, negative like the real X1's
    stat = int(report("X1C", dyn)["stat"], 16)
    assert stat & (1 << 23)


def test_home_flag_no_door_bit_on_p1() -> None:
    dyn = dyn_for("P1S")
    dyn.door_open = True
    flag = report("P1S", dyn)["home_flag"]
    assert 0 <= flag < 2**31 and not flag & (1 << 23)


def test_h2_door_in_stat() -> None:
    dyn = dyn_for("H2D")
    assert not int(report("H2D", dyn)["stat"], 16) & (1 << 23)
    dyn.door_open = True
    assert int(report("H2D", dyn)["stat"], 16) & (1 << 23)


@pytest.mark.parametrize("code", ["P1S", "A1", "X1C", "H2D"])
def test_home_flag_homed_and_sd_bits(code: str) -> None:
    dyn = dyn_for(code)
    dyn.homed, dyn.sdcard = False, False
    cold = report(code, dyn)["home_flag"] & 0xFFFFFFFF
    dyn.homed, dyn.sdcard = True, True
    warm = report(code, dyn)["home_flag"] & 0xFFFFFFFF
    assert warm & 0b111 == 0b111
    assert (warm >> 8) & 0b11 == 1 and (cold >> 8) & 0b11 == 0
    assert report(code, dyn)["sdcard"] is True


# ----------------------------------------------------------------------------- AMS and trays


def test_legacy_empty_and_loaded_trays() -> None:
    dyn = dyn_for("P1S")
    dyn.ams = [
        AmsUnit(
            unit_id=0,
            trays=[_bbl_tray(0), Tray(slot=1, loaded=False), Tray(slot=2, is_bbl=False), Tray(slot=3, loaded=False)],
        )
    ]
    ams = report("P1S", dyn)["ams"]
    trays = ams["ams"][0]["tray"]
    assert trays[1] == {"id": "1"} and trays[3] == {"id": "3"}
    assert "state" not in trays[0] and trays[0]["tray_type"] == "PLA"
    assert trays[0]["tray_diameter"] == "1.75" and trays[2]["tray_diameter"] == "0.00"
    assert trays[0]["cols"] == [trays[0]["tray_color"]]
    assert (ams["tray_exist_bits"], ams["tray_is_bbl_bits"], ams["ams_exist_bits"]) == ("5", "1", "1")


def test_new_empty_and_loaded_trays() -> None:
    dyn = dyn_for("X1C")
    _with_x1_multi_ams(dyn)
    ams = report("X1C", dyn)["ams"]
    units = ams["ams"]
    assert [u["id"] for u in units] == ["0", "1", "2", "128"]
    assert units[2]["tray"][0] == {"id": "0", "state": 0}
    assert all(t["state"] == 11 for u in units for t in u["tray"] if len(t) > 2)
    assert ams["ams_exist_bits"] == "17" and ams["ams_exist_bits_raw"] == "17"
    assert ams["tray_exist_bits"] == "10eff" == ams["tray_read_done_bits"]
    assert [u["info"][-1] for u in units] == ["1", "1", "3", "4"]  # unit type in the low nibble


def test_ams_lite_and_unit_strings() -> None:
    dyn = dyn_for("A1")
    dyn.ams[0].humidity_level = 2
    unit = report("A1", dyn)["ams"]["ams"][0]
    assert unit["temp"] == "0.0" and unit["humidity"] == "2"
    assert set(unit) == {"id", "humidity", "temp", "tray"}


def test_h2d_units_say_which_extruder_they_feed() -> None:
    units = report("H2D")["ams"]["ams"]
    assert [int(u["info"], 16) >> 8 & 0xF for u in units] == [1, 0]


def test_tray_now_strings_and_extruder_slot_encoding() -> None:
    dyn = dyn_for("H2D")
    dyn.tray_now, dyn.tray_pre, dyn.tray_tar = 6, 255, 6
    body = report("H2D", dyn)
    assert (body["ams"]["tray_now"], body["ams"]["tray_pre"], body["ams"]["tray_tar"]) == ("6", "255", "6")
    first = body["device"]["extruder"]["info"][0]
    assert (first["snow"], first["spre"], first["star"]) == (0x0102, 0xFFFF, 0x0102)
    assert body["device"]["extruder"]["info"][1]["snow"] == 0xFFFF
    assert payloads.encode_slot(254) == 0xFF00 and payloads.encode_slot(128) == 0x8000


def test_external_spool_ids() -> None:
    assert report("P1P")["vt_tray"]["id"] == "254"
    assert report("X1C")["vt_tray"]["id"] == "255"
    h2d = report("H2D")
    assert h2d["vt_tray"]["id"] == "255"
    assert [slot["id"] for slot in h2d["vir_slot"]] == ["254", "255"]
    assert "state" not in h2d["vt_tray"]


def test_p1p_default_external_spool_is_loaded() -> None:
    vt = report("P1P")["vt_tray"]
    assert vt["tray_type"] and vt["tray_color"] != "00000000"


# ----------------------------------------------------------------------------- sub-objects


def test_ipcam_rtsp_url_on_x1_h2() -> None:
    for code in ("X1C", "H2D", "P2S"):
        dyn = dyn_for(code)
        dyn.ip = "192.168.1.50"
        dyn.lan_liveview = True
        assert report(code, dyn)["ipcam"]["rtsp_url"] == "rtsps://192.168.1.50/streaming/live/1"
        dyn.rtsp_port = 8322
        assert report(code, dyn)["ipcam"]["rtsp_url"] == "rtsps://192.168.1.50:8322/streaming/live/1"
        dyn.lan_liveview = False
        assert report(code, dyn)["ipcam"]["rtsp_url"] == "disable"


def test_ipcam_on_p1_a1_has_no_rtsp_url() -> None:
    for code in ("P1P", "P1S", "A1", "A1 mini"):
        ipcam = report(code)["ipcam"]
        assert "rtsp_url" not in ipcam
        assert ipcam["resolution"] == ("" if code.startswith("P1") else "1080p")


def test_xcam_per_family() -> None:
    assert "xcam" not in report("P1S")
    assert set(report("A1")["xcam"]) == {"buildplate_marker_detector"}
    dyn = dyn_for("X1C")
    dyn.xcam["halt_print_sensitivity"] = "high"
    dyn.xcam["spaghetti_detector"] = False
    xcam = report("X1C", dyn)["xcam"]
    assert xcam["halt_print_sensitivity"] == "high" and xcam["spaghetti_detector"] is False


def test_lights_per_model() -> None:
    nodes = {code: [x["node"] for x in report(code)["lights_report"]] for code in ("P1S", "A1", "X1C", "H2D")}
    assert nodes["P1S"] == nodes["A1"] == ["chamber_light"]
    assert nodes["X1C"] == ["chamber_light", "work_light"]
    assert nodes["H2D"] == ["chamber_light", "work_light", "chamber_light2"]
    dyn = dyn_for("H2D")
    dyn.lights["chamber_light2"] = "on"
    dyn.lights["work_light"] = "flashing"
    modes = {x["node"]: x["mode"] for x in report("H2D", dyn)["lights_report"]}
    assert modes["chamber_light2"] == "on" and modes["work_light"] == "flashing"


@pytest.mark.parametrize(("level", "mag"), [(1, 50), (2, 100), (3, 124), (4, 166)])
def test_speed_level_and_magnitude(level: int, mag: int) -> None:
    for code in ("P1S", "X1C"):
        dyn = dyn_for(code)
        dyn.speed_level = level
        body = report(code, dyn)
        assert (body["spd_lvl"], body["spd_mag"]) == (level, mag)


def test_hms_and_errors() -> None:
    for code in ("A1", "H2D"):
        dyn = dyn_for(code)
        dyn.hms = [HmsEntry(attr=0x07000200, code=0x00020001), HmsEntry(attr=0x05000500, code=0x00010007)]
        dyn.job.print_error = 0x0300400C
        body = report(code, dyn)
        assert body["hms"] == [{"attr": 0x07000200, "code": 0x00020001}, {"attr": 0x05000500, "code": 0x00010007}]
        assert body["print_error"] == 50348044


def test_job_fields_while_printing() -> None:
    for code in ("P1S", "X1C", "H2D"):
        dyn = dyn_for(code)
        _printing(dyn)
        body = report(code, dyn)
        assert (body["gcode_state"], body["mc_percent"], body["mc_remaining_time"]) == ("RUNNING", 42, 17)
        assert (body["layer_num"], body["total_layer_num"], body["stg"], body["stg_cur"]) == (12, 80, [2, 13, 1], 0)
        assert body["mc_print_stage"] == "2" and body["gcode_file_prepare_percent"] == "0"
        if code != "P1S":
            assert body["percent"] == 42 and body["mc_stage"] == 2 and body["file"] == body["gcode_file"]


def test_idle_stage_spelling_per_family() -> None:
    dyn = dyn_for("P1S")
    dyn.job.stage = -1
    assert report("P1S", dyn)["stg_cur"] == 255  # P1/A1 send the idle stage as an unsigned byte
    dyn = dyn_for("X1C")
    dyn.job.stage = -1
    assert report("X1C", dyn)["stg_cur"] == -1


def test_nozzle_fields() -> None:
    dyn = dyn_for("X1C")
    dyn.nozzle_diameter = 0.6
    dyn.nozzle_type = "stainless_steel"
    body = report("X1C", dyn)
    assert body["nozzle_diameter"] == "0.6" and body["nozzle_type"] == "stainless_steel"
    assert body["device"]["nozzle"]["info"][0]["diameter"] == 0.6
    assert report("P1P")["nozzle_diameter"] == "0.4"


def test_wifi_signal_and_switch_state() -> None:
    dyn = dyn_for("A1")
    dyn.wifi_dbm = -45
    dyn.filament_present = False
    body = report("A1", dyn)
    assert body["wifi_signal"] == "-45dBm" and body["hw_switch_state"] == 0


def test_x1_clock_comes_from_the_state() -> None:
    dyn = dyn_for("X1C")
    dyn.utc_ms = 1_750_000_000_123
    assert report("X1C", dyn)["t_utc"] == 1_750_000_000_123


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_report_is_deterministic_and_pure(m: PrinterModel) -> None:
    dyn = default_dynamic(m, rng=random.Random(11))
    _printing(dyn)
    before = dataclasses.asdict(dyn)
    first = build_report(m, dyn, serial=SERIAL)
    second = build_report(m, copy.deepcopy(dyn), serial=SERIAL)
    assert first == second
    assert dataclasses.asdict(dyn) == before  # the renderer never changes the state
    first["ams"]["ams"].clear()
    first["lights_report"].append({"node": "x", "mode": "on"})
    assert build_report(m, dyn, serial=SERIAL) == second  # no shared mutable parts
    assert version_modules(m, dyn, serial=SERIAL) == version_modules(m, copy.deepcopy(dyn), serial=SERIAL)


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_default_dynamic_is_seeded(m: PrinterModel) -> None:
    a = default_dynamic(m, rng=random.Random(5))
    b = default_dynamic(m, rng=random.Random(5))
    c = default_dynamic(m, rng=random.Random(6))
    assert a == b
    assert build_report(m, a, serial=SERIAL) == build_report(m, b, serial=SERIAL)
    assert a != c


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_report_is_json_serialisable(m: PrinterModel) -> None:
    dyn = default_dynamic(m, rng=random.Random(2))
    _printing(dyn)
    dyn.hms = [HmsEntry(attr=0x03000100, code=0x00010007)]
    body = build_report(m, dyn, serial=SERIAL)
    text = json.dumps({"print": {**body, "command": "push_status", "msg": 0, "sequence_id": "1"}}, allow_nan=False)
    assert json.loads(text)["print"]["gcode_state"] == "RUNNING"
    assert json.loads(json.dumps(body)) == body  # no tuples or other non-JSON types


# ----------------------------------------------------------------------------- default state


def test_default_dynamic_hardware_per_model() -> None:
    def kinds(code: str) -> list[AmsKind]:
        return [u.kind for u in dyn_for(code).ams]

    assert kinds("P1P") == []
    assert kinds("P1S") == [AmsKind.AMS]
    assert kinds("X1C") == [AmsKind.AMS]
    assert kinds("A1") == kinds("A1 mini") == [AmsKind.AMS_LITE]
    assert kinds("H2D") == [AmsKind.AMS_2_PRO, AmsKind.AMS_2_PRO]
    assert len(dyn_for("H2D").nozzles) == 2 and len(dyn_for("X1C").nozzles) == 1
    assert [t.slot for t in dyn_for("H2D").external] == [254, 255]
    assert "chamber_light2" in dyn_for("H2D").lights and "chamber_light2" not in dyn_for("X1C").lights
    for code in ("X1C", "P1S", "A1", "H2D"):
        dyn = dyn_for(code)
        assert dyn.job.gcode_state == "IDLE"
        assert all(h.target == 0 for h in (*dyn.nozzles, dyn.bed, dyn.chamber))
        assert 15.0 < dyn.bed.temp < 35.0
        loaded = [t for u in dyn.ams for t in u.trays if t.loaded]
        assert all(len(u.trays) == 4 for u in dyn.ams)
        if loaded:
            assert len({(t.material, t.color) for t in loaded}) > 1  # varied spools
            assert all(len(t.color) == 8 for t in loaded)


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_default_firmware_is_product_name_style(m: PrinterModel) -> None:
    dyn = default_dynamic(m, rng=random.Random(1))
    assert dyn.firmware == payloads.DEFAULT_FIRMWARE[m.code]
    assert payloads.uses_product_name(m, dyn.firmware)


# ----------------------------------------------------------------------------- get_version

# The product names Home Assistant's integration recognises (PROTOCOL.md 1.8); the X1 family is
# not among them and is recognised by the access-point module instead.
HA_PRODUCT_NAMES = {
    "Bambu Lab A1": "A1",
    "Bambu Lab A1 mini": "A1 mini",
    "Bambu Lab P1P": "P1P",
    "Bambu Lab P1S": "P1S",
    "Bambu Lab P2S": "P2S",
    "Bambu Lab H2D": "H2D",
    "Bambu Lab H2D Pro": "H2D Pro",
    "Bambu Lab H2S": "H2S",
    "Bambu Lab H2C": "H2C",
    "Bambu Lab X2D": "X2D",
    "Bambu Lab A2L": "A2L",
}


def ha_style_detect(modules: list[dict[str, Any]]) -> str | None:
    """The detection order PROTOCOL.md 1.8 describes for Home Assistant, returning our model names."""
    for module in modules:
        if module.get("product_name") in HA_PRODUCT_NAMES:
            return HA_PRODUCT_NAMES[module["product_name"]]
    for module in modules:
        hw = str(module.get("hw_ver", ""))
        if not hw.startswith("AP0"):
            continue
        project = module.get("project_name", "") or ""
        if hw == "AP02":
            return "X1E"
        if project == "N1":
            return "A1 mini"
        if (hw, project) == ("AP04", "C11"):
            return "P1P"
        if (hw, project) == ("AP04", "C12"):
            return "P1S"
        if (hw, project) == ("AP05", "N2S"):
            return "A1"
        if hw == "AP05" and not project:
            return "X1 Carbon"
    return None


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_version_modules_detect_every_model(m: PrinterModel) -> None:
    dyn = default_dynamic(m, rng=random.Random(4))
    modules = version_modules(m, dyn, serial=SERIAL)
    reply = {"info": {"command": "get_version", "sequence_id": "0", "module": modules}}
    assert detect_model(reply) == m
    assert firmware_version(reply) == dyn.firmware
    # Home Assistant cannot tell an X1 from an X1 Carbon; real X1 printers look the same to it
    assert ha_style_detect(modules) == ("X1 Carbon" if m.name == "X1" else m.name)
    ota = next(x for x in modules if x["name"] == "ota")
    assert ota["sn"] == SERIAL and ota["product_name"] == m.product_name
    assert json.loads(json.dumps(modules)) == modules


def test_x1c_is_found_by_the_ap05_rule() -> None:
    modules = version_modules(model("X1C"), dyn_for("X1C"), serial=SERIAL)
    assert not any(x.get("product_name") in HA_PRODUCT_NAMES for x in modules)
    ap = [x for x in modules if str(x["hw_ver"]).startswith("AP0")]
    assert len(ap) == 1 and ap[0]["hw_ver"] == "AP05" and not ap[0].get("project_name")


@pytest.mark.parametrize(
    ("code", "firmware", "ap_hw"),
    [
        ("P1P", "01.07.00.00", "AP04"),
        ("P1S", "01.07.00.00", "AP04"),
        ("A1", "01.05.00.00", "AP05"),
        ("A1 mini", "01.05.00.00", "AP05"),
        ("X1C", "01.08.00.00", "AP05"),
        ("X1E", "01.01.00.00", "AP02"),
    ],
)
def test_older_firmware_uses_project_names(code: str, firmware: str, ap_hw: str) -> None:
    m = model(code)
    dyn = dyn_for(code)
    dyn.firmware = firmware
    modules = version_modules(m, dyn, serial=SERIAL)
    assert not any(x.get("product_name") for x in modules)
    assert detect_model({"info": {"module": modules}}) == m
    assert ha_style_detect(modules) == m.name
    assert [x for x in modules if x["hw_ver"] == ap_hw]
    if m.family is not PrinterFamily.X1:
        ota = next(x for x in modules if x["name"] == "ota")
        assert ota["project_name"] == m.code and ota["hw_ver"] == "OTA"


def test_ams_modules_follow_the_units() -> None:
    dyn = dyn_for("X1C")
    _with_x1_multi_ams(dyn)
    names = [x["name"] for x in version_modules(model("X1C"), dyn, serial=SERIAL)]
    assert [n for n in names if "/" in n] == ["ams/0", "ams/1", "n3f/2", "n3s/128"]
    products = {x["name"]: x["product_name"] for x in version_modules(model("X1C"), dyn, serial=SERIAL)}
    assert products["n3s/128"] == "AMS HT (1)" and products["ams/1"] == "AMS (2)"
    a1 = version_modules(model("A1"), dyn_for("A1"), serial=SERIAL)
    assert [x["hw_ver"] for x in a1 if x["name"] == "ams_f1/0"] == ["AMS_F102"]
    h2d = version_modules(model("H2D"), dyn_for("H2D"), serial=SERIAL)
    assert [x["name"] for x in h2d if x["name"].startswith("n3f/")] == ["n3f/0", "n3f/1"]
    assert [x["name"] for x in version_modules(model("P1P"), dyn_for("P1P"), serial=SERIAL)] == [
        "ota",
        "esp32",
        "mc",
        "th",
    ]


def test_version_module_fields_per_style() -> None:
    new_keys = {"name", "sw_ver", "hw_ver", "loader_ver", "sn", "product_name", "visible", "flag"}
    for code in ("P1P", "A1", "X1C", "H2D"):
        for module in version_modules(model(code), dyn_for(code), serial=SERIAL):
            assert set(module) == new_keys
            assert isinstance(module["visible"], bool) and isinstance(module["flag"], int)
    dyn = dyn_for("P1P")
    dyn.firmware = "01.07.00.00"
    _with_p1_ams(dyn)
    old = {x["name"]: set(x) for x in version_modules(model("P1P"), dyn, serial=SERIAL)}
    assert old["ota"] == {"name", "project_name", "sw_ver", "hw_ver", "sn", "flag"}
    assert old["mc"] == {"name", "project_name", "sw_ver", "loader_ver", "hw_ver", "sn", "flag"}
    assert old["ams/0"] == {"name", "project_name", "sw_ver", "loader_ver", "ota_ver", "hw_ver", "sn", "flag"}


@pytest.mark.parametrize("m", MODELS, ids=[m.name for m in MODELS])
def test_version_reply_has_result(m: PrinterModel) -> None:
    expected = m.family in (PrinterFamily.P1, PrinterFamily.A1, PrinterFamily.A2)
    assert version_reply_has_result(m) is expected
