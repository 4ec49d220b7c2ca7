"""The gateway's Starlette app and the server that runs it.

:func:`create_app` builds the app from route lists: each module listed in :data:`ROUTE_MODULES` exposes
``routes(gateway)`` and registers its services with ``gateway.add_service``. :func:`start_server` runs the app with
uvicorn on a socket it binds itself (port 0 picks a free one), without uvicorn's signal handlers:
the caller (``bambu gateway``) owns SIGTERM/SIGINT/SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from bambulab.config import ConfigError
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway._http import error

__all__ = ["ROUTE_MODULES", "RunningServer", "create_app", "is_loopback", "start_server"]

log = logging.getLogger("bambulab.gateway")

#: Modules with ``routes(gateway)``, in matching order: the read API, then history, metrics,
#: external MQTT publishing (its ``routes`` only registers the service), camera and dashboard.
ROUTE_MODULES: list[str] = [
    "bambulab.servers.gateway.legacy",
    "bambulab.servers.gateway.api",
    "bambulab.servers.gateway.sse",
    "bambulab.servers.gateway.control",
    "bambulab.servers.gateway.history",
    "bambulab.servers.gateway.metrics",
    "bambulab.servers.gateway.publish",
    "bambulab.servers.gateway.camera",
    "bambulab.servers.gateway.dashboard",
]


class _Timing:
    """Request latency for the metrics (``gateway.request_seconds`` observers) and a guard that
    turns an unexpected exception into a JSON 500 without details."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = False

        async def tracking_send(message: Any) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                sent = True
                observers = self.gateway.request_observers
                if observers:
                    elapsed = time.perf_counter() - started
                    for observe in observers:
                        observe(scope, message["status"], elapsed)
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not sent:
                response = error(500, "internal_error", "the gateway failed to answer this request")
                await response(scope, receive, send)


def create_app(gateway: Gateway, modules: list[str] | None = None) -> Starlette:
    """The ASGI app over ``gateway`` (which the caller starts and stops)."""
    routes: list[BaseRoute] = []
    for name in modules if modules is not None else ROUTE_MODULES:
        routes.extend(importlib.import_module(name).routes(gateway))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, "not_found", f"no route {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    app = Starlette(
        routes=routes,
        middleware=[*(Middleware(cls, **kw) for cls, kw in gateway.middleware), Middleware(_Timing, gateway=gateway)],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.gateway = gateway
    return app


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(gateway: Gateway, host: str) -> None:
    """Refuse a non-loopback address unless API tokens are configured."""
    if not is_loopback(host) and not gateway.config.tokens:
        raise ConfigError(
            f"refusing to listen on {host}: only loopback is allowed without API tokens. Add a [[tokens]] "
            "entry to the config (`bambu gateway --hash-token` makes one), or listen on 127.0.0.1 behind a "
            "reverse proxy"
        )


class RunningServer:
    """A uvicorn server on its own socket; :meth:`stop` ends it."""

    def __init__(self, server: Any, task: asyncio.Task[None], sock: socket.socket) -> None:
        self.server = server
        self.task = task
        self.socket = sock
        host, port = sock.getsockname()[:2]
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        self.server.should_exit = True
        try:
            async with asyncio.timeout(timeout + 1.0):
                await asyncio.shield(self.task)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(OSError):
            self.socket.close()


async def start_server(
    gateway: Gateway, host: str = "127.0.0.1", port: int = 0, *, app: Any = None, access_log: bool = False
) -> RunningServer:
    """Bind ``host:port`` and serve the gateway's app until :meth:`RunningServer.stop`."""
    import uvicorn

    check_bind(gateway, host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    sock.setblocking(False)

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the caller owns the signals
            yield

    config = uvicorn.Config(
        app or create_app(gateway), log_level="warning", access_log=access_log, lifespan="off",
        timeout_graceful_shutdown=1, ws="auto",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="bambulab-gateway-http")
    while not server.started:
        if task.done():
            task.result()
            raise ConfigError("the HTTP server stopped at start-up")
        await asyncio.sleep(0.01)
    return RunningServer(server, task, sock)


#: Something that observes ``(scope, status, seconds)`` for every request (the metrics).
RequestObserver = Callable[[Scope, int, float], None]

