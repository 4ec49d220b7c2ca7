"""UDP sockets for SSDP discovery.

:class:`SsdpEndpoint` is one UDP socket used both ways, as the printers do: bound to the port
printers send their ``NOTIFY`` datagrams to (2021 on a real network), it receives those, and
``M-SEARCH`` requests sent from it get their ``HTTP/1.1 200 OK`` replies back on it. It only
moves bytes; :mod:`bambulab.protocol.ssdp` builds and parses them, and
:mod:`bambulab.discovery` decides what to send where.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bambulab.exceptions import BambuConnectionError, NotConnectedError
from bambulab.protocol.ssdp import SSDP_PORT

__all__ = ["Datagram", "SsdpEndpoint"]

log = logging.getLogger(__name__)

_MAX_DATAGRAM = 65_535


@dataclass(frozen=True, slots=True)
class Datagram:
    """One received datagram: its bytes, the sender's ``(ip, port)`` and :func:`time.monotonic`."""

    data: bytes
    address: tuple[str, int]
    received: float


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, queue_size: int) -> None:
        self.queue: collections.deque[Datagram] = collections.deque(maxlen=queue_size)
        self.dropped = 0
        self.closed = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest
        self.queue.append(Datagram(data, (str(addr[0]), int(addr[1])), time.monotonic()))
        self._wake()

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a host that went away, an unroutable broadcast: not fatal.
        log.debug("ssdp socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter


class SsdpEndpoint:
    """One IPv4 UDP socket for SSDP.

    :param host: local address to bind (``"0.0.0.0"``: every interface; broadcasts are only
        received by a socket bound to the wildcard address).
    :param port: local port; printers send NOTIFYs to 2021. ``0`` picks a free port.
    :param broadcast: set ``SO_BROADCAST`` so :meth:`send` may address ``255.255.255.255``.
    :param reuse_address: set ``SO_REUSEADDR`` so the port can be shared with a slicer
        listening on the same machine (both must set it).
    :param multicast_interface: local address multicast datagrams leave from.
    :param queue_size: datagrams kept for a slow reader; older ones are dropped.

    Raises :class:`BambuConnectionError` when the socket cannot be bound.
    """

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - broadcasts only reach wildcard-bound sockets
        port: int = SSDP_PORT,
        broadcast: bool = True,
        reuse_address: bool = True,
        multicast_interface: str | None = None,
        queue_size: int = 512,
    ) -> None:
        self._host = host
        self._port = port
        self._broadcast = broadcast
        self._reuse_address = reuse_address
        self._multicast_interface = multicast_interface
        self._queue_size = queue_size
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None

    def __repr__(self) -> str:
        return f"<SsdpEndpoint {self._host}:{self._port}{'' if self._transport else ' closed'}>"

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` bound (the requested port before :meth:`open`)."""
        return (self._host, self._port)

    @property
    def dropped(self) -> int:
        """Datagrams dropped because the reader was too slow."""
        return self._protocol.dropped if self._protocol else 0

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            if self._reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if self._multicast_interface:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self._multicast_interface)
                )
            sock.bind((self._host, self._port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise BambuConnectionError(
                f"cannot open UDP {self._host}:{self._port} for discovery: {exc.strerror or exc}"
            ) from exc
        return sock

    async def open(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        sock = self._socket()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Protocol(self._queue_size), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        self._protocol = protocol
        self._port = int(sock.getsockname()[1])
        log.debug("ssdp endpoint on %s:%d", self._host, self._port)

    def send(self, data: bytes, address: tuple[str, int]) -> bool:
        """Send one datagram; ``False`` (and a debug log) when the network refuses it."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise NotConnectedError("the SSDP socket is closed")
        try:
            transport.sendto(data, address)
        except OSError as exc:  # no route to a multicast group, a broadcast not allowed here
            log.debug("ssdp send to %s:%d failed: %s", address[0], address[1], exc)
            return False
        return True

    async def receive(self, timeout: float | None = None) -> Datagram | None:  # noqa: ASYNC109
        """The next datagram, or ``None`` when none arrives within ``timeout`` seconds."""
        protocol = self._protocol
        if protocol is None:
            raise NotConnectedError("the SSDP socket is not open")
        queue = protocol.queue
        if queue:
            return queue.popleft()
        if timeout is not None and timeout <= 0:
            return None
        try:
            async with asyncio.timeout(timeout):
                while not queue:
                    if protocol.closed.done():
                        raise NotConnectedError("the SSDP socket is closed")
                    await protocol.waiter()
        except TimeoutError:
            return None
        return queue.popleft()

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        protocol = self._protocol
        if transport is not None:
            transport.close()
        if protocol is not None and not protocol.closed.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.closed), 1.0)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
