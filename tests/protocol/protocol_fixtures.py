"""Compact, hand-written report fixtures for the protocol tests.

They follow the key sets and wire types of real printers (PROTOCOL.md §2 and the public
captures it cites): hex-string bit masks, string fan levels, 1/32 °C floats on P1/A1, packed
``device`` temperatures on H2, negative ``home_flag``, trays without ``state`` on legacy
firmware, bare ``{"id"}`` empty slots on the A2L. The newer models (P2S, H2S, H2C, X2D, A2L)
are inferred from PROTOCOL.md and share the H2 shape. Values are invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


def tray(
    slot: int,
    material: str = "PLA",
    color: str = "FFFFFFFF",
    *,
    remain: int = 100,
    state: int | None = 11,
    sub_brand: str = "PLA Basic",
    info_idx: str = "GFA00",
) -> JSON:
    t: JSON = {
        "id": str(slot),
        "tray_type": material,
        "tray_sub_brands": sub_brand,
        "tray_info_idx": info_idx,
        "tray_color": color,
        "cols": [color],
        "ctype": 0,
        "remain": remain,
        "nozzle_temp_min": "190",
        "nozzle_temp_max": "230",
        "bed_temp": "0",
        "bed_temp_type": "0",
        "tray_diameter": "1.75",
        "tray_weight": "1000",
        "tag_uid": "A1B2C3D400000100",
        "tray_uuid": "0123456789ABCDEF0123456789ABCDEF",
        "xcam_info": "000000000000000000000000",
        "cali_idx": -1,
        "total_len": 330000,
    }
    if state is None:  # legacy P1/A1 firmware: no state, PA values, non-RFID diameter 0.00
        t.update(tray_diameter="0.00", tag_uid="0000000000000000", tray_weight="0", k=0.02, n=1,
                 tray_temp="0", tray_time="0", remain=remain)
    else:
        t.update(state=state, drying_temp="55", drying_time="8")
    return t


def empty_tray(slot: int, state: int | None = 0) -> JSON:
    return {"id": str(slot)} if state is None else {"id": str(slot), "state": state}


def unit(
    unit_id: int,
    trays: list[JSON],
    *,
    info: str | None = None,
    humidity: str = "5",
    humidity_raw: str | None = None,
    temp: str = "25.0",
    dry_time: int | None = None,
) -> JSON:
    u: JSON = {"id": str(unit_id), "humidity": humidity, "temp": temp, "tray": trays}
    if info is not None:
        u["info"] = info
    if humidity_raw is not None:
        u["humidity_raw"] = humidity_raw
    if dry_time is not None:
        u["dry_time"] = dry_time
    return u


def ams_block(units: list[JSON], *, exist: str, trays: str, tray_now: str = "255") -> JSON:
    return {
        "ams": units,
        "ams_exist_bits": exist,
        "tray_exist_bits": trays,
        "tray_is_bbl_bits": trays,
        "tray_read_done_bits": trays,
        "tray_reading_bits": "0",
        "tray_now": tray_now,
        "tray_pre": tray_now,
        "tray_tar": tray_now,
        "version": 12,
        "insert_flag": True,
        "power_on_flag": False,
    }


def spool(spool_id: str, material: str = "", color: str = "00000000") -> JSON:
    return {
        "id": spool_id,
        "tray_type": material,
        "tray_sub_brands": "",
        "tray_info_idx": "GFL99" if material else "",
        "tray_color": color,
        "cols": [color],
        "remain": 0,
        "nozzle_temp_min": "0",
        "nozzle_temp_max": "0",
        "tray_diameter": "1.75",
        "tray_weight": "0",
        "tag_uid": "0000000000000000",
        "tray_uuid": "00000000000000000000000000000000",
        "cali_idx": -1,
    }


def _common(**fields: Any) -> JSON:
    base: JSON = {
        "command": "push_status",
        "msg": 0,
        "sequence_id": "2001",
        "gcode_state": "IDLE",
        "gcode_file": "",
        "gcode_file_prepare_percent": "0",
        "subtask_name": "",
        "print_type": "idle",
        "mc_percent": 0,
        "mc_remaining_time": 0,
        "mc_print_stage": "1",
        "mc_print_sub_stage": 0,
        "layer_num": 0,
        "total_layer_num": 0,
        "stg": [],
        "stg_cur": 255,
        "print_error": 0,
        "hms": [],
        "spd_lvl": 2,
        "spd_mag": 100,
        "cooling_fan_speed": "0",
        "big_fan1_speed": "0",
        "big_fan2_speed": "0",
        "heatbreak_fan_speed": "0",
        "wifi_signal": "-55dBm",
        "net": {"conf": 0, "info": [{"ip": 1359612426, "mask": 16777215}]},
        "sdcard": True,
        "nozzle_diameter": "0.4",
        "nozzle_type": "stainless_steel",
        "lights_report": [{"node": "chamber_light", "mode": "on"}],
        "ipcam": {"ipcam_dev": "1", "ipcam_record": "enable", "timelapse": "disable", "resolution": "1080p",
                  "tutk_server": "disable", "mode_bits": 3},
        "upload": {"status": "idle", "progress": 0, "message": ""},
        "upgrade_state": {"sequence_id": 0, "status": "IDLE", "progress": "", "message": "0%, 0B/s",
                          "new_version_state": 2, "new_ver_list": []},
        "online": {"ahb": False, "rfid": False, "version": 7},
        "ams_status": 0,
        "ams_rfid_status": 0,
        "hw_switch_state": 0,
        "queue_number": 0,
        "s_obj": [],
        "home_flag": 224478464,
    }
    base.update(fields)
    return base


def _device(extruders: list[tuple[int, int, int]], *, bed: int, chamber: int, ext_state: int,
            nozzle_type: str = "HS01") -> JSON:
    """``extruders`` = [(packed temp, snow, info)]; H2-style ``device`` object."""
    return {
        "bed": {"info": {"temp": bed}, "state": 0},
        "bed_temp": bed,
        "ctc": {"info": {"temp": chamber}, "state": 0},
        "extruder": {
            "state": ext_state,
            "info": [
                {"id": i, "temp": temp, "snow": snow, "spre": snow, "star": snow, "hnow": i, "hpre": i, "htar": i,
                 "stat": 0, "info": info, "filam_bak": []}
                for i, (temp, snow, info) in enumerate(extruders)
            ],
        },
        "nozzle": {"exist": (1 << len(extruders)) - 1, "state": 0,
                   "info": [{"id": i, "diameter": 0.4, "type": nozzle_type, "tm": 0, "wear": 0}
                            for i in range(len(extruders))]},
        "plate": {"base": 1, "mat": 1, "cur_id": "", "tar_id": "", "cali2d_id": ""},
        "type": 1,
    }


def packed(current: int, target: int) -> int:
    return (target << 16) | current


def get_version(product_name: str | None = None, *, project: str = "", ap_hw: str = "",
                ams_modules: tuple[str, ...] = ()) -> JSON:
    modules: list[JSON] = [{"name": "ota", "sw_ver": "01.08.00.00", "hw_ver": "OTA", "sn": "SERIAL", "flag": 3}]
    if product_name is not None:
        modules[0]["product_name"] = product_name
    else:
        modules[0]["project_name"] = project
    if ap_hw:
        modules.append({"name": "esp32", "project_name": project, "sw_ver": "01.11.00.00", "hw_ver": ap_hw,
                        "sn": "AP", "flag": 0})
    modules.extend({"name": name, "sw_ver": "00.01.06.62", "hw_ver": "AMS08", "sn": name, "flag": 0}
                   for name in ams_modules)
    return {"info": {"command": "get_version", "sequence_id": "1", "module": modules, "result": "success",
                     "reason": ""}}


@dataclass(frozen=True)
class Fixture:
    name: str
    model: str  # model name in the model table
    report: JSON
    version: JSON


def x1c_multi_ams() -> Fixture:
    units = [
        unit(0, [tray(0, "PLA", "000000FF", remain=93), tray(1, "PLA", "7D6556FF"), tray(2, "PLA", "4D3324FF"),
                 tray(3, "PLA", "AE835BFF", remain=83)], info="1001", humidity_raw="8", temp="26.2", dry_time=0),
        unit(1, [tray(0, "ABS", "D32941FF", remain=21), tray(1, "ABS", "489FDFFF", remain=-1),
                 tray(2, "ABS", "FFFFFF80"), tray(3, "ABS", "87909AFF")], info="1001", humidity_raw="4", temp="25.4"),
        unit(2, [empty_tray(0, 0), tray(1, "ABS", "FF6A13FF"), tray(2, "ABS", "789D4AFF", remain=62),
                 empty_tray(3, 8)], info="142023", humidity="4", humidity_raw="9", temp="65.0", dry_time=583),
        unit(128, [tray(0, "PA-CF", "000000FF")], info="2004", humidity_raw="8", temp="45.2"),
    ]
    report = _common(
        gcode_state="RUNNING", print_type="cloud", mc_percent=42, mc_remaining_time=95, layer_num=120,
        total_layer_num=480, stg=[2, 14, 1], stg_cur=0, gcode_file="/data/Metadata/plate_1.gcode",
        subtask_name="Hose fitting", task_id="702383065",
        nozzle_temper=220.0, nozzle_target_temper=220.0, bed_temper=55.0, bed_target_temper=55.0,
        cooling_fan_speed="15", big_fan1_speed="10", big_fan2_speed="4", heatbreak_fan_speed="15",
        home_flag=-1067070064, stat="7A58000", fun="11A30F9CFB", ver="20010", wifi_signal="-66dBm",
        nozzle_type="hardened_steel",
        ams=ams_block(units, exist="17", trays="10eff", tray_now="5"),
        vt_tray=spool("255"), vir_slot=[spool("255")],
        lights_report=[{"node": "chamber_light", "mode": "on"}, {"node": "work_light", "mode": "flashing"}],
        device=_device([(26, 0xFFFF, 8)], bed=23, chamber=25, ext_state=1, nozzle_type="HX01"),
        hms=[{"attr": 0x03000100, "code": 0x00010007}],
    )
    # Newer X1 firmware sends no chamber_temper: the chamber reading is device.ctc only.
    version = get_version("Bambu Lab X1-Carbon", ams_modules=("ams/0", "ams/1", "n3f/2", "n3s/128"))
    return Fixture("X1C multi AMS", "X1 Carbon", {"print": report}, version)


def p1p_with_ams() -> Fixture:
    trays = [tray(i, "PLA", "D357FEFF", remain=-1, state=None, info_idx="GFL96") for i in range(4)]
    report = _common(
        gcode_state="FAILED", print_type="idle", stg_cur=0, layer_num=1, total_layer_num=70, mc_remaining_time=759,
        subtask_name="Fidget Collection", nozzle_temper=21.25, nozzle_target_temper=0, bed_temper=19.84375,
        bed_target_temper=0, chamber_temper=5, ams_status=768, k="0.0200", flag3=15, wifi_signal="-53dBm",
        ams=ams_block([unit(0, trays, humidity="3", temp="0.0")], exist="1", trays="f", tray_now="0"),
        vt_tray=spool("254", "PLA", "161616FF"), lights_report=[{"node": "chamber_light", "mode": "off"}],
        print_error=50348044,
    )
    version = get_version(project="C11", ap_hw="AP04", ams_modules=("ams/0",))
    return Fixture("P1P with AMS", "P1P", {"print": report}, version)


def p1p_without_ams() -> Fixture:
    report = _common(
        gcode_state="FINISH", mc_percent=100, stg_cur=255, layer_num=124, total_layer_num=124,
        nozzle_temper=25.90625, nozzle_target_temper=0, bed_temper=23.125, bed_target_temper=0, chamber_temper=5,
        home_flag=224477464, net={"conf": 0, "info": [{"ip": 2050140352, "mask": 16777215}]},
        ams=ams_block([], exist="0", trays="0", tray_now="254"), vt_tray=spool("254", "PETG", "BCBCBCFF"),
    )
    version = get_version("Bambu Lab P1P")
    return Fixture("P1P without AMS", "P1P", {"print": report}, version)


def a1_with_ams_lite() -> Fixture:
    colors = ["76D9F4FF", "FFF144FF", "FF80FFFF", "0ACC38FF"]
    trays = [tray(i, "PLA", c, state=None, info_idx="P8d19ba6") for i, c in enumerate(colors)]
    report = _common(
        nozzle_temper=27.8125, nozzle_target_temper=0, bed_temper=29.75, bed_target_temper=0, chamber_temper=5,
        stg_cur=0, home_flag=863847839, xcam={"buildplate_marker_detector": True},
        ams=ams_block([unit(0, trays, temp="0.0")], exist="1", trays="f", tray_now="255"),
        vt_tray=spool("254", "PLA", "FFFFFFFF"), lights_report=[{"node": "chamber_light", "mode": "off"}],
    )
    version = get_version(project="N2S", ap_hw="AP05", ams_modules=("ams_f1/0",))
    return Fixture("A1 with AMS Lite", "A1", {"print": report}, version)


def a1_mini() -> Fixture:
    report = _common(
        gcode_state="PREPARE", print_type="local", stg=[2, 13, 1], stg_cur=2, mc_percent=0, mc_remaining_time=31,
        nozzle_temper=140.5, nozzle_target_temper=220, bed_temper=48.96875, bed_target_temper=65, chamber_temper=5,
        ams=ams_block([], exist="0", trays="0", tray_now="254"), vt_tray=spool("254", "PETG", "FF0000FF"),
        sdcard=False, home_flag=16,
    )
    version = get_version("Bambu Lab A1 mini")
    return Fixture("A1 mini", "A1 mini", {"print": report}, version)


def _h2_units() -> list[JSON]:
    return [
        unit(0, [tray(0, "PLA-S", remain=1), tray(1, "PLA", remain=31), tray(2, "PETG"), tray(3, "PLA")],
             info="2103", humidity_raw="1", temp="27.0"),
        unit(1, [tray(0, "PLA", "000000FF", remain=55), tray(1, "PLA", "000000FF"), tray(2, "PETG-CF", "000000FF"),
                 tray(3, "PETG", "ADB1B2FF", remain=51)], info="2003", humidity_raw="6", temp="29.7"),
    ]


def _h2_common(**fields: Any) -> JSON:
    defaults: JSON = dict(  # noqa: C408 (keyword form mirrors _common)
        gcode_state="RUNNING", print_type="local", stg=[29, 13, 4, 8, 14, 1, 3, 39], stg_cur=0, mc_percent=6,
        mc_remaining_time=549, layer_num=1, total_layer_num=200, subtask_name="Riser",
        nozzle_temper=245.0, nozzle_target_temper=245.0, bed_temper=70.0, bed_target_temper=70.0,
        chamber_temper=36.0, ctt=0.0, big_fan2_speed="4", heatbreak_fan_speed="15", home_flag=-1066934785,
        stat="16382181F0", cfg="3C5FDAD9", aux="2001004", ver="20000", ams_status=768,
        vt_tray=spool("255"), vir_slot=[spool("254"), spool("255", "PLA", "00AE42FF")],
        lights_report=[{"node": "chamber_light", "mode": "on"}, {"node": "work_light", "mode": "flashing"},
                       {"node": "chamber_light2", "mode": "on"}],
    )
    defaults.update(fields)
    return _common(**defaults)


def h2d() -> Fixture:
    report = _h2_common(
        ams=ams_block(_h2_units(), exist="3", trays="ff", tray_now="3"),
        device=_device([(packed(245, 245), 0x0103, 79), (packed(47, 0), 0xFEFF, 8)], bed=packed(70, 70),
                       chamber=35, ext_state=2),
    )
    del report["msg"]  # the H2D capture's pushall carries no msg
    return Fixture("H2D two extruders", "H2D", {"print": report}, get_version("Bambu Lab H2D",
                   ams_modules=("n3f/0", "n3f/1")))


def h2c() -> Fixture:
    report = _h2_common(
        ams=ams_block(_h2_units()[:1], exist="1", trays="f", tray_now="255"),
        device=_device([(packed(30, 0), 0xFFFF, 8), (packed(215, 220), 0xFF00, 8)], bed=packed(60, 60),
                       chamber=packed(40, 45), ext_state=0x12),
        stat="800000",  # door open
    )
    return Fixture("H2C two extruders", "H2C", {"print": report}, get_version("Bambu Lab H2C"))


def h2s() -> Fixture:
    report = _h2_common(
        ams=ams_block(_h2_units()[1:], exist="2", trays="f0", tray_now="4"),
        device=_device([(packed(245, 245), 0x0100, 8)], bed=packed(70, 70), chamber=packed(36, 0), ext_state=1),
        vir_slot=[spool("255")],
    )
    return Fixture("H2S", "H2S", {"print": report}, get_version("Bambu Lab H2S"))


def p2s() -> Fixture:
    report = _h2_common(
        ams=ams_block([unit(0, [tray(0), empty_tray(1, 10), tray(2, "PETG", "FF0000FF"), empty_tray(3, 8)],
                            info="1003", humidity_raw="12", temp="24.1")], exist="1", trays="5", tray_now="2"),
        device=_device([(packed(230, 230), 0x0002, 8)], bed=packed(60, 60), chamber=packed(33, 0), ext_state=1),
        vir_slot=[spool("255")], stat="0",
    )
    del report["chamber_temper"]
    return Fixture("P2S", "P2S", {"print": report}, get_version("Bambu Lab P2S"))


def x2d() -> Fixture:
    report = _h2_common(
        ams=ams_block([unit(0, [tray(0, state=27), tray(1), tray(2), tray(3)], info="1003", humidity_raw="20")],
                      exist="1", trays="f", tray_now="0"),
        device=_device([(packed(250, 250), 0x0000, 8), (packed(25, 0), 0xFFFF, 8)], bed=packed(80, 80),
                       chamber=packed(50, 55), ext_state=2),
        stg_cd=0,
    )
    return Fixture("X2D two extruders", "X2D", {"print": report}, get_version("Bambu Lab X2D"))


def a2l() -> Fixture:
    trays = [empty_tray(0, None), tray(1, "PLA", "FFFFFFFF", state=None), empty_tray(2, None), empty_tray(3, None)]
    report = _common(
        nozzle_temper=26.5, nozzle_target_temper=0, bed_temper=25.0, bed_target_temper=0, chamber_temper=5,
        ams=ams_block([unit(0, trays, info="1002", temp="0.0")], exist="1", trays="2", tray_now="1"),
        vt_tray=spool("254"),
    )
    return Fixture("A2L", "A2L", {"print": report}, get_version("Bambu Lab A2L"))


ALL_FIXTURES = (x1c_multi_ams, p1p_with_ams, p1p_without_ams, a1_with_ams_lite, a1_mini, h2d, h2c, h2s, p2s, x2d, a2l)
