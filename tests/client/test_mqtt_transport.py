"""The lean MQTT 3.1.1 connection (bambulab.transports.mqtt) over real loopback sockets.

Two peers: the virtual printer's broker (amqtt, TLS, the real Bambu topics and credentials), and a
scripted broker in this file (plain TCP) that sends exactly the bytes a test needs: refused
CONNACKs, split and coalesced packets, QoS 1/2 deliveries, missing PINGRESPs, garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    NotConnectedError,
)
from bambulab.sim import Simulator, VirtualPrinter
from bambulab.transports.mqtt import MqttConnection, connack_error, encode_publish
from bambulab.transports.tls import PrinterCertificateError, check_peer_serial, printer_ssl_context

TIMEOUT = 5.0


class Inbox:
    """Collects what a connection delivers."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.closed: asyncio.Queue[BaseException | None] = asyncio.Queue()

    def on_message(self, topic: str, payload: bytes) -> None:
        self.messages.put_nowait((topic, payload))

    def on_close(self, reason: BaseException | None) -> None:
        self.closed.put_nowait(reason)

    async def next(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def close_reason(self) -> BaseException | None:
        return await asyncio.wait_for(self.closed.get(), TIMEOUT)


@pytest.fixture
async def vp(sim: Simulator) -> VirtualPrinter:
    return await sim.add_printer(model="X1C")


def sim_connection(vp: VirtualPrinter, ctx: ssl.SSLContext, inbox: Inbox, **kwargs: Any) -> MqttConnection:
    kwargs.setdefault("password", vp.access_code)
    return MqttConnection(
        vp.host,
        vp.mqtt.port,
        on_message=inbox.on_message,
        on_close=inbox.on_close,
        username="bblp",
        ssl_context=ctx,
        **kwargs,
    )


# --------------------------------------------------------------------------- against the virtual printer


async def test_connect_subscribe_request_and_receive(vp: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    inbox = Inbox()
    conn = sim_connection(vp, sim_ctx, inbox, verify_peer=lambda obj: check_peer_serial(obj, vp.serial))
    await conn.connect()
    try:
        assert conn.connected
        assert await conn.subscribe(f"device/{vp.serial}/report") == 0
        request = {"pushing": {"sequence_id": "1", "command": "pushall"}}
        await conn.publish(f"device/{vp.serial}/request", json.dumps(request).encode())
        topic, payload = await inbox.next()
        assert topic == f"device/{vp.serial}/report"
        report = json.loads(payload)
        assert report["print"]["command"] == "push_status" and report["print"]["msg"] == 0
        assert conn.messages_received >= 1
        # QoS 1 out: the broker's PUBACK completes the publish
        version = {"info": {"sequence_id": "2", "command": "get_version"}}
        await conn.publish(f"device/{vp.serial}/request", json.dumps(version).encode(), qos=1)
        while True:
            _, payload = await inbox.next()
            if "info" in json.loads(payload):
                break
    finally:
        await conn.close()
    assert conn.closed
    assert await inbox.close_reason() is None  # a close we asked for has no error
    with pytest.raises(NotConnectedError):
        conn.send(f"device/{vp.serial}/request", b"{}")


async def test_wrong_access_code_is_an_authentication_error_without_the_code(
    vp: VirtualPrinter, sim_ctx: ssl.SSLContext
) -> None:
    inbox = Inbox()
    wrong = "Wr0ngC0de"
    conn = sim_connection(vp, sim_ctx, inbox, password=wrong)
    with pytest.raises(AuthenticationError) as info:
        await conn.connect()
    assert "wrong access code" in str(info.value)
    assert wrong not in str(info.value) and vp.access_code not in str(info.value)
    assert wrong not in repr(conn)
    assert conn.closed or not conn.connected
    assert inbox.closed.empty()  # never established, so no close callback


async def test_refused_port_is_a_connection_error(sim_ctx: ssl.SSLContext, unused_tcp_port: int) -> None:
    conn = MqttConnection("127.0.0.1", unused_tcp_port, on_message=Inbox().on_message, ssl_context=sim_ctx)
    with pytest.raises(BambuConnectionError, match="cannot connect"):
        await conn.connect()


async def test_untrusted_certificate_is_a_certificate_error(vp: VirtualPrinter) -> None:
    conn = sim_connection(vp, printer_ssl_context(), Inbox())  # Bambu's CA: the simulator's leaf fails
    with pytest.raises(PrinterCertificateError, match="did not verify"):
        await conn.connect()


async def test_certificate_for_another_serial_is_refused(vp: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    inbox = Inbox()
    conn = sim_connection(vp, sim_ctx, inbox, verify_peer=lambda obj: check_peer_serial(obj, "00M09A000000000"))
    with pytest.raises(PrinterCertificateError, match="00M09A000000000"):
        await conn.connect()


async def test_keepalive_pings_keep_an_idle_connection_and_a_stall_is_detected(
    vp: VirtualPrinter, sim_ctx: ssl.SSLContext
) -> None:
    inbox = Inbox()
    conn = sim_connection(vp, sim_ctx, inbox, keepalive=1)
    await conn.connect()
    try:
        await asyncio.sleep(2.2)  # two keepalive periods with nothing subscribed: only PINGREQ/PINGRESP
        assert conn.connected
        vp.stall(True)  # the broker stops reading: the next PINGREQ is never answered
        reason = await inbox.close_reason()
        assert isinstance(reason, BambuTimeoutError) and "keepalive" in str(reason)
    finally:
        vp.stall(False)
        await conn.close()


async def test_dropped_connection_reports_a_connection_error(vp: VirtualPrinter, sim_ctx: ssl.SSLContext) -> None:
    inbox = Inbox()
    conn = sim_connection(vp, sim_ctx, inbox)
    await conn.connect()
    await vp.disconnect_clients()
    reason = await inbox.close_reason()
    assert isinstance(reason, BambuConnectionError)
    assert await conn.wait_closed() is reason
    assert not conn.connected


# --------------------------------------------------------------------------- a scripted broker


class ScriptedBroker:
    """A plain-TCP peer that records every packet the client sends and sends what the test says."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            await self.accepted.put((reader, writer))

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def accept(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(self.accepted.get(), TIMEOUT)

    async def packet(self) -> tuple[int, bytes]:
        """The next packet from the client: (first byte, body)."""
        assert self.reader is not None
        header = (await asyncio.wait_for(self.reader.readexactly(1), TIMEOUT))[0]
        length, shift = 0, 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return header, await self.reader.readexactly(length)

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def broker() -> AsyncIterator[ScriptedBroker]:
    scripted = ScriptedBroker()
    await scripted.start()
    yield scripted
    await scripted.close()


async def connected(broker: ScriptedBroker, inbox: Inbox, **kwargs: Any) -> MqttConnection:
    kwargs.setdefault("keepalive", 0)
    conn = MqttConnection(
        "127.0.0.1", broker.port, on_message=inbox.on_message, on_close=inbox.on_close,
        username="bblp", password="12345678", **kwargs,
    )
    task = asyncio.create_task(conn.connect())
    await broker.accept()
    header, body = await broker.packet()
    assert header == 0x10 and body[:7] == b"\x00\x04MQTT\x04"
    assert body[7] & 0xC2 == 0xC2  # user name, password, clean session
    await broker.send(b"\x20\x02\x00\x00")
    await asyncio.wait_for(task, TIMEOUT)
    return conn


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (5, AuthenticationError, "wrong access code"),
        (4, AuthenticationError, "wrong access code"),
        (3, BambuConnectionError, "too many clients"),
        (2, BambuConnectionError, "client id"),
    ],
)
async def test_connack_codes_map_to_clear_errors(
    broker: ScriptedBroker, code: int, kind: type[BambuError], text: str
) -> None:
    conn = MqttConnection("127.0.0.1", broker.port, on_message=Inbox().on_message, username="bblp", password="pw")
    task = asyncio.create_task(conn.connect())
    await broker.accept()
    await broker.packet()
    await broker.send(bytes((0x20, 0x02, 0x00, code)))
    with pytest.raises(kind, match=text) as info:
        await asyncio.wait_for(task, TIMEOUT)
    assert "pw" not in str(info.value).split()
    assert type(connack_error(code)) is kind


async def test_no_connack_is_a_timeout(broker: ScriptedBroker) -> None:
    conn = MqttConnection("127.0.0.1", broker.port, on_message=Inbox().on_message, connect_timeout=0.3)
    with pytest.raises(BambuTimeoutError, match="CONNACK"):
        await conn.connect()


async def test_silent_tls_peer_is_a_handshake_timeout(broker: ScriptedBroker) -> None:
    conn = MqttConnection(
        "127.0.0.1", broker.port, on_message=Inbox().on_message,
        ssl_context=printer_ssl_context(insecure=True), connect_timeout=0.3,
    )
    with pytest.raises(BambuTimeoutError, match="TLS handshake"):
        await conn.connect()


async def test_refused_subscription(broker: ScriptedBroker) -> None:
    conn = await connected(broker, Inbox())
    task = asyncio.create_task(conn.subscribe("device/X/request"))
    header, body = await broker.packet()
    assert header == 0x82
    await broker.send(b"\x90\x03" + body[:2] + b"\x80")
    with pytest.raises(BambuConnectionError, match="refused the subscription"):
        await asyncio.wait_for(task, TIMEOUT)
    await conn.close()


async def test_packets_split_byte_by_byte_and_coalesced(broker: ScriptedBroker) -> None:
    inbox = Inbox()
    conn = await connected(broker, inbox)
    big = json.dumps({"print": {"x": "y" * 200_000}}).encode()  # a 3-byte remaining length
    stream = encode_publish("t/1", b'{"a":1}') + encode_publish("t/2", big) + encode_publish("t/1", b"")
    for index in range(0, 300):  # the first packets arrive one byte at a time
        await broker.send(stream[index : index + 1])
    await broker.send(stream[300:])  # the rest in one write
    assert await inbox.next() == ("t/1", b'{"a":1}')
    assert await inbox.next() == ("t/2", big)
    assert await inbox.next() == ("t/1", b"")
    assert conn.messages_received == 3
    await conn.close()


async def test_qos1_and_qos2_deliveries_are_acknowledged(broker: ScriptedBroker) -> None:
    inbox = Inbox()
    conn = await connected(broker, inbox)
    await broker.send(b"\x32" + bytes((2 + 3 + 2 + 2,)) + b"\x00\x03a/b" + b"\x12\x34" + b"hi")
    assert await inbox.next() == ("a/b", b"hi")
    assert await broker.packet() == (0x40, b"\x12\x34")  # PUBACK with the same id
    await broker.send(b"\x34" + bytes((2 + 3 + 2 + 2,)) + b"\x00\x03a/b" + b"\x00\x07" + b"yo")
    assert await inbox.next() == ("a/b", b"yo")
    assert await broker.packet() == (0x50, b"\x00\x07")  # PUBREC
    await broker.send(b"\x62\x02\x00\x07")  # PUBREL
    assert await broker.packet() == (0x70, b"\x00\x07")  # PUBCOMP
    await conn.close()
    assert await broker.packet() == (0xE0, b"")  # DISCONNECT


async def test_outgoing_qos1_waits_for_puback_or_times_out(broker: ScriptedBroker) -> None:
    conn = await connected(broker, Inbox())
    task = asyncio.create_task(conn.publish("device/X/request", b"{}", qos=1))
    header, body = await broker.packet()
    assert header == 0x32 and body.endswith(b"{}")
    packet_id = body[2 + len("device/X/request") : 4 + len("device/X/request")]
    await broker.send(b"\x40\x02" + packet_id)
    await asyncio.wait_for(task, TIMEOUT)
    with pytest.raises(BambuTimeoutError, match="PUBACK"):
        await conn.publish("device/X/request", b"{}", qos=1, timeout=0.2)
    await conn.close()


async def test_ping_without_pingresp_closes_with_a_timeout(broker: ScriptedBroker) -> None:
    inbox = Inbox()
    conn = await connected(broker, inbox, keepalive=1)
    assert await broker.packet() == (0xC0, b"")  # PINGREQ once the link has been idle
    await broker.send(b"\xd0\x00")  # PINGRESP
    assert await broker.packet() == (0xC0, b"")  # the next one goes unanswered
    reason = await inbox.close_reason()
    assert isinstance(reason, BambuTimeoutError)
    assert conn.closed


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xf0\x00",  # reserved packet type
        b"\x30\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
        b"\x30\x05\x00\x09abc",  # topic longer than the packet
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
    ],
)
async def test_protocol_violations_close_the_connection_cleanly(broker: ScriptedBroker, garbage: bytes) -> None:
    inbox = Inbox()
    conn = await connected(broker, inbox)
    await broker.send(garbage)
    reason = await inbox.close_reason()
    assert isinstance(reason, BambuConnectionError)
    assert conn.closed
    assert inbox.messages.empty()


async def test_oversized_packet_is_refused_before_it_is_buffered(broker: ScriptedBroker) -> None:
    inbox = Inbox()
    conn = await connected(broker, inbox, max_packet_size=1024)
    await broker.send(b"\x30\x80\x80\x04")  # announces 64 KiB
    reason = await inbox.close_reason()
    assert isinstance(reason, BambuConnectionError) and "over the limit" in str(reason)
    assert conn.closed


async def test_a_failing_message_handler_does_not_break_the_connection(broker: ScriptedBroker) -> None:
    seen: list[bytes] = []

    def handler(topic: str, payload: bytes) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("handler bug")

    conn = MqttConnection("127.0.0.1", broker.port, on_message=handler, keepalive=0)
    task = asyncio.create_task(conn.connect())
    await broker.accept()
    await broker.packet()
    await broker.send(b"\x20\x02\x00\x00" + encode_publish("t", b"boom") + encode_publish("t", b"ok"))
    await asyncio.wait_for(task, TIMEOUT)
    for _ in range(50):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert seen == [b"boom", b"ok"]
    assert conn.connected
    await conn.close()


def test_connection_objects_are_single_use_and_validate_arguments() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        MqttConnection("h", 1, on_message=Inbox().on_message, keepalive=70_000)
    with pytest.raises(ValueError, match="QoS"):
        encode_publish("t", b"", qos=2)
