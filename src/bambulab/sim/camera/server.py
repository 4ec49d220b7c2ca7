"""The TLS server both virtual cameras are built on: tracked connections, tasks, stall and drop."""

from __future__ import annotations

import abc
import asyncio
import logging
import secrets
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bambulab.sim.service import Service

if TYPE_CHECKING:
    from bambulab.sim.service import PrinterHandle

__all__ = ["MAX_REQUEST", "USERNAME", "Connection", "TlsCameraServer", "local_now"]

log = logging.getLogger("bambulab.sim.camera")


USERNAME = b"bblp"
MAX_REQUEST = 16 * 1024


def local_now() -> datetime:
    return datetime.now()


# --------------------------------------------------------------------------- shared server


@dataclass(eq=False)
class Connection:
    """One accepted connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def abort(self) -> None:
        self.writer.transport.abort()


class TlsCameraServer(Service, abc.ABC):
    """An asyncio TLS (or plain) server with tracked connections and tasks.

    Subclasses implement :meth:`_serve`. Handler tasks end quietly when cancelled, so stopping
    leaves no "Task was destroyed" or ``CancelledError`` noise behind.
    """

    _kind = "camera"

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        port: int = 0,
        host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tls: bool = True,
    ) -> None:
        self._handle = handle
        self._host = host if host is not None else handle.host
        self._port = port
        self._ssl_context = ssl_context
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stalled = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- Service API

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return self._host

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def client_count(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        if self._server is not None:
            return
        await self._listen()

    async def stop(self) -> None:
        await self._close_listener()

    async def drop_clients(self) -> None:
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        # Give the handlers a moment to notice, so client_count is 0 when this returns.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # -- helpers for subclasses

    def _context(self) -> ssl.SSLContext | None:
        if not self._tls:
            return None
        if self._ssl_context is None:
            self._ssl_context = self._handle.tls.server_context()
        return self._ssl_context

    async def _listen(self) -> None:
        # asyncio primitives bind to the loop that first waits on them: make fresh ones, so a
        # service can be started again under another event loop.
        self._loop = asyncio.get_running_loop()
        self._unstalled = asyncio.Event()
        if not self._stalled:
            self._unstalled.set()
        self._server = await asyncio.start_server(
            self._on_client,
            host=self._host,
            port=self._port,
            ssl=self._context(),
            reuse_address=True,
            limit=MAX_REQUEST * 4,
        )
        sockets = self._server.sockets
        if sockets:
            self._port = sockets[0].getsockname()[1]
        log.debug("%s %s listening on %s:%d", self._kind, self._handle.serial, self._host, self._port)

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def stalled(self) -> bool:
        """Fault injection: while True, connections stay open but nothing is sent.

        New connections still complete the TLS handshake; then nothing more is answered (a
        JPEG viewer gets no frames, a bad login is not closed, RTSP requests get no reply) until
        the stall ends. Safe to set from any thread.
        """
        return self._stalled

    @stalled.setter
    def stalled(self, value: bool) -> None:
        self._stalled = bool(value)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:  # set from another thread: wake waiters on the service's loop
                loop.call_soon_threadsafe(self._sync_stall)
                return
        self._sync_stall()

    def _sync_stall(self) -> None:
        if self._stalled:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    async def _wait_unstalled(self) -> None:
        await self._unstalled.wait()

    async def _close_quietly(self, conn: Connection, grace: float = 0.25) -> None:
        """Close: TLS close_notify, then the TCP connection (without waiting long for the peer)."""
        conn.writer.close()
        try:
            await asyncio.wait_for(conn.writer.wait_closed(), grace)
        except (TimeoutError, OSError, ssl.SSLError):
            conn.abort()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._server is None:  # accepted just before stop()
            writer.transport.abort()
            return
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        conn = Connection(reader, writer, f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer))
        self._conns.add(conn)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            # stop(): end normally. asyncio.streams would report a cancelled callback task as
            # an error, so the cancellation is not re-raised from this top-level handler.
            pass
        except (OSError, EOFError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(conn)
            if not writer.is_closing():
                writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    @abc.abstractmethod
    async def _serve(self, conn: Connection) -> None:
        """Talk to one client until it leaves."""
