"""HMS entries and print_error codes: bit layout, keys, severity, module, offline texts."""

from __future__ import annotations

import importlib.resources
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambulab.protocol.hms import (
    HMS_WIKI_URL,
    HmsSeverity,
    decode_hms,
    decode_hms_entry,
    decode_hms_list,
    decode_print_error,
    default_table,
    hms_key,
    load_table,
    parse_table,
    print_error_code,
)


def _raw_table() -> dict[str, Any]:
    resource = importlib.resources.files("bambulab.protocol").joinpath("data/hms_en.json")
    data: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return data


def test_table_ships_as_package_data() -> None:
    assert importlib.resources.files("bambulab.protocol").joinpath("data/hms_en.json").is_file()


def test_table_is_well_formed() -> None:
    raw = _raw_table()
    assert len(raw["device_error"]) >= 40
    assert len(raw["device_hms"]) >= 40
    for section, digits in (("device_error", 8), ("device_hms", 16)):
        for key, text in raw[section].items():
            assert re.fullmatch(rf"[0-9A-F]{{{digits}}}", key), key
            assert isinstance(text, str)
            assert 10 <= len(text) <= 160, key
            assert text[0].isupper()
            assert text.endswith(".")
    table = load_table()
    assert len(table.device_error) == len(raw["device_error"])
    assert len(table.device_hms) == len(raw["device_hms"])


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("0300400C", "cancelled"),
        ("05004004", "busy"),
        ("0300800E", "no longer available"),
        ("05008051", "plate"),
        ("07008012", "mapping"),
        ("07FF8012", "mapping"),
        ("0500403F", "MD5"),
    ],
)
def test_required_print_errors_have_texts(code: str, words: str) -> None:
    error = decode_print_error(int(code, 16))
    assert error is not None
    assert error.code == code
    assert error.text is not None
    assert words in error.text


def test_print_error_cancelled_from_the_wire_value() -> None:
    error = decode_print_error(50348044)
    assert error is not None
    assert (error.value, error.code, error.display) == (0x0300400C, "0300400C", "0300_400C")
    assert (error.module_id, error.module, error.module_index) == (0x03, "motion_controller", 0)
    assert error.text == "The print job was cancelled."


@pytest.mark.parametrize("value", [0, None, "", "abc", True, [], {}, 1.5, 1 << 40, "0"])
def test_no_print_error(value: object) -> None:
    assert decode_print_error(value) is None


def test_print_error_accepts_decimal_strings_and_signed_values() -> None:
    error = decode_print_error("50348044")
    assert error is not None
    assert error.code == "0300400C"
    signed = decode_print_error(-1)
    assert signed is not None
    assert signed.code == "FFFFFFFF"
    assert signed.text is None
    assert signed.module == "unknown"


def test_ams_print_errors_fall_back_to_unit_zero() -> None:
    # AMS B (index 1) and an AMS Lite (module 0x12) share the AMS text.
    for value in (0x07018011, 0x12008011, 0x12038011):
        error = decode_print_error(value)
        assert error is not None
        assert error.text is not None
        assert "run out" in error.text
    error = decode_print_error(0x07018011)
    assert error is not None
    assert (error.module, error.module_index) == ("ams", 1)
    unknown = decode_print_error(0x0701FFFF)
    assert unknown is not None
    assert unknown.text is None


def test_hms_signing_failure() -> None:
    message = decode_hms(0x05000500, 0x00010007)
    assert message is not None
    assert message.key == "HMS_0500_0500_0001_0007"
    assert message.code_id == "0500050000010007"
    assert message.wiki_url == HMS_WIKI_URL + "0500_0500_0001_0007"
    assert (message.module_id, message.module, message.module_index, message.part) == (5, "mainboard", 0, 5)
    assert message.severity is HmsSeverity.FATAL
    assert message.text is not None
    assert "verification" in message.text


@pytest.mark.parametrize(
    ("code", "severity"),
    [(0x00010001, HmsSeverity.FATAL), (0x00020001, HmsSeverity.SERIOUS), (0x00030001, HmsSeverity.COMMON),
     (0x00040001, HmsSeverity.INFO), (0x00000001, HmsSeverity.UNKNOWN), (0x00090001, HmsSeverity.UNKNOWN)],
)
def test_hms_severity(code: int, severity: HmsSeverity) -> None:
    message = decode_hms(0x03000100, code)
    assert message is not None
    assert message.severity is severity


@pytest.mark.parametrize(
    ("attr", "module"),
    [(0x03000100, "motion_controller"), (0x05000100, "mainboard"), (0x07000100, "ams"), (0x08000100, "toolhead"),
     (0x0C000100, "xcam"), (0x12000100, "ams_lite"), (0x18000100, "ams_ht"), (0x42000100, "unknown")],
)
def test_hms_module(attr: int, module: str) -> None:
    message = decode_hms(attr, 0x00020001)
    assert message is not None
    assert message.module == module


def test_hms_heatbed_sensor_text() -> None:
    message = decode_hms_entry({"attr": 0x03000100, "code": 0x00010007})
    assert message is not None
    assert message.text == "Heatbed temperature fault: the temperature sensor may be open-circuit."


def test_ams_hms_codes_match_any_unit_and_slot() -> None:
    # AMS 2 (index 1), slot 4 (part 0x23): filament ran out.
    message = decode_hms(0x07012300, 0x00020001)
    assert message is not None
    assert message.key == "HMS_0701_2300_0002_0001"
    assert message.module_index == 1
    assert message.text == "An AMS slot has run out of filament."
    ht = decode_hms(0x18002100, 0x00020001)
    assert ht is not None
    assert ht.text == "An AMS slot has run out of filament."
    external = decode_hms(0x07FF2000, 0x00020001)
    assert external is not None
    assert external.text == "The external spool has run out of filament."


def test_unknown_hms_code_has_no_text_but_a_key_and_url() -> None:
    message = decode_hms(0x0C00FF00, 0x0003ABCD)
    assert message is not None
    assert message.text is None
    assert message.key == "HMS_0C00_FF00_0003_ABCD"
    assert message.wiki_url.endswith("0C00_FF00_0003_ABCD")


@pytest.mark.parametrize(
    ("attr", "code"),
    [(None, 1), (1, None), ("x", 1), (True, 1), (1 << 32, 1), (1, -(1 << 31) - 1), (1.5, 1), ([], {})],
)
def test_invalid_hms_values(attr: object, code: object) -> None:
    assert decode_hms(attr, code) is None


def test_hms_values_may_be_signed_or_decimal_strings() -> None:
    message = decode_hms("50331904", -1)
    assert message is not None
    assert message.key == "HMS_0300_0100_FFFF_FFFF"


def test_decode_hms_list_skips_malformed_entries() -> None:
    entries = [{"attr": 0x03000100, "code": 0x00010007}, {"attr": 1}, "x", None, {"code": 5},
               {"attr": 0x05000500, "code": 0x00010007, "ts_start": 1}]
    assert [m.key for m in decode_hms_list(entries)] == ["HMS_0300_0100_0001_0007", "HMS_0500_0500_0001_0007"]
    assert decode_hms_list("x") == ()
    assert decode_hms_entry(5) is None


def test_key_helpers() -> None:
    assert hms_key(0x03000100, 0x00010007) == "HMS_0300_0100_0001_0007"
    assert hms_key(-1, 0) == "HMS_FFFF_FFFF_0000_0000"
    assert print_error_code(50348044) == "0300_400C"


def test_custom_table() -> None:
    table = parse_table({
        "device_error": {"0300400c": "Abgebrochen.", "bad": "x", "05004004": 5},
        "device_hms": {"0300_0100_0001_0007": "Sensor offen.", "0300010000010001": ""},
        "other": 1,
    })
    assert dict(table.device_error) == {"0300400C": "Abgebrochen."}
    assert dict(table.device_hms) == {"0300010000010007": "Sensor offen."}
    error = decode_print_error(50348044, table)
    assert error is not None
    assert error.text == "Abgebrochen."
    message = decode_hms(0x03000100, 0x00010007, table)
    assert message is not None
    assert message.text == "Sensor offen."
    assert parse_table("junk").device_error == {}


def test_default_table_is_loaded_once() -> None:
    assert default_table() is default_table()


def test_missing_language_raises_from_load_table() -> None:
    with pytest.raises(FileNotFoundError):
        load_table("xx")


@given(attr=st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=14),
       code=st.none() | st.integers() | st.floats() | st.text(max_size=14))
def test_decoders_never_raise(attr: object, code: object) -> None:
    decode_hms(attr, code)
    decode_print_error(attr)
    decode_hms_entry({"attr": attr, "code": code})
