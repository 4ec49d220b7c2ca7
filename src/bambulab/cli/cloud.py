"""Cloud commands: ``bambu login``, ``bambu logout`` and ``bambu cloud ...``.

``bambu login`` asks for the e-mail, the password (hidden) and, when the account needs one, the
emailed or two-factor code, then saves the token next to the config file (``token.json``, mode
0600 from creation). It never prints the token. Without a terminal, values come from the
environment: ``BAMBU_EMAIL``, ``BAMBU_PASSWORD``, ``BAMBU_CODE`` (a code you already have: no new
one is emailed), or ``BAMBU_CLOUD_TOKEN`` (a token you already have). ``BAMBU_CLOUD_API_URL`` and
``BAMBU_CLOUD_WEB_URL`` replace the cloud's hosts (a fake cloud, a proxy).

``bambu cloud devices|status|tasks|projects|firmware|upload`` use the saved token (or
``BAMBU_CLOUD_TOKEN``). ``--json`` prints one JSON object per line. Access codes are shown only
with ``--show-access-codes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from bambulab.cli.common import api_url, ask_secret, emit, env_token, load_cloud_token, token_path, web_url
from bambulab.exceptions import AuthenticationError

if TYPE_CHECKING:
    from bambulab.cloud.auth import CodeRequest
    from bambulab.cloud.client import BambuClient

__all__ = ["register"]

REGIONS = ("global", "china")


token_file_option = click.option(
    "--token-file", envvar="BAMBU_TOKEN_FILE", type=click.Path(dir_okay=False),
    help="Where the token is kept (default: token.json beside the config file).",
)
region_option = click.option(
    "--region", type=click.Choice(REGIONS), envvar="BAMBU_CLOUD_REGION", default=None,
    help="Bambu cloud region (default: global, or the saved token's).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


# ------------------------------------------------------------------------------ login / logout


def _code_asker(email: str, from_env: str | None, interactive: bool) -> Callable[[CodeRequest], str]:
    pending = [from_env] if from_env else []

    def ask(request: CodeRequest) -> str:
        if pending:
            return str(pending.pop())
        if not interactive:
            if request.reason == "incorrect":
                raise AuthenticationError("the code in BAMBU_CODE was not accepted")
            if request.kind == "tfa":
                raise AuthenticationError("this account uses two-factor sign-in: set BAMBU_CODE to the code from "
                                          "your authenticator app and run again")
            if request.reason == "expired":
                raise AuthenticationError(f"the code had expired; a new one was emailed to {email}: set BAMBU_CODE "
                                          "to it and run again")
            raise AuthenticationError(f"a login code was emailed to {email}: set BAMBU_CODE to it and run again")
        return str(click.prompt(request.message.rstrip(": "), prompt_suffix=": "))

    return ask


@click.command()
@region_option
@click.option("--email", envvar="BAMBU_EMAIL", help="Account e-mail (or BAMBU_EMAIL); asked when missing.")
@token_file_option
def login(region: str | None, email: str | None, token_file: str | None) -> None:
    """Log in to the Bambu cloud and save the token (mode 0600). The token is never printed."""
    from bambulab.cloud.auth import BambuAuthenticator, Token, save_token

    path = token_path(token_file)
    region = region or "global"
    with BambuAuthenticator(region, api_url=api_url(), web_url=web_url()) as auth:
        given = env_token(region)
        if given is not None:
            token = given
            if not auth.verify_token(token):
                raise AuthenticationError("the token in BAMBU_CLOUD_TOKEN was rejected by the Bambu cloud")
            token = Token(token.access_token, token.refresh_token, None, auth.uid(token), region)
        else:
            email = (email or click.prompt("E-mail")).strip()
            password = os.environ.get("BAMBU_PASSWORD")
            interactive = password is None
            if password is None:
                password = ask_secret("Password")
            code = os.environ.get("BAMBU_CODE") or None
            token = auth.login(email, password, _code_asker(email, code, interactive), request_code=code is None)
    save_token(path, token)
    who = f" (uid {token.uid})" if token.uid is not None else ""
    click.echo(f"Logged in{who}. Token saved to {path} (readable only by you).")


@click.command()
@token_file_option
def logout(token_file: str | None) -> None:
    """Forget the saved token (the cloud has no documented way to revoke it; it expires by itself)."""
    path = token_path(token_file)
    try:
        path.unlink()
    except FileNotFoundError:
        click.echo(f"Not logged in (no {path}).")
        return
    click.echo(f"Logged out: removed {path}.")


# ------------------------------------------------------------------------------ cloud commands


@contextmanager
def _client(opts: dict[str, Any]) -> Iterator[BambuClient]:
    from bambulab.cloud.client import BambuClient

    region = opts.pop("region", None)
    token = load_cloud_token(opts.pop("token_file", None), region)
    with BambuClient(token, region=region or token.region, api_url=api_url(), web_url=web_url()) as client:
        yield client


def cloud_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([token_file_option, region_option, json_option]):
        func = option(func)
    return func


def _emit(data: dict[str, Any], as_json: bool, line: str) -> None:
    emit(data, as_json, lambda _data: line)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@click.group()
def cloud() -> None:
    """Your Bambu cloud account: devices, print status, history, projects, firmware, uploads."""


@cloud.command()
@cloud_options
@click.option("--show-access-codes", is_flag=True, help="Also print each printer's LAN access code.")
def devices(as_json: bool, show_access_codes: bool, **opts: Any) -> None:
    """Printers bound to the account."""
    with _client(opts) as client:
        found = client.devices()
    for device in found:
        code = f"  code {device.access_code}" if show_access_codes else ""
        line = (f"{device.dev_id}  {device.name or '-'}  {device.model_name or device.model_code}  "
                f"{'online' if device.online else 'offline'}  {device.print_status or '-'}{code}")
        _emit(device.to_dict(include_secrets=show_access_codes), as_json, line)
    if not found and not as_json:
        click.echo("No printers bound to this account.")


@cloud.command()
@cloud_options
@click.option("--show-access-codes", is_flag=True, help="Also print each printer's LAN access code.")
def status(as_json: bool, show_access_codes: bool, **opts: Any) -> None:
    """Live print status of every device."""
    with _client(opts) as client:
        found = client.print_status()
    for item in found:
        job = "idle"
        if item.printing:
            job = f"{item.task_name or item.task_id}  {item.task_status}  {item.progress or 0}%"
        line = f"{item.dev_id}  {item.name or '-'}  {'online' if item.online else 'offline'}  {job}"
        _emit(item.to_dict(include_secrets=show_access_codes), as_json, line)


@cloud.command()
@cloud_options
@click.option("--device", "device_id", help="Only this printer's tasks (serial).")
@click.option("--limit", default=20, show_default=True, help="How many tasks to show (newest first).")
def tasks(as_json: bool, device_id: str | None, limit: int, **opts: Any) -> None:
    """Print history, newest first."""
    shown = 0
    with _client(opts) as client:
        for task in client.tasks(device_id, limit=min(max(limit, 1), 100), max_tasks=limit):
            line = f"{task.id}  {_when(task.start_time)}  {task.status.name.lower():9}  {task.device_id}  {task.title}"
            _emit(task.to_dict(), as_json, line)
            shown += 1
    if not shown and not as_json:
        click.echo("No print tasks.")


@cloud.command()
@cloud_options
def projects(as_json: bool, **opts: Any) -> None:
    """Cloud projects."""
    with _client(opts) as client:
        found = client.projects()
    for project in found:
        _emit(project.to_dict(), as_json, f"{project.project_id}  {_when(project.update_time)}  {project.name}")
    if not found and not as_json:
        click.echo("No cloud projects.")


@cloud.command()
@cloud_options
@click.argument("serial", required=False)
def firmware(as_json: bool, serial: str | None, **opts: Any) -> None:
    """Installed firmware and the versions offered (every device, or SERIAL)."""
    with _client(opts) as client:
        infos = [client.firmware(serial)] if serial else list(client.firmware_versions().values())
    for info in infos:
        _emit(info.to_dict(), as_json, f"{info.dev_id}  installed {info.version or '-'}  latest {info.latest or '-'}")


@cloud.command()
@cloud_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Name to store the file under (default: its own name).")
def upload(as_json: bool, file: str, name: str | None, **opts: Any) -> None:
    """Upload FILE to the cloud's storage (checked against its MD5)."""
    with _client(opts) as client:
        result = client.upload_file(file, name)
    _emit(result.to_dict(), as_json, f"uploaded {result.filename} ({result.size} bytes, md5 {result.md5})")


def register(group: click.Group) -> None:
    """Add ``login``, ``logout`` and the ``cloud`` group to the ``bambu`` command."""
    for command in (login, logout, cloud):
        group.add_command(command)
