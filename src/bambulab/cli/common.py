"""What the LAN and cloud commands share: output, the token file, and the environment they read.

``cli/lan.py`` and ``cli/cloud.py`` import from here and never from each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bambulab.config import config_path
from bambulab.exceptions import AuthenticationError

if TYPE_CHECKING:
    from bambulab.cloud.auth import Token

__all__ = [
    "ENVIRONMENT",
    "api_url",
    "emit",
    "env_token",
    "environment_help",
    "jsonable",
    "load_cloud_token",
    "num",
    "token_path",
    "web_url",
]

#: Every environment variable the CLI reads, with what it does (rendered by ``bambu --help`` and
#: kept in step with docs/cli.md by a test).
ENVIRONMENT: dict[str, str] = {
    "BAMBU_CONFIG": "the config file (default: config.toml in the user's config folder)",
    "BAMBU_PRINTER": "the profile to use (default: the file's default printer)",
    "BAMBU_HOST": "printer address, overrides the profile",
    "BAMBU_SERIAL": "printer serial, overrides the profile",
    "BAMBU_ACCESS_CODE": "printer access code, overrides the profile",
    "BAMBU_PORT": "printer MQTT port, overrides the profile",
    "BAMBU_DEBUG": "like --debug",
    "BAMBU_EMAIL": "bambu login: the account's e-mail",
    "BAMBU_PASSWORD": "bambu login: the password (no prompt)",
    "BAMBU_CODE": "bambu login: an e-mailed or two-factor code you already have",
    "BAMBU_CLOUD_TOKEN": "a cloud access token to use instead of the saved one",
    "BAMBU_TOKEN_FILE": "where bambu login keeps the token (default: token.json beside the config file)",
    "BAMBU_CLOUD_REGION": "cloud region: global or china",
    "BAMBU_CLOUD_UID": "monitor --cloud: the account's uid when the token cannot tell",
    "BAMBU_CLOUD_API_URL": "replaces the cloud API's base URL (a fake cloud, a proxy)",
    "BAMBU_CLOUD_WEB_URL": "replaces the cloud web host used by the login flow",
    "BAMBU_CLOUD_MQTT_HOST": "monitor --cloud: the cloud MQTT broker's host (a fake cloud)",
    "BAMBU_CLOUD_MQTT_PORT": "monitor --cloud: that broker's port (default 8883)",
    "BAMBU_CLOUD_CA_FILE": "monitor --cloud: the CA that signed that broker's certificate",
}


def environment_help() -> str:
    """The ``Environment:`` block of ``bambu --help`` (click keeps ``\\b`` paragraphs unwrapped)."""
    width = max(len(name) for name in ENVIRONMENT)
    return "\b\nEnvironment:\n" + "\n".join(f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT.items())


# ------------------------------------------------------------------------------ output


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: ``to_dict()`` and dataclasses first, then containers and scalars."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return jsonable(to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Path):
        return str(value)
    return value


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """One JSON object per line with ``--json``, else the human rendering."""
    if as_json:
        click.echo(json.dumps(jsonable(data), separators=(",", ":"), default=str))
    else:
        click.echo(human(data) if human else json.dumps(jsonable(data), indent=2, default=str))


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# ------------------------------------------------------------------------------ the cloud token


def token_path(option: str | None = None) -> Path:
    """``--token-file`` / ``BAMBU_TOKEN_FILE``, else ``token.json`` beside the config file."""
    if option:
        return Path(option).expanduser()
    return config_path().parent / "token.json"


def api_url() -> str | None:
    return os.environ.get("BAMBU_CLOUD_API_URL") or None


def web_url() -> str | None:
    return os.environ.get("BAMBU_CLOUD_WEB_URL") or None


def env_token(region: str | None) -> Token | None:
    """The token in ``BAMBU_CLOUD_TOKEN`` (stripped and checked), or None when it is not set."""
    from bambulab.cloud.auth import Token

    given = os.environ.get("BAMBU_CLOUD_TOKEN") or ""
    if not given.strip():
        return None
    try:
        checked = Token.from_dict({"access_token": given}).access_token
    except ValueError:
        raise AuthenticationError("the token in BAMBU_CLOUD_TOKEN is corrupt (spaces, line breaks, control "
                                  "or non-ASCII characters): set it again, or run bambu login") from None
    return Token(checked, checked, None, None, region or "global")


def load_cloud_token(token_file: str | None, region: str | None, *, login_hint: str = "run bambu login") -> Token:
    """``BAMBU_CLOUD_TOKEN``, else the token saved by ``bambu login`` (expired ones refused)."""
    from bambulab.cloud.auth import load_token

    given = env_token(region)
    if given is not None:
        return given
    path = token_path(token_file)
    token = load_token(path)
    if token is None:
        if path.exists():
            raise AuthenticationError(f"the token file {path} is corrupt: run bambu login again")
        raise AuthenticationError(f"not logged in (no token in {path}): {login_hint}")
    if token.expired():
        raise AuthenticationError(f"the saved token has expired: run bambu login (token file {path})")
    return token
