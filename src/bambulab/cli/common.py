"""What the LAN and cloud commands share: output, the token file, and the environment they read.

``cli/lan.py`` and ``cli/cloud.py`` import from here and never from each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bambulab.config import config_path
from bambulab.exceptions import AuthenticationError

if TYPE_CHECKING:
    from bambulab.cloud.auth import Token

T = TypeVar("T")

__all__ = [
    "ENVIRONMENT",
    "api_url",
    "ask_secret",
    "cli_message",
    "emit",
    "env_token",
    "environment_help",
    "jsonable",
    "load_cloud_token",
    "num",
    "run_interruptible",
    "token_path",
    "warn",
    "web_url",
]

#: Every environment variable the CLI reads, with what it does (rendered by ``bambu --help`` and
#: kept in step with docs/cli.md by a test).
ENVIRONMENT: dict[str, str] = {
    "BAMBU_CONFIG": "the config file (printer profiles)",
    "XDG_CONFIG_HOME": "its folder's parent (default ~/.config, on Linux)",
    "BAMBU_PRINTER": "the profile to use (default: the file's default)",
    "BAMBU_HOST": "printer address (overrides the profile)",
    "BAMBU_SERIAL": "printer serial (overrides the profile)",
    "BAMBU_ACCESS_CODE": "printer access code (overrides the profile)",
    "BAMBU_PORT": "printer MQTT port (overrides the profile)",
    "BAMBU_DEBUG": "like --debug: verbose logs, full tracebacks",
    "BAMBU_EMAIL": "login: the account's e-mail",
    "BAMBU_PASSWORD": "login: the password (no prompt)",
    "BAMBU_CODE": "login: an e-mailed or two-factor code you have",
    "BAMBU_CLOUD_TOKEN": "a cloud token to use instead of the saved one",
    "BAMBU_TOKEN_FILE": "the token file (default: token.json by the config)",
    "BAMBU_CLOUD_REGION": "cloud region: global or china",
    "BAMBU_CLOUD_UID": "monitor --cloud: the account's uid, if needed",
    "BAMBU_CLOUD_API_URL": "the cloud API's base URL (a fake cloud, a proxy)",
    "BAMBU_CLOUD_WEB_URL": "the cloud web host of the login flow",
    "BAMBU_CLOUD_MQTT_HOST": "monitor --cloud: the MQTT broker's host",
    "BAMBU_CLOUD_MQTT_PORT": "monitor --cloud: the broker's port (8883)",
    "BAMBU_CLOUD_CA_FILE": "monitor --cloud: the CA of the broker's cert",
    "BAMBU_CLOUD_MQTT_CA_FILE": "the same; both names work",
    "BAMBU_PROXY_UPSTREAM": "proxy: global, china, or the cloud API's URL",
    "BAMBU_PROXY_TOKENS": "proxy: the custom-token file",
    "BAMBU_PROXY_ADMIN_TOKEN": "proxy: the admin token (instead of a file)",
    "BAMBU_SIM_HOST": "sim: the address the virtual printers listen on",
    "BAMBU_GATEWAY_CONFIG": "gateway, history: the farm's TOML file",
    "BAMBU_HISTORY_DB": "history: a SQLite file or a postgresql:// URL",
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


# ------------------------------------------------------------------------------ running and asking


def run_interruptible(coro: Coroutine[Any, Any, T], *, exit_code: int = 0) -> T:
    """``asyncio.run(coro)``; Ctrl-C or SIGTERM cancel it (its ``finally`` blocks close what it
    opened) and the command ends quietly with ``exit_code`` instead of click's ``Aborted!``.

    Watching commands (``monitor``, ``status --watch``) end this way normally: 0. A one-shot
    command cut short ends with 130, the shell's code for an interrupt.
    """
    interrupted = False

    async def main() -> T:
        nonlocal interrupted
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop)
        try:
            return await task
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # before the handlers were installed, or where there are none
        pass
    except asyncio.CancelledError:
        if not interrupted:
            raise
    raise click.exceptions.Exit(exit_code)


def ask_secret(label: str) -> str:
    """A secret from the terminal (not echoed), or one line of piped standard input.

    ``getpass`` warns that it cannot hide the input when standard input is not a terminal; piped
    input is not echoed anyway, so it is read as it is.
    """
    if sys.stdin is not None and sys.stdin.isatty():
        value = str(click.prompt(label, hide_input=True))
    else:
        click.echo(f"{label}: ", nl=False)
        value = sys.stdin.readline() if sys.stdin is not None else ""
        click.echo()
    value = value.strip()
    if not value:
        raise click.UsageError(f"no {label.lower()} given (type it, or pipe it on standard input)")
    return value


def cli_message(exc: BaseException) -> str:
    """An error's message in the CLI's words: the library's advice names Python parameters."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = text.replace(
        "Pass ca_file= for a custom CA, or insecure=True to skip the check",
        "Use --ca-file FILE to trust another CA (a virtual printer's: bambu sim --write-ca FILE), or "
        "--insecure to skip the check",
    )
    return text.replace("ca_file=", "--ca-file").replace("insecure=True", "--insecure")


def warn(message: str) -> None:
    """A warning in the CLI's own format (``warning: ...`` on stderr)."""
    click.echo(f"warning: {message}", err=True)
