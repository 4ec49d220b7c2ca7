"""A lean asyncio MQTT 3.1.1 client connection, with TLS done in-process over memory BIOs.

One :class:`MqttConnection` is one TCP connection to a printer's broker (or to the Bambu cloud
broker, which one connection shares for all of an account's printers): CONNECT/CONNACK,
SUBSCRIBE/SUBACK, PUBLISH in (QoS 0, 1 and 2) and out (QoS 0 and 1), PINGREQ/PINGRESP keepalive,
DISCONNECT. It is not reusable: a reconnect is a new object (the caller owns reconnect policy,
see :class:`bambulab.printer.Printer`). No threads, no task per connection, no task per message:
incoming messages are handed to a plain callback ``on_message(topic, payload)`` from the event
loop's read callback, and the keepalive is one timer handle.

Why not aiomqtt (measured on this machine, 2 cores, Python 3.11.7, TLS over loopback, mosquitto
2.0.11 as broker, 1 KB reports, 1,000 connections each subscribed to its own topic):

* Throughput is not the problem: aiomqtt 2.5.1 received 5,000 msg/s with 32 % of one core
  (65 µs/msg, p99 lag 41 ms) and 10,000 msg/s with 65 % (p99 94 ms), at 41 KiB RSS per connection.
* But aiomqtt runs paho's blocking TCP connect and TLS handshake in the default thread-pool
  executor. With 12 "stalled" printers (TCP accepted, TLS never answered) a healthy printer's
  connect took 9.9 s instead of a few ms; a farm where printers are switched off or unreachable
  would starve every reconnect, and the farm goal is "no threads".
* asyncio's own TLS transport cannot replace it as is: Python 3.11's ``SSLProtocol`` allocates
  and zero-fills a 256 KiB read buffer per connection (measured 294 KiB RSS per idle TLS
  connection), three times the 100 KiB-per-printer budget.

So this module runs TLS itself (:meth:`ssl.SSLContext.wrap_bio` on a plain TCP
:class:`asyncio.Protocol`): the handshake happens on the event loop, OpenSSL's buffers are
released when idle (CPython sets ``SSL_MODE_RELEASE_BUFFERS``), and the MQTT framing parses
packets straight out of the decrypted chunks. The figures for this client, measured with the same
harness, are in :data:`MEASURED`.

Errors map to the library's tree at this boundary: unreachable or refused →
:class:`~bambulab.exceptions.BambuConnectionError`; no TLS/CONNACK answer in time →
:class:`~bambulab.exceptions.BambuTimeoutError`; CONNACK 4/5 →
:class:`~bambulab.exceptions.AuthenticationError` ("wrong access code"); CONNACK 3 →
:class:`~bambulab.exceptions.BambuConnectionError` ("too many clients"); a certificate that does
not verify → :class:`~bambulab.transports.tls.PrinterCertificateError`. The password never
appears in a message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Callable
from typing import Final, NamedTuple, cast

from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    NotConnectedError,
    PrinterCertificateError,
    SubscriptionRefusedError,
)

__all__ = [
    "MEASURED",
    "CloseHandler",
    "MessageHandler",
    "MqttConnection",
    "SubscriptionRefusedError",
    "Will",
    "connack_error",
    "encode_connect",
    "encode_publish",
    "encode_subscribe",
]

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
CloseHandler = Callable[[BaseException | None], None]

#: What this client measured against the same harness as aiomqtt (see the module docstring).
MEASURED: Final = (
    "1,000 TLS connections, 1 KB reports: 5,000 msg/s with 15 % of one core (31 µs/msg; 17 % and 34 µs "
    "including json.loads), p99 lag 22 ms; 10,000 msg/s with 31 %, p99 13 ms; 29 KiB RSS per connection. "
    "aiomqtt 2.5.1 on the same harness: 32 % (65 µs/msg; 37 % with json.loads), p99 41 ms; 10,000 msg/s "
    "with 65 %, p99 94 ms; 41 KiB per connection"
)

_READ_SIZE: Final = 16384  # one TLS record
_DEFAULT_MAX_PACKET: Final = 8 * 1024 * 1024

# Fixed headers of packets without variable parts.
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"

# Packet types (upper nibble of the first byte).
_CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 2, 3, 4, 5, 6, 7
_SUBACK, _UNSUBACK, _PINGRESP = 9, 11, 13

_NEW, _CONNECTING, _CONNECTED, _CLOSING, _CLOSED = range(5)

_CONNACK_TEXT: Final = {
    1: "the printer's broker does not accept MQTT 3.1.1 (CONNACK 1)",
    2: "the printer's broker rejected the client id (CONNACK 2)",
    3: (
        "printer refused: too many clients are connected to it (CONNACK 3, server unavailable). "
        "Close another app that talks to it (Bambu Studio, Home Assistant, another script) and retry"
    ),
}


def connack_error(code: int) -> BambuError:
    """The exception for a refused CONNACK return code (never mentions the access code itself)."""
    if code in (4, 5):
        return AuthenticationError(
            f"wrong access code: the printer refused the MQTT login (CONNACK {code}). Check the access "
            "code on the printer's screen (it changes when LAN mode is toggled)"
        )
    return BambuConnectionError(_CONNACK_TEXT.get(code, f"the printer refused the connection (CONNACK {code})"))


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _field(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string fields are limited to 65,535 bytes")
    return len(raw).to_bytes(2, "big") + raw


class Will(NamedTuple):
    """A last-will message the broker publishes when the connection dies without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_connect(
    client_id: str,
    username: str | None,
    password: str | bytes | None,
    keepalive: int,
    *,
    clean_session: bool = True,
    will: Will | None = None,
) -> bytes:
    """A CONNECT packet (MQTT 3.1.1), optionally with a last will."""
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError("keepalive must be 0..65535 seconds")
    flags = 0x02 if clean_session else 0
    payload = _field(client_id)
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise ValueError("will qos must be 0, 1 or 2")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _field(will.topic) + _field(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _field(username)
        if password is not None:
            flags |= 0x40
            payload += _field(password)
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + _length(len(body)) + body


def encode_publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, *, retain: bool = False) -> bytes:
    """A PUBLISH packet; ``packet_id`` is required for QoS 1."""
    if qos not in (0, 1):
        raise ValueError("outgoing QoS must be 0 or 1")
    head = 0x30 | (qos << 1) | (1 if retain else 0)
    variable = _field(topic)
    if qos:
        variable += packet_id.to_bytes(2, "big")
    return bytes((head,)) + _length(len(variable) + len(payload)) + variable + payload


def encode_subscribe(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    """A SUBSCRIBE packet for ``[(topic_filter, qos), ...]``."""
    body = packet_id.to_bytes(2, "big") + b"".join(_field(topic) + bytes((qos,)) for topic, qos in topics)
    return b"\x82" + _length(len(body)) + body


class _ProtocolViolation(BambuConnectionError):
    """The broker sent something that is not valid MQTT 3.1.1."""


class MqttConnection(asyncio.Protocol):
    """One MQTT 3.1.1 connection, optionally over TLS. Not reusable: reconnect with a new object.

    ``on_message(topic, payload)`` runs on the event loop for every PUBLISH received, in order; it
    must be quick and must not block (an exception it raises is logged and swallowed).
    ``on_close(error)`` runs once when an established connection ends: ``None`` after
    :meth:`close`, else the reason (a :class:`~bambulab.exceptions.BambuError`).
    ``verify_peer(ssl_object)`` runs right after the TLS handshake (see
    :func:`bambulab.transports.tls.check_peer_serial`); raising a ``BambuError`` there aborts.
    ``peer`` names the far end in error messages ("the printer", "the Bambu cloud broker");
    ``refusal(code)`` makes the exception for a CONNACK that refuses the login (default
    :func:`connack_error`, whose texts speak of a printer's access code).
    """

    __slots__ = (
        "_buffer",
        "_client_id",
        "_close_reason",
        "_closed",
        "_connack",
        "_connect_timeout",
        "_drain_waiter",
        "_handshake",
        "_host",
        "_in_bio",
        "_keepalive",
        "_keepalive_handle",
        "_last_rx",
        "_last_tx",
        "_loop",
        "_max_packet",
        "_next_id",
        "_on_close",
        "_on_message",
        "_out_bio",
        "_password",
        "_paused",
        "_peer",
        "_pending",
        "_ping_sent",
        "_port",
        "_refusal",
        "_server_hostname",
        "_ssl_context",
        "_sslobj",
        "_state",
        "_topics",
        "_transport",
        "_username",
        "_verify_peer",
        "_will",
        "messages_received",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_message: MessageHandler,
        on_close: CloseHandler | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        verify_peer: Callable[[ssl.SSLObject], None] | None = None,
        client_id: str | None = None,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        max_packet_size: int = _DEFAULT_MAX_PACKET,
        peer: str = "the printer",
        refusal: Callable[[int], BambuError] = connack_error,
        will: Will | None = None,
    ) -> None:
        if keepalive < 0 or keepalive > 0xFFFF:
            raise ValueError("keepalive must be 0..65535 seconds")
        self._host = host
        self._port = port
        self._on_message = on_message
        self._on_close = on_close
        self._username = username
        self._password = password.encode("utf-8") if password is not None else None
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        self._verify_peer = verify_peer
        self._client_id = client_id or f"bambulab-{uuid.uuid4().hex[:16]}"
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._max_packet = max_packet_size
        self._peer = peer
        self._refusal = refusal
        self._will = will
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._sslobj: ssl.SSLObject | None = None
        self._in_bio: ssl.MemoryBIO | None = None
        self._out_bio: ssl.MemoryBIO | None = None
        self._state = _NEW
        self._buffer: bytearray | None = None  # an incomplete packet carried over to the next chunk
        self._handshake: asyncio.Future[None] | None = None
        self._connack: asyncio.Future[int] | None = None
        self._closed: asyncio.Future[BaseException | None] | None = None
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._close_reason: BaseException | None = None
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._ping_sent: float | None = None
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._topics: dict[bytes, str] = {}
        self.messages_received = 0

    def __repr__(self) -> str:
        names = ("new", "connecting", "connected", "closing", "closed")
        tls = "tls" if self._ssl_context is not None else "plain"
        return f"<MqttConnection {self._client_id} {self._host}:{self._port} {tls} {names[self._state]}>"

    # ------------------------------------------------------------------ public API

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def last_received(self) -> float:
        """Event-loop time of the last bytes received (0.0 before any)."""
        return self._last_rx

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return self._sslobj

    async def connect(self) -> None:
        """Open TCP, run TLS, send CONNECT and wait for CONNACK, all within ``connect_timeout``."""
        if self._state != _NEW:
            raise RuntimeError("an MqttConnection connects once; make a new one to reconnect")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._state = _CONNECTING
        self._handshake = loop.create_future()
        self._connack = loop.create_future()
        self._closed = loop.create_future()
        where = f"{self._host}:{self._port}"
        stage = "the TCP connection"
        try:
            async with asyncio.timeout(self._connect_timeout):
                try:
                    await loop.create_connection(lambda: self, self._host, self._port)
                except OSError as exc:
                    reason = exc.strerror or type(exc).__name__
                    raise BambuConnectionError(f"cannot connect to {self._peer} at {where}: {reason}") from exc
                stage = "the TLS handshake"
                await self._handshake
                stage = "the MQTT CONNACK"
                self._write(encode_connect(
                    self._client_id, self._username, self._password, self._keepalive, will=self._will
                ))
                code = await self._connack
            if code != 0:
                raise self._refusal(code)
        except BambuError:
            self._abort_quietly()
            raise
        except TimeoutError as exc:
            self._abort_quietly()
            raise BambuTimeoutError(
                f"{self._peer} at {where} did not answer {stage} within {self._connect_timeout:g} s"
            ) from exc
        except BaseException:
            self._abort_quietly()
            raise
        self._state = _CONNECTED
        if self._keepalive:
            self._schedule_keepalive()

    async def subscribe(self, topic: str, qos: int = 0, *, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """Subscribe to one topic filter; returns the granted QoS. A refusal (0x80) raises
        :class:`SubscriptionRefusedError` (a :class:`~bambulab.exceptions.BambuConnectionError`)."""
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        packet_id, waiter = self._new_request()
        self._write(encode_subscribe(packet_id, [(topic, qos)]))
        body = await self._await_reply(packet_id, waiter, timeout, f"SUBACK for {topic}")
        granted = body[2] if len(body) > 2 else 0x80
        if granted == 0x80:
            raise SubscriptionRefusedError(f"{self._peer} refused the subscription to {topic!r}", topic=topic)
        return granted

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
        retain: bool = False,
    ) -> None:
        """Publish; QoS 1 waits for the PUBACK (``timeout`` → BambuTimeoutError). ``retain``
        asks the broker to keep the message for later subscribers."""
        if qos == 0:
            self.send(topic, payload, retain=retain)
            if self._paused:
                await self._drain(timeout)
            return
        if qos != 1:
            raise ValueError("outgoing QoS must be 0 or 1")
        packet_id, waiter = self._new_request()
        self._write(encode_publish(topic, payload, 1, packet_id, retain=retain))
        await self._await_reply(packet_id, waiter, timeout, f"PUBACK for {topic}")

    def send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 0 without waiting (the transport buffers it)."""
        self._require_connected()
        self._write(encode_publish(topic, payload, retain=retain))

    async def close(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Send DISCONNECT and close_notify, close, and wait (bounded) until the socket is gone."""
        transport = self._transport
        if transport is None or self._state >= _CLOSING:
            if self._closed is not None and not self._closed.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            return
        was_connected = self._state == _CONNECTED
        self._state = _CLOSING
        with contextlib.suppress(Exception):
            if was_connected:
                self._write(_DISCONNECT)
            if self._sslobj is not None:
                with contextlib.suppress(ssl.SSLError):
                    self._sslobj.unwrap()
                self._flush()
        transport.close()
        if self._closed is not None and not self._closed.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            except TimeoutError:
                transport.abort()

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once; ``on_close`` gets ``reason``."""
        if self._close_reason is None:
            self._close_reason = reason
        transport = self._transport
        if transport is not None:
            self._state = _CLOSING
            transport.abort()

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is gone; returns why (``None`` after :meth:`close`)."""
        if self._closed is None:
            return None
        return await asyncio.shield(self._closed)

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not an isinstance check: uvloop's transports do not subclass asyncio's.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        assert self._loop is not None
        self._last_rx = self._last_tx = self._loop.time()
        ctx = self._ssl_context
        if ctx is None:
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(None)
            return
        self._in_bio = ssl.MemoryBIO()
        self._out_bio = ssl.MemoryBIO()
        hostname = self._server_hostname
        if hostname is None and ctx.check_hostname:
            hostname = self._host
        try:
            self._sslobj = ctx.wrap_bio(self._in_bio, self._out_bio, server_side=False, server_hostname=hostname)
        except (ssl.SSLError, ValueError) as exc:
            self._fail_handshake(BambuConnectionError(f"cannot start TLS: {exc}"))
            return
        self._step_handshake()

    def data_received(self, data: bytes) -> None:
        loop = self._loop
        assert loop is not None
        self._last_rx = loop.time()
        sslobj = self._sslobj
        if sslobj is None:
            self._feed(data)
            return
        assert self._in_bio is not None
        self._in_bio.write(data)
        if not self._handshake_done() and not self._step_handshake():
            return
        read = sslobj.read
        try:
            while self._state <= _CONNECTED:
                chunk = read(_READ_SIZE)
                if not chunk:
                    self._eof()
                    return
                self._feed(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._eof()
            return
        except ssl.SSLError as exc:
            self.abort(BambuConnectionError(f"TLS error from {self._peer}: {exc.reason or exc}"))
            return
        if self._out_bio is not None and self._out_bio.pending:
            self._flush()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        previous = self._state
        self._state = _CLOSED
        self._buffer = None
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        reason = self._close_reason
        if reason is None and previous != _CLOSING:
            reason = BambuConnectionError(f"{self._peer} closed the connection")
            if exc is not None:
                reason.__cause__ = exc
        lost = reason if reason is not None else BambuConnectionError("the connection was closed")
        for future in (self._handshake, self._connack):
            if future is not None and not future.done():
                future.set_exception(lost)
                future.exception()  # retrieved: connect() may already have given up on it
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(lost)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(lost)
            self._drain_waiter.exception()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(reason)
        if previous in (_CONNECTED, _CLOSING) and self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                log.exception("MQTT close handler failed")

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ TLS

    def _handshake_done(self) -> bool:
        return self._handshake is not None and self._handshake.done()

    def _step_handshake(self) -> bool:
        """Advance the TLS handshake; True once it is complete and verified."""
        sslobj = self._sslobj
        assert sslobj is not None
        try:
            sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLCertVerificationError as exc:
            self._flush()
            self._fail_handshake(
                PrinterCertificateError(
                    f"{self._peer}'s TLS certificate did not verify ({exc.verify_message}): it is not signed "
                    "by the trusted CA. Pass ca_file= for a custom CA, or insecure=True to skip the check"
                )
            )
            return False
        except (ssl.SSLError, OSError) as exc:
            self._flush()
            self._fail_handshake(BambuConnectionError(f"TLS handshake with {self._peer} failed: {exc}"))
            return False
        self._flush()
        if self._verify_peer is not None:
            try:
                self._verify_peer(sslobj)
            except BambuError as exc:
                self._fail_handshake(exc)
                return False
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_result(None)
        return True

    def _fail_handshake(self, error: BambuError) -> None:
        future = self._handshake
        if future is not None and not future.done():
            future.set_exception(error)
            future.exception()  # retrieved: connect() may already have given up on it
        self.abort(error)

    def _flush(self) -> None:
        out = self._out_bio
        transport = self._transport
        if out is not None and out.pending and transport is not None:
            transport.write(out.read())

    def _eof(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ writing

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise NotConnectedError(f"the MQTT connection to {self._peer} is closed")
        sslobj = self._sslobj
        if sslobj is None:
            transport.write(data)
        else:
            try:
                sslobj.write(data)
            except ssl.SSLError as exc:
                self.abort(BambuConnectionError(f"TLS error while sending: {exc.reason or exc}"))
                raise NotConnectedError(f"the MQTT connection to {self._peer} is closed") from exc
            self._flush()
        assert self._loop is not None
        self._last_tx = self._loop.time()

    def _require_connected(self) -> None:
        if self._state != _CONNECTED:
            raise NotConnectedError(f"the MQTT connection to {self._peer} is not open")

    def _new_request(self) -> tuple[int, asyncio.Future[bytes]]:
        self._require_connected()
        assert self._loop is not None
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._pending:
                break
        else:
            raise BambuConnectionError("too many MQTT requests in flight")
        waiter: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[self._next_id] = waiter
        return self._next_id, waiter

    async def _await_reply(self, packet_id: int, waiter: asyncio.Future[bytes], limit: float, what: str) -> bytes:
        try:
            async with asyncio.timeout(limit):
                return await waiter
        except TimeoutError as exc:
            raise BambuTimeoutError(f"no {what} from {self._peer} within {limit:g} s") from exc
        finally:
            if self._pending.get(packet_id) is waiter:
                del self._pending[packet_id]

    async def _drain(self, limit: float) -> None:
        if not self._paused:
            return
        assert self._loop is not None
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(limit):
                await asyncio.shield(self._drain_waiter)
        except TimeoutError as exc:
            raise BambuTimeoutError(f"{self._peer} did not read what was sent within {limit:g} s") from exc

    # ------------------------------------------------------------------ keepalive

    def _schedule_keepalive(self) -> None:
        assert self._loop is not None
        interval = max(0.1, self._keepalive / 4)
        self._keepalive_handle = self._loop.call_later(interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_handle = None
        if self._state != _CONNECTED:
            return
        assert self._loop is not None
        now = self._loop.time()
        if self._ping_sent is not None:
            if now - self._ping_sent >= self._keepalive:
                self.abort(
                    BambuTimeoutError(f"{self._peer} did not answer a keepalive ping within {self._keepalive} s")
                )
                return
        elif now - self._last_tx >= self._keepalive * 0.75:
            try:
                self._write(_PINGREQ)
            except BambuError:
                return
            self._ping_sent = now
        self._schedule_keepalive()

    # ------------------------------------------------------------------ reading

    def _feed(self, data: bytes) -> None:
        """Parse every complete packet in the buffered bytes plus ``data``; keep the rest."""
        buffered = self._buffer
        if buffered:
            buffered += data
            view: bytes | bytearray = buffered
        else:
            view = data
        end = len(view)
        pos = 0
        try:
            while end - pos >= 2:
                # Remaining length: 1 to 4 bytes, 7 bits each.
                index = pos + 1
                byte = view[index]
                length = byte & 0x7F
                shift = 7
                while byte & 0x80:
                    index += 1
                    if index >= end:
                        break
                    if shift > 21:
                        raise _ProtocolViolation("malformed MQTT remaining length")
                    byte = view[index]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                else:
                    index += 1
                    stop = index + length
                    if length > self._max_packet:
                        raise _ProtocolViolation(f"MQTT packet of {length} bytes is over the limit")
                    if stop > end:
                        break
                    header = view[pos]
                    pos = stop
                    if header >> 4 == _PUBLISH:
                        self._on_publish(header, view, index, stop)
                    else:
                        self._on_control(header, bytes(view[index:stop]))
                    if self._state > _CONNECTED:
                        return
                    continue
                break  # the remaining length itself is incomplete
        except BambuError as exc:  # a protocol violation, or the connection closed while answering
            self.abort(exc)
            return
        except IndexError:
            self.abort(_ProtocolViolation("truncated MQTT packet"))
            return
        if pos >= end:
            self._buffer = None
        elif buffered:
            del buffered[:pos]
        else:
            self._buffer = bytearray(view[pos:])

    def _on_publish(self, header: int, view: bytes | bytearray, start: int, stop: int) -> None:
        topic_len = (view[start] << 8) | view[start + 1]
        topic_end = start + 2 + topic_len
        if topic_end > stop:
            raise _ProtocolViolation("PUBLISH topic runs past the packet")
        raw_topic = bytes(view[start + 2 : topic_end])
        topic = self._topics.get(raw_topic)
        if topic is None:
            try:
                topic = raw_topic.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _ProtocolViolation("PUBLISH topic is not UTF-8") from exc
            if len(self._topics) < 16:
                self._topics[raw_topic] = topic
        qos = (header >> 1) & 0x03
        if qos:
            packet_id = view[topic_end : topic_end + 2]
            topic_end += 2
            if qos == 1:
                self._write(b"\x40\x02" + packet_id)
            elif qos == 2:
                self._write(b"\x50\x02" + packet_id)  # PUBREC; delivered now, PUBCOMP on PUBREL
            else:
                raise _ProtocolViolation("PUBLISH with QoS 3")
        payload = bytes(view[topic_end:stop])
        self.messages_received += 1
        try:
            self._on_message(topic, payload)
        except Exception:
            log.exception("MQTT message handler failed")

    def _on_control(self, header: int, body: bytes) -> None:
        kind = header >> 4
        if kind == _PINGRESP:
            self._ping_sent = None
        elif kind in (_PUBACK, _SUBACK, _UNSUBACK, _PUBCOMP):
            if len(body) < 2:
                raise _ProtocolViolation("acknowledgement without a packet id")
            waiter = self._pending.pop(int.from_bytes(body[:2], "big"), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
        elif kind == _PUBREL:
            self._write(b"\x70\x02" + body[:2])  # PUBCOMP
        elif kind == _CONNACK:
            if len(body) < 2:
                raise _ProtocolViolation("short CONNACK")
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(body[1])
        elif kind == _PUBREC:
            self._write(b"\x62\x02" + body[:2])  # PUBREL (we never send QoS 2, but answer politely)
        else:
            raise _ProtocolViolation(f"unexpected MQTT packet type {kind} from the broker")

    # ------------------------------------------------------------------ helpers

    def _abort_quietly(self) -> None:
        """Give up on a connection that never became established: no ``on_close`` for it."""
        self._on_close = None
        self._state = _CLOSING
        transport = self._transport
        if transport is not None:
            transport.abort()
