"""merge(): folding full and delta reports into a printer's state (PROTOCOL.md §2.2, §10.5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_fixtures import ALL_FIXTURES, JSON, a1_with_ams_lite, h2d, p1p_with_ams, spool, tray, x1c_multi_ams

from bambulab.protocol.state import is_status_report, merge


def delta(**fields: Any) -> JSON:
    """A P1-style delta: only command/msg/sequence_id plus the changed keys."""
    return {"print": {"command": "push_status", "msg": 1, "sequence_id": "53856", **fields}}


def full_state(fixture: Any = x1c_multi_ams) -> JSON:
    fx = fixture()
    return merge(merge(None, fx.report), fx.version)


def units(state: JSON) -> list[JSON]:
    result: list[JSON] = state["print"]["ams"]["ams"]
    return result


# --------------------------------------------------------------------------- full vs delta


def test_full_report_becomes_print_state() -> None:
    report = x1c_multi_ams().report
    state = merge(None, report)
    assert state == {"print": report["print"]}
    assert state["print"] is report["print"]  # copy-on-write: a full report is taken as is


def test_full_report_replaces_previous_print_state() -> None:
    state = merge(None, delta(nozzle_temper=30.0, only_in_old="x"))
    full = {"print": {"command": "push_status", "msg": 0, "sequence_id": "1", "bed_temper": 20.0}}
    state = merge(state, full)
    assert state["print"] == full["print"]  # keys a full push no longer has are gone


@pytest.mark.parametrize("msg", ["0", 0])
def test_msg_zero_as_int_or_string_is_full(msg: object) -> None:
    state = merge(None, delta(a=1))
    state = merge(state, {"print": {"command": "push_status", "msg": msg, "b": 2}})
    assert "a" not in state["print"]


@pytest.mark.parametrize("msg", [1, "1", False, None, 0.5])
def test_other_msg_values_merge(msg: object) -> None:
    state = merge(None, delta(a=1))
    body: JSON = {"command": "push_status", "b": 2}
    if msg is not None:
        body["msg"] = msg
    state = merge(state, {"print": body})
    assert state["print"]["a"] == 1
    assert state["print"]["b"] == 2


def test_report_without_msg_is_merged_like_a_delta() -> None:
    # The H2D capture's pushall has no msg at all.
    state = full_state(h2d)
    assert "msg" not in state["print"]
    later = merge(state, {"print": {"command": "push_status", "sequence_id": "9", "mc_percent": 7}})
    assert later["print"]["mc_percent"] == 7
    assert later["print"]["ams"] is state["print"]["ams"]


def test_p1s_delta_with_one_key() -> None:
    state = full_state(p1p_with_ams)
    new = merge(state, delta(nozzle_temper=28.78125))
    assert new["print"]["nozzle_temper"] == 28.78125
    assert new["print"]["bed_temper"] == state["print"]["bed_temper"]
    assert new["print"]["msg"] == 1
    assert new["print"]["sequence_id"] == "53856"
    assert new["info"] is state["info"]


@pytest.mark.parametrize("sequence_id", ["20001", 20001, 0, None])
def test_sequence_id_int_str_or_missing(sequence_id: object) -> None:
    body: JSON = {"command": "push_status", "msg": 1, "wifi_signal": "-60dBm"}
    if sequence_id is not None:
        body["sequence_id"] = sequence_id
    state = merge(full_state(), {"print": body})
    assert state["print"]["wifi_signal"] == "-60dBm"
    if sequence_id is not None:
        assert state["print"]["sequence_id"] == sequence_id


def test_wire_types_are_kept_verbatim() -> None:
    state = merge(None, delta(home_flag=-1067070064, ams_exist_bits="17", cooling_fan_speed="15",
                              bed_temper=19.84375, stat="7A58000"))
    p = state["print"]
    assert p["home_flag"] == -1067070064
    assert p["cooling_fan_speed"] == "15"
    assert p["bed_temper"] == 19.84375
    assert p["stat"] == "7A58000"


# --------------------------------------------------------------------------- objects and lists


def test_objects_merge_recursively() -> None:
    state = full_state()
    new = merge(state, delta(upgrade_state={"progress": "55"}, ipcam={"timelapse": "enable"}))
    assert new["print"]["upgrade_state"]["progress"] == "55"
    assert new["print"]["upgrade_state"]["status"] == "IDLE"
    assert new["print"]["ipcam"]["timelapse"] == "enable"
    assert new["print"]["ipcam"]["resolution"] == "1080p"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hms", []),
        ("stg", [2, 13]),
        ("lights_report", [{"node": "chamber_light", "mode": "off"}]),
        ("s_obj", [3]),
        ("net", {"info": [{"ip": 1, "mask": 2}]}),
    ],
)
def test_lists_are_replaced_wholesale(key: str, value: object) -> None:
    state = full_state()
    new = merge(state, delta(**{key: value}))
    if key == "net":
        assert new["print"]["net"]["info"] == [{"ip": 1, "mask": 2}]
        assert new["print"]["net"]["conf"] == 0
    else:
        assert new["print"][key] == value


def test_scalar_replaces_object_and_object_replaces_scalar() -> None:
    state = merge(None, delta(ipcam={"a": 1}, flag3=15))
    state = merge(state, delta(ipcam=None, flag3={"x": 1}))
    assert state["print"]["ipcam"] is None
    assert state["print"]["flag3"] == {"x": 1}


# --------------------------------------------------------------------------- AMS


def test_ams_delta_without_unit_list_keeps_units() -> None:
    state = full_state()
    new = merge(state, delta(ams={"tray_now": "3", "tray_tar": "3"}))
    assert new["print"]["ams"]["tray_now"] == "3"
    assert new["print"]["ams"]["ams"] is state["print"]["ams"]["ams"]
    assert new["print"]["ams"]["tray_exist_bits"] == "10eff"


def test_tray_delta_with_id_and_state_keeps_other_fields() -> None:
    state = full_state()
    new = merge(state, delta(ams={"ams": [{"id": "0", "tray": [{"id": "2", "state": 10}]},
                                          *units(state)[1:]]}))
    changed = units(new)[0]["tray"][2]
    assert changed["state"] == 10
    assert changed["tray_type"] == "PLA"
    assert changed["tray_color"] == "4D3324FF"
    # The other trays of the unit are kept, in order, and untouched trays are shared.
    assert [t["id"] for t in units(new)[0]["tray"]] == ["0", "1", "2", "3"]
    assert units(new)[0]["tray"][0] is units(state)[0]["tray"][0]
    # The unit's own fields survive a unit delta that only carries trays.
    assert units(new)[0]["humidity"] == "5"
    assert units(new)[0]["info"] == "1001"


def test_bare_tray_id_replaces_the_tray() -> None:
    # P1/A1/A2L report an emptied slot as {"id": "n"} with no state: the old fields must go.
    state = full_state(a1_with_ams_lite)
    unit0 = units(state)[0]
    new = merge(state, delta(ams={"ams": [{**unit0, "tray": [{"id": "1"}]}]}))
    assert units(new)[0]["tray"][1] == {"id": "1"}
    assert units(new)[0]["tray"][0]["tray_type"] == "PLA"


def test_new_tray_id_is_appended() -> None:
    state = merge(None, delta(ams={"ams": [{"id": "0", "tray": [tray(0)]}]}))
    new = merge(state, delta(ams={"ams": [{"id": "0", "tray": [tray(1, "PETG")]}]}))
    assert [t["id"] for t in units(new)[0]["tray"]] == ["0", "1"]


def test_unit_missing_from_a_delta_unit_list_is_dropped() -> None:
    state = full_state()
    assert [u["id"] for u in units(state)] == ["0", "1", "2", "128"]
    new = merge(state, delta(ams={"ams": [u for u in units(state) if u["id"] != "1"]}))
    assert [u["id"] for u in units(new)] == ["0", "2", "128"]


def test_empty_unit_list_removes_all_units() -> None:
    new = merge(full_state(), delta(ams={"ams": [], "ams_exist_bits": "0"}))
    assert units(new) == []


def test_unit_partial_fields_merge_by_id_and_new_units_appear() -> None:
    state = full_state()
    partial = [{"id": "0", "humidity": "2"}, {"id": "1"}, {"id": "2"}, {"id": "128", "temp": "50.0"},
               {"id": "3", "tray": [tray(0)]}]
    new = merge(state, delta(ams={"ams": partial}))
    got = units(new)
    assert [u["id"] for u in got] == ["0", "1", "2", "128", "3"]
    assert got[0]["humidity"] == "2"
    assert got[0]["tray"] is units(state)[0]["tray"]
    assert got[3]["temp"] == "50.0"
    assert got[3]["info"] == "2004"
    assert got[4] == {"id": "3", "tray": [tray(0)]}


def test_ids_match_across_int_and_string() -> None:
    state = merge(None, delta(ams={"ams": [{"id": 0, "humidity": "5", "tray": [{"id": 0, "tray_type": "PLA"}]}]}))
    new = merge(state, delta(ams={"ams": [{"id": "0", "tray": [{"id": "0", "state": 11}]}]}))
    assert units(new)[0]["humidity"] == "5"
    assert units(new)[0]["tray"][0] == {"id": "0", "tray_type": "PLA", "state": 11}  # the delta's id wins


def test_items_without_ids_are_kept_as_sent() -> None:
    state = merge(None, delta(ams={"ams": [{"id": "0", "tray": [{"x": 1}, 7]}]}))
    new = merge(state, delta(ams={"ams": ["junk", {"id": "0", "tray": [{"y": 2}, None]}]}))
    assert units(new)[0] == "junk"
    assert units(new)[1]["tray"] == [{"x": 1}, 7, {"y": 2}, None]


def test_vir_slot_merges_by_id_and_keeps_missing_spools() -> None:
    state = full_state(h2d)
    new = merge(state, delta(vir_slot=[{"id": "255", "tray_type": "PETG", "tray_color": "FF0000FF"}]))
    slots = new["print"]["vir_slot"]
    assert [s["id"] for s in slots] == ["254", "255"]
    assert slots[1]["tray_type"] == "PETG"
    assert slots[1]["tray_diameter"] == "1.75"
    assert slots[0] is state["print"]["vir_slot"][0]


def test_extruder_info_merges_by_id() -> None:
    state = full_state(h2d)
    new = merge(state, delta(device={"extruder": {"info": [{"id": 1, "temp": 200}]}}))
    infos = new["print"]["device"]["extruder"]["info"]
    assert [i["id"] for i in infos] == [0, 1]
    assert infos[1]["temp"] == 200
    assert infos[1]["snow"] == 0xFEFF
    assert new["print"]["device"]["extruder"]["state"] == 2
    assert new["print"]["device"]["bed"] is state["print"]["device"]["bed"]


def test_vt_tray_is_an_object_and_merges_recursively() -> None:
    state = merge(None, delta(vt_tray=spool("254", "PLA", "161616FF")))
    new = merge(state, delta(vt_tray={"remain": 40}))
    assert new["print"]["vt_tray"]["tray_type"] == "PLA"
    assert new["print"]["vt_tray"]["remain"] == 40


# --------------------------------------------------------------------------- other sections and acks


@pytest.mark.parametrize(
    "ack",
    [
        {"print": {"command": "project_file", "sequence_id": "20001", "param": "Metadata/plate_1.gcode",
                   "result": "success", "reason": ""}},
        {"print": {"command": "gcode_line", "sequence_id": "7", "param": "M104 S200\n", "result": "SUCCESS"}},
        {"print": {"command": "pause", "sequence_id": "8"}},  # P1S 01.10 acks without result
        {"print": {"sequence_id": "9", "result": "fail", "reason": "busy"}},
        {"print": {"command": "extrusion_cali_get", "result": "success", "filaments": []}},
        {"system": {"command": "get_access_code", "access_code": "12345678", "result": "success"}},
        {"system": {"command": "ledctrl", "led_node": "chamber_light", "led_mode": "on", "result": "success"}},
        {"info": {"command": "get_version", "sequence_id": "1", "result": "fail", "reason": "x"}},
        {"info": {"command": "other", "module": []}},
        {"upgrade": {"command": "upgrade_confirm", "result": "success"}},
        {"event": {"event": "client.connected"}},
        {"pushing": {"command": "pushall"}},
    ],
)
def test_acks_and_other_sections_leave_the_state_alone(ack: JSON) -> None:
    state = full_state()
    snapshot = copy.deepcopy(state)
    assert merge(state, ack) is state
    assert state == snapshot


def test_access_code_never_enters_the_state() -> None:
    state = merge(full_state(), {"system": {"command": "get_access_code", "access_code": "73915046"},
                                 "print": {"command": "push_status", "msg": 1, "mc_percent": 3}})
    assert "73915046" not in repr(state)
    assert state["print"]["mc_percent"] == 3


def test_get_version_is_stored_under_info_and_replaced_whole() -> None:
    fx = x1c_multi_ams()
    state = merge(merge(None, fx.report), fx.version)
    assert state["info"] is fx.version["info"]
    other = {"info": {"command": "get_version", "sequence_id": "2", "module": [{"name": "ota", "sw_ver": "2"}]}}
    state = merge(state, other)
    assert state["info"] == other["info"]
    assert state["print"] is fx.report["print"]


def test_several_sections_in_one_message() -> None:
    fx = p1p_with_ams()
    state = merge(None, {**fx.report, **fx.version, "pushing": {"command": "pushall"}})
    assert set(state) == {"print", "info"}


def test_print_section_without_command_or_result_merges() -> None:
    assert merge(None, {"print": {"mc_percent": 5}}) == {"print": {"mc_percent": 5}}


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"command": "push_status"}, True),
        ({"command": "push_status", "msg": 1}, True),
        ({}, True),
        ({"result": "success"}, False),
        ({"command": "project_file"}, False),
        ({"command": 5}, False),
        ([], False),
        (None, False),
    ],
)
def test_is_status_report(section: object, expected: bool) -> None:
    assert is_status_report(section) is expected


# --------------------------------------------------------------------------- robustness and purity


@pytest.mark.parametrize("report", [None, [], "print", 5, 1.5, True, {"print": None}, {"print": []},
                                    {"print": "x"}, {"info": None}, {}, {"pushing": 1}])
def test_non_dict_reports_and_sections_are_ignored(report: object) -> None:
    state = full_state()
    assert merge(state, report) is state


@pytest.mark.parametrize("state", [None, {}, [], "junk"])
def test_missing_or_bad_state_starts_empty(state: Any) -> None:
    assert merge(state, delta(a=1))["print"]["a"] == 1
    assert merge(state, None) == {}


def test_merge_does_not_mutate_inputs_and_shares_untouched_paths() -> None:
    state = full_state()
    report = delta(ams={"tray_now": "1", "ams": [{"id": "0", "tray": [{"id": "0", "remain": 50}]}]},
                   nozzle_temper=200.0)
    state_before, report_before = copy.deepcopy(state), copy.deepcopy(report)
    new = merge(state, report)
    assert state == state_before
    assert report == report_before
    assert new is not state
    assert new["print"] is not state["print"]
    assert new["info"] is state["info"]
    assert new["print"]["hms"] is state["print"]["hms"]
    assert new["print"]["device"] is state["print"]["device"]
    assert units(new)[0]["tray"][0]["remain"] == 50
    assert units(state)[0]["tray"][0]["remain"] == 93


def test_applying_the_same_delta_twice_is_idempotent() -> None:
    state = full_state()
    d = delta(ams={"tray_now": "4", "ams": [{"id": "0", "tray": [{"id": "1", "state": 9}]}, {"id": "128"}]},
              upgrade_state={"progress": "1"}, vir_slot=[{"id": "255", "remain": 5}])
    once = merge(state, d)
    assert merge(once, d) == once


def test_very_deep_objects_do_not_recurse_without_bound() -> None:
    deep_old: JSON = {}
    deep_new: JSON = {}
    a, b = deep_old, deep_new
    for _ in range(500):
        a["n"] = {}
        b["n"] = {}
        a, b = a["n"], b["n"]
    b["leaf"] = 1
    state = merge(None, delta(x=deep_old))
    assert merge(state, delta(x=deep_new))["print"]["x"]["n"]["n"] is not None


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda f: f.__name__)
def test_every_fixture_merges_from_scratch(fixture: Any) -> None:
    fx = fixture()
    state = merge(merge(None, fx.report), fx.version)
    assert state["print"] == fx.report["print"]
    # Re-sending the same full push (or, without msg, the same delta) changes nothing.
    assert merge(state, fx.report) == state


# --------------------------------------------------------------------------- properties

_KEYS = st.sampled_from(["print", "info", "ams", "tray", "id", "msg", "command", "push_status", "vir_slot",
                         "device", "extruder", "nozzle", "result", "module", "state", "tray_type", "get_version"])
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_JSON = st.recursive(
    _SCALARS | _KEYS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=4), children,
                                                                       max_size=5),
    max_leaves=40,
)


def _reports() -> st.SearchStrategy[Any]:
    body = st.dictionaries(_KEYS, _JSON, max_size=6)
    section = st.fixed_dictionaries({"command": st.sampled_from(["push_status", "get_version"]) | _SCALARS},
                                    optional={"msg": st.sampled_from([0, 1, "0"]) | _SCALARS}).flatmap(
        lambda head: body.map(lambda b: {**b, **head}))
    return _JSON | st.fixed_dictionaries({}, optional={"print": section | _JSON, "info": section | _JSON})


@settings(max_examples=300, deadline=None)
@given(state=_reports(), reports=st.lists(_reports(), max_size=4))
def test_merge_never_raises_and_never_mutates(state: Any, reports: list[Any]) -> None:
    current = merge(None, state)
    for report in reports:
        before_state, before_report = copy.deepcopy(current), copy.deepcopy(report)
        new = merge(current, report)
        assert isinstance(new, dict)
        assert set(new) <= {"print", "info"}
        assert current == before_state or _has_nan(before_state)
        assert report == before_report or _has_nan(before_report)
        current = new


@settings(max_examples=200, deadline=None)
@given(first=_reports(), full_body=st.dictionaries(_KEYS, _JSON, max_size=6))
def test_a_full_report_erases_history(first: Any, full_body: JSON) -> None:
    full = {"print": {**full_body, "command": "push_status", "msg": 0}}
    assert merge(merge(None, first), full)["print"] == full["print"]


def _has_nan(value: object) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False
