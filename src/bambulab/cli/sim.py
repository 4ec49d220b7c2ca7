"""``bambu sim``: run virtual printers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import shlex
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = ["sim"]

DEFAULT_MODELS = "P1S,X1C,A1,A1 mini,H2D,P1P"


def _parse_hostport(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _parse_quirks(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            with contextlib.suppress(ValueError):
                value = float(raw) if "." in raw else int(raw)
        out[key.strip()] = value
    return out


def _raise_fd_limit() -> None:
    """Each printer holds several sockets; lift the soft descriptor limit to the hard one."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: How many printers the live table shows (a farm's first ones; the rest are counted).
LIVE_ROWS = 8


def _progress(job: Any) -> str:
    from bambulab.protocol.views import stage_name

    if job.gcode_state == "PREPARE":
        return f"{job.prepare_percent}% {stage_name(job.stage) or ''}".strip()
    return f"{job.percent}%"


def status_table(printers: list[Any], *, limit: int = LIVE_ROWS) -> Any:
    """The live view of the first ``limit`` printers: one row each, cut to the terminal's width.

    A rich table redrawn by :class:`rich.live.Live`: every redraw replaces the whole view, so a
    long PREPARE stage name leaves nothing behind when a shorter RUNNING row follows, and no
    row wraps or scrolls on a narrow terminal (cells are cut with an ellipsis).
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def cut(value: str) -> Text:  # one line, an ellipsis where the column is too narrow
        return Text(value, no_wrap=True, overflow="ellipsis")

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    # The name and progress columns give way first (they are cut); the short ones never do.
    table.add_column("printer")
    table.add_column("state", no_wrap=True)
    table.add_column("progress")
    for header in ("layer", "nozzle/bed"):
        table.add_column(header, no_wrap=True)
    table.add_column("clients", no_wrap=True, justify="right")
    for printer in printers[:limit]:
        dyn = printer.dynamic
        job = dyn.job
        nozzles = "/".join(f"{n.temp:.0f}" for n in dyn.nozzles)
        left = f" {job.remaining_minutes} min" if job.remaining_minutes and job.gcode_state != "PREPARE" else ""
        table.add_row(
            cut(printer.name),
            job.gcode_state,
            cut(_progress(job) + left),
            f"{job.layer}/{job.total_layers}",
            f"{nozzles}/{dyn.bed.temp:.0f}°C",
            str(printer.mqtt.client_count),
        )
    if len(printers) > limit:
        table.caption = f"and {len(printers) - limit} more"
    return table


@click.command()
@click.option("--printers", "-n", "count", default=3, show_default=True, type=click.IntRange(1, 5000),
              help="How many virtual printers to run.")
@click.option("--models", default=DEFAULT_MODELS, show_default=True,
              help="Comma-separated models, used in turn (P1S, P1P, X1C, X1E, A1, A1 mini, H2D, ...).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="BAMBU_SIM_HOST",
              help="Address to listen on.")
@click.option("--standard-ports", is_flag=True,
              help="Listen on the real ports (8883, 990, 6000/322), one loopback address per printer "
                   "starting at --host (binding 990 and 322 needs root).")
@click.option("--time-scale", default=1.0, show_default=True, type=float,
              help="Simulated seconds per real second (60: a one-hour print takes a minute).")
@click.option("--demo", is_flag=True, help="Start a print on the first printer so there is something to watch.")
@click.option("--demo-all", is_flag=True, help="Start a print on every printer (a busy farm).")
@click.option("--quirk", "quirks", multiple=True, metavar="KEY=VALUE",
              help="Quirk switch for every printer, e.g. auth_mode=enforced, max_clients=2, "
                   "delta_mode=full_always, result_upper=true, tls_max_version=1.3 (FTPS offers "
                   "TLS 1.2 at most by default, as real printers do).")
@click.option("--ssdp-target", metavar="HOST:PORT", help="Send SSDP NOTIFY announcements there.")
@click.option("--ssdp-listen", metavar="HOST:PORT", help="Answer SSDP M-SEARCH there.")
@click.option("--write-ca", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CA certificate that the printers' TLS certificates chain to.")
@click.option("--seed", type=int, help="Make serials, names and access codes reproducible.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per printer (and one more for --cloud), then stay quiet.")
@click.option("--no-watch", is_flag=True, help="Do not show the live status table.")
@click.option("--write-profiles", is_flag=True,
              help="Write a client profile per virtual printer (sim-1, sim-2, ...: host, ports, CA file, "
                   "serial, access code) into the CLI's config file, so 'bambu status --printer sim-1' works "
                   "at once. The CA goes to --write-ca, else next to the config file.")
@click.option("--profile-prefix", default="sim", show_default=True, metavar="NAME",
              help="With --write-profiles: profiles are NAME-1, NAME-2, ...")
@click.option("--cloud", is_flag=True,
              help="Also run a fake Bambu cloud (HTTP API, sign-in, cloud MQTT) with one account that owns "
                   "every printer, and print the environment variables a client needs.")
@click.option("--cloud-email", default="sim@example.com", show_default=True, help="With --cloud: the account.")
@click.option("--cloud-env", type=click.Path(dir_okay=False, path_type=Path),
              help="With --cloud: also write the variables as 'export' lines to this file (mode 0600), "
                   "for 'source FILE'.")
def sim(
    count: int,
    models: str,
    host: str,
    standard_ports: bool,
    time_scale: float,
    demo: bool,
    demo_all: bool,
    quirks: tuple[str, ...],
    ssdp_target: str | None,
    ssdp_listen: str | None,
    write_ca: Path | None,
    seed: int | None,
    duration: float | None,
    as_json: bool,
    no_watch: bool,
    write_profiles: bool,
    profile_prefix: str,
    cloud: bool,
    cloud_email: str,
    cloud_env: Path | None,
) -> None:
    """Run virtual printers that speak the real LAN protocols.

    Prints each printer's connection details (the access codes are the virtual printers' own),
    then keeps them running until Ctrl-C. With --cloud, a fake cloud runs beside them.
    """
    model_list = [m.strip() for m in models.split(",") if m.strip()]
    if not model_list:
        raise click.BadParameter("at least one model", param_hint="--models")
    if write_profiles and count > MAX_PROFILES:
        raise click.BadParameter(f"writes at most {MAX_PROFILES} profiles", param_hint="--write-profiles")
    if cloud_env is not None and not cloud:
        raise click.BadParameter("needs --cloud", param_hint="--cloud-env")
    asyncio.run(
        _run(
            count=count, models=model_list, host=host, standard_ports=standard_ports,
            time_scale=time_scale, demo=demo, demo_all=demo_all, quirks=_parse_quirks(quirks),
            ssdp_target=_parse_hostport(ssdp_target), ssdp_listen=_parse_hostport(ssdp_listen),
            write_ca=write_ca, seed=seed, duration=duration, as_json=as_json,
            watch=not (as_json or no_watch),
            profiles=profile_prefix if write_profiles else None,
            cloud=_CloudOptions(email=cloud_email, env_file=cloud_env) if cloud else None,
        )
    )


#: ``--write-profiles`` rewrites the config file once per printer; a farm of thousands has no use for it.
MAX_PROFILES = 200


@dataclass(frozen=True)
class _CloudOptions:
    email: str
    env_file: Path | None


def write_profiles(printers: list[Any], *, prefix: str, ca_file: Path) -> list[str]:
    """Save one CLI profile per printer (through :mod:`bambulab.config`, mode 0600); their names."""
    from bambulab.config import PrinterProfile, save_profile

    names = []
    for index, printer in enumerate(printers, start=1):
        details = printer.info(include_secrets=True)
        profile = PrinterProfile(
            name=f"{prefix}-{index}", host=details["host"], serial=details["serial"],
            access_code=details["access_code"], port=details["mqtt_port"],
            ftps_port=details["ftps_port"] or 990, camera_port=details["camera_port"],
            ca_file=str(ca_file),
        )
        save_profile(profile)
        names.append(profile.name)
    return names


def cloud_environment(cloud: Any, *, token: str, uid: int, ca_file: Path) -> dict[str, str]:
    """What a client of the fake cloud needs, as the environment variables the CLI reads."""
    return {
        "BAMBU_CLOUD_API_URL": cloud.api_url,
        "BAMBU_CLOUD_WEB_URL": cloud.web_url,
        "BAMBU_CLOUD_TOKEN": token,
        "BAMBU_CLOUD_UID": str(uid),
        "BAMBU_CLOUD_MQTT_HOST": cloud.mqtt_host,
        "BAMBU_CLOUD_MQTT_PORT": str(cloud.mqtt_port),
        "BAMBU_CLOUD_CA_FILE": str(ca_file),
    }


def _export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


async def _run(
    *,
    count: int,
    models: list[str],
    host: str,
    standard_ports: bool,
    time_scale: float,
    demo: bool,
    demo_all: bool,
    quirks: dict[str, Any],
    ssdp_target: tuple[str, int] | None,
    ssdp_listen: tuple[str, int] | None,
    write_ca: Path | None,
    seed: int | None,
    duration: float | None,
    as_json: bool,
    watch: bool,
    profiles: str | None = None,
    cloud: _CloudOptions | None = None,
) -> None:
    from bambulab.protocol.models import CameraKind, model_by_code
    from bambulab.sim.simulator import Simulator

    _raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        simulator = await stack.enter_async_context(
            Simulator(time_scale=time_scale, host=host, ssdp_target=ssdp_target, ssdp_listen=ssdp_listen, seed=seed)
        )
        base = ipaddress.ip_address(host)
        for i in range(count):
            model = models[i % len(models)]
            overrides: dict[str, Any] = {"model": model}
            if quirks:
                overrides["quirks"] = dict(quirks)
            if standard_ports:
                camera = model_by_code(model).camera
                overrides.update(host=str(base + i), mqtt_port=8883, ftps_port=990,
                                 camera_port=322 if camera is CameraKind.RTSP else 6000)
            await simulator.add_printer(**overrides)
        printers = simulator.printers

        ca_file = write_ca
        if ca_file is None and profiles is not None:
            from bambulab.config import config_path

            ca_file = config_path().parent / f"{profiles}-ca.pem"
            ca_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if ca_file is None and cloud is not None:  # the cloud broker's TLS needs it; gone at exit
            ca_file = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bambu-sim-ca-"))) / "ca.pem"
        if ca_file is not None:
            ca_file = simulator.write_ca(ca_file).resolve()
        names = write_profiles(printers, prefix=profiles, ca_file=ca_file) if profiles and ca_file else []

        for index, p in enumerate(printers):
            details = p.info(include_secrets=True)
            if ca_file is not None:
                details["ca_file"] = str(ca_file)
            if names:
                details["profile"] = names[index]
            if as_json:
                click.echo(json.dumps(details, separators=(",", ":")))
            else:
                click.echo(
                    f"{details['serial']}  {details['model']:<8} {details['name']!r:<22} "
                    f"mqtts://{details['host']}:{details['mqtt_port']}  "
                    f"ftps://{details['host']}:{details['ftps_port']}  "
                    f"camera({details['camera']})={details['camera_port']}  "
                    f"access code {details['access_code']}"
                    + (f"  profile {names[index]}" if names else "")
                )
        if not as_json and ca_file is not None:
            click.echo(f"CA certificate: {ca_file}")
        if not as_json and names:
            from bambulab.config import config_path

            click.echo(f"profiles {names[0]}..{names[-1]} written to {config_path()}: "
                       f"try 'bambu status --printer {names[0]}'")

        if cloud is not None and ca_file is not None:
            await _start_cloud(stack, simulator, cloud, ca_file=ca_file, seed=seed, as_json=as_json)
        sys.stdout.flush()

        if (demo or demo_all) and printers:
            from bambulab.sim.demo import demo_project

            project = demo_project()
            for printer in printers if demo_all else printers[:1]:
                printer.put_file("demo.gcode.3mf", project)
                await printer.start_print("demo.gcode.3mf")

        await _wait(stop, printers, duration=duration, watch=watch)


async def _start_cloud(stack: contextlib.AsyncExitStack, simulator: Any, options: _CloudOptions, *,
                       ca_file: Path, seed: int | None, as_json: bool) -> None:
    from bambulab.sim.cloud import FakeCloud

    cloud = await stack.enter_async_context(FakeCloud(simulator, host=simulator.host, seed=seed))
    password = secrets.token_urlsafe(12)
    account = cloud.add_account(options.email, password)
    for printer in simulator.printers:
        cloud.bind(account, printer)
    env = cloud_environment(cloud, token=cloud.issue_token(account), uid=account.uid, ca_file=ca_file)
    if options.env_file is not None:
        from bambulab.cloud._files import write_private

        write_private(options.env_file, _export_lines(env).encode())
    if as_json:
        click.echo(json.dumps({"cloud": {**cloud.info(), "email": account.email, "password": password,
                                         "uid": account.uid, "env": env}}, separators=(",", ":")))
    else:
        click.echo(f"fake cloud: account {account.email} (password {password}) owns every printer; "
                   "a client (bambu login, bambu monitor --cloud, bambu cloud ...) needs:")
        click.echo(_export_lines(env), nl=False)
        if options.env_file is not None:
            click.echo(f"(also written to {options.env_file}: source it)")


async def _wait(stop: asyncio.Event, printers: list[Any], *, duration: float | None, watch: bool,
                console: Any = None) -> None:
    """Until Ctrl-C or ``duration``; with ``watch``, a live table redrawn in place every second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration if duration else None
    live: Any = None
    if watch and printers:
        from rich.live import Live

        live = Live(status_table(printers), console=console, auto_refresh=False, transient=False)
        live.start()
    try:
        while not stop.is_set():
            if deadline is not None and loop.time() >= deadline:
                break
            if live is not None:
                live.update(status_table(printers), refresh=True)
            with contextlib.suppress(TimeoutError):
                timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - loop.time()))
                await asyncio.wait_for(stop.wait(), timeout=timeout)
    finally:
        if live is not None:
            live.stop()
