"""The older package's command-line tools, as thin translations into ``bambu`` commands.

=================  ===========================================  ==========================================
older command      example                                      runs
=================  ===========================================  ==========================================
``bambu-query``    ``bambu-query [TOKEN] --devices``            ``bambu cloud devices`` (``--status``,
                                                                ``--tasks``, ``--projects``, ``--firmware``)
``bambu-monitor``  ``bambu-monitor UID TOKEN DEVICE_ID``        ``bambu monitor --cloud --device DEVICE_ID``
``bambu-camera``   ``bambu-camera [TOKEN] --ip 192.168.1.100``  ``bambu camera snapshot`` (``--stream``:
                                                                ``bambu camera stream``)
``bambu-login``    ``bambu-login --username me@example.com``    ``bambu login`` (``--verify-only`` and
                                                                ``--test`` check the saved token)
=================  ===========================================  ==========================================

Secrets given as arguments (the older invocations put the token there) still work, but each
prints one line on stderr: process arguments are visible to other users of the machine. They are
handed to ``bambu`` through its environment variables (``BAMBU_CLOUD_TOKEN``,
``BAMBU_PASSWORD``, ``BAMBU_ACCESS_CODE``) inside this process, never as arguments of another
one. Without a token argument the token comes from ``--token-file``, else ``~/.bambu_token`` (the
older tool's file, written by ``bambu-login``) when it exists, else ``bambu login``'s file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bambulab.compat.auth import DEFAULT_TOKEN_FILE

__all__ = ["camera", "login", "monitor", "query"]

_WARN_ARG_CLOUD = (
    "warning: a token on the command line is visible to other users of this machine (ps, shell history); "
    "log in once with bambu-login (saved to ~/.bambu_token, mode 0600) and leave it out, or set BAMBU_CLOUD_TOKEN"
)
_WARN_ARG_CODE = ("warning: an access code on the command line is visible to other users of this machine; "
                 "set BAMBU_ACCESS_CODE instead, or save a profile with bambu config add")
_WARN_ARG_LOGIN = (
    "warning: a password on the command line is visible to other users of this machine; "
    "leave --password out to be asked for it, or set BAMBU_PASSWORD"
)


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


_SECRETISH = re.compile(r"\S{16,}")


class _Parser(argparse.ArgumentParser):
    """argparse, minus two ways it could show a secret given as an argument.

    A token may start with ``-`` (URL-safe base64): arguments that start with ``-`` but are not
    an option of this parser are taken as positional values. Error messages, which echo
    arguments, mask every long word.
    """

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        known = set(self._option_string_actions)
        values: dict[str, str] = {}
        argv: list[str] = []
        for arg in sys.argv[1:] if args is None else args:
            if arg.startswith("-") and len(arg) > 2 and arg.split("=", 1)[0] not in known:
                key = f"<argument {len(values) + 1}>"  # not an option of ours: a value such as a token
                values[key] = arg
                arg = key
            argv.append(arg)
        parsed = super().parse_args(argv, namespace)
        for name, value in vars(parsed).items():
            if isinstance(value, str) and value in values:
                setattr(parsed, name, values[value])
            elif isinstance(value, list):
                setattr(parsed, name, [values.get(v, v) if isinstance(v, str) else v for v in value])
        return parsed

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_SECRETISH.sub('***', message)}\n")


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _bambu(args: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run ``bambu ARGS`` in this process (secrets in ``env``) and return its exit status."""
    from bambulab.cli.main import cli

    code: object = 0
    with _environment(env or {}):
        try:
            cli.main(args=list(args), prog_name="bambu", standalone_mode=True)
        except SystemExit as exit_:
            code = exit_.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def _token_file(given: str | None) -> list[str]:
    if given:
        return ["--token-file", given]
    legacy = Path(os.path.expanduser(DEFAULT_TOKEN_FILE))
    return ["--token-file", str(legacy)] if legacy.is_file() else []


def _token_env(token: str | None) -> dict[str, str]:
    if not token:
        return {}
    _warn(_WARN_ARG_CLOUD)
    return {"BAMBU_CLOUD_TOKEN": token.strip()}


# ------------------------------------------------------------------------------ bambu-query


def query(argv: Sequence[str] | None = None) -> int:
    """``bambu-query [TOKEN] --devices|--status|--tasks|--projects|--firmware [--json]``."""
    parser = _Parser(prog="bambu-query", description="Query the Bambu cloud (runs bambu cloud ...).")
    parser.add_argument("token", nargs="?", help="Access token (visible to other users: prefer bambu-login).")
    what = parser.add_mutually_exclusive_group()
    for flag in ("devices", "status", "tasks", "projects", "firmware"):
        what.add_argument(f"--{flag}", action="store_true", help=f"bambu cloud {flag}")
    parser.add_argument("--device", help="With --firmware or --tasks: this device only.")
    parser.add_argument("--limit", type=int, help="With --tasks: at most this many.")
    parser.add_argument("--json", action="store_true", help="One JSON object per line.")
    parser.add_argument("--region", choices=("global", "china"))
    parser.add_argument("--token-file")
    opts = parser.parse_args(argv)
    command = next((f for f in ("status", "tasks", "projects", "firmware") if getattr(opts, f)), "devices")
    args = ["cloud", command, *_token_file(opts.token_file)]
    if opts.region:
        args += ["--region", opts.region]
    if opts.device and command in ("firmware", "tasks"):
        args += ["--device", opts.device] if command == "tasks" else [opts.device]
    if opts.limit and command == "tasks":
        args += ["--limit", str(opts.limit)]
    if opts.json:
        args.append("--json")
    return _bambu(args, _token_env(opts.token))


# ------------------------------------------------------------------------------ bambu-monitor


def monitor(argv: Sequence[str] | None = None) -> int:
    """``bambu-monitor [UID TOKEN] DEVICE_ID [--json]``: the live table through the cloud."""
    parser = _Parser(prog="bambu-monitor",
                                     description="Watch a printer through the Bambu cloud (bambu monitor --cloud).")
    parser.add_argument("values", nargs="+", metavar="UID TOKEN DEVICE_ID",
                        help="The older order (uid, token, serial), or only the serial after bambu-login.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--region", choices=("global", "china"))
    parser.add_argument("--token-file")
    parser.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    uid = token = None
    if len(opts.values) == 3:
        uid, token, device = opts.values
    elif len(opts.values) == 1:
        (device,) = opts.values
    else:
        parser.error("give UID TOKEN DEVICE_ID, or only DEVICE_ID with a saved token")
    args = ["monitor", "--cloud", "--device", device, *_token_file(opts.token_file)]
    if uid:
        args += ["--uid", uid.removeprefix("u_")]
    if opts.region:
        args += ["--region", opts.region]
    if opts.json:
        args.append("--json")
    if opts.duration:
        args += ["--duration", str(opts.duration)]
    return _bambu(args, _token_env(token))


# ------------------------------------------------------------------------------ bambu-camera


def _camera_printer(
    token: str | None, token_file: list[str], region: str | None, device: str | None
) -> tuple[str, str]:
    """The serial and LAN access code of a printer of the account (for ``bambu-camera TOKEN``)."""
    from bambulab.cloud.auth import Token, load_token
    from bambulab.cloud.client import BambuClient
    from bambulab.exceptions import AuthenticationError, BambuError

    given = token or os.environ.get("BAMBU_CLOUD_TOKEN")
    saved: Token | None
    if given:
        saved = Token(given.strip(), region=region or "global")
    else:
        from bambulab.cli.common import token_path

        path = Path(token_file[1]) if token_file else token_path(None)
        saved = load_token(path)
        if saved is None:
            raise AuthenticationError(f"no --code, and no token to look it up with (nothing in {path}): "
                                      "pass --code or log in with bambu-login")
    api_url = os.environ.get("BAMBU_CLOUD_API_URL") or None
    with BambuClient(saved, region=region or saved.region, api_url=api_url) as cloud:
        devices = cloud.devices()
    if device:
        devices = [d for d in devices if d.dev_id.upper() == device.upper()]
    if not devices:
        raise BambuError(f"no printer {device} on the account" if device else "no printer is bound to the account")
    if len(devices) > 1:
        raise BambuError("the account has several printers: pick one with --device SERIAL")
    return devices[0].dev_id, devices[0].access_code


def camera(argv: Sequence[str] | None = None) -> int:
    """``bambu-camera [TOKEN] --ip IP [--code CODE] [--serial S] [--output F] [--stream --frames N]``."""
    parser = _Parser(prog="bambu-camera",
                                     description="Save the printer's camera picture (runs bambu camera ...).")
    parser.add_argument("token", nargs="?", help="Cloud token, to look up the serial and access code.")
    parser.add_argument("--ip", required=True, help="The printer's address on the LAN.")
    parser.add_argument("--code", help="The LAN access code (visible to other users: prefer BAMBU_ACCESS_CODE).")
    parser.add_argument("--serial", help="The printer's serial (looked up in the cloud when a token is given).")
    parser.add_argument("--device", help="With a token: the serial of the printer to use.")
    parser.add_argument("--model", help="Accepted for the older tool; the model follows from the serial.")
    parser.add_argument("--output", "-o", default="snapshot.jpg")
    parser.add_argument("--stream", action="store_true", help="Save frames to --output-dir as they arrive.")
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--output-dir", default="frames")
    parser.add_argument("--port", type=int, help="MQTT port (default 8883).")
    parser.add_argument("--camera-port", type=int)
    parser.add_argument("--ca-file")
    parser.add_argument("--region", choices=("global", "china"))
    parser.add_argument("--token-file")
    opts = parser.parse_args(argv)
    from bambulab.exceptions import BambuError

    env: dict[str, str] = {}
    serial, code = opts.serial, opts.code
    if code:
        _warn(_WARN_ARG_CODE)
    if opts.token:
        _warn(_WARN_ARG_CLOUD)
    if serial is None or (code is None and "BAMBU_ACCESS_CODE" not in os.environ):
        try:
            serial, looked_up = _camera_printer(opts.token, _token_file(opts.token_file), opts.region,
                                                opts.device or opts.serial)
        except BambuError as exc:  # one clean line, as bambu prints
            print(f"error: {exc}", file=sys.stderr)
            return 1
        code = code or looked_up
    if code:
        env["BAMBU_ACCESS_CODE"] = code
    args = ["camera", "stream", "--frames", str(opts.frames), "--output-dir", opts.output_dir] if opts.stream \
        else ["camera", "snapshot", "--output", opts.output]
    args += ["--host", opts.ip, "--serial", serial]
    for flag, value in (("--port", opts.port), ("--camera-port", opts.camera_port), ("--ca-file", opts.ca_file)):
        if value is not None:
            args += [flag, str(value)]
    return _bambu(args, env)


# ------------------------------------------------------------------------------ bambu-login


def login(argv: Sequence[str] | None = None) -> int:
    """``bambu-login [--region R] [--username U] [--password P] [--verify-only] [--test]``."""
    parser = _Parser(prog="bambu-login", description="Log in to the Bambu cloud (runs bambu login).")
    parser.add_argument("--region", choices=("global", "china"), default="global")
    parser.add_argument("--username", help="Account e-mail.")
    parser.add_argument("--password", help="Visible to other users: leave it out to be asked.")
    parser.add_argument("--verify-only", action="store_true", help="Check the saved token; no login.")
    parser.add_argument("--test", action="store_true", help="Check the saved token by reading the account.")
    parser.add_argument("--token-file", default=DEFAULT_TOKEN_FILE,
                        help="Where the token is kept (default ~/.bambu_token, as the older tool).")
    opts = parser.parse_args(argv)
    path = os.path.expanduser(opts.token_file)
    if opts.verify_only or opts.test:
        return _check_token(path, opts.region, show_account=opts.test)
    env: dict[str, str] = {}
    if opts.password:
        _warn(_WARN_ARG_LOGIN)
        env["BAMBU_PASSWORD"] = opts.password
    args = ["login", "--region", opts.region, "--token-file", path]
    if opts.username:
        args += ["--email", opts.username]
    status = _bambu(args, env)
    if status == 0:
        _add_older_keys(Path(path))
    return status


def _add_older_keys(path: Path) -> None:
    """Give the token file the older tool's keys too (``{"region", "token"}``), so both read it."""
    from bambulab.cloud.auth import load_token
    from bambulab.compat.auth import BambuAuthenticator

    token = load_token(path)
    if token is not None:
        auth = BambuAuthenticator(token.region, token_file=path)
        with auth:
            auth.save_token(token)


def _check_token(path: str, region: str, *, show_account: bool) -> int:
    from bambulab.cloud.auth import load_token
    from bambulab.cloud.client import BambuClient
    from bambulab.compat.auth import BambuAuthenticator
    from bambulab.exceptions import BambuError

    token = load_token(path)
    if token is None:
        print(f"No token in {path}: log in with bambu-login.", file=sys.stderr)
        return 1
    api_url = os.environ.get("BAMBU_CLOUD_API_URL") or None
    try:
        with BambuAuthenticator(token.region or region, token_file=path, api_url=api_url) as auth:
            valid = auth.verify_token(token)
        if not valid:
            print(f"The token in {path} was rejected: log in again with bambu-login.", file=sys.stderr)
            return 1
        print(f"The token in {path} is valid.")
        if show_account:
            with BambuClient(token, region=token.region or region, api_url=api_url) as cloud:
                profile = cloud.get_user_info()
                devices = cloud.devices()
            print(f"Account uid {profile.get('uid')} ({profile.get('name', '')}), {len(devices)} printer(s).")
    except BambuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _entry(fn: object) -> None:  # pragma: no cover - the console-script wrappers
    assert callable(fn)
    sys.exit(fn())


def query_main() -> None:  # pragma: no cover
    _entry(query)


def monitor_main() -> None:  # pragma: no cover
    _entry(monitor)


def camera_main() -> None:  # pragma: no cover
    _entry(camera)


def login_main() -> None:  # pragma: no cover
    _entry(login)
