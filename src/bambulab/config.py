"""Printer profiles for the command line: a TOML file in the user's config folder plus environment.

```toml
# ~/.config/bambulab/config.toml   (created with mode 0600)
default = "workshop"

[printers.workshop]
host = "192.168.1.50"
serial = "01P00A123456789"
access_code = "12345678"
# port = 8883, ftps_port = 990, camera_port = 6000, ca_file = "/path/ca.pem", insecure = false
```

The keys of a profile: ``host``, ``serial``, ``access_code`` (required), ``port`` (MQTT, 8883),
``ftps_port`` (990), ``camera_port`` (default by model: 6000 or 322), ``ca_file`` (trust this CA
instead of Bambu's; a virtual printer's), ``insecure`` (no certificate check). ``bambu config add``
writes them all; docs/lan.md lists them.

Environment variables override the file: ``BAMBU_HOST``, ``BAMBU_SERIAL``, ``BAMBU_ACCESS_CODE``,
``BAMBU_PORT``, ``BAMBU_PRINTER`` (profile name), ``BAMBU_CONFIG`` (file path). The library itself
never reads this file; only the CLI does (a documented CLI default).
"""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bambulab._files import write_private
from bambulab.exceptions import BambuError

__all__ = [
    "ConfigError",
    "PrinterProfile",
    "config_path",
    "load_profiles",
    "remove_profile",
    "resolve_profile",
    "save_profile",
]


class ConfigError(BambuError):
    """The configuration is missing something or cannot be read."""


@dataclass
class PrinterProfile:
    """How to reach one printer on the LAN. The access code is kept out of ``repr``."""

    name: str = "default"
    host: str = ""
    serial: str = ""
    access_code: str = field(default="", repr=False)
    port: int = 8883
    ftps_port: int = 990
    camera_port: int | None = None
    ca_file: str | None = None
    insecure: bool = False

    def missing(self) -> list[str]:
        return [name for name in ("host", "serial", "access_code") if not getattr(self, name)]

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        if not include_secrets:
            out.pop("access_code")
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> PrinterProfile:
        known = {f.name for f in fields(cls)} - {"name"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"printer {name!r}: unknown setting(s) {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {k: data[k] for k in known if k in data}
        for key in ("port", "ftps_port", "camera_port"):
            if key in kw and kw[key] is not None:
                try:
                    kw[key] = int(kw[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"printer {name!r}: {key} must be a number") from None
        if "access_code" in kw:
            kw["access_code"] = str(kw["access_code"]).strip()
        if "serial" in kw:
            kw["serial"] = str(kw["serial"]).strip().upper()
        return cls(name=name, **kw)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$BAMBU_CONFIG``, else the platform's user config folder + ``bambulab/config.toml``."""
    env = os.environ if env is None else env
    if env.get("BAMBU_CONFIG"):
        return Path(env["BAMBU_CONFIG"]).expanduser()
    if sys.platform == "win32":
        base = Path(env.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "bambulab" / "config.toml"


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def load_profiles(path: Path | None = None) -> tuple[dict[str, PrinterProfile], str | None]:
    """All printer profiles in the file and the name of the default one."""
    data = _read(path or config_path())
    printers = data.get("printers", {})
    if not isinstance(printers, dict):
        raise ConfigError("'printers' must be a table of printer profiles")
    profiles = {}
    for name, section in printers.items():
        if not isinstance(section, dict):
            raise ConfigError(f"printer {name!r} must be a table")
        profiles[name] = PrinterProfile.from_mapping(name, section)
    default = data.get("default")
    return profiles, default if isinstance(default, str) else None


def resolve_profile(
    name: str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> PrinterProfile:
    """The profile to use: file (named, default, or the only one), then environment, then overrides.

    Raises :class:`ConfigError` naming what is missing and where to put it (never its value).
    """
    env = os.environ if env is None else env
    profiles, default = load_profiles(path or config_path(env))
    chosen = name or env.get("BAMBU_PRINTER") or default
    if chosen:
        if chosen not in profiles and not (env.get("BAMBU_HOST") or (overrides or {}).get("host")):
            known = ", ".join(sorted(profiles)) or "none configured"
            raise ConfigError(f"no printer profile named {chosen!r} (profiles: {known})")
        profile = profiles.get(chosen, PrinterProfile(name=chosen))
    elif len(profiles) == 1:
        profile = next(iter(profiles.values()))
    else:
        profile = PrinterProfile()
    values = profile.to_dict(include_secrets=True)
    for key, var in (("host", "BAMBU_HOST"), ("serial", "BAMBU_SERIAL"), ("access_code", "BAMBU_ACCESS_CODE"),
                     ("port", "BAMBU_PORT")):
        if env.get(var):
            values[key] = env[var]
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    resolved = PrinterProfile.from_mapping(profile.name, values)
    missing = resolved.missing()
    if missing:
        hint = {"host": "BAMBU_HOST", "serial": "BAMBU_SERIAL", "access_code": "BAMBU_ACCESS_CODE"}
        raise ConfigError(
            "missing " + ", ".join(missing) + f": add them to a profile in {config_path(env)} "
            "(bambu config add) or set " + ", ".join(hint[m] for m in missing)
        )
    return resolved


def save_profile(profile: PrinterProfile, *, path: Path | None = None, make_default: bool = False) -> Path:
    """Add or replace a profile in the config file.

    Written by the same private-file writer as the token file: a fresh temporary file created
    ``O_EXCL|O_NOFOLLOW`` with mode 0600, flushed to disk, then renamed over the target.
    """
    target = path or config_path()
    data = _read(target)
    printers = data.setdefault("printers", {})
    printers[profile.name] = profile.to_dict(include_secrets=True)
    if make_default or "default" not in data:
        data["default"] = profile.name
    return write_private(target, _dump(data).encode("utf-8"))


def remove_profile(name: str, *, path: Path | None = None) -> Path:
    """Remove a profile from the config file (the default moves to the first one left, if any)."""
    target = path or config_path()
    data = _read(target)
    printers = data.get("printers")
    if not isinstance(printers, dict) or name not in printers:
        known = ", ".join(sorted(printers)) if isinstance(printers, dict) and printers else "none configured"
        raise ConfigError(f"no printer profile named {name!r} in {target} (profiles: {known})")
    del printers[name]
    if data.get("default") == name:
        data.pop("default")
        if printers:
            data["default"] = next(iter(printers))
    ordered = {k: v for k, v in data.items() if k != "printers"} | {"printers": printers}
    return write_private(target, _dump(ordered).encode("utf-8"))


def insecure_permissions(path: Path) -> bool:
    """True when a file that holds access codes can be read by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _dump(data: Mapping[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for name, section in (data.get("printers") or {}).items():
        lines.append("")
        lines.append(f'[printers."{name}"]')
        for key, value in section.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
