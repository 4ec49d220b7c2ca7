"""SSDP for virtual printers: periodic NOTIFY broadcasts and an M-SEARCH responder.

One :class:`SsdpService` serves every virtual printer of a simulator (real printers each own
UDP port 2021 on their own address; virtual printers share one host, so they share one socket).
It binds a single UDP socket on ``listen`` (``(host, port)``) and uses it both ways, as a printer
does:

* every ``interval`` seconds (and once right after :meth:`SsdpService.start`) it sends one
  ``NOTIFY`` per announced printer to ``target`` — from the bound port. The defaults keep
  everything on this machine (127.0.0.1:2021 both ways); pass ``listen=("0.0.0.0", 2021)`` and
  ``target=("255.255.255.255", 2021)`` to announce on the real network exactly like a printer;
* it answers each ``M-SEARCH`` whose ``MAN`` is ``"ssdp:discover"`` and whose ``ST`` is
  ``urn:bambulab-com:device:3dprinter:1`` or ``ssdp:all`` with one ``HTTP/1.1 200 OK`` per
  announced printer, sent to the requester's address and port. Other datagrams are ignored.

Which printers are announced is decided afresh for every NOTIFY round and every M-SEARCH:

* printers added with :meth:`SsdpService.add_printer` (adding the same serial again replaces its
  entry, e.g. after a rename) until :meth:`SsdpService.remove_printer`, then
* whatever the optional ``announcements`` callable returns (so a simulator can hand in a function that
  builds announcements from its live printers: names, signal and bind state change as they
  change). A serial already listed is not announced twice; the first entry wins.

:meth:`SsdpService.pause` takes one printer off the air (it "went offline": no NOTIFY, no
M-SEARCH reply) without forgetting it; :meth:`SsdpService.resume` puts it back.

``SO_BROADCAST`` is set only when the NOTIFY target is a broadcast address (``broadcast=None``:
the limited broadcast ``255.255.255.255`` or any IPv4 ending in ``.255``; pass ``True``/``False``
to decide yourself). Tests use ``listen=("127.0.0.1", 0)`` and a loopback target.

Beyond loopback (any ``listen`` host that is not a loopback address) the M-SEARCH responder is
rate-limited per source address: a 121-byte request otherwise draws one ~400-byte reply per
printer, an amplifier for spoofed requests. Each source gets ``search_burst`` answered searches,
refilled at ``search_rate`` per second; the rest are dropped silently (and counted in
:attr:`SsdpService.searches_dropped`). ``limit_searches=True``/``False`` decides explicitly.

``listen=None`` sends NOTIFYs only (from a free port, on loopback when the target is loopback) and
answers no M-SEARCH; ``target=None`` answers M-SEARCH only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from bambulab.exceptions import SimulatorError
from bambulab.protocol.ssdp import (
    BROADCAST_ADDRESS,
    DEFAULT_MAX_AGE,
    DEFAULT_SERVER,
    SEARCH_TARGET,
    SSDP_PORT,
    SsdpAnnouncement,
    build_notify,
    build_search_response,
    is_bambu_search,
    parse_search,
)

__all__ = ["AnnouncementSource", "SsdpService"]

_log = logging.getLogger(__name__)

#: Returns the printers to announce right now.
AnnouncementSource = Callable[[], Iterable[SsdpAnnouncement]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _is_broadcast(address: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return ip == ipaddress.IPv4Address(BROADCAST_ADDRESS) or ip.packed[-1] == 255


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: SsdpService, closed: asyncio.Future[None]) -> None:
        self._service = service
        self._closed = closed

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._service._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Sending to an unreachable broadcast address, an ICMP port-unreachable from a client
        # that has gone away: a printer shrugs these off, and so do we.
        _log.debug("ssdp socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SearchLimiter:
    """A token bucket per source address; at most ``max_sources`` are remembered (oldest go first)."""

    def __init__(self, *, rate: float, burst: float, clock: Callable[[], float], max_sources: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed


class SsdpService:
    """SSDP NOTIFY sender and M-SEARCH responder for any number of virtual printers.

    :param announcements: optional callable returning the printers to announce, asked anew for
        every NOTIFY round and every M-SEARCH.
    :param listen: ``(host, port)`` to bind; NOTIFYs are sent from it and M-SEARCHes answered on
        it. Port ``0`` picks a free port (read :attr:`port` after :meth:`start`). ``None``: no
        M-SEARCH responder.
    :param target: ``(address, port)`` the NOTIFYs go to, or ``None`` to only answer M-SEARCH.
    :param interval: seconds between NOTIFY rounds (real printers: about 5 s).
    :param broadcast: set ``SO_BROADCAST``; ``None`` decides from ``target`` (see module doc).
    :param reuse_address: set ``SO_REUSEADDR`` so the simulator can share port 2021 with a
        slicer on the same machine.
    :param server: the ``Server:`` header (an old X1 sends
        ``"Buildroot/2018.02-rc3 UPnP/1.0 ssdpd/1.8"``).
    :param max_age: the ``Cache-Control: max-age`` value (printers send 1800).
    :param dbm_suffix: write ``DevSignal.bambu.com`` as ``-44dBm`` instead of ``-44``.
    :param clock: returns the time written in the replies' ``Date:`` header.
    :param limit_searches: rate-limit M-SEARCH replies per source address; ``None`` (default):
        only when ``listen`` is not a loopback address.
    :param search_rate: answered searches per second and source, once the burst is spent.
    :param search_burst: searches a source gets answered at once.
    :param monotonic: the rate limiter's clock.
    """

    def __init__(
        self,
        announcements: AnnouncementSource | None = None,
        *,
        listen: tuple[str, int] | None = ("127.0.0.1", SSDP_PORT),
        target: tuple[str, int] | None = ("127.0.0.1", SSDP_PORT),
        interval: float = 5.0,
        broadcast: bool | None = None,
        reuse_address: bool = False,
        server: str = DEFAULT_SERVER,
        max_age: int = DEFAULT_MAX_AGE,
        dbm_suffix: bool = False,
        clock: Callable[[], datetime] = _utcnow,
        limit_searches: bool | None = None,
        search_rate: float = 0.5,
        search_burst: int = 4,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if listen is None and target is None:
            raise ValueError("SsdpService needs a listen address, a NOTIFY target or both")
        self._source = announcements
        self._respond = listen is not None
        if listen is None:
            assert target is not None
            loopback = target[0].startswith("127.") or target[0] == "localhost"
            listen = ("127.0.0.1" if loopback else "0.0.0.0", 0)  # noqa: S104
        self._host, self._port = listen[0], int(listen[1])
        limit = limit_searches if limit_searches is not None else not _is_loopback(self._host)
        self._limiter = _SearchLimiter(rate=search_rate, burst=search_burst, clock=monotonic) if limit else None
        self.searches_dropped = 0
        self._target = target
        self.interval = interval
        self._broadcast = broadcast if broadcast is not None else (
            target is not None and _is_broadcast(target[0])
        )
        self._reuse_address = reuse_address
        self.server = server
        self.max_age = max_age
        self.dbm_suffix = dbm_suffix
        self._clock = clock
        self._printers: dict[str, SsdpAnnouncement] = {}
        self._paused: set[str] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------------------ printers

    def add_printer(self, announcement: SsdpAnnouncement) -> None:
        """Announce a printer; an entry with the same serial is replaced."""
        self._printers[announcement.serial] = announcement

    def remove_printer(self, serial: str) -> None:
        """Stop announcing a printer added with :meth:`add_printer` (unknown serials are ignored)."""
        self._printers.pop(serial, None)

    def pause(self, serial: str) -> None:
        """Take a printer off the air: no NOTIFY and no M-SEARCH reply until :meth:`resume`."""
        self._paused.add(serial)

    def resume(self, serial: str) -> None:
        """Announce a paused printer again (from the next NOTIFY round or M-SEARCH)."""
        self._paused.discard(serial)

    def is_paused(self, serial: str) -> bool:
        return serial in self._paused

    def announced(self) -> list[SsdpAnnouncement]:
        """The printers announced right now: added ones, then the source's, minus paused ones."""
        listed: list[SsdpAnnouncement] = list(self._printers.values())
        if self._source is not None:
            try:
                listed.extend(self._source())
            except Exception:
                _log.exception("ssdp announcement source failed; announcing the added printers only")
        seen: set[str] = set()
        result: list[SsdpAnnouncement] = []
        for announcement in listed:
            if announcement.serial in seen or announcement.serial in self._paused:
                continue
            seen.add(announcement.serial)
            result.append(announcement)
        return result

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"interval must be positive, got {seconds!r}")
        self._interval = float(seconds)

    @property
    def port(self) -> int:
        """The bound UDP port (the configured one before the first :meth:`start`)."""
        return self._port

    @property
    def host(self) -> str:
        """The bound address."""
        return self._host

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the socket: where M-SEARCH goes, where NOTIFYs come from."""
        return (self._host, self._port)

    @property
    def target(self) -> tuple[str, int] | None:
        return self._target

    @property
    def limits_searches(self) -> bool:
        """Whether M-SEARCH replies are rate-limited per source (see the module doc)."""
        return self._limiter is not None

    @property
    def running(self) -> bool:
        return self._transport is not None

    def _make_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self._reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((self._host, self._port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SimulatorError(f"SSDP cannot bind UDP {self._host}:{self._port}: {exc}") from exc
        return sock

    async def start(self) -> None:
        """Bind the socket, send the first NOTIFY round and start the periodic sender.

        After a :meth:`stop` it binds the same port again. Raises :class:`SimulatorError` when
        the port cannot be bound.
        """
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        sock = self._make_socket()
        closed: asyncio.Future[None] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self, closed), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        self._closed = closed
        self._port = int(sock.getsockname()[1])
        if self._target is not None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._notify_loop(), name=f"ssdp-notify:{self._port}")
        _log.debug("ssdp listening on %s:%d, notifying %s", self._host, self._port, self._target)

    async def stop(self) -> None:
        """Stop sending and close the socket; the port is free when this returns."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        transport, self._transport = self._transport, None
        closed, self._closed = self._closed, None
        if transport is not None:
            transport.close()
        if closed is not None:
            await closed

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------- sending

    def announce_now(self) -> None:
        """Send the next NOTIFY round now instead of at the end of the interval."""
        if self._wake is not None:
            self._wake.set()

    async def _notify_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()
            self._send_notifies()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._interval)

    def _send(self, data: bytes, addr: tuple[str, int]) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        try:
            transport.sendto(data, addr)
        except OSError as exc:  # asyncio reports most send errors via error_received
            _log.debug("ssdp send to %s failed: %s", addr, exc)
            return False
        return True

    def _send_notifies(self) -> int:
        if self._target is None:
            return 0
        sent = 0
        for announcement in self.announced():
            data = build_notify(announcement, server=self.server, max_age=self.max_age,
                                dbm_suffix=self.dbm_suffix)
            sent += self._send(data, self._target)
        return sent

    def _on_datagram(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self._respond:
            return
        search = parse_search(data)
        if search is None or not is_bambu_search(search):
            return
        requester = (str(addr[0]), int(addr[1]))
        if self._limiter is not None and not self._limiter.allow(requester[0]):
            self.searches_dropped += 1
            return
        date = self._clock()
        for announcement in self.announced():
            reply = build_search_response(
                announcement, date=date, st=SEARCH_TARGET, server=self.server,
                max_age=self.max_age, dbm_suffix=self.dbm_suffix,
            )
            self._send(reply, requester)
