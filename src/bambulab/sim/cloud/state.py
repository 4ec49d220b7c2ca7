"""The fake cloud's records: what it keeps about tokens, bound printers and slicer presets.

The data classes of accounts, tasks, projects and objects are in :mod:`bambulab.sim.cloud.model`;
these are the cloud's own bookkeeping, shared by the use-case modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bambulab.sim.cloud.model import TaskRecord

if TYPE_CHECKING:
    from bambulab.sim.printer import VirtualPrinter

__all__ = [
    "ACCESS_KEY_ID",
    "BUCKET",
    "TFA_KEY_LIFETIME",
    "URL_LIFETIME",
    "Binding",
    "LoggedRequest",
    "Setting",
    "TokenRecord",
    "as_int",
    "forbidden",
    "public_settings",
]

#: The object store's bucket in presigned URLs (served by the API server under ``/s3/``).
BUCKET = "bbl-sim-uploads"
ACCESS_KEY_ID = "AKIAVIRTUALBAMBUSIM0"  # a placeholder, like the real URLs' AWSAccessKeyId
URL_LIFETIME = 3600  # seconds a presigned URL stays valid
TFA_KEY_LIFETIME = 600.0


@dataclass(frozen=True)
class LoggedRequest:
    """One request that reached the API host (see :meth:`FakeCloud.request_log`): no headers, no body."""

    method: str
    path: str
    query: str
    account: str | None  # the email of the bearer token's account, if it had a valid one


@dataclass
class TokenRecord:
    uid: int
    issued: float
    expires: float


@dataclass
class Binding:
    """One virtual printer bound to one account, and what the cloud tracks about it."""

    printer: VirtualPrinter
    uid: int
    name: str | None  # a name set through the API; None = the printer's own
    sink: Callable[[dict[str, Any]], Any]
    job: Any = None  # the Job object last seen (identity tells a new print from the same one)
    task: TaskRecord | None = None  # the history entry of the job in progress
    resolver: Callable[[str], Path | None] | None = None  # ours, installed on the printer's engine
    previous_resolver: Callable[[str], Path | None] | None = None


@dataclass
class Setting:
    setting_id: str
    kind: str  # print / printer / filament
    name: str
    version: str
    public: bool
    uid: int | None
    filament_id: str | None = None
    setting: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "setting_id": self.setting_id,
            "version": self.version,
            "name": self.name,
            "update_time": "2024-01-01 00:00:00",
            "nickname": None,
            "filament_id": self.filament_id,
        }
        if self.kind == "filament" and not self.public:
            out["filament_type"] = self.setting.get("filament_type", "PLA")
            out["nozzle_temperature"] = self.setting.get("nozzle_temperature", [190, 230])
        return out


def public_settings() -> list[Setting]:
    """A small built-in catalogue of public presets (names in the style Studio uses)."""
    version = "02.00.00.00"
    out: list[Setting] = []
    for i, (height, label) in enumerate([("0.12", "Fine"), ("0.20", "Standard"), ("0.28", "Extra Draft")]):
        for j, printer in enumerate(["X1C", "P1S", "A1"]):
            out.append(Setting(
                f"GP{100 + i * 10 + j:03d}", "print", f"{height}mm {label} @BBL {printer}", version, True, None,
                setting={"layer_height": height, "inherits": f"fdm_process_bbl_{height}", "from": "system",
                         "type": "process"},
            ))
    for j, (model, printer) in enumerate([("BL-P001", "X1 Carbon"), ("C12", "P1S"), ("N2S", "A1")]):
        out.append(Setting(
            f"GM{100 + j:03d}", "printer", f"Bambu Lab {printer} 0.4 nozzle", version, True, None,
            setting={"printer_model": printer, "nozzle_diameter": ["0.4"], "model_id": [model], "from": "system",
                     "type": "machine"},
        ))
    for j, (fid, name, kind, temps) in enumerate([
        ("GFA00", "Bambu PLA Basic", "PLA", [190, 230]),
        ("GFG99", "Generic PETG", "PETG", [220, 260]),
        ("GFB99", "Generic ABS", "ABS", [240, 270]),
    ]):
        out.append(Setting(
            f"GFS{fid[2:]}_{j:02d}", "filament", name, version, True, None, filament_id=fid,
            setting={"filament_type": [kind], "nozzle_temperature_range_low": [str(temps[0])],
                     "nozzle_temperature_range_high": [str(temps[1])], "from": "system", "type": "filament"},
        ))
    return out


def as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def forbidden() -> dict[str, Any]:
    return {"message": "permission denied", "code": 8, "error": "Resource forbidden"}
