"""The model table and model detection from get_version replies."""

from __future__ import annotations

import pytest

from bambulab.protocol.models import MODELS, detect_model, firmware_version, model_by_code, model_for_serial


def _reply(*modules: dict[str, object]) -> dict[str, object]:
    return {"info": {"command": "get_version", "sequence_id": "0", "module": list(modules)}}


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        # Newer firmware names the product on the ota module.
        ([{"name": "ota", "product_name": "Bambu Lab P1S", "hw_ver": "OTA", "sw_ver": "01.08.02.00"}], "P1S"),
        ([{"name": "ota", "product_name": "Bambu Lab H2D", "hw_ver": "N/A", "sw_ver": "01.01.01.00"}], "H2D"),
        # Older firmware: access-point hw_ver together with project_name.
        ([{"name": "ota", "project_name": "C11", "hw_ver": "OTA"},
          {"name": "esp32", "project_name": "C11", "hw_ver": "AP04"}], "P1P"),
        ([{"name": "esp32", "project_name": "C12", "hw_ver": "AP04"}], "P1S"),
        ([{"name": "esp32", "project_name": "N2S", "hw_ver": "AP05"}], "A1"),
        ([{"name": "esp32", "project_name": "N1", "hw_ver": "AP04"}], "A1 mini"),
        ([{"name": "rv1126", "project_name": "", "hw_ver": "AP05"}], "X1 Carbon"),
        ([{"name": "ap", "hw_ver": "AP02"}], "X1E"),
    ],
)
def test_detect_model(modules: list[dict[str, object]], expected: str) -> None:
    model = detect_model(_reply(*modules))
    assert model is not None
    assert model.name == expected


def test_detect_model_unknown_and_malformed() -> None:
    assert detect_model(_reply({"name": "ota", "hw_ver": "OTA"})) is None
    assert detect_model({"info": {"module": "not a list"}}) is None
    assert detect_model({}) is None


def test_firmware_version_is_ota_sw_ver() -> None:
    reply = _reply({"name": "mc", "sw_ver": "00.00.29.75"}, {"name": "ota", "sw_ver": "01.07.00.00"})
    assert firmware_version(reply) == "01.07.00.00"
    assert firmware_version(_reply({"name": "mc", "sw_ver": "1"})) is None


def test_lookup_by_code_name_and_alias() -> None:
    assert model_by_code("C12").name == "P1S"
    assert model_by_code("x1c").code == "BL-P001"
    assert model_by_code("Bambu Lab A1 mini").code == "N1"
    with pytest.raises(KeyError, match="unknown printer model"):
        model_by_code("Z9")


def test_serial_prefix_lookup_and_uniqueness() -> None:
    assert model_for_serial("01P00A123456789") is not None
    assert model_for_serial("01P00A123456789").name == "P1S"  # type: ignore[union-attr]
    assert model_for_serial("XXX") is None
    codes = [m.code for m in MODELS]
    assert len(codes) == len(set(codes))
