"""The proxy's test bench: a simulator, the fake cloud (two accounts) and proxies in front of it.

Everything runs on one event loop in a background thread; tests talk to it over real sockets on
127.0.0.1 with a blocking HTTP client. The stack is started once per test module; each test
builds the proxies it needs (cheap) with :meth:`Stack.proxy`, which are stopped at the end.
An *echo* upstream (a tiny Starlette app, also over real sockets) answers what it was sent, for
the fidelity tests of full mode that the fake cloud's fixed routes cannot show.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bambulab.cloud.tokens import TokenManager
from bambulab.servers.proxy import ProxyApp, ProxyConfig, ProxyServer
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.cloud import Account, FakeCloud
from bambulab.sim.cloud_http import HttpServer

T = TypeVar("T")

ADMIN = "admin-token-for-the-tests-0123456789"
BROKER_NAME = "us.mqtt.bambulab.com"


async def _echo(request: Request) -> Response:
    body = await request.body()
    status = int(request.query_params.get("status", "200"))
    headers = {"cache-control": "max-age=7", "x-upstream": "echo", "retry-after": "3",
               "connection": "x-secret-hop", "x-secret-hop": "dropped", "set-cookie": "session=abc",
               "access-control-allow-origin": "*"}  # the upstream's CORS: never the proxy's
    payload = {
        "method": request.method, "path": request.url.path, "query": request.url.query,
        "query_items": list(request.query_params.multi_items()), "body": body.decode("latin-1"),
        "content_type": request.headers.get("content-type"), "authorization": request.headers.get("authorization"),
        "headers": sorted(request.headers.keys()),
    }
    return JSONResponse(payload, status_code=status, headers=headers)


async def _big(request: Request) -> Response:
    size = int(request.query_params["size"])

    async def chunks() -> AsyncIterator[bytes]:
        block = bytes(range(256)) * 256  # 64 KiB
        sent = 0
        while sent < size:
            part = block[: min(len(block), size - sent)]
            sent += len(part)
            yield part
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def _upload(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"received": size, "content_type": request.headers.get("content-type"),
                         "content_length": request.headers.get("content-length")})


def echo_app() -> Starlette:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[
        Route("/big", _big, methods=["GET"]),
        Route("/upload", _upload, methods=["PUT", "POST"]),
        Route("/{rest:path}", _echo, methods=methods),
    ])


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """asyncio's loop, or uvloop's (what ``bambu proxy`` runs on when it is installed)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Stack:
    def __init__(self, tmp: Path, loop: str = "asyncio") -> None:
        self.tmp = tmp
        self.loop = _new_loop(loop)
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxy-stack", daemon=True)
        self._thread.start()
        self.sim = Simulator(time_scale=1.0, seed=11)
        self.cloud = FakeCloud(self.sim, seed=12)
        self.echo = HttpServer(echo_app(), "127.0.0.1", 0, None)
        self._servers: list[ProxyServer] = []
        self.call(self.sim.start())
        self.call(self.cloud.start())
        self.call(self.echo.start())
        self.printers = [self.call(self.sim.add_printer(model=m, quirks={"push_interval": 0.2}))
                         for m in ("P1S", "X1C", "A1")]

        async def setup() -> tuple[Account, Account, str, str]:
            alice = self.cloud.add_account("alice@example.com", "pw-alice")
            bob = self.cloud.add_account("bob@example.com", "pw-bob")
            self.cloud.bind(alice, self.printers[0])
            self.cloud.bind(alice, self.printers[1])
            self.cloud.bind(bob, self.printers[2])
            return alice, bob, self.cloud.issue_token(alice), self.cloud.issue_token(bob)

        self.alice, self.bob, self.alice_real, self.bob_real = self.call(setup())
        self.mqtt_ctx = ssl.create_default_context(cadata=self.cloud.ca_pem.decode())

    @property
    def echo_url(self) -> str:
        return f"http://127.0.0.1:{self.echo.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def do(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()

        return self.call(run())

    def tokens(self, name: str = "tokens.json") -> TokenManager:
        path = self.tmp / name
        if path.exists():
            path.unlink()
        return TokenManager(path)

    def proxy(self, tokens: TokenManager, **config: Any) -> tuple[ProxyApp, str]:
        """A running proxy (stopped with the stack); returns the app and its base URL."""
        config.setdefault("upstream", self.cloud.api_url)
        config.setdefault("mqtt_host", "127.0.0.1")
        config.setdefault("mqtt_port", self.cloud.mqtt_port)
        config.setdefault("mqtt_ssl_context", self.mqtt_ctx)
        config.setdefault("mqtt_server_hostname", BROKER_NAME)
        config.setdefault("access_log", io.StringIO())

        async def start() -> tuple[ProxyApp, str]:
            app = ProxyApp(ProxyConfig(tokens, **config))
            server = ProxyServer(app)
            await server.start()
            self._servers.append(server)
            return app, server.url

        return self.call(start())

    def log_lines(self, app: ProxyApp) -> list[dict[str, Any]]:
        stream = app.config.access_log
        assert isinstance(stream, io.StringIO)
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    def requests(self) -> list[Any]:
        return list(self.do(self.cloud.request_log))

    def clear(self) -> None:
        self.do(self.cloud.clear_request_log)

    def add_printer(self, **config: Any) -> VirtualPrinter:
        return self.call(self.sim.add_printer(**config))

    def close(self) -> None:
        try:
            for server in self._servers:
                self.call(server.stop())
            self.call(self.echo.stop())
            self.call(self.cloud.stop())
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def raw_request(base_url: str, method: str, target: bytes, headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request with the request target exactly as given (no client-side normalisation)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    lines = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {parts.hostname}:{parts.port}".encode(),
             b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    head, _, rest = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, rest
