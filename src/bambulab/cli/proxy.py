"""``bambu proxy strict|full`` (the cloud API proxy) and ``bambu proxy tokens ...`` (its custom tokens).

The proxy binds 127.0.0.1 unless ``--host`` says otherwise, and refuses any other address unless
it serves TLS itself (``--tls-cert``/``--tls-key``) or ``--behind-tls-proxy`` says a reverse proxy
in front of it terminates TLS. The admin endpoints are on only with an admin token
(``--admin-token-file`` or ``BAMBU_PROXY_ADMIN_TOKEN``). The token file defaults to
``proxy-tokens.json`` beside the config file (``--tokens`` / ``BAMBU_PROXY_TOKENS``).

``bambu proxy tokens add`` maps a new custom token to the real token of ``bambu login`` (or the
one given on standard input with ``--real-token-stdin``) and prints the custom token once;
``list`` never prints a secret; ``revoke NAME``; ``import OLD.json`` reads the older package's
``proxy_tokens.json`` and stores its tokens hashed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from bambulab.cli.common import emit, token_path
from bambulab.config import config_path
from bambulab.transports.tls import cloud_ssl_context

__all__ = ["proxy"]

PORTS = {"strict": 5001, "full": 5003}


def _tokens_path(option: str | None) -> Path:
    if option:
        return Path(option).expanduser()
    return config_path().parent / "proxy-tokens.json"


tokens_option = click.option(
    "--tokens", "tokens_file", envvar="BAMBU_PROXY_TOKENS", type=click.Path(dir_okay=False),
    help="The custom-token file (default: proxy-tokens.json beside the config file; BAMBU_PROXY_TOKENS).",
)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _duration(text: str) -> float:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not found:
        raise click.BadParameter("use a number with s, m, h, d or w (30d, 12h)")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[found.group(2)]
    return float(found.group(1)) * scale


@click.group()
def proxy() -> None:
    """The cloud API proxy: strict (read-only allowlist) or full, behind custom tokens."""


def _serve(mode: str, **opts: Any) -> None:
    from bambulab.cloud.tokens import TokenManager
    from bambulab.servers.proxy import ProxyApp, ProxyConfig, ProxyServer

    host: str = opts["host"]
    tls = opts["tls_cert"] is not None
    if tls != (opts["tls_key"] is not None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if not _loopback(host) and not tls and not opts["behind_tls_proxy"]:
        raise click.UsageError(
            f"refusing to serve custom tokens in clear on {host}: give --tls-cert/--tls-key, or "
            "--behind-tls-proxy when a reverse proxy in front of this one terminates TLS")
    admin = os.environ.get("BAMBU_PROXY_ADMIN_TOKEN") or None
    if opts["admin_token_file"]:
        admin = Path(opts["admin_token_file"]).expanduser().read_text(encoding="utf-8").strip() or None
    tokens = TokenManager(_tokens_path(opts["tokens_file"]))
    if len(tokens) == 0:
        click.echo(f"note: {tokens.path} has no tokens yet: add one with bambu proxy tokens add", err=True)
    upstream_ctx = cloud_ssl_context(ca_file=opts["ca_file"]) if opts["ca_file"] else None
    mqtt_ctx = cloud_ssl_context(ca_file=opts["mqtt_ca_file"]) if opts["mqtt_ca_file"] else None
    try:
        config = ProxyConfig(
            tokens, mode=mode, upstream=opts["upstream"], upstream_ssl_context=upstream_ctx, admin_token=admin,
            cache=not opts["no_cache"], rate_limit=not opts["no_rate_limit"], mqtt_host=opts["mqtt_host"],
            mqtt_port=opts["mqtt_port"], mqtt_ssl_context=mqtt_ctx, mqtt_server_hostname=opts["mqtt_server_name"],
            realtime_idle=opts["idle_timeout"], cors_origins=tuple(opts["cors_origin"]),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    log_stream = None
    if opts["access_log"] == "-":
        log_stream = sys.stdout
    elif opts["access_log"]:
        log_stream = Path(opts["access_log"]).expanduser().open("a", encoding="utf-8")
    config.access_log = log_stream
    port = opts["port"] if opts["port"] is not None else PORTS[mode]
    server = ProxyServer(ProxyApp(config), host=host, port=port, certfile=opts["tls_cert"],
                         keyfile=opts["tls_key"], handle_signals=True,
                         forwarded_allow_ips=opts["forwarded_allow_ips"])

    async def run() -> None:
        await server.start()
        click.echo(f"bambu proxy ({mode}) on {server.url} -> {config.upstream}; "
                   f"{len(tokens)} token(s), admin {'on' if admin else 'off'}", err=True)
        await server.wait()

    try:
        with asyncio.Runner(loop_factory=_loop_factory(opts["loop"])) as runner:
            runner.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        if log_stream is not None and log_stream is not sys.stdout:
            log_stream.close()


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked, or with ``auto`` when it is installed (the ``server`` extra, not on Windows).

    Why: the proxy's CPU per request is mostly event-loop and socket work, and uvloop does that
    in C (measured with ``bench/proxy_load.py``: about a tenth less CPU per uncached request and
    a sixth less per cached one).
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise click.UsageError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def _serve_options(func: Any) -> Any:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
        click.option("--port", type=int, default=None, help="Port (default: 5001 strict, 5003 full)."),
        click.option("--upstream", default="global", show_default=True, envvar="BAMBU_PROXY_UPSTREAM",
                     help="global, china, or the URL of the cloud API (BAMBU_PROXY_UPSTREAM)."),
        tokens_option,
        click.option("--admin-token-file", type=click.Path(exists=True, dir_okay=False),
                     help="File holding the admin token (or BAMBU_PROXY_ADMIN_TOKEN); without one the "
                          "admin endpoints are off."),
        click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS: certificate."),
        click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS: private key."),
        click.option("--behind-tls-proxy", is_flag=True,
                     help="Allow a non-loopback bind without TLS: a reverse proxy in front terminates it."),
        click.option("--forwarded-allow-ips", default=None,
                     help="Trust X-Forwarded-For from these addresses (the reverse proxy's), for the log."),
        click.option("--access-log", default=None, help="Append JSON lines to this file ('-': stdout)."),
        click.option("--cors-origin", multiple=True, metavar="ORIGIN",
                     help="Let web pages of this origin (https://dash.example) call the proxy; repeatable."),
        click.option("--no-cache", is_flag=True, help="Never answer from the cache."),
        click.option("--no-rate-limit", is_flag=True, help="No per-account budgets (upstream 429s still back off)."),
        click.option("--idle-timeout", type=float, default=120.0, show_default=True,
                     help="Seconds before an unused real-time session is closed."),
        click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                     help="CA bundle for the upstream's certificate (a fake cloud)."),
        click.option("--mqtt-host", envvar="BAMBU_CLOUD_MQTT_HOST", default=None,
                     help="Cloud MQTT broker for real-time data (BAMBU_CLOUD_MQTT_HOST; default: the region's)."),
        click.option("--mqtt-port", envvar="BAMBU_CLOUD_MQTT_PORT", type=int, default=8883, show_default=True,
                     help="The broker's port (BAMBU_CLOUD_MQTT_PORT)."),
        click.option("--mqtt-ca-file", envvar=["BAMBU_CLOUD_MQTT_CA_FILE", "BAMBU_CLOUD_CA_FILE"],
                     type=click.Path(exists=True, dir_okay=False),
                     help="CA bundle for the broker's certificate (BAMBU_CLOUD_MQTT_CA_FILE or "
                          "BAMBU_CLOUD_CA_FILE, which bambu sim prints; a fake cloud)."),
        click.option("--mqtt-server-name", default=None, help="Name to check in the broker's certificate."),
        click.option("--loop", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True,
                     help="Event loop: auto takes uvloop when it is installed."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@proxy.command()
@_serve_options
def strict(**opts: Any) -> None:
    """Forward only the read-only allowlist (port 5001); access codes are removed from answers."""
    _serve("strict", **opts)


@proxy.command()
@_serve_options
def full(**opts: Any) -> None:
    """Forward every request faithfully, with the real token (port 5003)."""
    _serve("full", **opts)


# ------------------------------------------------------------------------------ tokens


@proxy.group()
def tokens() -> None:
    """Manage the proxy's custom tokens (the file is 0600; custom tokens are stored hashed)."""


def _manager(tokens_file: str | None) -> Any:
    from bambulab.cloud.tokens import TokenManager

    return TokenManager(_tokens_path(tokens_file))


def _info(info: Any) -> dict[str, Any]:
    return asdict(info)


@tokens.command("add")
@tokens_option
@click.option("--name", default=None, help="A label for the token (unique).")
@click.option("--scope", type=click.Choice(["strict", "full"]), default="strict", show_default=True,
              help="strict: only the read-only allowlist, even on a full proxy.")
@click.option("--expires", "expires_in", default=None, help="Lifetime: 30d, 12h, 90m ...")
@click.option("--real-token-stdin", is_flag=True, help="Read the real Bambu token from standard input.")
@click.option("--token-file", envvar="BAMBU_TOKEN_FILE", type=click.Path(dir_okay=False),
              help="The login's token file to take the real token from (default: bambu login's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def tokens_add(tokens_file: str | None, name: str | None, scope: str, expires_in: str | None,
               real_token_stdin: bool, token_file: str | None, as_json: bool) -> None:
    """Create a custom token for your account; it is printed once, here."""
    if real_token_stdin:
        real = sys.stdin.readline().strip()
    else:
        from bambulab.cloud.auth import load_token

        saved = load_token(token_path(token_file))
        if saved is None:
            raise click.UsageError("no saved login: run bambu login, or pass --real-token-stdin")
        real = saved.access_token
    expires = time.time() + _duration(expires_in) if expires_in else None
    manager = _manager(tokens_file)
    custom = manager.add(real, name=name, scope=scope, expires=expires)
    grant = manager.lookup(custom, touch=False)
    info = next(i for i in manager.list() if i.name == grant.name)
    data = {"token": custom, **_info(info)}
    emit(data, as_json, lambda d: f"{d['name']} ({d['scope']}): {d['token']}\n"
                                  "shown only this once: give it to the client now")


@tokens.command("list")
@tokens_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tokens_list(tokens_file: str | None, as_json: bool) -> None:
    """Names, scopes, expiry and last use: never a token."""
    infos = _manager(tokens_file).list()
    if as_json:
        for info in infos:
            emit(_info(info), True)
        return
    if not infos:
        click.echo("no tokens")
        return
    for info in infos:
        expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.expires)) if info.expires else "never"
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.last_used)) if info.last_used else "never"
        click.echo(f"{info.name:<20} {info.scope:<6} expires {expires:<16} last used {used}")


@tokens.command("revoke")
@tokens_option
@click.argument("name")
def tokens_revoke(tokens_file: str | None, name: str) -> None:
    """Remove the token with this name."""
    if not _manager(tokens_file).remove(name):
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"revoked {name}")


@tokens.command("import")
@tokens_option
@click.argument("old_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--scope", type=click.Choice(["strict", "full"]), default="strict", show_default=True)
def tokens_import(tokens_file: str | None, old_file: str, scope: str) -> None:
    """Import the older package's proxy_tokens.json (custom tokens hashed on the way in)."""
    manager = _manager(tokens_file)
    count = manager.import_legacy(old_file, scope=scope)
    click.echo(f"imported {count} token(s) into {manager.path} (scope {scope}); "
               f"{old_file} still holds them in clear: delete it once clients work")


def register(group: click.Group) -> None:
    group.add_command(proxy)
