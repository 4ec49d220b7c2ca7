"""SSDP discovery against the virtual printers' SSDP service, over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest

from bambulab.discovery import DiscoveredPrinter, discover, discover_iter
from bambulab.protocol.ssdp import SsdpAnnouncement, build_notify
from bambulab.sim import Simulator
from bambulab.sim.ssdp import SsdpService

pytestmark = pytest.mark.timeout(15)

LOOPBACK = "127.0.0.1"

P1S = SsdpAnnouncement(
    serial="01P00A123456789", model_code="C12", name="Workshop P1S", ip="192.168.1.50",
    signal_dbm=-44, connect="lan", bind="free", firmware="01.07.00.00",
)
X1C = SsdpAnnouncement(
    serial="00M00A987654321", model_code="3DPrinter-X1-Carbon", name="Lab X1C", ip="192.168.1.51",
    signal_dbm=None, connect="cloud", bind="occupied", firmware="01.08.02.00", interface="eth0",
)
UNKNOWN = SsdpAnnouncement(serial="99Z00A000000001", model_code="Q9", name="Future", ip="192.168.1.52")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def listen_port() -> int:
    return free_udp_port()


@pytest.fixture
async def notifier(listen_port: int) -> AsyncIterator[SsdpService]:
    """Announces printers to our listen port every 0.1 s; answers no M-SEARCH."""
    async with SsdpService(listen=None, target=(LOOPBACK, listen_port), interval=0.1) as service:
        yield service


@pytest.fixture
async def responder() -> AsyncIterator[SsdpService]:
    """Answers M-SEARCH on a loopback port; sends no NOTIFY."""
    async with SsdpService(listen=(LOOPBACK, 0), target=None) as service:
        yield service


async def test_notify_is_picked_up(notifier: SsdpService, listen_port: int) -> None:
    notifier.add_printer(P1S)
    notifier.add_printer(X1C)
    found = await discover(0.6, listen_port=listen_port, search_targets=[], interface=LOOPBACK)
    by_serial = {p.serial: p for p in found}
    assert set(by_serial) == {P1S.serial, X1C.serial}
    p1s, x1c = by_serial[P1S.serial], by_serial[X1C.serial]
    assert p1s.model is not None and p1s.model.name == "P1S" and p1s.model_code == "C12"
    assert (p1s.name, p1s.ip, p1s.firmware, p1s.signal_dbm) == ("Workshop P1S", "192.168.1.50", "01.07.00.00", -44)
    assert p1s.lan_only and not p1s.bound
    assert x1c.model is not None and x1c.model.name == "X1 Carbon" and x1c.model_code == "BL-P001"
    assert x1c.signal_dbm is None and not x1c.lan_only and x1c.bound
    assert x1c.headers["DevInf.bambu.com"] == "eth0"
    assert x1c.headers["NTS"] == "ssdp:alive"  # it was heard as a NOTIFY
    assert p1s.address[0] == LOOPBACK


async def test_msearch_replies_are_collected(responder: SsdpService) -> None:
    responder.add_printer(P1S)
    responder.add_printer(UNKNOWN)
    started = time.monotonic()
    seen: list[DiscoveredPrinter] = []
    async with contextlib.aclosing(
        discover_iter(5.0, listen_port=None, search_targets=[responder.address], interface=LOOPBACK)
    ) as printers:
        async for printer in printers:
            seen.append(printer)
            if len(seen) == 2:
                break
    assert time.monotonic() - started < 1.0  # the replies came at once, not at the window's end
    assert {p.serial for p in seen} == {P1S.serial, UNKNOWN.serial}
    unknown = next(p for p in seen if p.serial == UNKNOWN.serial)
    assert unknown.model is None and unknown.model_code == "Q9"
    assert all("ST" in p.headers for p in seen)  # heard as M-SEARCH replies
    assert json.loads(json.dumps(unknown.to_dict()))["model"] is None


async def test_each_printer_is_reported_once_with_its_latest_details(
    notifier: SsdpService, responder: SsdpService, listen_port: int
) -> None:
    notifier.add_printer(P1S)
    responder.add_printer(P1S)

    async def rename() -> None:
        await asyncio.sleep(0.4)
        notifier.add_printer(SsdpAnnouncement(**{**_fields(P1S), "name": "Renamed"}))

    renamer = asyncio.create_task(rename())
    found = await discover(
        1.0, listen_port=listen_port, search_targets=[responder.address], interface=LOOPBACK, search_interval=0.2
    )
    await renamer
    assert [p.serial for p in found] == [P1S.serial]  # ~10 NOTIFYs and 3 replies: one printer
    assert found[0].name == "Renamed"

    yielded: list[str] = []
    async for printer in discover_iter(0.6, listen_port=listen_port, search_targets=[responder.address],
                                       interface=LOOPBACK, search_interval=0.2):
        yielded.append(printer.serial)
    assert yielded == [P1S.serial]


def _fields(announcement: SsdpAnnouncement) -> dict[str, object]:
    return {
        name: getattr(announcement, name)
        for name in ("serial", "model_code", "name", "ip", "signal_dbm", "connect", "bind", "firmware")
    }


async def test_the_window_is_respected(listen_port: int) -> None:
    started = time.monotonic()
    assert await discover(0.5, listen_port=listen_port, search_targets=[(LOOPBACK, free_udp_port())],
                          interface=LOOPBACK) == []
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.0
    started = time.monotonic()
    assert [p async for p in discover_iter(0.3, listen_port=listen_port, search_targets=[], interface=LOOPBACK)] == []
    assert 0.25 <= time.monotonic() - started < 0.8


async def test_window_ends_on_time_under_a_flood(notifier: SsdpService, listen_port: int) -> None:
    for i in range(50):
        notifier.add_printer(SsdpAnnouncement(serial=f"01P00A0000000{i:02d}", model_code="C12", name=f"P{i}",
                                              ip=f"10.0.0.{i + 1}"))
    notifier.interval = 0.01  # 5,000 datagrams a second
    started = time.monotonic()
    found = await discover(0.5, listen_port=listen_port, search_targets=[], interface=LOOPBACK)
    assert time.monotonic() - started < 1.0
    assert len(found) == 50 and len({p.serial for p in found}) == 50


async def test_garbage_is_ignored(notifier: SsdpService, listen_port: int) -> None:
    notifier.add_printer(P1S)
    garbage = [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"NOTIFY * HTTP/1.1\r\n\r\n",
        b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\nUSN: uuid:tv\r\nLocation: http://10.0.0.9/\r\n\r\n",
        build_notify(X1C).replace(b"ssdp:alive", b"ssdp:byebye"),
        build_notify(X1C).replace(b"USN: ", b"USN: bad serial with spaces "),
        b"M-SEARCH * HTTP/1.1\r\nST: urn:bambulab-com:device:3dprinter:1\r\nMAN: \"ssdp:discover\"\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nUSN: 00M00A987654321\r\n\r\n",
        b"X" * 60_000,
        "NOTIFY * HTTP/1.1\r\nDevName.bambu.com: \udcff".encode("utf-8", "surrogatepass"),
    ]

    async def spray() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(5):
                for datagram in garbage:
                    sock.sendto(datagram, (LOOPBACK, listen_port))
                await asyncio.sleep(0.05)

    sprayer = asyncio.create_task(spray())
    found = await discover(0.6, listen_port=listen_port, search_targets=[], interface=LOOPBACK)
    await sprayer
    assert [p.serial for p in found] == [P1S.serial]


async def test_a_printer_gone_offline_is_not_in_a_fresh_discovery(
    notifier: SsdpService, responder: SsdpService, listen_port: int
) -> None:
    for service in (notifier, responder):
        service.add_printer(P1S)
        service.add_printer(X1C)

    async def fresh() -> set[str]:
        found = await discover(0.4, listen_port=listen_port, search_targets=[responder.address], interface=LOOPBACK)
        return {p.serial for p in found}

    assert await fresh() == {P1S.serial, X1C.serial}
    for service in (notifier, responder):
        service.pause(X1C.serial)
    await asyncio.sleep(0.15)  # NOTIFYs already in flight are delivered before the next window
    assert await fresh() == {P1S.serial}
    for service in (notifier, responder):
        service.resume(X1C.serial)
    assert await fresh() == {P1S.serial, X1C.serial}


async def test_discover_iter_yields_printers_as_they_appear(notifier: SsdpService, listen_port: int) -> None:
    notifier.add_printer(P1S)
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()

    async def later() -> None:
        await asyncio.sleep(0.5)
        notifier.add_printer(X1C)

    adder = asyncio.create_task(later())
    async with contextlib.aclosing(
        discover_iter(None, listen_port=listen_port, search_targets=[], interface=LOOPBACK)
    ) as printers:
        async for printer in printers:
            arrivals.append((printer.serial, time.monotonic() - started))
            if len(arrivals) == 2:
                break
    await adder
    assert [serial for serial, _ in arrivals] == [P1S.serial, X1C.serial]
    assert arrivals[0][1] < 0.4
    assert 0.45 <= arrivals[1][1] < 1.5
    # the socket was closed when the iteration ended: the port can be bound exclusively again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, listen_port))


async def test_busy_listen_port_falls_back_to_msearch(
    responder: SsdpService, listen_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    responder.add_printer(P1S)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, listen_port))  # no SO_REUSEADDR: nobody may share the port
        with caplog.at_level(logging.WARNING, logger="bambulab.discovery"):
            found = await discover(0.4, listen_port=listen_port, search_targets=[responder.address],
                                   interface=LOOPBACK)
    assert [p.serial for p in found] == [P1S.serial]
    assert "M-SEARCH replies only" in caplog.text


async def test_simulated_printers_are_discovered() -> None:
    listen, search = free_udp_port(), free_udp_port()
    async with Simulator(ssdp_target=(LOOPBACK, listen), ssdp_listen=(LOOPBACK, search), ssdp_interval=0.1,
                         seed=3) as sim:
        printers = [await sim.add_printer(model=m) for m in ("P1S", "A1", "X1C")]
        found = await discover(0.5, listen_port=listen, search_targets=[(LOOPBACK, search)], interface=LOOPBACK)
        assert sorted((p.serial, p.model.name if p.model else None) for p in found) == sorted(
            (p.serial, p.model.name) for p in printers
        )
        assert all(p.ip == LOOPBACK and p.name.startswith("Virtual ") for p in found)
        await printers[1].go_offline()
        await asyncio.sleep(0.15)
        found = await discover(0.5, listen_port=listen, search_targets=[(LOOPBACK, search)], interface=LOOPBACK)
        assert {p.serial for p in found} == {printers[0].serial, printers[2].serial}
