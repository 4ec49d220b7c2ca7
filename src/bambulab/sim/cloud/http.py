"""The fake cloud's HTTP side: Starlette apps for the API host, the web host and the admin endpoint.

Each app is served in-process by uvicorn (:class:`HttpServer`) on its own port. The routes put
:class:`~bambulab.sim.cloud.FakeCloud`'s state on the wire in the shapes of the real cloud
(``docs/cloud-api.md``); faults and delays from the cloud's switches are applied by a small ASGI
middleware in front of the API and web apps.

Tokens, passwords and codes are never logged: uvicorn's access log is off and nothing here logs
request bodies or headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Generator
from html import escape
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bambulab.sim.cloud.model import CloudSwitches
from bambulab.sim.cloud.responses import error

if TYPE_CHECKING:
    from bambulab.sim.ca import LeafCertificate
    from bambulab.sim.cloud import FakeCloud

__all__ = ["HttpServer", "build_admin_app", "build_api_app", "build_web_app"]

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------- serving


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the host process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """One ASGI app served by uvicorn on the running event loop; port 0 picks a free port."""

    def __init__(self, app: ASGIApp, host: str, port: int, cert: LeafCertificate | None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = cert is not None
        self._cert = cert
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ssl_files: dict[str, Any] = {}
        if self._cert is not None:
            certfile, keyfile = self._cert.write_files()
            ssl_files = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off",
            server_header=False, timeout_graceful_shutdown=2, ws="none", **ssl_files,
        )
        server = _Server(config)
        self._task = asyncio.create_task(server.serve(), name=f"bambu-sim-cloud-http-{self.port}")
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError(f"cannot listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        self._server = server
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
        if task is not None:
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, SystemExit):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


# ---------------------------------------------------------------------- faults


def _ray() -> str:
    return secrets.token_hex(8)


def _cloudflare_block_page(host: str, ray: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>
<h2>You are unable to access {escape(host)}</h2>
<p>This website is using a security service to protect itself from online attacks. The request you
just made was refused by that service.</p>
<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by Cloudflare</p>
</div></body></html>
"""


def _cloudflare_rate_page(host: str, ray: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied | {escape(host)} used Cloudflare to restrict
access</title></head>
<body><h1>Error 1015</h1><h2>You are being rate limited</h2>
<p>The owner of {escape(host)} has limited how often you may send requests. Try again later.</p>
<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by Cloudflare</p>
</body></html>
"""


def _fault_response(switches: CloudSwitches, host: str) -> Response:
    ray = _ray()
    cf_headers = {"server": "cloudflare", "cf-ray": f"{ray}-SJC"}
    if switches.cloudflare_block:
        return HTMLResponse(_cloudflare_block_page(host, ray), status_code=403, headers=cf_headers)
    if switches.rate_limit:
        headers = {"retry-after": str(switches.retry_after)}
        if switches.rate_limit_cloudflare:
            return HTMLResponse(_cloudflare_rate_page(host, ray), status_code=429, headers={**headers, **cf_headers})
        return JSONResponse({"message": "Too Many Requests", "code": None, "error": "Too Many Requests"},
                            status_code=429, headers=headers)
    status = switches.server_error
    return error(status, "Internal Server Error" if status == 500 else "Service Unavailable")


class FaultMiddleware:
    """Applies the cloud's delay and fault switches to every request but the object store's."""

    def __init__(self, app: ASGIApp, cloud: FakeCloud) -> None:
        self.app = app
        self.cloud = cloud

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/s3/"):
            await self.app(scope, receive, send)
            return
        switches = self.cloud.switches
        if switches.delay > 0:
            await asyncio.sleep(switches.delay)
        if switches.faulty and (switches.fault_budget is None or switches.fault_budget > 0):
            response = _fault_response(switches, _host(scope))
            if switches.fault_budget is not None:
                switches.fault_budget -= 1
                if switches.fault_budget == 0:  # the budget is spent: the faults switch themselves off
                    switches.update({"cloudflare_block": False, "rate_limit": False, "server_error": 0,
                                     "fault_budget": None})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1")).split(":", 1)[0] or "api.bambulab.com"
    return "api.bambulab.com"


# ---------------------------------------------------------------------- the API host


def build_api_app(cloud: FakeCloud) -> ASGIApp:
    """Routes of ``api.bambulab.com`` (and ``.cn``), plus the presigned object store under ``/s3/``."""
    from bambulab.sim.cloud import api_account, api_devices, api_files

    routes = [*api_account.routes(cloud), *api_devices.routes(cloud), *api_files.routes(cloud)]
    return RequestLogMiddleware(FaultMiddleware(Starlette(routes=routes), cloud), cloud)


class RequestLogMiddleware:
    """Records every request that reaches the API host in :meth:`FakeCloud.request_log`."""

    def __init__(self, app: ASGIApp, cloud: FakeCloud) -> None:
        self.app = app
        self.cloud = cloud

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = None
            for name, value in scope.get("headers", []):
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    token = value[7:].decode("latin-1").strip()
            self.cloud.log_request(str(scope["method"]), str(scope.get("path", "")),
                                   bytes(scope.get("query_string", b"")).decode("latin-1"), token)
        await self.app(scope, receive, send)


def build_web_app(cloud: FakeCloud) -> ASGIApp:
    """Routes of ``bambulab.com`` the clients use: the CSRF cookie and the two-factor sign-in."""
    from bambulab.sim.cloud import web

    return web.build_web_app(cloud)


def build_admin_app(cloud: FakeCloud) -> ASGIApp:
    """The token-protected admin endpoint (switches, clock) on 127.0.0.1."""
    from bambulab.sim.cloud import web

    return web.build_admin_app(cloud)
