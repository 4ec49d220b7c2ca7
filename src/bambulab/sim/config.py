"""Configuration of virtual printers: identity, ports and quirk switches.

Config is data: dataclasses with ``to_dict``/``from_dict``; the access code is kept out of ``repr``.
"""

from __future__ import annotations

import enum
import random
import ssl
import string
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bambulab.protocol.models import PrinterFamily, PrinterModel, model_by_code

__all__ = ["AuthMode", "DeltaMode", "MaxClientsMode", "PrinterConfig", "Quirks", "make_serial"]


class DeltaMode(enum.StrEnum):
    FULL_ALWAYS = "full_always"  # X1 class: every periodic push is a full report
    DELTA_AFTER_PUSHALL = "delta_after_pushall"  # P1/A1 class: full only on pushall, then changed keys


class MaxClientsMode(enum.StrEnum):
    REFUSE = "refuse"  # CONNACK 3 (server unavailable) past the limit
    ACCEPT_SILENT = "accept_silent"  # connect and subscribe succeed, but nothing is ever delivered
    DROP_OLDEST = "drop_oldest"  # the oldest client is disconnected to make room


class AuthMode(enum.StrEnum):
    LEGACY = "legacy"  # pre-2025 firmware: everything accepted, no signing bit
    DEVELOPER = "developer"  # authorization firmware in Developer Mode: everything accepted
    ENFORCED = "enforced"  # unsigned print.* commands fail with 84033543


@dataclass
class Quirks:
    """Behaviour switches. ``None`` means "what this model does by default"."""

    delta_mode: DeltaMode | None = None
    max_clients: int | None = None
    max_clients_mode: MaxClientsMode = MaxClientsMode.REFUSE
    drop_on_request_subscribe: bool | None = None
    auth_mode: AuthMode = AuthMode.DEVELOPER
    result_upper: bool = False  # "SUCCESS" instead of "success" in acks
    lan_liveview: bool = True  # X1/H2: ipcam.rtsp_url is a URL (True) or "disable" (False)
    push_interval: float = 1.0  # real seconds between periodic pushes
    stop_error_seconds: float = 3.0  # simulated seconds print_error stays 0x0300400C after stop
    # FTPS's highest TLS version, "1.2" or "1.3". Real printers' vsftpd negotiates 1.2; under 1.3
    # clients that never read the session tickets lose the tail of large uploads to a reset.
    tls_max_version: str = "1.2"

    def __post_init__(self) -> None:
        self.tls_max_version = _tls_version_name(self.tls_max_version)

    @property
    def ftps_tls_max(self) -> ssl.TLSVersion:
        """:attr:`tls_max_version` as an :class:`ssl.TLSVersion`."""
        return _TLS_NAMES[self.tls_max_version]

    def resolved(self, model: PrinterModel) -> Quirks:
        """A copy with every ``None`` replaced by the model's default."""
        small = model.family in (PrinterFamily.P1, PrinterFamily.A1, PrinterFamily.A2)
        return Quirks(
            delta_mode=self.delta_mode
            or (DeltaMode.DELTA_AFTER_PUSHALL if model.sends_deltas else DeltaMode.FULL_ALWAYS),
            max_clients=self.max_clients if self.max_clients is not None else (4 if small else 16),
            max_clients_mode=self.max_clients_mode,
            drop_on_request_subscribe=self.drop_on_request_subscribe
            if self.drop_on_request_subscribe is not None
            else model.family is PrinterFamily.P1,
            auth_mode=self.auth_mode,
            result_upper=self.result_upper,
            lan_liveview=self.lan_liveview,
            push_interval=self.push_interval,
            stop_error_seconds=self.stop_error_seconds,
            tls_max_version=self.tls_max_version,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quirks:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown quirk(s): {', '.join(sorted(unknown))}")
        kw = dict(data)
        for name, enum_type in (
            ("delta_mode", DeltaMode), ("max_clients_mode", MaxClientsMode), ("auth_mode", AuthMode)
        ):
            if kw.get(name) is not None:
                kw[name] = enum_type(kw[name])
        return cls(**kw)


_TLS_NAMES = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _tls_version_name(value: object) -> str:
    """``"1.2"`` or ``"1.3"`` from 1.2, "1.2", "TLSv1_2", "tlsv1.3" or an :class:`ssl.TLSVersion`."""
    if isinstance(value, ssl.TLSVersion):
        value = value.name
    text = str(value).strip().lower().removeprefix("tlsv").replace("_", ".")
    if text not in _TLS_NAMES:
        raise ValueError(f"unsupported tls_max_version {value!r} (use 1.2 or 1.3)")
    return text


_SERIAL_ALPHABET = string.digits + string.ascii_uppercase


def make_serial(model: PrinterModel, rng: random.Random | None = None) -> str:
    """A plausible 15-character upper-case serial with the model's prefix."""
    r = rng or random.Random()
    prefix = model.serial_prefix or "0ZZ"
    return prefix + "".join(r.choice(_SERIAL_ALPHABET) for _ in range(15 - len(prefix)))


def make_access_code(rng: random.Random | None = None) -> str:
    r = rng or random.SystemRandom()
    return "".join(r.choice(string.digits) for _ in range(8))


@dataclass
class PrinterConfig:
    """Everything that identifies one virtual printer and where it listens.

    Ports of 0 mean "a free port"; set them to 8883/990/6000/322 with a distinct ``host`` per
    printer (for example 127.0.0.2, 127.0.0.3, ...) to look exactly like a real printer.
    """

    model: str = "P1S"
    serial: str = ""
    name: str = ""
    access_code: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    mqtt_port: int = 0
    ftps_port: int = 0
    camera_port: int = 0  # port-6000 JPEG stream (P1/A1) or RTSPS (X1/H2)
    firmware: str | None = None
    storage_dir: Path | None = None  # FTPS root; a temporary folder when None
    time_scale: float | None = None  # simulated seconds per real second; None: the simulator's
    camera_fps: float = 1.0
    quirks: Quirks = field(default_factory=Quirks)
    seed: int | None = None  # makes serials, names and noise reproducible

    @property
    def printer_model(self) -> PrinterModel:
        return model_by_code(self.model)

    def filled(self, index: int = 0) -> PrinterConfig:
        """A copy with serial, name and access code generated where empty."""
        model = self.printer_model
        rng = random.Random(self.seed) if self.seed is not None else random.Random()
        cfg = PrinterConfig(**{f.name: getattr(self, f.name) for f in fields(self)})
        cfg.model = model.name
        cfg.serial = (self.serial or make_serial(model, rng)).upper()
        cfg.name = self.name or f"Virtual {model.name} {index + 1}"
        cfg.access_code = self.access_code or make_access_code(
            rng if self.seed is not None else None
        )
        return cfg

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "access_code" and not include_secrets:
                continue
            if isinstance(value, Quirks):
                value = value.to_dict()
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrinterConfig:
        kw = dict(data)
        if "quirks" in kw and isinstance(kw["quirks"], dict):
            kw["quirks"] = Quirks.from_dict(kw["quirks"])
        if kw.get("storage_dir") is not None:
            kw["storage_dir"] = Path(kw["storage_dir"])
        known = {f.name for f in fields(cls)}
        unknown = set(kw) - known
        if unknown:
            raise ValueError(f"unknown printer setting(s): {', '.join(sorted(unknown))}")
        return cls(**kw)
