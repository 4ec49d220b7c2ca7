"""Serving the proxy with uvicorn, in-process (tests, ``bambu proxy``): port 0 picks a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from types import TracebackType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bambulab.servers.proxy.app import ProxyApp
from bambulab.transports.coalesce import CoalescingTransport

__all__ = ["ProxyServer"]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers when embedded (the host process owns its signals)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol over a transport that sends a response's head and body as one."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


class ProxyServer:
    """``async with ProxyServer(app) as server: server.url``; TLS with ``certfile``/``keyfile``."""

    def __init__(
        self,
        app: ProxyApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: str | None = None,
        keyfile: str | None = None,
        handle_signals: bool = False,
        forwarded_allow_ips: str | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = certfile is not None
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off", server_header=False,
            timeout_graceful_shutdown=2, ws="none", ssl_certfile=certfile, ssl_keyfile=keyfile,
            proxy_headers=forwarded_allow_ips is not None, forwarded_allow_ips=forwarded_allow_ips,
            backlog=1024, http=_Protocol,
        )
        self._server = _Server(config, handle_signals=handle_signals)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="bambulab-proxy")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the proxy could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        for server in self._server.servers:
            for sock in server.sockets:
                self.port = sock.getsockname()[1]
                break

    async def wait(self) -> None:
        """After :meth:`start`: until uvicorn stops (Ctrl-C when ``handle_signals``); then close the app."""
        try:
            if self._task is not None:
                await self._task
        finally:
            self._task = None
            await self.app.aclose()

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.app.aclose()

    async def __aenter__(self) -> ProxyServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
