"""Typed events a :class:`bambulab.printer.Printer` emits, and the bounded stream that carries them.

Every event is a frozen dataclass with the printer's ``serial``. :class:`StateChanged` is emitted
for every report that changed the state; the others ("lifecycle" events) mark something a person
or an automation reacts to: a print started, paused, resumed, finished or failed, an HMS entry
raised or cleared, the connection lost or restored.

Each consumer of :meth:`Printer.events` has its own bounded queue (``maxsize``, 256 by default).
When it is full, the **oldest StateChanged** is dropped to make room (the newest one carries the
current status anyway); lifecycle events are **never** dropped, so a queue may exceed its size
when only lifecycle events are left in it (they are rare: a handful per print). A StateChanged
that finds the queue full of lifecycle events is itself dropped. ``EventStream.dropped`` counts
what was dropped.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from bambulab.protocol.hms import HmsMessage, PrintError
from bambulab.protocol.views import PrinterStatus

__all__ = [
    "ConnectionLost",
    "ConnectionRestored",
    "EventStream",
    "HmsCleared",
    "HmsRaised",
    "PrintFailed",
    "PrintFinished",
    "PrintPaused",
    "PrintResumed",
    "PrintStarted",
    "PrinterEvent",
    "StateChanged",
]


@dataclass(frozen=True, slots=True)
class PrinterEvent:
    """Base of every event."""

    serial: str

    @property
    def lifecycle(self) -> bool:
        """False only for :class:`StateChanged`, the event a slow consumer may lose."""
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
    """The connection ended. ``reconnecting`` says whether the client will try again; it is False
    after :class:`~bambulab.exceptions.AuthenticationError` (``error``) or with ``reconnect=False``."""

    error: BaseException | None
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class ConnectionRestored(PrinterEvent):
    """Connected again, with a fresh full report merged (``status``)."""

    status: PrinterStatus


_DEFAULT_SIZE: Final = 256


class EventStream:
    """One consumer's bounded queue of events: ``async for event in stream``.

    Made by :meth:`Printer.events`; registered at once, so nothing emitted after the call is
    missed. Iteration ends when the printer is closed (after the queued events), or raises the
    error that stopped the printer for good (:class:`~bambulab.exceptions.AuthenticationError`).
    Use it as an async context manager, or call :meth:`close`, to stop receiving; a stream that is
    no longer referenced is dropped by the printer automatically.
    """

    __slots__ = ("__weakref__", "_closed", "_error", "_maxsize", "_queue", "_waiter", "dropped")

    def __init__(self, maxsize: int = _DEFAULT_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._queue: collections.deque[PrinterEvent] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
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
        return self._queue.popleft()

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
        queue = self._queue
        if self._closed:
            return
        if len(queue) >= self._maxsize:
            for index, queued in enumerate(queue):
                if type(queued) is StateChanged:
                    del queue[index]
                    self.dropped += 1
                    break
            else:
                if type(event) is StateChanged:
                    self.dropped += 1
                    return
        queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, error: BaseException | None = None) -> None:
        """No more events: iteration stops after the queued ones (raising ``error`` if given)."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
