"""Command builders, sequence ids, classification and acknowledgement decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambulab.protocol import commands as c
from bambulab.protocol.commands import (
    MAX_SEQUENCE_ID,
    AckResult,
    CommandClass,
    Fan,
    SequenceCounter,
    SpeedLevel,
)
from bambulab.protocol.models import MODELS, PrinterFamily, model_by_code


@pytest.fixture
def seq() -> SequenceCounter:
    return SequenceCounter()


def body(message: dict[str, dict[str, Any]], section: str) -> dict[str, Any]:
    """The single section of a command, after checking the envelope every command shares."""
    assert list(message) == [section]
    inner = message[section]
    assert isinstance(inner["sequence_id"], str)
    assert inner["sequence_id"].isdigit()
    assert inner["sequence_id"] != "0"
    assert isinstance(inner["command"], str)
    json.dumps(message)  # always serialisable as is
    return inner


# --------------------------------------------------------------------------------------------
# SequenceCounter
# --------------------------------------------------------------------------------------------


def test_sequence_ids_are_decimal_strings_increasing_from_one() -> None:
    counter = SequenceCounter()
    ids = [counter.next() for _ in range(1000)]
    assert ids[:3] == ["1", "2", "3"]
    assert len(set(ids)) == len(ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert all(i.isdigit() and str(int(i)) == i for i in ids)


def test_sequence_ids_wrap_below_two_to_the_31_and_never_zero() -> None:
    counter = SequenceCounter(MAX_SEQUENCE_ID - 1)
    assert counter.next() == str(2**31 - 2)
    assert counter.next() == str(2**31 - 1)
    assert counter.next() == "1"
    assert counter.next() == "2"


def test_sequence_start_is_validated_and_large_seeds_fold_into_range() -> None:
    assert SequenceCounter(20000).next() == "20000"
    assert SequenceCounter(2**31).next() == "1"
    folded = int(SequenceCounter(1_760_000_000_000).next())
    assert 1 <= folded < 2**31
    for bad in (0, -5):
        with pytest.raises(ValueError, match=">= 1"):
            SequenceCounter(bad)
    with pytest.raises(ValueError, match="int"):
        SequenceCounter(True)
    with pytest.raises(ValueError, match="int"):
        SequenceCounter("1")  # type: ignore[arg-type]


def test_counters_are_independent_and_peek_does_not_consume() -> None:
    a, b = SequenceCounter(), SequenceCounter(100)
    assert a.peek() == 1
    assert a.peek() == 1
    assert a.next() == "1"
    assert b.next() == "100"
    assert a.next() == "2"
    assert "next=3" in repr(a)


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=1, max_value=50))
def test_sequence_property_always_in_range_and_distinct_until_wrap(start: int, count: int) -> None:
    counter = SequenceCounter(start)
    ids = [int(counter.next()) for _ in range(count)]
    assert all(1 <= i <= MAX_SEQUENCE_ID for i in ids)
    assert len(set(ids)) == len(ids)


def test_each_builder_call_takes_a_fresh_id(seq: SequenceCounter) -> None:
    first = c.pause(seq)["print"]["sequence_id"]
    second = c.pause(seq)["print"]["sequence_id"]
    assert int(second) == int(first) + 1


def test_builders_refuse_a_non_counter() -> None:
    with pytest.raises(ValueError, match="SequenceCounter"):
        c.pause("1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def test_pushing_and_info_shapes(seq: SequenceCounter) -> None:
    assert body(c.pushall(seq), "pushing") == {
        "sequence_id": "1", "command": "pushall", "version": 1, "push_target": 1,
    }
    assert body(c.start_pushing(seq), "pushing") == {"sequence_id": "2", "command": "start"}
    assert body(c.stop_pushing(seq), "pushing") == {"sequence_id": "3", "command": "stop"}
    assert body(c.get_version(seq), "info") == {"sequence_id": "4", "command": "get_version"}
    assert body(c.get_access_code(seq), "system") == {"sequence_id": "5", "command": "get_access_code"}


@pytest.mark.parametrize("builder", [c.pause, c.resume, c.stop])
def test_pause_resume_stop(seq: SequenceCounter, builder: Any) -> None:
    inner = body(builder(seq), "print")
    assert inner == {"sequence_id": "1", "command": builder.__name__, "param": ""}


@pytest.mark.parametrize(
    ("level", "param"),
    [(SpeedLevel.SILENT, "1"), (SpeedLevel.LUDICROUS, "4"), (2, "2"), ("3", "3"), ("sport", "3"),
     (" Ludicrous ", "4")],
)
def test_print_speed_param_is_a_string(seq: SequenceCounter, level: Any, param: str) -> None:
    inner = body(c.print_speed(seq, level), "print")
    assert inner["command"] == "print_speed"
    assert inner["param"] == param
    assert isinstance(inner["param"], str)


@pytest.mark.parametrize("level", [0, 5, -1, "0", "9", "turbo", "", True, 2.0, None, "²"])
def test_print_speed_rejects_out_of_range(seq: SequenceCounter, level: Any) -> None:
    with pytest.raises(ValueError, match="speed level"):
        c.print_speed(seq, level)


def test_skip_objects(seq: SequenceCounter) -> None:
    inner = body(c.skip_objects(seq, (12, 34)), "print")
    assert inner == {"sequence_id": "1", "command": "skip_objects", "obj_list": [12, 34]}
    for bad in ([], [-1], ["12"], [True], "12"):
        with pytest.raises(ValueError, match="object"):
            c.skip_objects(seq, bad)  # type: ignore[arg-type]


def test_clean_print_error(seq: SequenceCounter) -> None:
    inner = body(c.clean_print_error(seq, print_error=0x0300400C, subtask_id="s1"), "print")
    assert inner == {
        "sequence_id": "1", "command": "clean_print_error", "subtask_id": "s1", "print_error": 50348044,
    }
    assert body(c.clean_print_error(seq), "print")["print_error"] == 0
    with pytest.raises(ValueError, match="print_error"):
        c.clean_print_error(seq, print_error=-1)


def test_gcode_line_joins_with_newlines_and_ends_with_one(seq: SequenceCounter) -> None:
    assert body(c.gcode_line(seq, "M104 S200"), "print") == {
        "sequence_id": "1", "command": "gcode_line", "param": "M104 S200\n",
    }
    assert c.gcode_line(seq, ["G91", "G1 X10 F3000", "G90"])["print"]["param"] == "G91\nG1 X10 F3000\nG90\n"
    assert c.gcode_line(seq, "G28\r\n\nM400\n\n")["print"]["param"] == "G28\nM400\n"
    assert c.gcode_line(seq, ["G28\nM400", "M17"])["print"]["param"] == "G28\nM400\nM17\n"


@pytest.mark.parametrize("bad", ["", "\n\n", [], ["  "], [1], "G28\x00"])
def test_gcode_line_rejects_empty_or_odd_input(seq: SequenceCounter, bad: Any) -> None:
    with pytest.raises(ValueError, match="gcode"):
        c.gcode_line(seq, bad)


def test_temperature_helpers(seq: SequenceCounter) -> None:
    assert c.set_nozzle_temp(seq, 220)["print"]["param"] == "M104 S220\n"
    assert c.set_bed_temp(seq, 55.4)["print"]["param"] == "M140 S55\n"
    assert c.set_chamber_temp(seq, 40)["print"]["param"] == "M141 S40\n"
    assert c.set_nozzle_temp(seq, 0)["print"]["param"] == "M104 S0\n"
    assert c.home(seq)["print"] == {"sequence_id": "5", "command": "gcode_line", "param": "G28\n"}


@pytest.mark.parametrize(
    ("builder", "value", "match"),
    [
        (c.set_nozzle_temp, -1, "negative"),
        (c.set_bed_temp, -0.5, "negative"),
        (c.set_chamber_temp, -10, "negative"),
        (c.set_nozzle_temp, 2200, "at most"),
        (c.set_bed_temp, 500, "at most"),
        (c.set_nozzle_temp, float("nan"), "at most"),
        (c.set_nozzle_temp, float("inf"), "at most"),
        (c.set_nozzle_temp, True, "number"),
        (c.set_nozzle_temp, "220", "number"),
    ],
)
def test_temperature_validation(seq: SequenceCounter, builder: Any, value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        builder(seq, value)


@pytest.mark.parametrize(
    ("fan", "percent", "param"),
    [(Fan.PART, 100, "M106 P1 S255\n"), (Fan.AUX, 0, "M106 P2 S0\n"), (Fan.CHAMBER, 50, "M106 P3 S128\n"),
     (1, 10, "M106 P1 S26\n"), (3, 33.3, "M106 P3 S85\n"), (Fan.AUX2, 100, "M106 P10 S255\n")],
)
def test_fan_percent_to_0_255(seq: SequenceCounter, fan: Any, percent: float, param: str) -> None:
    assert c.set_fan(seq, fan, percent)["print"]["param"] == param


@pytest.mark.parametrize(("fan", "percent"), [(1, -1), (1, 101), (1, float("nan")), (4, 50), (True, 50), (1, "50")])
def test_fan_validation(seq: SequenceCounter, fan: Any, percent: Any) -> None:
    with pytest.raises(ValueError, match="fan"):
        c.set_fan(seq, fan, percent)


def test_ledctrl_shape(seq: SequenceCounter) -> None:
    assert body(c.ledctrl(seq, c.LightNode.CHAMBER, "on"), "system") == {
        "sequence_id": "1", "command": "ledctrl", "led_node": "chamber_light", "led_mode": "on",
        "led_on_time": 500, "led_off_time": 500, "loop_times": 0, "interval_time": 0,
    }
    flashing = c.ledctrl(seq, "work_light", c.LedMode.FLASHING, on_time=200, off_time=300, loop_times=5,
                         interval_time=1000)["system"]
    assert (flashing["led_mode"], flashing["led_on_time"], flashing["led_off_time"]) == ("flashing", 200, 300)
    assert (flashing["loop_times"], flashing["interval_time"]) == (5, 1000)
    assert c.ledctrl(seq, "chamber_light2", "OFF")["system"]["led_mode"] == "off"


@pytest.mark.parametrize(
    ("node", "mode", "kw", "match"),
    [
        ("chamber_light", "blink", {}, "led_mode"),
        ("chamber_light", "", {}, "led_mode"),
        ("chamber_light", 1, {}, "led_mode"),
        ("", "on", {}, "led_node"),
        ("chamber light", "on", {}, "led_node"),
        ("chamber_light", "flashing", {"on_time": -1}, "on_time"),
        ("chamber_light", "flashing", {"loop_times": 1.5}, "loop_times"),
    ],
)
def test_ledctrl_validation(seq: SequenceCounter, node: Any, mode: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        c.ledctrl(seq, node, mode, **kw)


def test_gcode_file_and_calibration(seq: SequenceCounter) -> None:
    assert body(c.gcode_file(seq, "/sdcard/cube.gcode"), "print") == {
        "sequence_id": "1", "command": "gcode_file", "param": "/sdcard/cube.gcode",
    }
    with pytest.raises(ValueError, match="path"):
        c.gcode_file(seq, "")
    assert c.calibration(seq, bed_leveling=True, vibration=True)["print"] == {
        "sequence_id": "2", "command": "calibration", "option": 6,
    }
    assert c.calibration(seq, lidar=True, bed_leveling=True, vibration=True, motor_noise=True)["print"][
        "option"] == 15
    assert c.calibration(seq, extra_bits=16)["print"]["option"] == 16
    with pytest.raises(ValueError, match="at least one"):
        c.calibration(seq)
    with pytest.raises(ValueError, match="lidar"):
        c.calibration(seq, lidar=1)  # type: ignore[arg-type]


def test_print_option(seq: SequenceCounter) -> None:
    assert body(c.print_option(seq, c.PrintOption.SOUND_ENABLE, False), "print") == {
        "sequence_id": "1", "command": "print_option", "sound_enable": False,
    }
    assert c.print_option(seq, "auto_recovery", True)["print"]["auto_recovery"] is True
    with pytest.raises(ValueError, match="print option"):
        c.print_option(seq, "self_destruct", True)
    with pytest.raises(ValueError, match="enabled"):
        c.print_option(seq, "auto_recovery", "yes")  # type: ignore[arg-type]


def test_camera_and_xcam(seq: SequenceCounter) -> None:
    assert body(c.ipcam_record_set(seq, True), "camera") == {
        "sequence_id": "1", "command": "ipcam_record_set", "control": "enable",
    }
    assert body(c.ipcam_timelapse(seq, False), "camera") == {
        "sequence_id": "2", "command": "ipcam_timelapse", "control": "disable",
    }
    assert body(c.xcam_control_set(seq, c.XcamModule.SPAGHETTI_DETECTOR, True, sensitivity="high"), "xcam") == {
        "sequence_id": "3", "command": "xcam_control_set", "module_name": "spaghetti_detector",
        "control": True, "enable": True, "print_halt": True, "halt_print_sensitivity": "high",
    }
    off = c.xcam_control_set(seq, "first_layer_inspector", False, print_halt=False)["xcam"]
    assert (off["control"], off["enable"], off["print_halt"], off["halt_print_sensitivity"]) == (
        False, False, False, "medium")
    with pytest.raises(ValueError, match="sensitivity"):
        c.xcam_control_set(seq, "spaghetti_detector", True, sensitivity="extreme")
    with pytest.raises(ValueError, match="enabled"):
        c.ipcam_record_set(seq, "enable")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# project_file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_project_url_form_per_family(model: Any) -> None:
    url = c.project_url("/jobs/cube.gcode.3mf", model)
    if model.family in (PrinterFamily.X1, PrinterFamily.P1, PrinterFamily.A1):
        assert url == "file:///sdcard/jobs/cube.gcode.3mf"
    else:
        assert url == "ftp:///jobs/cube.gcode.3mf"


def test_project_file_full_shape_for_a_legacy_printer(seq: SequenceCounter) -> None:
    inner = body(c.project_file(seq, "cube.gcode.3mf", model="P1S", plate=2, ams_mapping=[0, -1, 6]), "print")
    assert inner == {
        "sequence_id": "1",
        "command": "project_file",
        "param": "Metadata/plate_2.gcode",
        "url": "file:///sdcard/cube.gcode.3mf",
        "file": "cube.gcode.3mf",
        "md5": "from_sd_card",
        "subtask_name": "cube",
        "project_id": "0",
        "profile_id": "0",
        "task_id": "0",
        "subtask_id": "0",
        "bed_type": "auto",
        "timelapse": False,
        "bed_leveling": True,
        "flow_cali": False,
        "vibration_cali": True,
        "layer_inspect": False,
        "use_ams": True,
        "ams_mapping": [0, -1, 6],
    }
    assert "bed_levelling" not in inner


def test_project_file_for_newer_printers_uses_ftp_url(seq: SequenceCounter) -> None:
    for code in ("H2D", "P2S", "X2D", "A2L"):
        inner = c.project_file(seq, "/cache/a b.3mf", model=model_by_code(code))["print"]
        assert inner["url"] == "ftp:///cache/a b.3mf"
        assert inner["file"] == "a b.3mf"
        assert inner["subtask_name"] == "a b"
        assert inner["use_ams"] is False
        assert "ams_mapping" not in inner


def test_project_file_options(seq: SequenceCounter) -> None:
    inner = c.project_file(
        seq, "x.gcode.3mf", url="ftp://x.gcode.3mf", subtask_name="Benchy", md5=None, bed_type=c.BedType.COOL_PLATE,
        timelapse=True, bed_leveling=False, flow_cali=True, vibration_cali=False, layer_inspect=True,
        use_ams=True, ams_mapping=[254], ams_mapping2=[{"ams_id": 255, "slot_id": 255}, (0, 3)],
        nozzle_mapping=[0, 1], auto_bed_leveling=c.CaliMode.AUTO, extrude_cali_flag=1, nozzle_offset_cali=0,
        cfg="0x1", skip_objects=[5], extra={"job_id": 7},
    )["print"]
    assert inner["url"] == "ftp://x.gcode.3mf"
    assert "md5" not in inner
    assert inner["subtask_name"] == "Benchy"
    assert inner["bed_type"] == "cool_plate"
    assert (inner["timelapse"], inner["bed_leveling"], inner["flow_cali"]) == (True, False, True)
    assert (inner["vibration_cali"], inner["layer_inspect"], inner["use_ams"]) == (False, True, True)
    assert inner["ams_mapping2"] == [{"ams_id": 255, "slot_id": 255}, {"ams_id": 0, "slot_id": 3}]
    assert inner["nozzle_mapping"] == [0, 1]
    assert (inner["auto_bed_leveling"], inner["extrude_cali_flag"], inner["nozzle_offset_cali"]) == (2, 1, 0)
    assert (inner["cfg"], inner["skip_objects"], inner["job_id"]) == ("0x1", [5], 7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "model"),
        ({"model": "Z9"}, "unknown printer model"),
        ({"model": "P1S", "plate": 0}, "plate"),
        ({"model": "P1S", "use_ams": True}, "ams_mapping"),
        ({"model": "P1S", "ams_mapping": [300]}, "ams_mapping"),
        ({"model": "P1S", "ams_mapping": [-2]}, "ams_mapping"),
        ({"model": "P1S", "ams_mapping": "0"}, "ams_mapping"),
        ({"model": "P1S", "ams_mapping2": [{"ams_id": 0}]}, "slot_id"),
        ({"model": "P1S", "ams_mapping2": [[0, 1]]}, "ams_mapping2"),
        ({"model": "P1S", "auto_bed_leveling": 3}, "auto_bed_leveling"),
        ({"model": "P1S", "bed_type": "hot plate"}, "bed_type"),
        ({"model": "P1S", "timelapse": 1}, "timelapse"),
        ({"model": "P1S", "extra": {"sequence_id": "9"}}, "extra"),
        ({"model": "P1S", "subtask_name": "a\nb"}, "subtask_name"),
    ],
)
def test_project_file_validation(seq: SequenceCounter, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        c.project_file(seq, "cube.gcode.3mf", **kwargs)


@pytest.mark.parametrize("path", ["", "/", "../etc/passwd", "a/../../b.3mf", "a\nb.3mf", "a\x01.3mf"])
def test_project_file_rejects_bad_paths(seq: SequenceCounter, path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        c.project_file(seq, path, model="X1C")


def test_ams_mapping2_from_flat_mapping() -> None:
    assert c.ams_mapping2_from([0, 5, -1, 129, 254, 15]) == [
        {"ams_id": 0, "slot_id": 0},
        {"ams_id": 1, "slot_id": 1},
        {"ams_id": 255, "slot_id": 255},
        {"ams_id": 129, "slot_id": 0},
        {"ams_id": 255, "slot_id": 255},
        {"ams_id": 3, "slot_id": 3},
    ]
    with pytest.raises(ValueError, match="ams_mapping"):
        c.ams_mapping2_from([256])


# --------------------------------------------------------------------------------------------
# AMS
# --------------------------------------------------------------------------------------------


def test_ams_change_filament_load_unload_external(seq: SequenceCounter) -> None:
    assert body(c.ams_change_filament(seq, 6, tar_temp=220), "print") == {
        "sequence_id": "1", "command": "ams_change_filament", "target": 6, "curr_temp": 220, "tar_temp": 220,
        "ams_id": 1, "slot_id": 2,
    }
    unload = c.ams_change_filament(seq, c.UNLOAD_TARGET, tar_temp=0, curr_temp=230)["print"]
    assert (unload["target"], unload["ams_id"], unload["slot_id"]) == (255, 255, 255)
    assert (unload["curr_temp"], unload["tar_temp"]) == (230, 0)
    external = c.ams_change_filament(seq, c.EXTERNAL_SPOOL_TARGET, tar_temp=250, extruder_id=1)["print"]
    assert (external["target"], external["ams_id"], external["slot_id"], external["extruder_id"]) == (
        254, 255, 0, 1)
    ht = c.ams_change_filament(seq, 128, tar_temp=260)["print"]
    assert (ht["ams_id"], ht["slot_id"]) == (128, 0)
    for key in ("target", "curr_temp", "tar_temp", "ams_id", "slot_id"):
        assert type(unload[key]) is int


@pytest.mark.parametrize(
    ("target", "kw", "match"),
    [(-1, {"tar_temp": 220}, "target"), (256, {"tar_temp": 220}, "target"), (200, {"tar_temp": 220}, "target"),
     (0, {"tar_temp": -5}, "negative"), (0, {"tar_temp": 220, "curr_temp": -1}, "negative"),
     (0, {"tar_temp": 220, "extruder_id": -1}, "extruder_id")],
)
def test_ams_change_filament_validation(seq: SequenceCounter, target: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        c.ams_change_filament(seq, target, **kw)


def test_ams_filament_setting(seq: SequenceCounter) -> None:
    inner = body(
        c.ams_filament_setting(seq, ams_id=1, tray_id=3, tray_type="PETG", color="#00ae42",
                               nozzle_temp_min=230, nozzle_temp_max=260, tray_info_idx="GFG00"),
        "print",
    )
    assert inner == {
        "sequence_id": "1", "command": "ams_filament_setting", "ams_id": 1, "tray_id": 3, "slot_id": 3,
        "tray_info_idx": "GFG00", "tray_color": "00AE42FF", "nozzle_temp_min": 230, "nozzle_temp_max": 260,
        "tray_type": "PETG",
    }
    external = c.ams_filament_setting(seq, ams_id=255, tray_id=254, tray_type="PLA", color="FF000080",
                                      nozzle_temp_min=190, nozzle_temp_max=230, setting_id="PFUS1")["print"]
    assert (external["ams_id"], external["tray_id"], external["tray_color"]) == (255, 254, "FF000080")
    assert "slot_id" not in external
    assert external["setting_id"] == "PFUS1"
    assert isinstance(external["nozzle_temp_min"], int)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tray_id": 4}, "tray_id"),
        ({"ams_id": 255, "tray_id": 3}, "external"),
        ({"ams_id": 128, "tray_id": 1}, "AMS HT"),
        ({"ams_id": 200}, "ams_id"),
        ({"color": "red"}, "color"),
        ({"color": "#12345"}, "color"),
        ({"nozzle_temp_min": -1}, "negative"),
        ({"nozzle_temp_min": 250, "nozzle_temp_max": 200}, "exceed"),
        ({"tray_type": ""}, "tray_type"),
    ],
)
def test_ams_filament_setting_validation(seq: SequenceCounter, kw: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"ams_id": 0, "tray_id": 0, "tray_type": "PLA", "color": "FFFFFF",
                            "nozzle_temp_min": 190, "nozzle_temp_max": 230}
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        c.ams_filament_setting(seq, **args)


def test_ams_control(seq: SequenceCounter) -> None:
    assert body(c.ams_control(seq, c.AmsControlAction.RESUME), "print") == {
        "sequence_id": "1", "command": "ams_control", "param": "resume",
    }
    assert c.ams_control(seq, "Done")["print"]["param"] == "done"
    with pytest.raises(ValueError, match="ams_control"):
        c.ams_control(seq, "explode")


# --------------------------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "command", "expected"),
    [
        ("print", "project_file", CommandClass.SIGNED),
        ("print", "gcode_line", CommandClass.SIGNED),
        ("print", "ams_change_filament", CommandClass.SIGNED),
        ("pushing", "pushall", CommandClass.UNSIGNED),
        ("info", "get_version", CommandClass.UNSIGNED),
        ("system", "ledctrl", CommandClass.UNSIGNED),
        ("camera", "ipcam_record_set", CommandClass.UNSIGNED),
        ("xcam", "xcam_control_set", CommandClass.UNSIGNED),
        ("upgrade", "upgrade_confirm", CommandClass.UNKNOWN),
    ],
)
def test_classify(section: str, command: str, expected: CommandClass) -> None:
    assert c.classify(section, command) is expected
    assert expected.needs_signature == (expected is CommandClass.SIGNED)


def test_every_builder_output_classifies_by_its_section(seq: SequenceCounter) -> None:
    signed = [c.pause(seq), c.gcode_line(seq, "G28"), c.project_file(seq, "a.3mf", model="A1"),
              c.ams_control(seq, "resume"), c.print_option(seq, "sound_enable", True)]
    unsigned = [c.pushall(seq), c.get_version(seq), c.ledctrl(seq, "chamber_light", "on"),
                c.ipcam_timelapse(seq, True), c.xcam_control_set(seq, "printing_monitor", True)]
    for message in signed:
        ((section, inner),) = message.items()
        assert c.classify(section, inner["command"]).needs_signature
    for message in unsigned:
        ((section, inner),) = message.items()
        assert not c.classify(section, inner["command"]).needs_signature


# --------------------------------------------------------------------------------------------
# ack matching and results
# --------------------------------------------------------------------------------------------


def test_is_ack_for_matches_section_command_and_sequence(seq: SequenceCounter) -> None:
    request = c.pause(seq)
    sid = request["print"]["sequence_id"]
    assert c.is_ack_for(request, {"print": {"command": "pause", "sequence_id": sid, "result": "success"}})
    assert c.is_ack_for(request, {"print": {"command": "pause", "sequence_id": int(sid)}})
    assert not c.is_ack_for(request, {"print": {"command": "pause", "sequence_id": str(int(sid) + 1)}})
    assert not c.is_ack_for(request, {"print": {"command": "resume", "sequence_id": sid}})
    assert not c.is_ack_for(request, {"system": {"command": "pause", "sequence_id": sid}})
    assert not c.is_ack_for(request, {"print": {"command": "pause"}})
    assert not c.is_ack_for(request, {"print": {"command": "push_status", "sequence_id": sid, "msg": 1}})


def test_is_ack_for_int_and_missing_ids_from_other_clients() -> None:
    int_request = {"print": {"command": "project_file", "sequence_id": 0, "param": "Metadata/plate_1.gcode"}}
    assert c.is_ack_for(int_request, {"print": {"command": "project_file", "sequence_id": "0"}})
    assert c.is_ack_for(int_request, {"print": {"command": "project_file", "sequence_id": 0}})
    missing = {"print": {"command": "stop"}}
    assert c.is_ack_for(missing, {"print": {"command": "stop", "result": "success"}})
    assert c.is_ack_for(missing, {"print": {"command": "stop", "sequence_id": None}})
    assert not c.is_ack_for(missing, {"print": {"command": "stop", "sequence_id": "3"}})


def test_is_ack_for_signed_and_multi_section_requests() -> None:
    signed = {"print": {"command": "pause", "sequence_id": "7", "param": ""},
              "header": {"sign_ver": "v1.0", "sign_alg": "RSA_SHA256", "sign_string": "x", "payload_len": 1}}
    assert c.is_ack_for(signed, {"print": {"command": "pause", "sequence_id": "7", "result": "failed",
                                           "err_code": 84033543}})
    multi = {"pushing": {"command": "pushall", "sequence_id": "1"}, "info": {"command": "get_version",
                                                                               "sequence_id": "2"}}
    assert c.is_ack_for(multi, {"info": {"command": "get_version", "sequence_id": "2", "module": []}})


@pytest.mark.parametrize(
    ("request_", "reply"),
    [({}, {}), ({"print": "x"}, {"print": "x"}), ({"print": {"command": 1}}, {"print": {"command": 1}}),
     ({"print": {"command": "a"}}, {"print": []}), ([], {}), ({}, None)],
)
def test_is_ack_for_tolerates_junk(request_: Any, reply: Any) -> None:
    assert c.is_ack_for(request_, reply) is False


@pytest.mark.parametrize("result", ["success", "SUCCESS", "Success", " success "])
def test_ack_result_success_any_case(result: str) -> None:
    ack = c.ack_result({"print": {"command": "gcode_line", "sequence_id": "3", "param": "G28\n", "result": result,
                                  "reason": "SUCCESS", "err_code": 0, "is_from_mqtt": True}})
    assert ack.success
    assert (ack.section, ack.command, ack.sequence_id, ack.err_code) == ("print", "gcode_line", "3", 0)
    assert not ack.signature_required
    assert not ack.replay


def test_ack_result_missing_result_is_success() -> None:
    ack = c.ack_result({"print": {"command": "pause", "sequence_id": 12}})
    assert ack == AckResult(success=True, section="print", command="pause", sequence_id="12")
    assert c.ack_result({"command": "pause", "sequence_id": "1"}).success  # section body alone
    assert c.ack_result({}).success


@pytest.mark.parametrize("result", ["fail", "FAIL", "failed", "error", ""])
def test_ack_result_failures(result: str) -> None:
    ack = c.ack_result({"system": {"command": "set_accessories", "sequence_id": "4", "result": result,
                                   "reason": "invalid nozzle_diameter"}})
    assert not ack.success
    assert ack.reason == "invalid nozzle_diameter"
    assert ack.section == "system"


def test_ack_result_errno_and_err_code_without_result() -> None:
    ack = c.ack_result({"print": {"command": "ams_change_filament", "sequence_id": "1", "errno": -2}})
    assert not ack.success
    assert ack.errno == -2
    assert not c.ack_result({"print": {"command": "x", "sequence_id": "1", "err_code": "50348044"}}).success
    assert c.ack_result({"print": {"command": "x", "sequence_id": "1", "err_code": "0"}}).success


def test_ack_result_signature_required() -> None:
    by_code = c.ack_result({"print": {"command": "project_file", "sequence_id": "9", "result": "failed",
                                      "reason": "mqtt message verify failed", "err_code": 84033543}})
    assert by_code.signature_required
    assert not by_code.success
    assert by_code.authorization_error
    by_reason = c.ack_result(
        {"print": {"command": "pause", "sequence_id": "9", "reason": "MQTT message verify failed"}}
    )
    assert by_reason.signature_required
    assert not by_reason.success
    by_code_only = c.ack_result({"print": {"command": "pause", "result": "success", "err_code": "84033543"}})
    assert by_code_only.signature_required
    assert not by_code_only.success


def test_ack_result_replay_and_other_auth_errors() -> None:
    replay = c.ack_result({"print": {"command": "pause", "sequence_id": "0", "result": "failed", "err_code": 84033544}})
    assert replay.replay
    assert not replay.signature_required
    assert replay.authorization_error
    assert not replay.success
    other = c.ack_result({"print": {"command": "pause", "result": "failed", "err_code": 84033545}})
    assert other.authorization_error
    assert not other.replay
    assert not c.ack_result({"print": {"command": "pause", "result": "failed", "err_code": 1}}).authorization_error


def test_ack_result_of_a_non_mapping() -> None:
    assert not c.ack_result([]).success  # type: ignore[arg-type]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_ack_fields = st.fixed_dictionaries(
    {},
    optional={
        "command": _json, "sequence_id": _json, "result": _json, "reason": _json, "err_code": _json,
        "errno": _json,
    },
)


@given(st.dictionaries(st.text(max_size=10), _json, max_size=5))
def test_ack_result_never_raises_on_arbitrary_dicts(reply: dict[str, Any]) -> None:
    result = c.ack_result(reply)
    assert isinstance(result, AckResult)
    assert c.is_ack_for(reply, reply) in (True, False)


@given(st.sampled_from(["print", "system", "info", "header", "x"]), _ack_fields)
def test_ack_result_never_raises_on_arbitrary_ack_fields(section: str, fields: dict[str, Any]) -> None:
    result = c.ack_result({section: fields})
    assert isinstance(result.success, bool)
    if result.signature_required or result.replay:
        assert not result.success
