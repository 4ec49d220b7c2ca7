"""The ``bambu`` command."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from bambulab import __version__
from bambulab.exceptions import BambuError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Errors become one clean line on stderr (a traceback only with ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except (BambuError, OSError, ValueError, KeyError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="bambu")
@click.option("--debug", is_flag=True, envvar="BAMBU_DEBUG", help="Verbose logs and full tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Talk to Bambu Lab printers: LAN, cloud, farm gateway and virtual printers."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        # amqtt logs every client reset at ERROR; a simulator user does not need to see them.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _register() -> None:
    from bambulab.cli import cloud, lan
    from bambulab.cli.sim import sim

    cli.add_command(sim)
    cli.add_command(importlib.import_module("bambulab.cli.gateway").gateway)
    cli.add_command(importlib.import_module("bambulab.cli.history").history)
    lan.register(cli)
    cloud.register(cli)


_register()


def main() -> None:
    cli(prog_name="bambu")


if __name__ == "__main__":  # pragma: no cover
    main()
