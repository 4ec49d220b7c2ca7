"""The older package's data models: :class:`Device`, :class:`PrinterStatus`, :class:`Project`.

Plain dataclasses with the field names of the cloud's JSON (``dev_id``, ``dev_model_name`` ...)
and of the printer's MQTT report (``gcode_state``, ``mc_percent`` ...), built with
``from_dict``; ``to_dict`` gives the dict back (access codes only with ``include_secrets=True``).
They hold data and make no calls. The modern models are richer:
:class:`bambulab.cloud.Device`, :class:`bambulab.PrinterStatus` (a decoded MQTT report).

Import them as the older package did: ``from bambulab.models import Device, PrinterStatus, Project``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Device", "PrinterStatus", "Project"]


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


@dataclass
class Device:
    """A printer bound to the account, as the bind list (``GET .../user/bind``) describes it."""

    dev_id: str
    name: str = ""
    online: bool = False
    print_status: str = ""
    dev_model_name: str = ""
    dev_product_name: str = ""
    dev_access_code: str = field(default="", repr=False)
    nozzle_diameter: float | None = None
    dev_structure: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Device:
        return cls(
            dev_id=_str(data.get("dev_id")), name=_str(data.get("name")), online=bool(data.get("online")),
            print_status=_str(data.get("print_status")), dev_model_name=_str(data.get("dev_model_name")),
            dev_product_name=_str(data.get("dev_product_name")),
            dev_access_code=_str(data.get("dev_access_code")).strip(),
            nozzle_diameter=_float(data.get("nozzle_diameter")), dev_structure=_str(data.get("dev_structure")),
        )

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not include_secrets:
            out.pop("dev_access_code")
        return out


@dataclass
class PrinterStatus:
    """The main fields of a printer's MQTT report (``print`` section), with their wire names.

    Temperatures in °C, ``mc_percent`` 0-100, ``mc_remaining_time`` in minutes (as the printer
    sends it). Missing values are ``None``, never a made-up zero.
    """

    device_id: str = ""
    gcode_state: str | None = None
    mc_percent: int | None = None
    mc_remaining_time: int | None = None
    layer_num: int | None = None
    total_layer_num: int | None = None
    subtask_name: str | None = None
    gcode_file: str | None = None
    nozzle_temper: float | None = None
    nozzle_target_temper: float | None = None
    bed_temper: float | None = None
    bed_target_temper: float | None = None
    chamber_temper: float | None = None
    spd_lvl: int | None = None
    spd_mag: int | None = None
    print_error: int | None = None
    wifi_signal: str | None = None
    hms: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], device_id: str = "") -> PrinterStatus:
        """From an MQTT report or merged state (``{"print": {...}}``) or its ``print`` section."""
        p = data.get("print") if isinstance(data.get("print"), Mapping) else data
        assert isinstance(p, Mapping)

        def text(key: str) -> str | None:
            value = p.get(key)
            return None if value is None else str(value)

        return cls(
            device_id=device_id, gcode_state=text("gcode_state"), mc_percent=_int(p.get("mc_percent")),
            mc_remaining_time=_int(p.get("mc_remaining_time")), layer_num=_int(p.get("layer_num")),
            total_layer_num=_int(p.get("total_layer_num")), subtask_name=text("subtask_name"),
            gcode_file=text("gcode_file"), nozzle_temper=_float(p.get("nozzle_temper")),
            nozzle_target_temper=_float(p.get("nozzle_target_temper")), bed_temper=_float(p.get("bed_temper")),
            bed_target_temper=_float(p.get("bed_target_temper")), chamber_temper=_float(p.get("chamber_temper")),
            spd_lvl=_int(p.get("spd_lvl")), spd_mag=_int(p.get("spd_mag")), print_error=_int(p.get("print_error")),
            wifi_signal=text("wifi_signal"),
            hms=[dict(h) for h in p.get("hms") or [] if isinstance(h, Mapping)],
        )

    @property
    def is_printing(self) -> bool:
        return self.gcode_state in ("PREPARE", "RUNNING", "PAUSE")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Project:
    """A cloud project (``GET .../user/project``)."""

    project_id: str
    name: str = ""
    status: str = ""
    model_id: str = ""
    user_id: str = ""
    create_time: str = ""
    update_time: str = ""
    content: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Project:
        content = data.get("content")
        return cls(
            project_id=_str(data.get("project_id")), name=_str(data.get("name")), status=_str(data.get("status")),
            model_id=_str(data.get("model_id")), user_id=_str(data.get("user_id")),
            create_time=_str(data.get("create_time")), update_time=_str(data.get("update_time")),
            content=None if content is None else str(content),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
