"""Links: what a :class:`~bambulab.printer.Printer` talks through, and the policy that keeps one alive.

A :class:`~bambulab.printer.Printer` holds one printer's state, status, events and commands; a
*link* owns the connection underneath: connecting, subscribing, the watchdog, the backoff and
reconnect, the half-way ``pushing.start`` nudge, and telling the printer when it is lost or
restored. Two implementations sit behind the same small interface (:class:`PrinterLink`):

* :class:`LanLink` (here): one MQTT connection to one printer on the LAN.
* :class:`bambulab.cloud.mqtt.CloudLink`: one printer's share of an account's cloud connection
  (:class:`~bambulab.cloud.mqtt.CloudConnection`, which runs the connection for all of them).

The policy both use is written once: :class:`Supervisor` (watch a connection, announce a loss,
retry with jittered exponential backoff, stop for good on a refused login) and :class:`Watchdog`
(how long a printer has been silent: nudge half-way, give up at the limit). Both read time from a
:class:`Clock`, which tests replace to drive the watchdog and the backoff without waiting.

A link calls the printer back only through :class:`LinkClient`, the printer's side of the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from bambulab._lifecycle import backoff_delay
from bambulab.endpoint import PrinterEndpoint
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    NotConnectedError,
)
from bambulab.protocol import commands as cmd
from bambulab.transports.mqtt import MqttConnection
from bambulab.transports.tls import check_peer_serial

__all__ = [
    "Clock",
    "LanLink",
    "LinkClient",
    "LoopClock",
    "PrinterLink",
    "Session",
    "Supervisor",
    "Watchdog",
    "WatchdogVerdict",
    "dumps",
]

log = logging.getLogger(__name__)

_USERNAME: Final = "bblp"

#: One live connection and the future its close callback resolves (with the reason, or None).
Session = tuple[MqttConnection, "asyncio.Future[BaseException | None]"]


def dumps(payload: Mapping[str, Any]) -> bytes:
    """A command as it goes on the wire (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# ---------------------------------------------------------------------------------------- time


class Clock(Protocol):
    """Where links read the time and wait: the event loop by default, a manual clock in tests."""

    def time(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    async def wait(self, future: asyncio.Future[Any], seconds: float) -> None:
        """Wait until ``future`` is done or ``seconds`` passed, whichever comes first (never raises)."""
        ...


class LoopClock:
    """The event loop's clock (the default)."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, future: asyncio.Future[Any], seconds: float) -> None:
        await asyncio.wait([future], timeout=seconds)


class WatchdogVerdict(enum.Enum):
    NUDGE = "nudge"
    EXPIRED = "expired"


class Watchdog:
    """How long a printer has been silent. Half-way to ``limit`` it wants a nudge (once per
    silence), at ``limit`` it has expired. Fed the printer's message count on every tick."""

    __slots__ = ("_changed_at", "_nudged", "_seen", "limit", "silence")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._seen = -1
        self._changed_at = 0.0
        self._nudged = False
        #: The silence at the last :meth:`check`, in seconds.
        self.silence = 0.0

    def reset(self, messages: int, now: float) -> None:
        self._seen, self._changed_at, self._nudged = messages, now, False
        self.silence = 0.0

    def check(self, messages: int, now: float, *, armed: bool = True) -> WatchdogVerdict | None:
        """``None`` while all is well (or not ``armed``), else what to do about the silence."""
        if messages != self._seen:
            self.reset(messages, now)
            return None
        if not armed:
            return None
        self.silence = now - self._changed_at
        if self.silence >= self.limit:
            return WatchdogVerdict.EXPIRED
        if self.silence >= self.limit / 2 and not self._nudged:
            self._nudged = True
            return WatchdogVerdict.NUDGE
        return None


# ---------------------------------------------------------------------------------------- the policy


class Supervisor:
    """The reconnect policy, once for every kind of link.

    Watches a session (``tick`` every quarter of ``watchdog``), and when its connection closes:
    ``on_lost(reason, reconnecting)``; without ``reconnect``, ``on_stop`` with
    :class:`~bambulab.exceptions.NotConnectedError`; else ``open()`` again after a jittered
    exponential backoff (``backoff`` = initial, maximum seconds) until it works. An
    :class:`~bambulab.exceptions.AuthenticationError` from ``open()`` (refused login, or a
    certificate that does not match) stops for good through ``on_stop``; other
    :class:`~bambulab.exceptions.BambuError` failures are retried.
    """

    def __init__(
        self,
        *,
        name: str,
        open: Callable[[], Awaitable[Session]],
        tick: Callable[[float, MqttConnection], None],
        on_lost: Callable[[BaseException | None, bool], None],
        on_stop: Callable[[BaseException], None],
        watchdog: float,
        reconnect: bool,
        backoff: tuple[float, float],
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        if watchdog <= 0:
            raise ValueError("the watchdog must be positive")
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError("backoff must be (initial > 0, maximum >= initial)")
        self._name = name
        self._open = open
        self._tick = tick
        self._on_lost = on_lost
        self._on_stop = on_stop
        self._watchdog = watchdog
        self._reconnect = reconnect
        self._backoff = backoff
        self._clock = clock
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: The live connection, or None between a loss and the next successful open.
        self.connection: MqttConnection | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, session: Session, *, task_name: str) -> None:
        self.connection = session[0]
        self._task = asyncio.create_task(self._run(session), name=task_name)

    async def stop(self) -> None:
        """Stop watching and reconnecting (the caller closes the connection)."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, session: Session) -> None:
        while True:
            conn, lost = session
            self.connection = conn
            reason = await self._watch(conn, lost)
            self.connection = None
            if self._stopped:
                return
            log.warning("lost the connection to %s: %s", self._name, reason or "closed")
            self._on_lost(reason, self._reconnect)
            if not self._reconnect:
                self._on_stop(NotConnectedError(f"the connection to {self._name} was lost (reconnect=False)"))
                return
            opened = await self._reconnect_loop()
            if opened is None:
                return
            session = opened

    async def _watch(self, conn: MqttConnection, lost: asyncio.Future[BaseException | None]) -> BaseException | None:
        interval = self._watchdog / 4
        while not lost.done():
            await self._clock.wait(lost, interval)
            if lost.done():
                break
            self._tick(self._clock.time(), conn)
        return lost.result()

    async def _reconnect_loop(self) -> Session | None:
        initial, maximum = self._backoff
        attempt = 0
        while not self._stopped:
            await self._clock.sleep(backoff_delay(attempt, initial, maximum, self._rng))
            attempt += 1
            try:
                return await self._open()
            except AuthenticationError as exc:
                log.error("%s refused the reconnect: %s; not retrying", self._name, exc)
                self._on_stop(exc)
                return None
            except BambuError as exc:
                log.info("reconnect to %s failed (attempt %d): %s", self._name, attempt, exc)
        return None


# ---------------------------------------------------------------------------------------- the interface


class LinkClient(Protocol):
    """The printer's side of a link: what a link reads and calls (a :class:`Printer` provides it)."""

    @property
    def serial(self) -> str: ...

    @property
    def report_topic(self) -> str: ...

    @property
    def request_topic(self) -> str: ...

    @property
    def sequence(self) -> cmd.SequenceCounter: ...

    @property
    def messages(self) -> int:
        """Messages received so far (the watchdog watches it change)."""
        ...

    @property
    def ready(self) -> bool:
        """A full report came in since the link was last up."""
        ...

    @property
    def active(self) -> bool:
        """Neither closed nor stopped for good."""
        ...

    @property
    def command_timeout(self) -> float: ...

    def decode(self, payload: bytes) -> dict[str, Any] | None:
        """A message as a JSON object, or None (counted as malformed)."""
        ...

    def handle(self, message: dict[str, Any]) -> None:
        """Fold a decoded message into the state (acks, events, waiters)."""
        ...

    async def greet(self) -> tuple[bool, bool]:
        """Send get_version and a pushall; (a full report arrived, the version reply arrived)."""
        ...

    def up(self) -> None:
        """Ready: commands go through; a ConnectionRestored follows an announced loss."""
        ...

    def down(self, reason: BaseException | None) -> None:
        """The transport closed: not ready, and what waits on an answer fails."""
        ...

    def lost(self, reason: BaseException | None, reconnecting: bool) -> None:
        """Out of reach: not ready; one ConnectionLost per outage."""
        ...

    def stop(self, error: BaseException) -> None:
        """Stop for good: streams end, every later call raises ``error``."""
        ...

    def request_full(self) -> None:
        """Ask for a full report soon (one pushall in flight, rate-limited); fire and forget."""
        ...


class PrinterLink(Protocol):
    """What a :class:`~bambulab.printer.Printer` talks through (see the module docstring)."""

    @property
    def name(self) -> str:
        """How messages name the far end ("the printer", "the Bambu cloud")."""
        ...

    @property
    def where(self) -> str:
        """For reprs: ``at host:port`` or ``via host:port``."""
        ...

    @property
    def connected(self) -> bool:
        """The transport is up (the printer may still be silent behind it)."""
        ...

    @property
    def offline(self) -> bool:
        """The transport is up but the printer is known to be silent."""
        ...

    def attach(self, client: LinkClient) -> None:
        """Called once by the printer before anything else."""
        ...

    async def connect(self) -> None:
        """Connect and make the printer ready; a failure raises at once (no retry)."""
        ...

    async def close(self) -> None:
        """Disconnect this printer for good."""
        ...

    def usable(self) -> bool:
        """Whether a command may be sent now."""
        ...

    def send(self, payload: Mapping[str, Any]) -> None:
        """Publish a command to the printer's request topic (raises NotConnectedError without a connection)."""
        ...

    def silence_hint(self) -> str:
        """Appended to "no answer" timeouts."""
        ...


# ---------------------------------------------------------------------------------------- the LAN


class LanLink:
    """One MQTT connection to one printer on the LAN, kept alive by a :class:`Supervisor`.

    TLS verified with ``endpoint.ssl_context`` and the serial as the certificate's CN; login
    ``bblp`` + access code; subscribe the report topic; greet; ready once a full report is in.
    The watchdog aborts a connection silent for ``watchdog`` seconds (nudged half-way).
    """

    name: Final = "the printer"

    def __init__(
        self,
        endpoint: PrinterEndpoint,
        *,
        watchdog: float = 30.0,
        reconnect: bool = True,
        connect_timeout: float = 10.0,
        keepalive: int = 30,
        backoff: tuple[float, float] = (1.0, 60.0),
        clock: Clock | None = None,
    ) -> None:
        if watchdog <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts and the watchdog must be positive")
        if endpoint.serial is None:
            raise ValueError("a LAN link needs the printer's serial (its certificate must name it)")
        self._serial: str = endpoint.serial
        self._endpoint = endpoint
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._clock: Clock = clock or LoopClock()
        self._watchdog = Watchdog(watchdog)
        self._client: LinkClient | None = None
        self._conn: MqttConnection | None = None
        self._supervisor = Supervisor(
            name=f"printer {self._serial}",
            open=self._open,
            tick=self._tick,
            on_lost=self._on_lost,
            on_stop=self._on_stop,
            watchdog=watchdog,
            reconnect=reconnect,
            backoff=backoff,
            clock=self._clock,
        )

    def __repr__(self) -> str:
        return f"<LanLink {self.where}>"

    @property
    def where(self) -> str:
        return f"at {self._endpoint.host}:{self._endpoint.port}"

    @property
    def endpoint(self) -> PrinterEndpoint:
        return self._endpoint

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.connected

    @property
    def offline(self) -> bool:
        return False

    @property
    def _printer(self) -> LinkClient:
        if self._client is None:
            raise RuntimeError("the link is not attached to a printer")
        return self._client

    def attach(self, client: LinkClient) -> None:
        self._client = client

    async def connect(self) -> None:
        if self._supervisor.running:
            return
        session = await self._open()
        self._supervisor.start(session, task_name=f"bambulab-printer-{self._serial}")

    async def close(self) -> None:
        await self._supervisor.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def usable(self) -> bool:
        return self.connected and self._printer.ready

    def send(self, payload: Mapping[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            raise NotConnectedError("not connected to the printer")
        conn.send(self._printer.request_topic, dumps(payload))

    def silence_hint(self) -> str:
        return ""

    # -- the connection's life ---------------------------------------------------------------

    async def _open(self) -> Session:
        """One connection, made ready: connect, subscribe, get_version + pushall, full report."""
        printer = self._printer
        endpoint = self._endpoint
        lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def closed(reason: BaseException | None) -> None:
            printer.down(reason)
            if not lost.done():
                lost.set_result(reason)

        conn = MqttConnection(
            endpoint.host,
            endpoint.port,
            on_message=lambda _topic, payload: self._receive(payload),
            on_close=closed,
            username=_USERNAME,
            password=endpoint.access_code,
            ssl_context=endpoint.ssl_context,
            verify_peer=lambda cert: check_peer_serial(
                cert, serial=self._serial, where=f"{endpoint.host}:{endpoint.port}"
            ),
            keepalive=self._keepalive,
            connect_timeout=self._connect_timeout,
        )
        try:
            await conn.connect()
            await conn.subscribe(printer.report_topic, timeout=printer.command_timeout)
            self._conn = conn
            got_full, got_version = await printer.greet()
            if lost.done():
                raise BambuConnectionError("the printer closed the connection while it was being set up")
            if not got_full:
                raise BambuTimeoutError(
                    f"the printer sent no status report within {printer.command_timeout:g} s of connecting"
                )
            if not got_version:
                log.warning(
                    "printer %s did not answer get_version; the model is guessed from its serial", printer.serial
                )
        except BaseException:
            if self._conn is conn:
                self._conn = None
            conn.abort()
            raise
        self._watchdog.reset(printer.messages, self._clock.time())
        printer.up()
        log.info("connected to printer %s at %s:%d", printer.serial, endpoint.host, endpoint.port)
        return conn, lost

    def _receive(self, payload: bytes) -> None:
        printer = self._printer
        message = printer.decode(payload)
        if message is not None:
            printer.handle(message)

    def _tick(self, now: float, conn: MqttConnection) -> None:
        printer = self._printer
        verdict = self._watchdog.check(printer.messages, now)
        if verdict is WatchdogVerdict.EXPIRED:
            silence, limit = self._watchdog.silence, self._watchdog.limit
            conn.abort(BambuTimeoutError(f"no message from the printer for {silence:.1f} s (watchdog {limit:g} s)"))
        elif verdict is WatchdogVerdict.NUDGE:
            log.debug("printer %s silent for %.1f s: sending pushing.start", printer.serial, self._watchdog.silence)
            with contextlib.suppress(BambuError):
                conn.send(printer.request_topic, dumps(cmd.start_pushing(printer.sequence)))

    def _on_lost(self, reason: BaseException | None, reconnecting: bool) -> None:
        self._conn = None
        self._printer.lost(reason, reconnecting)

    def _on_stop(self, error: BaseException) -> None:
        self._conn = None
        self._printer.stop(error)
