"""``bambu migrate``: the older servers' files into the gateway's config and the proxy's token store.

* ``compatibility_config.json`` (the older compatibility server: ``{"devices": [{"serial",
  "access_code", "name"}], "username": "u_<uid>", "auth_token": "<cloud token>"}``, optionally
  ``host``/``port``) becomes a gateway TOML (``docs/gateway.md``): a ``[gateway]`` table on
  127.0.0.1 and the old port (8080), and one ``[[clouds]]`` account with the devices, since the
  older server watched them through the cloud. The cloud token goes to its own token file (mode
  0600, both token-file shapes), referenced by ``token_file``: the TOML holds no secret. The
  access codes are not carried over (cloud printers don't need them); the report says how to add
  a printer on the LAN instead.
* ``proxy_tokens.json`` (``{"custom token": "real token"}`` in clear) is merged into the proxy's
  token file with :meth:`bambulab.cloud.TokenManager.import_legacy`: custom tokens stored as keyed
  hashes, the file 0600.

Nothing is deleted: the older files still hold secrets in clear, and the report says so. An
existing gateway config is not overwritten without ``--force``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bambulab.cloud._files import write_private
from bambulab.config import ConfigError

__all__ = ["MigrationReport", "convert_compat_config", "import_proxy_tokens", "migrate"]


@dataclass
class MigrationReport:
    """What a migration did, in lines a person reads (no secret in any of them)."""

    written: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


def _toml_string(value: str) -> str:
    # A TOML basic string: JSON's escapes are valid TOML escapes for every character JSON emits.
    return json.dumps(value, ensure_ascii=False)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: the {what} is not valid JSON ({exc})") from exc


def convert_compat_config(
    source: str | os.PathLike[str],
    config_out: str | os.PathLike[str],
    token_out: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    report: MigrationReport | None = None,
) -> MigrationReport:
    """Write a gateway TOML (and a 0600 cloud token file) from an older ``compatibility_config.json``."""
    report = report or MigrationReport()
    src = Path(source).expanduser()
    data = _read_json(src, "compatibility config")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{src}: expected a JSON object with devices, username and auth_token")
    out = Path(config_out).expanduser()
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to replace it (or --gateway-config OTHER.toml)")
    devices = data.get("devices") or []
    if not isinstance(devices, list) or not all(isinstance(d, Mapping) for d in devices):
        raise ConfigError(f"{src}: devices must be a list of objects with a serial")
    serials: list[tuple[str, str]] = []
    for index, device in enumerate(devices):
        serial = str(device.get("serial") or device.get("dev_id") or device.get("device_id") or "").strip().upper()
        if not serial:
            raise ConfigError(f"{src}: devices[{index}] has no serial")
        serials.append((serial, str(device.get("name") or "").strip()))
    token = str(data.get("auth_token") or data.get("token") or data.get("access_token") or "").strip()
    username = str(data.get("username") or data.get("uid") or "").strip()
    uid = username.removeprefix("u_")
    port = data.get("port", 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{src}: port must be a number 0-65535")
    lines = [
        f"# Converted by `bambu migrate` from {src.name}. See docs/gateway.md for every setting.",
        "[gateway]",
        'host = "127.0.0.1"     # the older server listened everywhere; set "0.0.0.0" plus [[tokens]] to share',
        f"port = {port}",
        "control = false",
        "",
    ]
    if token:
        token_path = Path(token_out).expanduser() if token_out is not None else out.with_name(f"{out.stem}-token.json")
        from bambulab.cloud.auth import Token

        value = Token(token, token, None, int(uid) if uid.isdigit() else None, str(data.get("region") or "global"))
        payload = {"region": value.region, "token": value.access_token, "version": 1,
                   **value.to_dict(include_secrets=True)}
        write_private(token_path, json.dumps(payload, indent=2).encode() + b"\n")
        report.written.append(token_path)
        report.say(f"wrote the cloud token to {token_path} (mode 0600); the gateway config points at it")
        lines += ["[[clouds]]", 'name = "compat"', f"token_file = {_toml_string(str(token_path))}"]
        if value.region != "global":
            lines.append(f"region = {_toml_string(value.region)}")
        if serials:
            lines.append("devices = [")
            lines += [f"    {_toml_string(s)},{'  # ' + n if n else ''}" for s, n in serials]
            lines.append("]")
        else:
            lines.append("# devices omitted: every printer bound to the account")
        lines.append("")
    else:
        report.say(f"{src.name} has no auth_token: no [[clouds]] account written; run `bambu login` and add one")
    if any(d.get("access_code") for d in devices):
        report.say("access codes were not copied: the gateway watches these printers through the cloud; to watch "
                   "one on the LAN instead, add [[printers]] with serial, host and access_code_env")
    write_private(out, ("\n".join(lines) + "\n").encode())
    report.written.insert(0, out)
    report.say(f"wrote the gateway config {out} (mode 0600): {len(serials)} device(s), port {port}; "
               f"run: bambu gateway --config {out}")
    report.say(f"{src} still holds the token and access codes in clear: delete it once the gateway works")
    return report


def import_proxy_tokens(
    source: str | os.PathLike[str], tokens_out: str | os.PathLike[str], *, report: MigrationReport | None = None
) -> MigrationReport:
    """Merge an older plain ``proxy_tokens.json`` into the proxy's hashed token file (0600)."""
    from bambulab.cloud.tokens import TokenManager

    report = report or MigrationReport()
    src = Path(source).expanduser()
    out = Path(tokens_out).expanduser()
    manager = TokenManager(out)
    importer = getattr(manager, "import_legacy", None)
    if importer is None:
        raise ConfigError("this version of TokenManager cannot import the older proxy_tokens.json "
                          "(TokenManager.import_legacy is missing)")
    count = importer(src)
    report.written.append(out)
    report.say(f"imported {count} proxy token(s) from {src.name} into {out} (hashed, mode 0600); "
               "clients keep using their custom tokens")
    report.say(f"{src} still holds the tokens in clear: delete it once the proxy works")
    return report


def _default_dir() -> Path:
    from bambulab.config import config_path

    return config_path().parent


@click.command()
@click.option("--compat-config", "compat_config", type=click.Path(dir_okay=False, path_type=Path),
              help="The older compatibility server's compatibility_config.json.")
@click.option("--proxy-tokens", "proxy_tokens", type=click.Path(dir_okay=False, path_type=Path),
              help="The older proxy's proxy_tokens.json.")
@click.option("--gateway-config", "gateway_config", type=click.Path(dir_okay=False, path_type=Path),
              help="The gateway TOML to write (default: gateway.toml beside the config file).")
@click.option("--tokens", "tokens_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="BAMBU_PROXY_TOKENS",
              help="The proxy's token file (default: proxy-tokens.json beside the config file).")
@click.option("--force", is_flag=True, help="Replace an existing gateway config.")
def migrate(compat_config: Path | None, proxy_tokens: Path | None, gateway_config: Path | None,
            tokens_file: Path | None, force: bool) -> None:
    """Convert the older servers' compatibility_config.json and proxy_tokens.json.

    Without options, looks for both files in the current folder. Secrets end up in 0600 files
    (proxy tokens hashed); the older files are left in place, and you are told to delete them.
    """
    if compat_config is None and proxy_tokens is None:
        found = [p for p in (Path("compatibility_config.json"), Path("proxy_tokens.json")) if p.is_file()]
        if not found:
            raise click.UsageError("no compatibility_config.json or proxy_tokens.json here: "
                                   "give --compat-config and/or --proxy-tokens")
        compat_config = next((p for p in found if p.name == "compatibility_config.json"), None)
        proxy_tokens = next((p for p in found if p.name == "proxy_tokens.json"), None)
    report = MigrationReport()
    if compat_config is not None:
        convert_compat_config(compat_config, gateway_config or _default_dir() / "gateway.toml", force=force,
                              report=report)
    if proxy_tokens is not None:
        import_proxy_tokens(proxy_tokens, tokens_file or _default_dir() / "proxy-tokens.json", report=report)
    for line in report.lines:
        click.echo(line)
