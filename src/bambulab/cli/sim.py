"""``bambu sim``: run virtual printers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
import sys
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


def _status_line(printer: Any) -> str:
    dyn = printer.dynamic
    job = dyn.job
    nozzles = "/".join(f"{n.temp:.0f}" for n in dyn.nozzles)
    from bambulab.protocol.views import stage_name

    progress = (f"{job.prepare_percent:3d}% {stage_name(job.stage) or ''}" if job.gcode_state == "PREPARE"
                else f"{job.percent:3d}%")
    parts = [
        f"{printer.name} [{printer.model.name}]",
        f"{job.gcode_state:<8}",
        progress,
        f"layer {job.layer}/{job.total_layers}",
        f"nozzle {nozzles}°C bed {dyn.bed.temp:.0f}°C",
        f"{printer.mqtt.client_count} client(s)",
    ]
    if job.remaining_minutes:
        parts.insert(4, f"{job.remaining_minutes} min left")
    return "  ".join(parts)


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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per printer, then stay quiet.")
@click.option("--no-watch", is_flag=True, help="Do not show the live status line.")
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
) -> None:
    """Run virtual printers that speak the real LAN protocols.

    Prints each printer's connection details (the access codes are the virtual printers' own),
    then keeps them running until Ctrl-C.
    """
    model_list = [m.strip() for m in models.split(",") if m.strip()]
    if not model_list:
        raise click.BadParameter("at least one model", param_hint="--models")
    asyncio.run(
        _run(
            count=count, models=model_list, host=host, standard_ports=standard_ports,
            time_scale=time_scale, demo=demo, demo_all=demo_all, quirks=_parse_quirks(quirks),
            ssdp_target=_parse_hostport(ssdp_target), ssdp_listen=_parse_hostport(ssdp_listen),
            write_ca=write_ca, seed=seed, duration=duration, as_json=as_json,
            watch=not (as_json or no_watch),
        )
    )


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
) -> None:
    from bambulab.protocol.models import CameraKind, model_by_code
    from bambulab.sim.simulator import Simulator

    _raise_fd_limit()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async with Simulator(time_scale=time_scale, host=host, ssdp_target=ssdp_target,
                         ssdp_listen=ssdp_listen, seed=seed) as simulator:
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
        if write_ca is not None:
            simulator.write_ca(write_ca)

        printers = simulator.printers
        for p in printers:
            details = p.info(include_secrets=True)
            if as_json:
                click.echo(json.dumps(details, separators=(",", ":")))
            else:
                click.echo(
                    f"{details['serial']}  {details['model']:<8} {details['name']!r:<22} "
                    f"mqtts://{details['host']}:{details['mqtt_port']}  "
                    f"ftps://{details['host']}:{details['ftps_port']}  "
                    f"camera({details['camera']})={details['camera_port']}  "
                    f"access code {details['access_code']}"
                )
        sys.stdout.flush()

        if (demo or demo_all) and printers:
            from bambulab.sim.demo import demo_project

            project = demo_project()
            for printer in printers if demo_all else printers[:1]:
                printer.put_file("demo.gcode.3mf", project)
                await printer.start_print("demo.gcode.3mf")

        deadline = loop.time() + duration if duration else None
        while not stop.is_set():
            if deadline is not None and loop.time() >= deadline:
                break
            if watch and printers:
                click.echo("\r" + _status_line(printers[0]).ljust(110), nl=False)
            with contextlib.suppress(TimeoutError):
                timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - loop.time()))
                await asyncio.wait_for(stop.wait(), timeout=timeout)
        if watch:
            click.echo("")
