"""LAN commands: discover, status, monitor, files, upload, print, control, camera, config.

Every command that talks to a printer takes the same connection options; values come from the
config file (``bambu config add``), then ``BAMBU_*`` environment variables, then flags. The access
code is never taken from a command-line argument unless ``--allow-code-argument`` says so (process
arguments are visible to every user of the machine); ``--access-code-stdin`` reads it from stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from bambulab.cli.common import (
    api_url,
    ask_secret,
    cli_message,
    emit,
    jsonable,
    load_cloud_token,
    num,
    run_interruptible,
    warn,
)
from bambulab.config import (
    PrinterProfile,
    config_path,
    insecure_permissions,
    load_profiles,
    remove_profile,
    resolve_profile,
    save_profile,
)
from bambulab.exceptions import UnsupportedError

if TYPE_CHECKING:
    from rich.table import Table

    from bambulab.cloud.mqtt import CloudConnection
    from bambulab.printer import BasePrinter, Printer

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------------------ connection options


def printer_options(func: F) -> F:
    """The options every printer command takes."""
    options = [
        click.option("--printer", "-p", "profile", envvar="BAMBU_PRINTER", help="Profile name from the config file."),
        click.option("--host", help="Printer address (or BAMBU_HOST)."),
        click.option("--serial", help="Printer serial (or BAMBU_SERIAL)."),
        click.option("--port", type=int, help="MQTT port (default 8883)."),
        click.option("--ftps-port", type=int, help="FTPS port (default 990)."),
        click.option("--camera-port", type=int, help="Camera port (default 6000 or 322)."),
        click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                     help="Trust this CA instead of Bambu's bundled one."),
        click.option("--insecure", is_flag=True, default=None, help="Do not verify the printer's certificate."),
        click.option("--access-code-stdin", is_flag=True, help="Read the access code from standard input."),
        click.option("--access-code", "access_code_arg", hidden=True,
                     help="Only with --allow-code-argument: process arguments are visible to other users."),
        click.option("--allow-code-argument", is_flag=True, hidden=True),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON object per line)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _profile(opts: dict[str, Any]) -> PrinterProfile:
    code = None
    if opts.pop("access_code_stdin", False):
        code = sys.stdin.readline().strip()
    arg = opts.pop("access_code_arg", None)
    allow = opts.pop("allow_code_argument", False)
    if arg is not None:
        if not allow:
            raise click.UsageError(
                "refusing to read the access code from the command line (other users can see process "
                "arguments); use a profile (bambu config add), BAMBU_ACCESS_CODE, --access-code-stdin, "
                "or add --allow-code-argument"
            )
        code = arg
    path = config_path()
    if insecure_permissions(path):
        click.echo(f"warning: {path} can be read by other users; run: chmod 600 {path}", err=True)
    overrides = {
        "host": opts.pop("host", None), "serial": opts.pop("serial", None), "port": opts.pop("port", None),
        "ftps_port": opts.pop("ftps_port", None), "camera_port": opts.pop("camera_port", None),
        "ca_file": opts.pop("ca_file", None), "insecure": opts.pop("insecure", None), "access_code": code,
    }
    return resolve_profile(opts.pop("profile", None), overrides=overrides)


_INSECURE_LOG = "TLS verification of the printer is OFF"


class _DropInsecureLog(logging.Filter):
    """The CLI says it once, in its own words (the library logs it for every context it builds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_INSECURE_LOG))


def _make_printer(profile: PrinterProfile) -> Printer:
    from bambulab.printer import Printer

    if profile.insecure:
        tls_log = logging.getLogger("bambulab.transports.tls")
        if not any(isinstance(f, _DropInsecureLog) for f in tls_log.filters):
            tls_log.addFilter(_DropInsecureLog())
            warn(f"not checking {profile.name if profile.name != 'default' else profile.host}'s TLS certificate "
                 "(--insecure): anyone on the network can pose as the printer and learn its access code")
    return Printer(
        profile.host, profile.serial, profile.access_code, port=profile.port, ftps_port=profile.ftps_port,
        camera_port=profile.camera_port, ca_file=profile.ca_file, insecure=profile.insecure,
    )


T = TypeVar("T")


def with_printer(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run ``fn(printer, **rest)`` inside ``async with Printer(...)`` for a click command."""

    @functools.wraps(fn)
    def wrapper(**opts: Any) -> T:
        profile = _profile(opts)

        async def main() -> T:
            async with _make_printer(profile) as printer:
                return await fn(printer, **opts)

        # Ctrl-C ends a watching command quietly (0); a one-shot command cut short exits 130.
        return run_interruptible(main(), exit_code=0 if opts.get("watch") else 130)

    return wrapper


def _status_text(status: Any) -> str:
    job, temps = status.job, status.temperatures
    lines = [f"state     {job.state.value}" + (f" ({job.stage})" if job.stage else "")]
    if job.is_active or job.progress:
        lines.append(f"job       {job.name or job.file or '-'}  {job.progress or 0}%  "
                     f"layer {job.layer or 0}/{job.total_layers or 0}"
                     + (f"  {int(job.remaining.total_seconds() // 60)} min left" if job.remaining else ""))
    nozzles = " / ".join(f"{num(n.current)}→{num(n.target)}" for n in temps.nozzles) if temps.nozzles else "-"
    bed = f"{num(temps.bed)}→{num(temps.bed_target)}"
    lines.append(f"nozzle    {nozzles} °C")
    lines.append(f"bed       {bed} °C" + (f"   chamber {temps.chamber:.0f} °C" if temps.chamber is not None else ""))
    if status.print_error:
        lines.append(f"error     {status.print_error.display}: {status.print_error.text or 'unknown error'}")
    for hms in status.hms:
        lines.append(f"hms       {hms.key} ({hms.severity.value}): {hms.text or 'see ' + hms.wiki_url}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ commands


@click.command()
@click.option("--timeout", default=5.0, show_default=True, help="How long to listen, in seconds.")
@click.option("--listen-port", default=2021, show_default=True, help="UDP port printers announce to.")
@click.option("--target", "targets", multiple=True, metavar="HOST:PORT",
              help="Where to send the search (default: broadcast 255.255.255.255:2021 and multicast "
                   "239.255.255.250:1990). Repeatable.")
@click.option("--json", "as_json", is_flag=True)
def discover(timeout: float, listen_port: int, targets: tuple[str, ...], as_json: bool) -> None:
    """Find printers on the local network (SSDP)."""
    from bambulab.discovery import DEFAULT_SEARCH_TARGETS
    from bambulab.discovery import discover as run_discover

    search: list[tuple[str, int]] = []
    for target in targets:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"expected HOST:PORT, got {target!r}", param_hint="--target")
        search.append((host, int(port)))
    found = asyncio.run(run_discover(timeout=timeout, listen_port=listen_port,
                                     search_targets=search or DEFAULT_SEARCH_TARGETS))
    if as_json:
        for printer in found:
            emit(printer, True)
        return
    if not found:
        click.echo(f"no printers found (is the printer on the same network, and UDP {listen_port} open?)")
    for p in found:
        model = p.model.name if p.model else p.model_code
        click.echo(f"{p.serial}  {model:<10} {p.ip:<15} {p.name!r}  firmware {p.firmware or '?'}  "
                   f"{'LAN only' if p.lan_only else 'cloud'}")


@click.command()
@printer_options
@click.option("--watch", is_flag=True, help="Keep printing the status as it changes.")
@with_printer
async def status(printer: Printer, as_json: bool, watch: bool) -> None:
    """Show a printer's status."""
    current = printer.status
    emit(current.to_dict() if as_json else current, as_json, None if as_json else _status_text)
    if not watch:
        return
    from bambulab.events import StateChanged

    last = 0.0
    async with printer.events() as stream:
        async for event in stream:
            if isinstance(event, StateChanged):
                if not as_json and time.monotonic() - last < 1.0:
                    continue
                last = time.monotonic()
                if as_json:
                    emit(event.status.to_dict(), True)
                else:
                    click.echo("\n" + _status_text(event.status))
            else:
                emit({"event": type(event).__name__, **jsonable(_event_fields(event))}, as_json,
                     lambda e: f"** {e['event']}")


def _event_fields(event: Any) -> dict[str, Any]:
    fields = asdict(event) if is_dataclass(event) and not isinstance(event, type) else {}
    fields.pop("status", None)
    return fields


@click.command()
@click.argument("profiles", nargs=-1)
@click.option("--all", "all_profiles", is_flag=True, help="Every printer in the config file.")
@click.option("--cloud", is_flag=True, help="Through the Bambu cloud (after bambu login) instead of the LAN.")
@click.option("--device", "devices", multiple=True, metavar="SERIAL",
              help="With --cloud: this device (repeatable; default: every device bound to the account).")
@click.option("--token-file", envvar="BAMBU_TOKEN_FILE", type=click.Path(dir_okay=False),
              help="With --cloud: the token saved by bambu login (default: token.json beside the config file; "
                   "BAMBU_CLOUD_TOKEN overrides it).")
@click.option("--uid", envvar="BAMBU_CLOUD_UID", help="With --cloud: the account's uid, when the token cannot tell.")
@click.option("--region", type=click.Choice(["global", "china"]), envvar="BAMBU_CLOUD_REGION", default=None,
              help="With --cloud: the cloud region (default: the saved token's, else global).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="Trust this CA: the printers' instead of Bambu's bundled one (a virtual printer's: bambu sim "
                   "--write-ca), or with --cloud the broker's.")
@click.option("--broker-host", envvar="BAMBU_CLOUD_MQTT_HOST",
              help="With --cloud: the cloud MQTT broker's host (a fake cloud; default: the region's).")
@click.option("--broker-port", envvar="BAMBU_CLOUD_MQTT_PORT", type=int, default=8883, show_default=True,
              help="With --cloud: the broker's port.")
@click.option("--broker-ca-file", envvar=["BAMBU_CLOUD_CA_FILE", "BAMBU_CLOUD_MQTT_CA_FILE"],
              type=click.Path(exists=True, dir_okay=False), hidden=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per printer per second.")
@click.option("--duration", type=float, hidden=True, help="Stop after this many seconds.")
def monitor(profiles: tuple[str, ...], all_profiles: bool, cloud: bool, devices: tuple[str, ...],
            token_file: str | None, uid: str | None, region: str | None, ca_file: str | None,
            broker_host: str | None, broker_port: int, broker_ca_file: str | None, as_json: bool,
            duration: float | None) -> None:
    """A live table of one or many printers (profiles from the config file, or --cloud). Ctrl-C ends it."""
    if cloud:
        if profiles or all_profiles:
            raise click.UsageError("--cloud monitors the account's devices: use --device SERIAL, not profiles")
        connection = _cloud_connection(devices, token_file, uid, region, broker_host, broker_port,
                                       ca_file or broker_ca_file)
        run_interruptible(_monitor_cloud(connection, token_file, region, as_json, duration))
        return
    if devices:
        raise click.UsageError("--device needs --cloud (LAN printers are profiles: bambu config add)")
    available, default = load_profiles()
    names = list(available) if all_profiles else list(profiles) or [default or ""]
    overrides = {"ca_file": ca_file} if ca_file else None
    chosen = [resolve_profile(name or None, overrides=overrides) for name in names]
    run_interruptible(_monitor(chosen, as_json, duration))


def _cloud_connection(devices: tuple[str, ...], token_file: str | None, uid: str | None, region: str | None,
                      broker_host: str | None, broker_port: int, broker_ca_file: str | None) -> CloudConnection:
    """The account connection for ``monitor --cloud``: the token saved by ``bambu login`` (or
    ``BAMBU_CLOUD_TOKEN``), the devices given or all bound ones (``BAMBU_CLOUD_API_URL`` overrides
    the API host). The broker options exist for tests and mirrors: with them the certificate must
    still name the region's broker, verified against ``--ca-file``."""
    from bambulab.cloud.mqtt import BROKERS, CloudConnection
    from bambulab.transports.tls import cloud_ssl_context

    token = load_cloud_token(token_file, region, login_hint="run bambu login, or set BAMBU_CLOUD_TOKEN")
    chosen_region = region or getattr(token, "region", None) or "global"
    ctx = cloud_ssl_context(ca_file=broker_ca_file) if broker_ca_file else None
    return CloudConnection(
        token, uid=uid or None, devices=list(devices) or None, region=chosen_region, host=broker_host,
        port=broker_port, ssl_context=ctx, server_hostname=BROKERS[chosen_region] if broker_host else None,
        api_url=api_url(),
    )


async def _monitor(profiles: list[PrinterProfile], as_json: bool, duration: float | None) -> None:
    printers = [_make_printer(p) for p in profiles]
    results = await asyncio.gather(*(p.connect() for p in printers), return_exceptions=True)
    for profile, result in zip(profiles, results, strict=True):
        if isinstance(result, BaseException):
            click.echo(f"{profile.name}: {cli_message(result)}", err=True)
    live = [p for p, r in zip(printers, results, strict=True) if not isinstance(r, BaseException)]
    labels = {p.serial: profile.name for p, profile in zip(printers, profiles, strict=True)}
    try:
        await _show(live, as_json, duration, labels)
    finally:
        await asyncio.gather(*(p.close() for p in printers), return_exceptions=True)


async def _device_names(token_file: str | None, region: str | None) -> dict[str, str]:
    """Serial -> the name given in the Bambu app, for the table (empty when the API cannot say)."""
    from bambulab.cloud.client import AsyncBambuClient
    from bambulab.exceptions import BambuError

    token = load_cloud_token(token_file, region)
    try:
        async with AsyncBambuClient(token, region=region or token.region, api_url=api_url()) as api:
            return {d.dev_id.upper(): d.name for d in await api.devices() if d.dev_id and d.name}
    except BambuError:
        return {}


async def _monitor_cloud(
    connection: CloudConnection, token_file: str | None, region: str | None, as_json: bool, duration: float | None
) -> None:
    async with connection:
        labels = {} if as_json else await _device_names(token_file, region)
        offline = [labels.get(p.serial, p.serial) for p in connection.printers if not p.connected]
        if offline:
            click.echo(f"offline (no report through the cloud): {', '.join(offline)}", err=True)
        await _show(connection.printers, as_json, duration, labels)


async def _show(
    live: Sequence[BasePrinter], as_json: bool, duration: float | None, labels: dict[str, str] | None = None
) -> None:
    """The live table (or one JSON object per printer per second) until ``duration`` or Ctrl-C.

    ``labels`` names printers by serial (profile names on the LAN); the serial is used otherwise.
    """
    labels = labels or {}
    deadline = time.monotonic() + duration if duration else None
    if as_json:
        while deadline is None or time.monotonic() < deadline:
            for p in live:
                emit({"serial": p.serial, "connected": p.connected, **p.status.to_dict()}, True)
            await asyncio.sleep(1.0)
        return
    from rich.live import Live

    before = sys.stderr
    with Live(monitor_table(live, labels), refresh_per_second=2) as view, _logs_above(before):
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            view.update(monitor_table(live, labels))


#: The table's columns: (header, justify). Short headers, so nine columns fit in 80 characters.
_COLUMNS: tuple[tuple[str, Literal["left", "right"]], ...] = (
    ("printer", "left"), ("model", "left"), ("state", "left"), ("done", "right"), ("layer", "right"),
    ("left", "right"), ("nozzle", "right"), ("bed", "right"), ("err", "right"),
)


def monitor_table(printers: Sequence[BasePrinter], labels: Mapping[str, str] | None = None) -> Table:
    """The monitor's table: one row per printer, named by ``labels`` (profile or app names).

    Headers never wrap or get cut (each column is at least as wide as its header) and the
    printer's name is never cut either (it folds onto a second line if it must); what gives way
    on a narrow terminal is the model's name. An offline printer reads ``offline`` in the state
    column, and its other values are the last ones reported.
    """
    from rich import box
    from rich.table import Table

    labels = labels or {}
    table = Table(title="bambu monitor", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                  collapse_padding=True)
    for header, justify in _COLUMNS:
        table.add_column(header, justify=justify, min_width=len(header), no_wrap=header != "printer",
                         overflow="fold" if header == "printer" else "ellipsis")
    for p in printers:
        s = p.status
        job, temps = s.job, s.temperatures
        nozzle = "/".join(num(n.current) for n in temps.nozzles) if temps.nozzles else num(temps.nozzle)
        table.add_row(
            labels.get(p.serial, p.serial),
            p.model.name if p.model else "?",
            job.state.value if p.connected else "offline",
            f"{job.progress or 0}%",
            f"{job.layer or 0}/{job.total_layers or 0}",
            f"{int(job.remaining.total_seconds() // 60)}m" if job.remaining else "-",
            f"{nozzle}°",
            f"{num(temps.bed)}°",
            str(len(s.hms) + (1 if s.print_error else 0)),
        )
    return table


@contextlib.contextmanager
def _logs_above(before: Any) -> Iterator[None]:
    """Log lines go through the live display (rich's stand-in for stderr), above the table.

    Handlers made by ``logging.basicConfig`` hold the stderr of before the display started; their
    lines would land in the middle of the table and leave a stale copy of it on screen.
    """
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    if sys.stderr is not before:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (before, sys.__stderr__):
                swapped.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


# --- control


def _control(name: str, doc: str, call: Callable[[Printer], Awaitable[Any]]) -> click.Command:
    @printer_options
    @with_printer
    async def command(printer: Printer, as_json: bool) -> None:
        ack = await call(printer)
        emit({"ok": True, "ack": ack}, as_json, lambda _: f"{name}: ok")

    command.__doc__ = doc
    return click.command(name)(command)


pause = _control("pause", "Pause the current print.", lambda p: p.pause())
resume = _control("resume", "Resume a paused print.", lambda p: p.resume())
stop = _control("stop", "Stop (cancel) the current print.", lambda p: p.stop())


@click.command()
@click.argument("mode", type=click.Choice(["on", "off", "flashing"]))
@click.option("--node", default="chamber_light", show_default=True,
              type=click.Choice(["chamber_light", "work_light", "chamber_light2", "heatbed_light"]))
@printer_options
@with_printer
async def light(printer: Printer, mode: str, node: str, as_json: bool) -> None:
    """Switch a light on, off or flashing."""
    ack = await printer.set_light(mode, node)
    emit({"ok": True, "ack": ack}, as_json, lambda _: f"{node}: {mode}")


@click.command()
@click.argument("heater", type=click.Choice(["nozzle", "bed", "chamber"]))
@click.argument("celsius", type=float)
@printer_options
@with_printer
async def temp(printer: Printer, heater: str, celsius: float, as_json: bool) -> None:
    """Set a target temperature."""
    model = printer.model or printer.status.model
    if heater == "chamber" and model is not None and not model.chamber_heater:
        raise UnsupportedError(f"the {model.name} has no chamber heater: nothing to set")
    setter = {"nozzle": printer.set_nozzle_temp, "bed": printer.set_bed_temp, "chamber": printer.set_chamber_temp}
    ack = await setter[heater](celsius)
    emit({"ok": True, "ack": ack}, as_json, lambda _: f"{heater} target: {celsius:g} °C")


@click.command()
@click.argument("fan", type=click.Choice(["part", "aux", "chamber"]))
@click.argument("percent", type=click.FloatRange(0, 100))
@printer_options
@with_printer
async def fan(printer: Printer, fan: str, percent: float, as_json: bool) -> None:
    """Set a fan's speed in percent."""
    index = {"part": 1, "aux": 2, "chamber": 3}[fan]
    ack = await printer.set_fan(index, percent)
    emit({"ok": True, "ack": ack}, as_json, lambda _: f"{fan} fan: {percent:g}%")


@click.command()
@click.argument("lines", nargs=-1, required=True)
@printer_options
@with_printer
async def gcode(printer: Printer, lines: tuple[str, ...], as_json: bool) -> None:
    """Send G-code lines (each argument is one line)."""
    ack = await printer.gcode(list(lines))
    emit({"ok": True, "ack": ack}, as_json, lambda _: "sent")


# --- files


@click.group()
def files() -> None:
    """Files on the printer's storage (FTPS)."""


@files.command("ls")
@click.argument("path", default="/")
@printer_options
@with_printer
async def files_ls(printer: Printer, path: str, as_json: bool) -> None:
    """List a folder."""
    entries = await printer.files.list(path)
    if as_json:
        for entry in entries:
            emit(entry, True)
        return
    for e in entries:
        size = "<dir>" if e.is_dir else f"{e.size or 0:>10}"
        click.echo(f"{size}  {e.modified.strftime('%Y-%m-%d %H:%M') if e.modified else '':16}  {e.path}")


@files.command("get")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save it (default: its name, in the current folder).")
@click.option("--force", is_flag=True, help="Replace a local file of the same name.")
@printer_options
@with_printer
async def files_get(printer: Printer, remote: str, local: Path | None, output: Path | None, force: bool,
                    as_json: bool) -> None:
    """Download a file (an existing local file is kept unless --force)."""
    if local is not None and output is not None:
        raise click.UsageError("give the local name once: as LOCAL or as --output")
    target = output or local or Path(remote.rsplit("/", 1)[-1])
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists: add --force to replace it, or choose another with -o")
    await printer.files.download(remote, target)
    emit({"ok": True, "remote": remote, "local": str(target), "size": target.stat().st_size}, as_json,
         lambda d: f"{d['remote']} -> {d['local']} ({d['size']} bytes)")


@files.command("rm")
@click.argument("remote")
@printer_options
@with_printer
async def files_rm(printer: Printer, remote: str, as_json: bool) -> None:
    """Delete a file."""
    await printer.files.delete(remote)
    emit({"ok": True, "deleted": remote}, as_json, lambda d: f"deleted {d['deleted']}")


def _progress_bar(description: str, total: int, enabled: bool) -> tuple[Any, Callable[[int, int | None], None]]:
    if not enabled:
        return contextlib.nullcontext(), lambda sent, total_: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True)
    task = bar.add_task(description, total=total)
    return bar, lambda sent, total_: bar.update(task, completed=sent)


@click.command()
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("remote", required=False)
@printer_options
@with_printer
async def upload(printer: Printer, local: Path, remote: str | None, as_json: bool) -> None:
    """Upload a file to the printer (verified by size)."""
    bar, progress = _progress_bar(f"upload {local.name}", local.stat().st_size, not as_json and sys.stderr.isatty())
    with bar:
        result = await printer.files.upload(local, remote or f"/{local.name}", progress=progress)
    emit({"ok": True, "remote": result.path, "size": result.size}, as_json,
         lambda d: f"uploaded {d['remote']} ({d['size']} bytes, verified)")


@click.command("print")
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--plate", default=1, show_default=True)
@click.option("--ams", "ams", default="auto", show_default=True,
              help="'auto' (match filaments to loaded trays), 'none', or tray indexes like 0,2.")
@click.option("--timelapse", is_flag=True)
@click.option("--no-bed-leveling", is_flag=True)
@printer_options
@with_printer
async def print_(printer: Printer, local: Path, plate: int, ams: str, timelapse: bool, no_bed_leveling: bool,
                 as_json: bool) -> None:
    """Upload a sliced 3MF and start printing it."""
    mapping: str | list[int] | None
    if ams == "auto":
        mapping = "auto"
    elif ams == "none":
        mapping = None
    else:
        try:
            mapping = [int(x) for x in ams.split(",")]
        except ValueError:
            raise click.BadParameter("use auto, none or comma-separated tray numbers", param_hint="--ams") from None
    bar, progress = _progress_bar(f"upload {local.name}", local.stat().st_size, not as_json and sys.stderr.isatty())
    with bar:
        job = await printer.print_file(local, plate=plate, ams_mapping=mapping, use_ams=ams != "none",
                                       timelapse=timelapse, bed_leveling=not no_bed_leveling, progress=progress)
    state = printer.status.job.state.value
    emit({"ok": True, "job": job, "gcode_state": state}, as_json, lambda d: f"printing {local.name}: {state}")


# --- camera


@click.group()
def camera() -> None:
    """The printer's camera."""


@camera.command("snapshot")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("snapshot.jpg"),
              show_default=True)
@printer_options
@with_printer
async def camera_snapshot(printer: Printer, output: Path, as_json: bool) -> None:
    """Save one picture as JPEG."""
    data = await printer.camera.snapshot()
    output.write_bytes(data)
    emit({"ok": True, "file": str(output), "size": len(data)}, as_json, lambda d: f"saved {d['file']}")


@camera.command("stream")
@click.option("--frames", "count", type=int, default=0, help="Stop after this many frames (0: until Ctrl-C).")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("frames"),
              show_default=True)
@printer_options
@with_printer
async def camera_stream(printer: Printer, count: int, output_dir: Path, as_json: bool) -> None:
    """Save frames as they arrive (P1/A1), or print the RTSP URL (X1/H2, credentials not shown)."""
    cam = printer.camera
    if cam.kind.value == "rtsp":
        emit({"rtsp_url": cam.rtsp_url()}, as_json, lambda d: d["rtsp_url"])
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    saved = 0
    async for frame in cam.frames():
        path = output_dir / f"frame-{frame.index:06d}.jpg"
        path.write_bytes(frame.jpeg)
        saved += 1
        emit({"file": str(path), "size": len(frame.jpeg)}, as_json, lambda d: d["file"])
        if count and saved >= count:
            break


# --- config


@click.group()
def config() -> None:
    """Printer profiles in the config file."""


@config.command("add")
@click.argument("name")
@click.option("--host", required=True, help="Printer address.")
@click.option("--serial", required=True, help="Printer serial (on the printer's screen or label).")
@click.option("--port", type=int, default=8883, show_default=True, help="MQTT port.")
@click.option("--ftps-port", type=int, default=990, show_default=True, help="FTPS port.")
@click.option("--camera-port", type=int, help="Camera port (default: by model, 6000 or 322).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust this CA instead of Bambu's bundled one (a virtual printer's: bambu sim --write-ca).")
@click.option("--insecure", is_flag=True, help="Do not check the printer's certificate (not recommended).")
@click.option("--access-code-stdin", is_flag=True, help="Read the access code from standard input.")
@click.option("--default", "make_default", is_flag=True, help="Make it the default printer.")
@click.option("--force", is_flag=True, help="Replace a profile of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the saved profile as JSON (without the code).")
def config_add(name: str, host: str, serial: str, port: int, ftps_port: int, camera_port: int | None,
               ca_file: Path | None, insecure: bool, access_code_stdin: bool, make_default: bool, force: bool,
               as_json: bool) -> None:
    """Add a printer profile. The access code is asked for (not echoed), or read from standard
    input, and the file is written with mode 0600."""
    if ca_file is not None and insecure:
        raise click.UsageError("--ca-file and --insecure contradict each other: choose one")
    profiles, _ = load_profiles()
    if name in profiles and not force:
        raise click.ClickException(f"a profile named {name!r} exists in {config_path()}: add --force to replace it")
    code = sys.stdin.readline().strip() if access_code_stdin else ask_secret("Access code")
    if not code:
        raise click.UsageError("no access code on standard input")
    profile = PrinterProfile.from_mapping(name, {
        "host": host, "serial": serial, "access_code": code, "port": port, "ftps_port": ftps_port,
        "camera_port": camera_port, "ca_file": str(ca_file.resolve()) if ca_file else None, "insecure": insecure,
    })
    path = save_profile(profile, make_default=make_default)
    _, default = load_profiles(path)
    emit({"saved": name, "path": str(path), "default": default == name, **profile.to_dict()}, as_json,
         lambda d: f"saved {name!r} to {d['path']}" + (" (the default printer)" if d["default"] else ""))


@config.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def config_remove(name: str, as_json: bool) -> None:
    """Remove a printer profile."""
    path = remove_profile(name)
    _, default = load_profiles(path)
    emit({"removed": name, "path": str(path), "default": default}, as_json,
         lambda d: f"removed {name!r} from {d['path']}" + (f"; the default is now {default!r}" if default else ""))


@config.command("list")
@click.option("--json", "as_json", is_flag=True)
def config_list(as_json: bool) -> None:
    """List profiles (without access codes)."""
    profiles, default = load_profiles()
    for name, profile in profiles.items():
        data = {"name": name, "default": name == default, **profile.to_dict()}
        emit(data, as_json, lambda d: f"{'*' if d['default'] else ' '} {d['name']}: {d['host']} {d['serial']}")


def register(group: click.Group) -> None:
    for command in (discover, status, monitor, pause, resume, stop, light, temp, fan, gcode, files, upload,
                    print_, camera, config):
        group.add_command(command)
