"""The gateway's TOML configuration (``bambu gateway --config farm.toml``).

```toml
[gateway]
host = "127.0.0.1"        # loopback by default; another address needs [[tokens]]
port = 8080
control = false           # pause/resume/stop/... routes (they also need a token)

[[tokens]]                # API tokens, stored hashed: `bambu gateway --hash-token`
label = "home-assistant"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[[printers]]              # one LAN printer
name = "P1S-1"
profile = "workshop"      # host, serial and access code from bambulab's profile file
[[printers]]
serial = "01S00C123456789"
host = "192.168.1.21"
access_code_env = "X1C_CODE"   # or `access_code = "..."`, only in a file of mode 0600

[[clouds]]                # every printer of a cloud account, over one connection
name = "office"
token_file = "~/.config/bambulab/token.json"   # the default: the file `bambu login` writes
devices = ["01P00A123456789"]                   # omitted: every device bound to the account
```

Secrets (access codes, cloud tokens) come from the 0600 profile/token files or environment
variables. A secret written in the TOML itself is accepted only when the file's mode is 0600;
otherwise :class:`~bambulab.config.ConfigError` says how to fix it. Other sections (``[history]``,
``[metrics]``, ``[mqtt]``, ``[dashboard]`` ...) are kept in :attr:`GatewayConfig.sections` for the
services that read them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bambulab.config import ConfigError, config_path, insecure_permissions, load_profiles

__all__ = [
    "ApiToken",
    "CloudConfig",
    "GatewayConfig",
    "PrinterConfig",
    "hash_token",
    "load_config",
    "parse_config",
]

_GATEWAY_KEYS = {"id", "host", "port", "control", "coalesce_ms", "stale_after", "max_sse_clients"}
_PRINTER_KEYS = {
    "serial", "name", "host", "profile", "access_code", "access_code_env", "port", "model",
    "ca_file", "insecure", "ftps_port", "camera_port", "watchdog",
}
_CLOUD_KEYS = {
    "name", "token_file", "token_env", "token", "devices", "region", "host", "port", "ca_file",
    "api_url", "server_hostname", "watchdog",
}
_TOKEN_KEYS = {"label", "sha256", "token_env", "token"}


def hash_token(token: str) -> str:
    """The stored form of an API token: SHA-256 hex. API tokens are long random strings (not
    passwords), so one round of SHA-256 is enough; compare with :meth:`ApiToken.matches`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """One API token: a label for the logs and the SHA-256 of the token (never the token)."""

    label: str
    sha256: str = field(repr=False)

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(hash_token(presented), self.sha256)


@dataclass
class PrinterConfig:
    """One LAN printer (or, with ``source="cloud"``, a printer of a cloud account)."""

    serial: str
    name: str = ""
    host: str = ""
    access_code: str = field(default="", repr=False)
    port: int = 8883
    model: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    ftps_port: int = 990
    camera_port: int | None = None
    watchdog: float = 30.0
    source: Literal["lan", "cloud"] = "lan"
    cloud: str | None = None  # the CloudConfig name for source="cloud"
    #: Extra keyword arguments for :class:`bambulab.Printer` (the demo passes an ssl_context).
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.serial = self.serial.strip().upper()
        if not self.name:
            self.name = self.serial


@dataclass
class CloudConfig:
    """One cloud account: the token (from its file or env), and which devices to serve."""

    name: str
    token: Any = field(default=None, repr=False)  # str or bambulab.cloud.Token
    devices: list[str] | None = None  # None: every device bound to the account
    region: str | None = None
    host: str | None = None
    port: int = 8883
    ca_file: str | None = None
    api_url: str | None = None
    server_hostname: str | None = None
    watchdog: float = 60.0
    options: dict[str, Any] = field(default_factory=dict, repr=False)


def _hostname() -> str:
    import socket

    return socket.gethostname() or "gateway"


@dataclass
class GatewayConfig:
    id: str = field(default_factory=_hostname)
    host: str = "127.0.0.1"
    port: int = 8080
    control: bool = False
    coalesce_ms: float = 100.0
    stale_after: float = 90.0
    max_sse_clients: int = 500
    tokens: list[ApiToken] = field(default_factory=list)
    printers: list[PrinterConfig] = field(default_factory=list)
    clouds: list[CloudConfig] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def find_token(self, presented: str) -> ApiToken | None:
        """The token matching ``presented`` (every candidate is compared, in constant time each)."""
        found = None
        for token in self.tokens:
            if token.matches(presented):
                found = token
        return found


def _fail(path: Path | None, message: str) -> ConfigError:
    where = f"{path}: " if path is not None else ""
    return ConfigError(where + message)


def _check_keys(path: Path | None, what: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(data) - known
    if unknown:
        raise _fail(path, f"{what}: unknown setting(s) {', '.join(sorted(unknown))}")


def _int(path: Path | None, what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{what} must be a whole number")
    return value


def _env_secret(path: Path | None, what: str, name: Any, env: Mapping[str, str]) -> str:
    if not isinstance(name, str) or not name:
        raise _fail(path, f"{what}: the *_env setting must name an environment variable")
    value = env.get(name, "").strip()
    if not value:
        raise _fail(path, f"{what}: environment variable {name} is not set")
    return value


def _secret_in_file(path: Path | None, what: str) -> None:
    """A secret written in the TOML is accepted only from a file of mode 0600."""
    if path is not None and insecure_permissions(path):
        raise _fail(
            path,
            f"{what} holds a secret in clear, but the file can be read by other users; "
            f"run `chmod 600 {path}` (or move the secret to an environment variable or the profile file)",
        )


def _printer(
    path: Path | None, index: int, data: Any, env: Mapping[str, str], profiles_path: Path | None
) -> PrinterConfig:
    what = f"printers[{index}]"
    if not isinstance(data, Mapping):
        raise _fail(path, f"{what} must be a table")
    _check_keys(path, what, data, _PRINTER_KEYS)
    values: dict[str, Any] = {}
    if "profile" in data:
        profiles, _ = load_profiles(profiles_path)
        profile = profiles.get(str(data["profile"]))
        if profile is None:
            raise _fail(path, f"{what}: no printer profile named {data['profile']!r} (see `bambu config`)")
        values.update(host=profile.host, serial=profile.serial, access_code=profile.access_code,
                      port=profile.port, ftps_port=profile.ftps_port, camera_port=profile.camera_port,
                      ca_file=profile.ca_file, insecure=profile.insecure, name=profile.name)
    for key in ("serial", "name", "host", "model", "ca_file"):
        if key in data:
            if not isinstance(data[key], str):
                raise _fail(path, f"{what}.{key} must be a string")
            values[key] = data[key]
    for key in ("port", "ftps_port", "camera_port"):
        if key in data:
            values[key] = _int(path, f"{what}.{key}", data[key])
    if "insecure" in data:
        values["insecure"] = bool(data["insecure"])
    if "watchdog" in data:
        values["watchdog"] = float(data["watchdog"])
    if "access_code" in data:
        _secret_in_file(path, f"{what}.access_code")
        values["access_code"] = str(data["access_code"]).strip()
    if "access_code_env" in data:
        values["access_code"] = _env_secret(path, what, data["access_code_env"], env)
    serial = str(values.get("serial", "")).strip().upper()
    if not serial:
        raise _fail(path, f"{what}: a serial (or a profile) is required")
    if not values.get("access_code"):
        fallback = env.get(f"BAMBU_ACCESS_CODE_{serial}", "").strip()
        if not fallback:
            raise _fail(
                path,
                f"{what} ({serial}): no access code; set access_code_env, a profile, "
                f"or the environment variable BAMBU_ACCESS_CODE_{serial}",
            )
        values["access_code"] = fallback
    if not values.get("host"):
        raise _fail(path, f"{what} ({serial}): a host is required")
    values["serial"] = serial
    return PrinterConfig(**values)


def _cloud(path: Path | None, index: int, data: Any, env: Mapping[str, str]) -> CloudConfig:
    what = f"clouds[{index}]"
    if not isinstance(data, Mapping):
        raise _fail(path, f"{what} must be a table")
    _check_keys(path, what, data, _CLOUD_KEYS)
    name = str(data.get("name") or f"cloud{index + 1}")
    token: Any = None
    if "token" in data:
        _secret_in_file(path, f"{what}.token")
        token = str(data["token"]).strip()
    elif "token_env" in data:
        token = _env_secret(path, what, data["token_env"], env)
    else:
        from bambulab.cloud.auth import load_token

        default = (Path(env["BAMBU_TOKEN_FILE"]) if env.get("BAMBU_TOKEN_FILE")
                   else config_path(env).parent / "token.json")
        token_file = Path(str(data.get("token_file", default))).expanduser()
        token = load_token(token_file)
        if token is None:
            raise _fail(path, f"{what}: no cloud token in {token_file}; run `bambu login` (or set token_env)")
    devices = data.get("devices")
    if devices is not None and (not isinstance(devices, list) or not all(isinstance(d, str) for d in devices)):
        raise _fail(path, f"{what}.devices must be a list of serials")
    return CloudConfig(
        name=name,
        token=token,
        devices=[d.strip().upper() for d in devices] if devices is not None else None,
        region=data.get("region"),
        host=data.get("host"),
        port=_int(path, f"{what}.port", data.get("port", 8883)),
        ca_file=data.get("ca_file"),
        api_url=data.get("api_url"),
        server_hostname=data.get("server_hostname"),
        watchdog=float(data.get("watchdog", 60.0)),
    )


def _token(path: Path | None, index: int, data: Any, env: Mapping[str, str]) -> ApiToken:
    what = f"tokens[{index}]"
    if not isinstance(data, Mapping):
        raise _fail(path, f"{what} must be a table")
    _check_keys(path, what, data, _TOKEN_KEYS)
    label = str(data.get("label") or f"token{index + 1}")
    if "sha256" in data:
        digest = str(data["sha256"]).strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise _fail(path, f"{what}.sha256 must be 64 hex digits (`bambu gateway --hash-token`)")
        return ApiToken(label, digest)
    if "token_env" in data:
        return ApiToken(label, hash_token(_env_secret(path, what, data["token_env"], env)))
    if "token" in data:
        _secret_in_file(path, f"{what}.token")
        return ApiToken(label, hash_token(str(data["token"])))
    raise _fail(path, f"{what}: give sha256 (preferred) or token_env")


def parse_config(
    data: Mapping[str, Any],
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    profiles_path: Path | None = None,
) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from parsed TOML (``path`` is used for messages and the
    0600 check of secrets written in clear)."""
    env = os.environ if env is None else env
    gateway = data.get("gateway", {})
    if not isinstance(gateway, Mapping):
        raise _fail(path, "[gateway] must be a table")
    _check_keys(path, "[gateway]", gateway, _GATEWAY_KEYS)
    cfg = GatewayConfig(path=path)
    if "id" in gateway:
        cfg.id = str(gateway["id"]).strip() or cfg.id
    if "host" in gateway:
        cfg.host = str(gateway["host"])
    if "port" in gateway:
        cfg.port = _int(path, "gateway.port", gateway["port"])
        if not 0 <= cfg.port <= 65535:
            raise _fail(path, "gateway.port must be 0-65535")
    cfg.control = bool(gateway.get("control", False))
    cfg.coalesce_ms = float(gateway.get("coalesce_ms", cfg.coalesce_ms))
    cfg.stale_after = float(gateway.get("stale_after", cfg.stale_after))
    cfg.max_sse_clients = _int(path, "gateway.max_sse_clients", gateway.get("max_sse_clients", cfg.max_sse_clients))
    for key, factory in (("tokens", _token), ("clouds", _cloud)):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise _fail(path, f"[[{key}]] must be an array of tables")
        parsed = [factory(path, i, item, env) for i, item in enumerate(items)]
        setattr(cfg, key, parsed)
    printers = data.get("printers", [])
    if not isinstance(printers, list):
        raise _fail(path, "[[printers]] must be an array of tables")
    cfg.printers = [_printer(path, i, item, env, profiles_path) for i, item in enumerate(printers)]
    seen: set[str] = set()
    for printer in cfg.printers:
        if printer.serial in seen:
            raise _fail(path, f"printer {printer.serial} is listed twice")
        seen.add(printer.serial)
    names = [c.name for c in cfg.clouds]
    if len(set(names)) != len(names):
        raise _fail(path, "two [[clouds]] have the same name")
    cfg.sections = {k: v for k, v in data.items() if k not in {"gateway", "tokens", "printers", "clouds"}}
    return cfg


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, profiles_path: Path | None = None
) -> GatewayConfig:
    """Read and check a gateway TOML file (raises :class:`~bambulab.config.ConfigError`)."""
    p = Path(path).expanduser()
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise _fail(p, "no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise _fail(p, f"cannot read it: {exc}") from None
    return parse_config(data, path=p, env=env, profiles_path=profiles_path)
