"""The virtual printers' SSDP service, observed only through raw stdlib UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bambulab.exceptions import SimulatorError
from bambulab.protocol.ssdp import SsdpAnnouncement, parse_announcement
from bambulab.sim.ssdp import SsdpService

LOOPBACK = "127.0.0.1"
FIXED_NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

P1S = SsdpAnnouncement(
    serial="01P00A123456789", model_code="C12", name="P1S links", ip="127.0.0.1", signal_dbm=-44,
    connect="lan", bind="free", firmware="01.07.00.00",
)
X1C = SsdpAnnouncement(
    serial="00M09A350100123", model_code="BL-P001", name="X1C ✓", ip="127.0.0.2", signal_dbm=None,
    connect="cloud", bind="occupied", firmware="01.08.02.00", interface="eth0",
)
A1 = SsdpAnnouncement(
    serial="03919A3B0100254", model_code="N2S", name="A1 kitchen", ip="127.0.0.3", signal_dbm=-61,
)

SEARCH = (
    b"M-SEARCH * HTTP/1.1\r\n"
    b"HOST: 239.255.255.250:1990\r\n"
    b'MAN: "ssdp:discover"\r\n'
    b"MX: 3\r\n"
    b"ST: urn:bambulab-com:device:3dprinter:1\r\n"
    b"\r\n"
)


# --------------------------------------------------------------------------------- raw helpers


@pytest.fixture
def udp() -> Iterator[Callable[[], socket.socket]]:
    """Makes non-blocking UDP sockets bound to a free loopback port; closes them afterwards."""
    made: list[socket.socket] = []

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, 0))
        sock.setblocking(False)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
async def services() -> AsyncIterator[list[SsdpService]]:
    """Services appended here are stopped after the test, even when it fails."""
    started: list[SsdpService] = []
    yield started
    for service in started:
        await service.stop()


async def _recv(sock: socket.socket, seconds: float) -> tuple[bytes, tuple[str, int]] | None:
    """The next datagram, or ``None`` after ``seconds``."""
    loop = asyncio.get_running_loop()
    try:
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), seconds)
    except TimeoutError:
        return None
    return data, (str(addr[0]), int(addr[1]))


async def _collect(sock: socket.socket, duration: float) -> list[bytes]:
    """Every datagram that arrives within ``duration`` seconds."""
    deadline = time.monotonic() + duration
    got: list[bytes] = []
    while (left := deadline - time.monotonic()) > 0:
        item = await _recv(sock, left)
        if item is not None:
            got.append(item[0])
    return got


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            return count
        count += 1


def _serials(datagrams: list[bytes]) -> list[str]:
    out = []
    for data in datagrams:
        parsed = parse_announcement(data)
        assert parsed is not None, data
        out.append(parsed.serial)
    return out


async def _start(services: list[SsdpService], **kw: Any) -> SsdpService:
    kw.setdefault("listen", (LOOPBACK, 0))
    kw.setdefault("clock", lambda: FIXED_NOW)
    service = SsdpService(**kw)
    services.append(service)
    await service.start()
    return service


# -------------------------------------------------------------------------------------- NOTIFY


async def test_notify_arrives_in_the_real_format(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    service = await _start(services, target=rx.getsockname(), interval=0.1)
    service.add_printer(P1S)
    service.announce_now()

    item = await _recv(rx, 2.0)
    assert item is not None, "no NOTIFY within 2 s"
    data, sender = item
    assert sender == (LOOPBACK, service.port)  # sent from the bound (on a printer: 2021) port
    text = data.decode("utf-8")
    assert text.endswith("\r\n\r\n")
    assert "\n" not in text.replace("\r\n", "")  # CRLF everywhere, no bare LF
    lines = text.split("\r\n")
    assert lines[0] == "NOTIFY * HTTP/1.1"
    assert lines[-2:] == ["", ""]
    for expected in (
        "Host: 239.255.255.250:1990",
        "Location: 127.0.0.1",
        "NT: urn:bambulab-com:device:3dprinter:1",
        "NTS: ssdp:alive",
        "USN: 01P00A123456789",
        "DevModel.bambu.com: C12",
        "DevName.bambu.com: P1S links",
        "DevSignal.bambu.com: -44",
        "DevConnect.bambu.com: lan",
        "DevBind.bambu.com: free",
        "DevVersion.bambu.com: 01.07.00.00",
    ):
        assert expected in lines
    assert parse_announcement(data) == P1S


async def test_notify_repeats_at_the_interval(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    await _start(services, target=rx.getsockname(), interval=0.1)
    services[0].add_printer(P1S)
    got = await _collect(rx, 1.0)
    # About 10 rounds in a second; allow a slow machine, but not a flood or a single shot.
    assert 4 <= len(got) <= 14, len(got)
    assert set(_serials(got)) == {P1S.serial}


async def test_first_notify_is_sent_on_start_and_interval_is_respected(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    service = SsdpService(listen=(LOOPBACK, 0), target=rx.getsockname(), interval=30.0)
    service.add_printer(P1S)
    services.append(service)
    await service.start()
    first = await _collect(rx, 0.5)
    assert _serials(first) == [P1S.serial]  # one round at start, then nothing for 30 s
    service.announce_now()
    again = await _recv(rx, 2.0)
    assert again is not None
    assert parse_announcement(again[0]) == P1S


async def test_one_notify_per_printer_with_live_changes(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    names = {X1C.serial: X1C.name}

    def live() -> list[SsdpAnnouncement]:
        return [dataclasses.replace(X1C, name=names[X1C.serial])]

    service = await _start(services, announcements=live, target=rx.getsockname(), interval=0.1)
    service.add_printer(P1S)
    got = await _collect(rx, 0.5)
    serials = _serials(got)
    assert set(serials) == {P1S.serial, X1C.serial}
    assert abs(serials.count(P1S.serial) - serials.count(X1C.serial)) <= 1

    names[X1C.serial] = "renamed on screen"
    await asyncio.sleep(0.25)
    _drain(rx)
    later = [parse_announcement(d) for d in await _collect(rx, 0.4)]
    x1c = [a for a in later if a is not None and a.serial == X1C.serial]
    assert x1c
    assert all(a.name == "renamed on screen" for a in x1c)
    assert x1c[0].model_code == "BL-P001"
    assert x1c[0].signal_dbm is None


async def test_remove_and_pause_stop_announcements(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    service = await _start(services, announcements=lambda: [A1], target=rx.getsockname(), interval=0.05)
    service.add_printer(P1S)
    service.add_printer(X1C)
    assert set(_serials(await _collect(rx, 0.4))) == {P1S.serial, X1C.serial, A1.serial}

    service.remove_printer(P1S.serial)
    service.pause(A1.serial)  # a printer from the callable goes offline
    assert service.is_paused(A1.serial)
    await asyncio.sleep(0.15)
    _drain(rx)  # whatever was already on its way
    assert set(_serials(await _collect(rx, 0.4))) == {X1C.serial}
    assert [a.serial for a in service.announced()] == [X1C.serial]

    service.resume(A1.serial)
    service.pause(X1C.serial)
    await asyncio.sleep(0.15)
    _drain(rx)
    assert set(_serials(await _collect(rx, 0.4))) == {A1.serial}


async def test_failing_source_does_not_stop_the_added_printers(
    udp: Callable[[], socket.socket], services: list[SsdpService], caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[SsdpAnnouncement]:
        raise RuntimeError("boom")

    rx = udp()
    service = await _start(services, announcements=broken, target=rx.getsockname(), interval=0.05)
    service.add_printer(P1S)
    assert set(_serials(await _collect(rx, 0.3))) == {P1S.serial}
    assert "announcement source failed" in caplog.text


# ------------------------------------------------------------------------------------ M-SEARCH


async def test_msearch_gets_one_reply_per_printer(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    service = await _start(services, announcements=lambda: [X1C], target=None)
    service.add_printer(P1S)
    client = udp()
    client.sendto(SEARCH, (LOOPBACK, service.port))
    replies = await _collect(client, 0.6)
    assert len(replies) == 2
    assert sorted(_serials(replies)) == sorted([P1S.serial, X1C.serial])
    for data in replies:
        lines = data.decode("utf-8").split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert lines[-2:] == ["", ""]
        assert "ST: urn:bambulab-com:device:3dprinter:1" in lines
        assert "EXT:" in lines
        assert "Date: Thu, 02 Jan 2025 03:04:05 GMT" in lines
        assert not any(line.startswith(("NT:", "NTS:")) for line in lines)
    by_serial = {a.serial: a for a in map(parse_announcement, replies) if a is not None}
    assert by_serial[P1S.serial] == P1S
    assert by_serial[X1C.serial] == X1C
    assert "Location: 127.0.0.2" in replies[[*_serials(replies)].index(X1C.serial)].decode().split("\r\n")


async def test_msearch_ssdp_all_lowercase_headers(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    service = await _start(services, target=None)
    service.add_printer(A1)
    client = udp()
    client.sendto(
        b'M-SEARCH * HTTP/1.1\r\nhost: 239.255.255.250:1990\r\nman: "ssdp:discover"\r\nst: ssdp:all\r\n\r\n',
        service.address,
    )
    item = await _recv(client, 2.0)
    assert item is not None
    data, sender = item
    assert sender == (LOOPBACK, service.port)
    assert b"\r\nST: urn:bambulab-com:device:3dprinter:1\r\n" in data
    assert parse_announcement(data) == A1


@pytest.mark.parametrize(
    "request_",
    [
        SEARCH.replace(b"urn:bambulab-com:device:3dprinter:1", b"upnp:rootdevice"),
        SEARCH.replace(b"urn:bambulab-com:device:3dprinter:1", b"urn:schemas-upnp-org:device:Basic:1"),
        SEARCH.replace(b'MAN: "ssdp:discover"\r\n', b""),
        SEARCH.replace(b"M-SEARCH", b"NOTIFY"),
        b"\x00\xff garbage",
        b"",
    ],
)
async def test_non_matching_datagrams_get_no_reply(
    request_: bytes, udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    service = await _start(services, target=None)
    service.add_printer(P1S)
    client = udp()
    client.sendto(request_, service.address)
    assert await _collect(client, 0.4) == []
    # The responder is still alive: a proper search right after is answered.
    client.sendto(SEARCH, service.address)
    item = await _recv(client, 2.0)
    assert item is not None
    assert _serials([item[0]]) == [P1S.serial]


async def test_paused_printer_does_not_answer_msearch(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    service = await _start(services, target=None)
    service.add_printer(P1S)
    service.add_printer(X1C)
    service.pause(P1S.serial)
    client = udp()
    client.sendto(SEARCH, service.address)
    assert _serials(await _collect(client, 0.5)) == [X1C.serial]
    service.remove_printer(X1C.serial)
    client.sendto(SEARCH, service.address)
    assert await _collect(client, 0.4) == []


async def test_notify_only_service_does_not_answer_msearch(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    service = await _start(services, listen=None, target=rx.getsockname(), interval=0.05)
    service.add_printer(P1S)
    assert service.host == LOOPBACK  # loopback target: bound on loopback, not every interface
    assert await _recv(rx, 2.0) is not None
    client = udp()
    client.sendto(SEARCH, service.address)
    assert await _collect(client, 0.4) == []


# ----------------------------------------------------------------------------------- lifecycle


async def test_stop_releases_the_port_and_restart_reuses_it(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    rx = udp()
    service = await _start(services, target=rx.getsockname(), interval=0.05)
    service.add_printer(P1S)
    port = service.port
    assert port != 0
    assert await _recv(rx, 2.0) is not None
    await service.stop()
    assert not service.running
    _drain(rx)
    assert await _collect(rx, 0.3) == []  # no NOTIFY after stop

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no SO_REUSEADDR
    try:
        probe.bind((LOOPBACK, port))
    finally:
        probe.close()

    await service.start()
    assert service.port == port
    item = await _recv(rx, 2.0)
    assert item is not None
    assert item[1] == (LOOPBACK, port)
    await service.stop()
    await service.stop()  # idempotent


async def test_async_context_manager(udp: Callable[[], socket.socket]) -> None:
    rx = udp()
    service = SsdpService(listen=(LOOPBACK, 0), target=rx.getsockname(), interval=0.05)
    service.add_printer(P1S)
    async with service as running:
        assert running is service
        assert await _recv(rx, 2.0) is not None
        port = service.port
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((LOOPBACK, port))
    finally:
        probe.close()


async def test_port_in_use_raises_simulator_error(udp: Callable[[], socket.socket]) -> None:
    taken = udp()
    service = SsdpService(listen=taken.getsockname(), target=None)
    with pytest.raises(SimulatorError, match="cannot bind"):
        await service.start()
    assert not service.running


@pytest.mark.parametrize(
    ("target", "broadcast", "expected"),
    [
        (("255.255.255.255", 2021), None, True),
        (("192.168.1.255", 2021), None, True),
        ((LOOPBACK, 2021), None, False),
        ((LOOPBACK, 2021), True, True),
        (("255.255.255.255", 2021), False, False),
    ],
)
async def test_so_broadcast_only_for_broadcast_targets(
    target: tuple[str, int], broadcast: bool | None, expected: bool, services: list[SsdpService]
) -> None:
    # No printers: nothing is ever sent, so a broadcast target never leaves the machine.
    service = await _start(services, target=target, broadcast=broadcast, interval=60.0)
    sock = service._transport.get_extra_info("socket") if service._transport else None
    assert sock is not None
    assert bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)) is expected


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError, match="interval"):
        SsdpService(interval=0)
    with pytest.raises(ValueError, match="listen"):
        SsdpService(listen=None, target=None)
    service = SsdpService(target=None)
    with pytest.raises(ValueError, match="interval"):
        service.interval = -1.0
    assert service.address == ("127.0.0.1", 2021)  # stays on this machine unless told otherwise


# ------------------------------------------------------------------------------ rate limit


def test_searches_are_limited_by_default_only_beyond_loopback() -> None:
    assert not SsdpService(listen=(LOOPBACK, 0), target=None).limits_searches
    assert not SsdpService(listen=("::1", 0), target=None).limits_searches
    assert SsdpService(listen=("0.0.0.0", 0), target=None).limits_searches  # noqa: S104 - never bound
    assert SsdpService(listen=("192.168.1.20", 0), target=None).limits_searches
    assert not SsdpService(listen=("0.0.0.0", 0), target=None, limit_searches=False).limits_searches  # noqa: S104


async def test_msearch_replies_are_rate_limited_per_source(
    udp: Callable[[], socket.socket], services: list[SsdpService]
) -> None:
    now = [1000.0]
    service = await _start(services, target=None, limit_searches=True, search_burst=2, search_rate=0.5,
                           monotonic=lambda: now[0])
    service.add_printer(P1S)
    service.add_printer(X1C)
    flooder = udp()
    for _ in range(10):
        flooder.sendto(SEARCH, (LOOPBACK, service.port))
    assert len(await _collect(flooder, 0.6)) == 2 * 2  # the burst, one reply per printer each
    assert service.searches_dropped == 8
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another source address
    try:
        other.bind(("127.0.0.2", 0))
        other.setblocking(False)
        other.sendto(SEARCH, (LOOPBACK, service.port))
        assert len(await _collect(other, 0.4)) == 2
    finally:
        other.close()
    now[0] += 2.0  # one token back (0.5 per second)
    for _ in range(3):
        flooder.sendto(SEARCH, (LOOPBACK, service.port))
    assert len(await _collect(flooder, 0.4)) == 2
