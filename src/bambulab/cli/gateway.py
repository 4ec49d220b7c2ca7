"""``bambu gateway``: the farm gateway (one connection per printer, JSON/SSE/legacy routes).

    bambu gateway --demo                      # virtual printers in-process, loopback only
    bambu gateway --config farm.toml          # a real farm (see docs/gateway.md)
    bambu gateway --new-token                 # a fresh API token and its [[tokens]] entry

SIGTERM/SIGINT stop it (event streams end, services flush, every connection closes, within
5 s); SIGHUP reloads the config file, touching only the printers that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from pathlib import Path

import click

from bambulab.config import ConfigError

__all__ = ["gateway"]

log = logging.getLogger("bambulab.gateway")


@click.command("gateway")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="BAMBU_GATEWAY_CONFIG", help="The farm's TOML file (see docs/gateway.md).")
@click.option("--host", default=None, help="Address to listen on (default from the config, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default from the config, else 8080; 0 picks a free one).")
@click.option("--demo", is_flag=True, help="Serve a farm of virtual printers (in this process, loopback only).")
@click.option("--demo-printers", type=click.IntRange(1, 500), default=6, show_default=True,
              help="How many virtual printers --demo starts.")
@click.option("--new-token", is_flag=True, help="Print a new random API token and its [[tokens]] entry, then exit.")
@click.option("--hash-token", is_flag=True, help="Read a token on stdin and print its [[tokens]] entry, then exit.")
def gateway(config_file: Path | None, host: str | None, port: int | None, demo: bool, demo_printers: int,
            new_token: bool, hash_token: bool) -> None:
    """Run the farm gateway: one connection per printer, served to everyone else."""
    from bambulab.farm.config import hash_token as digest

    if new_token or hash_token:
        token = secrets.token_urlsafe(32) if new_token else sys.stdin.readline().strip()
        if not token:
            raise click.UsageError("no token on stdin")
        if new_token:
            click.echo(f"token (give it to the client; it is not stored anywhere): {token}")
        click.echo(f'[[tokens]]\nlabel = "client"\nsha256 = "{digest(token)}"')
        return
    if config_file is None and not demo:
        raise click.UsageError("give --config farm.toml (see docs/gateway.md), or --demo to try it")
    asyncio.run(_serve(config_file, host, port, demo, demo_printers))


async def _serve(config_file: Path | None, host: str | None, port: int | None, demo: bool, count: int) -> None:
    from bambulab.farm.config import GatewayConfig, load_config
    from bambulab.servers.gateway import Gateway
    from bambulab.servers.gateway.app import check_bind, create_app, start_server

    cfg = load_config(config_file) if config_file is not None else GatewayConfig()
    host = host or cfg.host
    gw = Gateway(cfg)
    check_bind(gw, host)
    if demo:
        from bambulab.farm.demo import DemoFarm

        farm = DemoFarm(count)
        gw.extras["demo"] = farm
        cfg.printers.extend(await farm.start())
    app = create_app(gw)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        if config_file is None:
            log.warning("SIGHUP: no config file to reload")
            return
        try:
            new = load_config(config_file)
        except ConfigError as exc:
            log.error("SIGHUP: the new configuration was not applied: %s", exc)
            return
        if demo:
            new.printers.extend(p for p in gw.config.printers if p.options)
        await gw.reload(new)

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    server = None
    try:
        await gw.start()
        wanted = port if port is not None else cfg.port
        try:
            server = await start_server(gw, host, wanted, app=app)
        except ConfigError:
            if not demo or port is not None:
                raise
            server = await start_server(gw, host, 0, app=app)  # the demo takes any free port
        what = f"{len(gw.fleet.members)} virtual printers" if demo else f"{len(gw.fleet.members)} printers"
        click.echo(f"bambu gateway: {server.url}  ({what}; control {'on' if gw.control_enabled else 'off'}; "
                   "Ctrl-C to stop)", err=False)
        sys.stdout.flush()
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, server.task], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        gw.fleet.end_subscriptions()  # SSE streams end now, so the HTTP server can close at once
        if server is not None:
            await server.stop(timeout=1.0)
        await gw.stop(timeout=3.0)
        logging.getLogger("bambulab.gateway").info("gateway stopped")
