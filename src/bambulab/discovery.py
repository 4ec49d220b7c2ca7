"""Find Bambu Lab printers on the local network (SSDP).

::

    printers = await discover(timeout=5)                 # everything heard within 5 s
    async for printer in discover_iter(timeout=None):    # each new printer as it appears
        print(printer.serial, printer.model, printer.ip)

Printers broadcast a ``NOTIFY`` about every 5 s from UDP port 2021 to ``255.255.255.255:2021``
and answer an ``M-SEARCH``. Discovery listens on ``listen_port`` (2021) and sends an M-SEARCH to
each of ``search_targets`` a few times during the window, so printers are usually found within a
second instead of waiting for their next NOTIFY. Results are de-duplicated by serial; the last
announcement heard for a serial wins. Datagrams that are not a Bambu printer's announcement
(other devices' SSDP, garbage, our own M-SEARCH heard back) are ignored.

If ``listen_port`` is taken by a program that did not allow sharing it, discovery carries on
with M-SEARCH replies alone (on a free port) and logs a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bambulab.exceptions import BambuConnectionError
from bambulab.protocol.models import PrinterModel
from bambulab.protocol.ssdp import (
    BROADCAST_ADDRESS,
    SEARCH_TARGET,
    SSDP_PORT,
    SsdpAnnouncement,
    build_search,
    parse_announcement,
)
from bambulab.transports.ssdp import SsdpEndpoint

__all__ = [
    "DEFAULT_SEARCH_TARGETS",
    "MULTICAST_ADDRESS",
    "DiscoveredPrinter",
    "discover",
    "discover_iter",
]

log = logging.getLogger(__name__)

#: The SSDP multicast group and port named in the printers' ``Host:`` header.
MULTICAST_ADDRESS: tuple[str, int] = ("239.255.255.250", 1990)
#: Where M-SEARCH goes by default: the LAN broadcast on the printers' port, and the multicast group.
DEFAULT_SEARCH_TARGETS: tuple[tuple[str, int], ...] = ((BROADCAST_ADDRESS, SSDP_PORT), MULTICAST_ADDRESS)

_SEARCHES = 3  # M-SEARCH rounds per window (UDP may lose one)


@dataclass(frozen=True, slots=True)
class DiscoveredPrinter:
    """A printer heard on the network.

    ``model`` is looked up from ``model_code`` (``DevModel.bambu.com``) or guessed from the
    serial; ``None`` for models this library does not know (``model_code`` keeps what was sent).
    ``lan_only`` is LAN-only mode (``DevConnect.bambu.com: lan``), ``bound`` whether the printer
    is bound to a cloud account (``DevBind.bambu.com: occupied``). ``address`` is the sender of
    the datagram; ``headers`` every header as received.
    """

    serial: str
    model: PrinterModel | None
    model_code: str
    name: str
    ip: str
    firmware: str
    signal_dbm: int | None
    lan_only: bool
    bound: bool
    address: tuple[str, int] = field(compare=False)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_announcement(cls, announcement: SsdpAnnouncement, address: tuple[str, int]) -> DiscoveredPrinter:
        return cls(
            serial=announcement.serial,
            model=announcement.printer_model,
            model_code=announcement.model_code,
            name=announcement.name,
            ip=announcement.ip,
            firmware=announcement.firmware,
            signal_dbm=announcement.signal_dbm,
            lan_only=announcement.lan_only,
            bound=announcement.bound,
            address=address,
            headers=announcement.headers,
        )

    def __repr__(self) -> str:
        model = self.model.name if self.model is not None else self.model_code or "?"
        return (
            f"DiscoveredPrinter(serial={self.serial!r}, model={model!r}, name={self.name!r}, ip={self.ip!r}, "
            f"firmware={self.firmware!r}, signal_dbm={self.signal_dbm!r}, lan_only={self.lan_only!r}, "
            f"bound={self.bound!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, with ``model`` as its name and ``headers`` as a dict."""
        return {
            "serial": self.serial,
            "model": self.model.name if self.model is not None else None,
            "model_code": self.model_code,
            "name": self.name,
            "ip": self.ip,
            "firmware": self.firmware,
            "signal_dbm": self.signal_dbm,
            "lan_only": self.lan_only,
            "bound": self.bound,
            "address": list(self.address),
            "headers": dict(self.headers),
        }


async def _open_endpoint(listen_port: int | None, interface: str | None) -> SsdpEndpoint:
    host = interface or "0.0.0.0"  # noqa: S104 - broadcasts only reach wildcard-bound sockets
    endpoint = SsdpEndpoint(host=host, port=listen_port or 0, multicast_interface=interface)
    try:
        await endpoint.open()
    except BambuConnectionError as exc:
        if not listen_port:
            raise
        log.warning("%s; listening for M-SEARCH replies only (printers' NOTIFYs will be missed)", exc)
        endpoint = SsdpEndpoint(host=host, port=0, multicast_interface=interface)
        await endpoint.open()
    return endpoint


async def _announcements(
    window: float | None,
    *,
    listen_port: int | None,
    search_targets: Iterable[tuple[str, int]],
    interface: str | None,
    search_interval: float,
) -> AsyncGenerator[DiscoveredPrinter, None]:
    """Every printer announcement heard until ``window`` seconds have passed (repeats included)."""
    loop = asyncio.get_running_loop()
    deadline = None if window is None else loop.time() + window
    targets = [(str(host), int(port)) for host, port in search_targets]
    search = build_search(SEARCH_TARGET)
    endpoint = await _open_endpoint(listen_port, interface)
    try:
        searches_left = _SEARCHES if targets else 0
        next_search = loop.time()
        while True:
            now = loop.time()
            if searches_left and now >= next_search:
                for target in targets:
                    endpoint.send(search, target)
                searches_left -= 1
                next_search = now + search_interval
            waits = [t - now for t in (deadline, next_search if searches_left else None) if t is not None]
            if deadline is not None and deadline - now <= 0:
                return
            datagram = await endpoint.receive(max(0.0, min(waits)) if waits else None)
            if datagram is None:
                continue
            announcement = parse_announcement(datagram.data, source=datagram.address[0])
            if announcement is None:
                continue
            yield DiscoveredPrinter.from_announcement(announcement, datagram.address)
    finally:
        await endpoint.close()


async def discover_iter(
    timeout: float | None = 5.0,  # noqa: ASYNC109 - the listening window, not an operation's deadline
    *,
    listen_port: int | None = SSDP_PORT,
    search_targets: Iterable[tuple[str, int]] = DEFAULT_SEARCH_TARGETS,
    interface: str | None = None,
    search_interval: float = 1.0,
) -> AsyncGenerator[DiscoveredPrinter, None]:
    """Yield each printer the first time it is heard, for ``timeout`` seconds (``None``: until
    the caller stops iterating).

    ``listen_port`` is where NOTIFYs arrive (2021; ``None`` to rely on M-SEARCH replies only).
    ``search_targets`` are the ``(address, port)`` pairs M-SEARCH is sent to, three times
    ``search_interval`` apart (empty: listen only). ``interface`` is the local IPv4 address to
    bind and send multicast from (default: every interface). Note that broadcast NOTIFYs only
    reach sockets bound to every interface; bound to one address, discovery hears unicast
    datagrams and M-SEARCH replies.
    """
    seen: set[str] = set()
    stream = _announcements(
        timeout, listen_port=listen_port, search_targets=search_targets, interface=interface,
        search_interval=search_interval,
    )
    async with contextlib.aclosing(stream):
        async for printer in stream:
            if printer.serial not in seen:
                seen.add(printer.serial)
                yield printer


async def discover(
    timeout: float = 5.0,  # noqa: ASYNC109 - the listening window, not an operation's deadline
    *,
    listen_port: int | None = SSDP_PORT,
    search_targets: Iterable[tuple[str, int]] = DEFAULT_SEARCH_TARGETS,
    interface: str | None = None,
    search_interval: float = 1.0,
) -> list[DiscoveredPrinter]:
    """Every printer heard within ``timeout`` seconds, once each (in the order first heard, with
    the newest details). Returns when the window ends. See :func:`discover_iter` for the options.
    """
    found: dict[str, DiscoveredPrinter] = {}
    stream = _announcements(
        timeout, listen_port=listen_port, search_targets=search_targets, interface=interface,
        search_interval=search_interval,
    )
    async with contextlib.aclosing(stream):
        async for printer in stream:
            found[printer.serial] = printer
    return list(found.values())
