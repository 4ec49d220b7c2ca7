"""Views, merge and redaction over every recorded printer in ``tests/fixtures/`` (kasa-style corpus)."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bambulab.cli.dump import REDACTED_IP, REDACTED_KEYS, fixture_name, redact, redacted_serial
from bambulab.protocol.models import MODELS, detect_model, firmware_version, model_by_code
from bambulab.protocol.state import merge
from bambulab.protocol.views import GcodeState, PrinterStatus
from corpus import FIXTURES, IDS, Recorded, load


@pytest.fixture(params=FIXTURES, ids=IDS)
def recorded(request: pytest.FixtureRequest) -> Recorded:
    path: Path = request.param
    return load(path)


def _state(rec: Recorded, upto: int | None = None) -> dict[str, Any]:
    state = merge(merge(None, rec.get_version), rec.pushall)
    for delta in rec.deltas[:upto]:
        state = merge(state, delta)
    return state


def _walk(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node


# --------------------------------------------------------------------------- the corpus itself


def test_corpus_has_every_model_and_hand_made_cases() -> None:
    docs = [load(p) for p in FIXTURES]
    from_sim = {d.model for d in docs if d.source == "simulator"}
    assert from_sim == {m.name for m in MODELS}
    assert len([d for d in docs if d.source == "hand-made"]) >= 4


def test_fixture_is_well_formed(recorded: Recorded) -> None:
    assert recorded.doc["format"] == 1
    assert recorded.path.name == fixture_name(recorded.model, recorded.firmware)
    info = recorded.get_version["info"]
    assert info["command"] == "get_version" and isinstance(info["module"], list)
    model = detect_model(info)
    assert model is not None and model.name == recorded.model
    assert firmware_version(info) == recorded.firmware
    full = recorded.pushall["print"]
    assert full["command"] == "push_status" and full["msg"] == 0
    assert all(d["print"]["command"] == "push_status" for d in recorded.deltas)


def test_fixture_is_redacted(recorded: Recorded) -> None:
    """What ``bambu dump`` promises for every file, hand-contributed ones included."""
    text = json.dumps(recorded.doc)
    for key, value in _walk(recorded.doc):
        if key in ("sn", "serial", "dev_id") and value:
            assert re.fullmatch(r"[0-9A-Z]{3}0+", str(value)), (key, value)
        elif key in ("tray_uuid", "tag_uid") and value:
            assert set(str(value)) == {"0"}, (key, value)
        elif key == "ip" and value:
            assert value == REDACTED_KEYS["ip"], value
        elif key in ("ssid", "wifi_ssid", "password", "access_code") and value:
            assert value in ("REDACTED", "00000000"), key
    for address in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        if re.search(r"(^|\.)0\d", address):
            continue  # a firmware version ("01.09.00.01"), not an address
        ip = ipaddress.ip_address(address)
        assert address == REDACTED_IP or not (ip.is_private or ip.is_global), address


# --------------------------------------------------------------------------- views


def test_views_decode_every_recording(recorded: Recorded) -> None:
    status = PrinterStatus(_state(recorded))
    model = model_by_code(recorded.model)
    assert status.model is model
    assert status.firmware == recorded.firmware
    assert isinstance(status.job.state, GcodeState)
    assert len(status.temperatures.nozzles) == max(model.extruders, 1)
    units = recorded.pushall["print"].get("ams", {}).get("ams", [])
    assert len(status.ams.units) == len(units)
    data = status.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert recorded.model == data["model"]


def test_views_after_each_delta(recorded: Recorded) -> None:
    previous = None
    for upto in range(len(recorded.deltas) + 1):
        status = PrinterStatus(_state(recorded, upto), previous=previous)
        assert status.job.progress is None or 0 <= status.job.progress <= 100
        assert status.to_dict()["firmware"] == recorded.firmware
        previous = status


# --------------------------------------------------------------------------- merge


def test_merge_is_pure_and_a_full_report_replaces(recorded: Recorded) -> None:
    pushall, deltas = copy.deepcopy(recorded.pushall), copy.deepcopy(recorded.deltas)
    state = _state(recorded)
    assert recorded.pushall == pushall and recorded.deltas == deltas  # inputs untouched
    again = merge(state, recorded.pushall)
    assert again["print"] == recorded.pushall["print"]
    assert again["info"] == recorded.get_version["info"]


def test_merge_keeps_every_delta_value(recorded: Recorded) -> None:
    state = _state(recorded)
    last: dict[str, Any] = {}
    for delta in recorded.deltas:
        for key, value in delta["print"].items():
            if not isinstance(value, dict | list):
                last[key] = value
    for key, value in last.items():
        assert state["print"][key] == value, key


# --------------------------------------------------------------------------- redaction (pure)


def test_redact_replaces_every_secret_and_keeps_types() -> None:
    serial, code, host = "01P00A123456789", "12345678", "192.168.1.77"
    raw = {
        "info": {"command": "get_version", "module": [{"name": "ota", "sn": serial, "sw_ver": "01.09.00.00"}]},
        "print": {
            "net": {"info": [{"ip": 1291954368, "mask": 16777215}, {"ip": 0}, {"ip": host}]},
            "ipcam": {"rtsp_url": f"rtsps://{host}/streaming/live/1"},
            "subtask_name": f"{serial}-cube",
            "ams": {"ams": [{"sn": "19C06A3B0400123", "tray": [{"tray_uuid": "A" * 32, "tag_uid": "B" * 16},
                                                              {"tray_uuid": "", "tag_uid": "0000000000000000"}]}]},
            "wifi": {"ssid": "Home Wi-Fi", "mac": "aa:bb:cc:dd:ee:ff"},
            "access_code": code,
            "note": f"code {code}",
        },
    }
    out = redact(raw, serial=serial, access_code=code, host=host)
    text = json.dumps(out)
    for secret in (serial, code, host, "19C06A3B0400123", "A" * 32, "B" * 16, "Home Wi-Fi", "aa:bb"):
        assert secret not in text, secret
    assert [i["ip"] for i in out["print"]["net"]["info"]] == [REDACTED_KEYS["ip"], 0, REDACTED_IP]
    assert out["info"]["module"][0]["sn"] == redacted_serial(serial) == "01P000000000000"
    assert out["print"]["ipcam"]["rtsp_url"] == f"rtsps://{REDACTED_IP}/streaming/live/1"
    assert out["print"]["ams"]["ams"][0]["tray"][1] == {"tray_uuid": "", "tag_uid": "0000000000000000"}
    assert out["info"]["module"][0]["sw_ver"] == "01.09.00.00"
    assert raw["print"]["access_code"] == code  # the input is not changed
