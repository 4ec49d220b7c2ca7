"""Typed events a :class:`bambulab.printer.Printer` emits, and the bounded stream that carries them.

Every event is a frozen dataclass with the printer's ``serial``. :class:`StateChanged` is emitted
for every report that changed the state; the others ("lifecycle" events) mark something a person
or an automation reacts to: a print started, paused, resumed, finished or failed, an HMS entry
raised or cleared, the connection lost or restored.

Lifecycle and HMS events come from one pure function, :func:`derive_events`, comparing the state
before and after a report.

Each consumer of :meth:`Printer.events` has its own queue, **bounded** at ``maxsize`` events (256
by default), each put O(1). A consumer that falls that far behind does not make the printer wait
or the memory grow: once its queue is full, what follows is coalesced, and when the consumer has
made room it receives **one** :class:`EventsDropped` carrying the printer's current status and how
many events it missed (``EventStream.dropped`` counts them all), then events as they come again.
So the consumer loses events but never the state: resynchronise from ``EventsDropped.status``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from bambulab.protocol.hms import HmsMessage, PrintError, decode_hms_list
from bambulab.protocol.views import GcodeState, PrinterStatus

__all__ = [
    "ConnectionLost",
    "ConnectionRestored",
    "EventStream",
    "EventsDropped",
    "HmsCleared",
    "HmsRaised",
    "PrintFailed",
    "PrintFinished",
    "PrintPaused",
    "PrintResumed",
    "PrintStarted",
    "PrinterEvent",
    "StateChanged",
    "derive_events",
]


@dataclass(frozen=True, slots=True)
class PrinterEvent:
    """Base of every event."""

    serial: str

    @property
    def lifecycle(self) -> bool:
        """False only for :class:`StateChanged` (one for every report); the others mark a change a person reacts to."""
        return True


@dataclass(frozen=True, slots=True)
class StateChanged(PrinterEvent):
    """A report changed the state; ``status`` decodes the state after it."""

    status: PrinterStatus

    @property
    def lifecycle(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class PrintStarted(PrinterEvent):
    """``gcode_state`` entered PREPARE, SLICING or RUNNING from an idle, finished or failed state."""

    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class PrintPaused(PrinterEvent):
    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class PrintResumed(PrinterEvent):
    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class PrintFinished(PrinterEvent):
    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class PrintFailed(PrinterEvent):
    """The print ended in FAILED (cancelled, or an error); ``error`` is the decoded ``print_error``."""

    status: PrinterStatus
    error: PrintError | None


@dataclass(frozen=True, slots=True)
class HmsRaised(PrinterEvent):
    """An HMS entry appeared (one event per entry)."""

    message: HmsMessage


@dataclass(frozen=True, slots=True)
class HmsCleared(PrinterEvent):
    """An HMS entry went away (one event per entry)."""

    message: HmsMessage


@dataclass(frozen=True, slots=True)
class ConnectionLost(PrinterEvent):
    """The printer is out of reach: one per outage, until :class:`ConnectionRestored`.

    ``reconnecting`` says whether the client will try again (False with ``reconnect=False``). A
    reconnect that is then refused for good (:class:`~bambulab.exceptions.AuthenticationError`, a
    device unbound from the account) sends no second ConnectionLost: the stream ends, raising it."""

    error: BaseException | None
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class ConnectionRestored(PrinterEvent):
    """Connected again, with a fresh full report merged (``status``)."""

    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class EventsDropped(PrinterEvent):
    """The consumer fell ``maxsize`` events behind and missed ``dropped`` of them (any kind);
    ``status`` is the printer's status after the last one (``None`` if none carried a status)."""

    status: PrinterStatus | None
    dropped: int


_DEFAULT_SIZE: Final = 256
_ACTIVE: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING})
_STARTING: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.SLICING})
_NOT_STARTED: Final = frozenset(
    {GcodeState.IDLE, GcodeState.FINISH, GcodeState.FAILED, GcodeState.INIT, GcodeState.OFFLINE}
)


def derive_events(
    old_state: Mapping[str, Any],
    new_state: Mapping[str, Any],
    *,
    serial: str = "",
    status: PrinterStatus | None = None,
) -> list[PrinterEvent]:
    """The lifecycle and HMS events between two merged states (``{"print": {...}}``), in order.

    Pure: no clock, no I/O. ``status`` is the decoded ``new_state`` the events carry (built here
    when not given). A print state change gives at most one of :class:`PrintStarted`,
    :class:`PrintPaused`, :class:`PrintResumed`, :class:`PrintFinished`, :class:`PrintFailed`;
    then one :class:`HmsRaised` per new HMS entry and one :class:`HmsCleared` per gone one. No
    events when either state has no ``print`` section (the first report is a snapshot).
    :class:`StateChanged` is not derived here: the printer emits it for every change.
    """
    old = old_state.get("print") if isinstance(old_state, Mapping) else None
    new = new_state.get("print") if isinstance(new_state, Mapping) else None
    if not isinstance(old, Mapping) or not isinstance(new, Mapping) or old is new:
        return []
    current = status if status is not None else PrinterStatus(dict(new_state))
    events: list[PrinterEvent] = []
    old_gcode, new_gcode = old.get("gcode_state"), new.get("gcode_state")
    if old_gcode != new_gcode:
        before, after = GcodeState.parse(old_gcode), GcodeState.parse(new_gcode)
        if after in _STARTING and before in _NOT_STARTED:
            events.append(PrintStarted(serial, current))
        elif before is GcodeState.PAUSE and after in (GcodeState.RUNNING, GcodeState.PREPARE):
            events.append(PrintResumed(serial, current))
        elif after is GcodeState.PAUSE and before in _ACTIVE:
            events.append(PrintPaused(serial, current))
        elif after is GcodeState.FINISH and before in _ACTIVE:
            events.append(PrintFinished(serial, current))
        elif after is GcodeState.FAILED and before in _ACTIVE:
            events.append(PrintFailed(serial, current, current.print_error))
    old_hms, new_hms = old.get("hms"), new.get("hms")
    if old_hms is not new_hms and old_hms != new_hms:
        before_hms = {(m.attr, m.code): m for m in decode_hms_list(old_hms)}
        after_hms: dict[tuple[int, int], HmsMessage] = {(m.attr, m.code): m for m in current.hms}
        events.extend(HmsRaised(serial, m) for key, m in after_hms.items() if key not in before_hms)
        events.extend(HmsCleared(serial, m) for key, m in before_hms.items() if key not in after_hms)
    return events


class EventStream:
    """One consumer's bounded queue of events: ``async for event in stream``.

    Made by :meth:`Printer.events`; registered at once, so nothing emitted after the call is
    missed. Iteration ends when the printer is closed (after the queued events), or raises the
    error that stopped the printer for good (:class:`~bambulab.exceptions.AuthenticationError`).
    Use it as an async context manager, or call :meth:`close`, to stop receiving; a stream that is
    no longer referenced is dropped by the printer automatically.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_error",
        "_maxsize",
        "_missed",
        "_missed_serial",
        "_missed_status",
        "_queue",
        "_waiter",
        "dropped",
    )

    def __init__(self, maxsize: int = _DEFAULT_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._queue: collections.deque[PrinterEvent] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        # Coalesced while the queue is full: how many, whose, and the last status among them.
        self._missed = 0
        self._missed_serial = ""
        self._missed_status: PrinterStatus | None = None
        #: Events this consumer missed because it fell behind (each reported by an EventsDropped).
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> PrinterEvent:
        while not self._queue:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        event = self._queue.popleft()
        if self._missed:
            self._resync()
        return event

    async def get(self, timeout: float | None = None) -> PrinterEvent:  # noqa: ASYNC109
        """The next event; ``TimeoutError`` after ``timeout`` seconds, ``StopAsyncIteration`` at the end."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; queued events can still be read."""
        self.end(None)

    # -- producer side (the printer) -------------------------------------------------------

    def put(self, event: PrinterEvent) -> None:
        """Queue an event (O(1)); past ``maxsize`` it is coalesced into the next EventsDropped."""
        if self._closed:
            return
        if self._missed or len(self._queue) >= self._maxsize:
            self._missed += 1
            self.dropped += 1
            self._missed_serial = event.serial
            status = getattr(event, "status", None)
            if isinstance(status, PrinterStatus):
                self._missed_status = status
            return
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resync(self) -> None:
        """The consumer made room: one EventsDropped stands for everything it missed."""
        missed = EventsDropped(self._missed_serial, self._missed_status, self._missed)
        self._missed, self._missed_status = 0, None
        self._queue.append(missed)

    def end(self, error: BaseException | None = None) -> None:
        """No more events: iteration stops after the queued ones (raising ``error`` if given)."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
