"""The table of Bambu Lab printer models and what each one can do.

Pure data and pure functions: no I/O. The simulator reads it to decide which payload shape,
camera and quirks a virtual printer has; the client reads it to decode reports and to detect
the model from a ``get_version`` reply.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODELS",
    "AmsKind",
    "CameraKind",
    "PrinterFamily",
    "PrinterModel",
    "detect_model",
    "firmware_version",
    "model_by_code",
    "model_for_serial",
]


class CameraKind(enum.StrEnum):
    """How a printer's camera is reached on the LAN."""

    JPEG = "jpeg"  # TLS port 6000, 80-byte auth, 16-byte header + JPEG per frame (P1, A1)
    RTSP = "rtsp"  # RTSPS on 322 when LAN liveview is enabled (X1, H2, P2S, X2D)
    NONE = "none"


class AmsKind(enum.StrEnum):
    AMS = "ams"  # the original 4-slot AMS (get_version module "ams/N")
    AMS_LITE = "ams_lite"  # A1's AMS Lite ("ams_f1/N")
    AMS_2_PRO = "ams_2_pro"  # "n3f/N"
    AMS_HT = "ams_ht"  # "n3s/128+"
    NONE = "none"


class PrinterFamily(enum.StrEnum):
    """Families share report shape, push behaviour and connection quirks."""

    X1 = "x1"  # full pushes, RTSP, chamber sensor, wildcard subscriptions allowed
    P1 = "p1"  # deltas after pushall, JPEG camera, small client limit, no request-topic subscribe
    A1 = "a1"  # like P1, bed-slinger, AMS Lite
    H2 = "h2"  # new protocol (`device` object, packed temperatures), RTSP, two extruders on H2D
    P2 = "p2"  # P2S: new protocol, RTSP
    X2 = "x2"
    A2 = "a2"


@dataclass(frozen=True, slots=True)
class PrinterModel:
    """One printer model and its capabilities.

    ``code`` is the model code used by SSDP ``DevModel.bambu.com``, the cloud's
    ``dev_model_name`` and the ``project_name`` of older ``get_version`` replies.
    """

    code: str
    name: str  # marketing name, e.g. "X1 Carbon"
    product_name: str  # as newer get_version replies spell it, e.g. "Bambu Lab P1S"
    serial_prefix: str
    family: PrinterFamily
    camera: CameraKind
    chamber_sensor: bool
    chamber_heater: bool
    ams: AmsKind
    extruders: int = 1
    door_sensor: bool = False
    #: ``hw_ver`` of the access-point module that older get_version replies use to identify the model
    ap_hw_ver: str = ""
    structure: str = "CoreXY"  # cloud ``dev_structure``; "I3" for bed slingers
    aliases: tuple[str, ...] = ()

    @property
    def is_legacy_protocol(self) -> bool:
        """X1, P1 and A1: the original flat report; newer models add the ``device`` object."""
        return self.family in (PrinterFamily.X1, PrinterFamily.P1, PrinterFamily.A1)

    @property
    def sends_deltas(self) -> bool:
        """P1/A1-class printers send only changed keys after a pushall; X1-class send full pushes."""
        return self.family in (PrinterFamily.P1, PrinterFamily.A1, PrinterFamily.A2)

    @property
    def external_spool_id(self) -> str:
        """The ``vt_tray`` id: "254" on P1/A1 and older firmware, "255" on newer X1/H2."""
        return "254" if self.family in (PrinterFamily.P1, PrinterFamily.A1) else "255"


def _m(*args: Any, **kw: Any) -> PrinterModel:
    return PrinterModel(*args, **kw)


F, C, A = PrinterFamily, CameraKind, AmsKind

MODELS: tuple[PrinterModel, ...] = (
    _m("BL-P001", "X1 Carbon", "Bambu Lab X1-Carbon", "00M", F.X1, C.RTSP, True, False, A.AMS,
       door_sensor=True, ap_hw_ver="AP05", aliases=("X1C", "X1-Carbon", "3DPrinter-X1-Carbon")),
    _m("BL-P002", "X1", "Bambu Lab X1", "00M", F.X1, C.RTSP, True, False, A.AMS,
       door_sensor=True, ap_hw_ver="AP05", aliases=("X1", "3DPrinter-X1")),
    _m("C13", "X1E", "Bambu Lab X1E", "03W", F.X1, C.RTSP, True, True, A.AMS,
       door_sensor=True, ap_hw_ver="AP02", aliases=("X1E",)),
    _m("C11", "P1P", "Bambu Lab P1P", "01S", F.P1, C.JPEG, False, False, A.AMS,
       ap_hw_ver="AP04", aliases=("P1P",)),
    _m("C12", "P1S", "Bambu Lab P1S", "01P", F.P1, C.JPEG, False, False, A.AMS,
       ap_hw_ver="AP04", aliases=("P1S",)),
    _m("N1", "A1 mini", "Bambu Lab A1 mini", "030", F.A1, C.JPEG, False, False, A.AMS_LITE,
       ap_hw_ver="AP05", structure="I3", aliases=("A1MINI", "A1-MINI", "A1 MINI")),
    _m("N2S", "A1", "Bambu Lab A1", "039", F.A1, C.JPEG, False, False, A.AMS_LITE,
       ap_hw_ver="AP05", structure="I3", aliases=("A1",)),
    _m("N7", "P2S", "Bambu Lab P2S", "22E", F.P2, C.RTSP, True, False, A.AMS_2_PRO,
       door_sensor=True, aliases=("P2S",)),
    _m("O1D", "H2D", "Bambu Lab H2D", "094", F.H2, C.RTSP, True, True, A.AMS_2_PRO, extruders=2,
       door_sensor=True, aliases=("H2D",)),
    _m("O1E", "H2D Pro", "Bambu Lab H2D Pro", "", F.H2, C.RTSP, True, True, A.AMS_2_PRO, extruders=2,
       door_sensor=True, aliases=("H2DPRO", "H2D PRO")),
    _m("O1S", "H2S", "Bambu Lab H2S", "093", F.H2, C.RTSP, True, True, A.AMS_2_PRO,
       door_sensor=True, aliases=("H2S",)),
    _m("O1C2", "H2C", "Bambu Lab H2C", "31B", F.H2, C.RTSP, True, True, A.AMS_2_PRO, extruders=2,
       door_sensor=True, aliases=("H2C", "O1C")),
    _m("N6", "X2D", "Bambu Lab X2D", "20P", F.X2, C.RTSP, True, True, A.AMS_2_PRO, extruders=2,
       door_sensor=True, aliases=("X2D",)),
    _m("N9", "A2L", "Bambu Lab A2L", "26A", F.A2, C.JPEG, False, False, A.AMS_LITE,
       structure="I3", aliases=("A2L",)),
)

_BY_KEY: dict[str, PrinterModel] = {}
for _model in MODELS:
    for _key in (_model.code, _model.name, _model.product_name, *_model.aliases):
        _BY_KEY.setdefault(_key.upper(), _model)


def model_by_code(code: str) -> PrinterModel:
    """Look a model up by code ("C12"), name ("P1S"), product name or alias. Raises ``KeyError``."""
    try:
        return _BY_KEY[code.strip().upper()]
    except KeyError:
        known = ", ".join(m.name for m in MODELS)
        raise KeyError(f"unknown printer model {code!r}; known models: {known}") from None


def model_for_serial(serial: str) -> PrinterModel | None:
    """Guess the model from a serial's 3-character prefix (the X1 and X1 Carbon share one)."""
    prefix = serial[:3].upper()
    for model in MODELS:
        if model.serial_prefix and model.serial_prefix == prefix:
            return model
    return None


def _modules(reply: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    info = reply.get("info", reply)
    modules = info.get("module") if isinstance(info, Mapping) else None
    if not isinstance(modules, list):
        return []
    return [m for m in modules if isinstance(m, Mapping)]


def detect_model(reply: Mapping[str, Any]) -> PrinterModel | None:
    """Identify the printer model from a ``get_version`` reply.

    Follows the order the widely used clients use: first any module whose ``product_name`` names
    a printer, then the access-point module's ``hw_ver`` together with ``project_name``.
    Returns ``None`` when the reply does not say.
    """
    modules = _modules(reply)
    product_names = {m.name: m for m in MODELS}
    by_product = {m.product_name.upper(): m for m in MODELS}
    for module in modules:
        product = module.get("product_name")
        if isinstance(product, str) and product.upper() in by_product:
            return by_product[product.upper()]
    for module in modules:
        hw = str(module.get("hw_ver", ""))
        if not hw.startswith("AP0"):
            continue
        project = str(module.get("project_name", "") or "")
        if hw == "AP02":
            return product_names["X1E"]
        if project == "N1":
            return product_names["A1 mini"]
        if hw == "AP04" and project == "C11":
            return product_names["P1P"]
        if hw == "AP04" and project == "C12":
            return product_names["P1S"]
        if hw == "AP05" and project == "N2S":
            return product_names["A1"]
        if hw == "AP05" and not project:
            return product_names["X1 Carbon"]
    return None


def firmware_version(reply: Mapping[str, Any]) -> str | None:
    """The firmware version: the ``sw_ver`` of the module named ``ota``."""
    for module in _modules(reply):
        if module.get("name") == "ota":
            version = module.get("sw_ver")
            return str(version) if version is not None else None
    return None


def known_model_names() -> Iterable[str]:
    return (m.name for m in MODELS)
