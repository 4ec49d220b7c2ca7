"""A fleet: many printers on one event loop, one connection each, and one stream of changes.

* :class:`Member` wraps one printer (a LAN :class:`bambulab.Printer` or a
  :class:`bambulab.cloud.mqtt.CloudPrinter` sharing its account's one connection). The printer
  object owns the connection, watchdog and reconnects; the member only retries the *first*
  connect (which the printer does not retry) and turns the printer's events into fleet events.
* **Coalescing**: a farm of 1,000 printers sends thousands of reports per second. A report only
  marks its member dirty (a set insert); one fleet task wakes every ``coalesce`` seconds and, for
  each dirty member, builds the summary once and publishes a ``delta`` with the top-level keys
  that changed. So the per-report cost is the merge the printer does anyway, and a printer costs
  at most one summary per ``coalesce`` interval, however chatty it is. The same task notices
  connection changes (``online``/``offline``) and keeps ``last_seen`` from the message counter.
* **Subscriptions** (:meth:`Fleet.subscribe`) are bounded: a consumer that falls more than
  ``maxsize`` events behind loses its queue and gets one ``resync`` event, after which it should
  read the members again (SSE sends a snapshot). Lifecycle events (``PrintFinished``, HMS ...)
  are published at once, after a flush of that member's summary, so they are never ahead of it.

A broken printer (garbage, stalls, reboots) never raises out of here: its member keeps the last
good state, is marked offline, and the printer's own reconnect brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from bambulab.events import (
    ConnectionLost,
    ConnectionRestored,
    HmsCleared,
    HmsRaised,
    PrinterEvent,
    PrintFailed,
    StateChanged,
)
from bambulab.exceptions import BambuError
from bambulab.farm.config import CloudConfig, PrinterConfig
from bambulab.farm.summary import (
    CANCELLED_ERROR,
    SummaryCache,
    diff_summary,
    hms_json,
    iso_time,
    render_summary,
    summary_fragments,
)
from bambulab.printer import BasePrinter, Printer
from bambulab.transports.tls import cloud_ssl_context

__all__ = ["EventKind", "Fleet", "FleetEvent", "FleetSubscription", "Member"]

log = logging.getLogger(__name__)

EventKind = Literal["delta", "online", "offline", "added", "removed", "event", "resync"]


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One change in the fleet. ``seq`` increases by one per published event (fleet-wide)."""

    seq: int
    serial: str | None
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)


class FleetSubscription:
    """A bounded queue of :class:`FleetEvent` for one consumer (``async with`` / ``async for``)."""

    def __init__(self, fleet: Fleet, serials: set[str] | None, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._fleet = fleet
        self.serials = {s.upper() for s in serials} if serials else None
        self.maxsize = maxsize
        self._queue: deque[FleetEvent] = deque()
        self._wake = asyncio.Event()
        self._resync = False
        self._closed = False
        #: Events dropped because the consumer was too slow, and resyncs sent.
        self.dropped = 0
        self.resyncs = 0

    def __len__(self) -> int:
        return len(self._queue)

    def _put(self, event: FleetEvent) -> None:
        if self._closed:
            return
        if self.serials is not None and event.serial is not None and event.serial not in self.serials:
            return
        if self._resync:
            self.dropped += 1
            return
        if len(self._queue) >= self.maxsize:
            self.dropped += len(self._queue) + 1
            self._queue.clear()
            self._resync = True
        else:
            self._queue.append(event)
        self._wake.set()

    async def get(self, timeout: float | None = None) -> FleetEvent:  # noqa: ASYNC109
        """The next event; ``TimeoutError`` after ``timeout``; ``StopAsyncIteration`` once closed."""
        async with asyncio.timeout(timeout):
            while True:
                if self._resync:
                    self._resync = False
                    self.resyncs += 1
                    return FleetEvent(self._fleet.seq, None, "resync", {})
                if self._queue:
                    return self._queue.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._wake.clear()
                await self._wake.wait()

    def drain(self, limit: int = 256) -> list[FleetEvent]:
        """Up to ``limit`` queued events at once, without waiting (a ``resync`` comes alone)."""
        out: list[FleetEvent] = []
        queue = self._queue
        while queue and len(out) < limit and not self._resync:
            out.append(queue.popleft())
        return out

    def __aiter__(self) -> AsyncIterator[FleetEvent]:
        return self

    async def __anext__(self) -> FleetEvent:
        return await self.get()

    async def __aenter__(self) -> FleetSubscription:
        return self

    def __enter__(self) -> FleetSubscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._wake.set()
            self._fleet._subscriptions.discard(self)


def event_json(event: PrinterEvent) -> dict[str, Any]:
    """A lifecycle event as JSON: ``{"type": "PrintFinished", ...}`` (no secrets, no raw state)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    if isinstance(event, HmsRaised | HmsCleared):
        out["hms"] = hms_json(event.message)
    elif isinstance(event, PrintFailed):
        err = event.error
        out["error"] = {"code": err.display, "text": err.text} if err is not None else None
    status = getattr(event, "status", None)
    if status is not None:
        job = status.job
        out.update(file=job.name or job.file, progress=job.progress, state=job.state.value,
                   layer=job.layer, total_layers=job.total_layers, task_id=job.task_id)
    return out


class Member:
    """One printer of the fleet (see the module docstring)."""

    def __init__(
        self,
        fleet: Fleet,
        config: PrinterConfig,
        printer: BasePrinter,
        *,
        source: Literal["lan", "cloud"] = "lan",
        owns_connection: bool = True,
    ) -> None:
        self.fleet = fleet
        self.config = config
        self.serial = printer.serial
        self.name = config.name or printer.serial
        self.source: Literal["lan", "cloud"] = source
        self.printer = printer
        self.online = False
        self.last_seen: float | None = None
        self.changed_at: float | None = None
        self.revision = 0
        self.reconnects = 0
        #: The last connection problem, in words (no secrets), or None.
        self.error: str | None = None
        self.added_at = time.time()
        self._owns_connection = owns_connection
        self._summary: dict[str, Any] | None = None
        self._cache = SummaryCache()
        self._fragments: tuple[object, tuple[bytes, bytes]] | None = None
        #: Encodings of this printer's state that servers keep until the state changes:
        #: name -> (the state object they were made from, the bytes).
        self.encoded: dict[str, tuple[object, bytes]] = {}
        self.flushed_at = 0.0  # loop-independent monotonic time of the last flush
        self._messages_seen = 0
        self._remaining: int | None = None
        self._finish_at: float | None = None
        self._cancelled = False  # this FAILED state began as a cancellation (the code fades; see job_ended)
        self._connects = 0
        self._stream = printer.events(maxsize=64)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Member {self.serial} {self.name!r} {self.source} {'online' if self.online else 'offline'}>"

    @property
    def model(self) -> str | None:
        model = self.printer.model
        return model.name if model is not None else self.config.model

    @property
    def messages(self) -> int:
        return self.printer.messages

    @property
    def fresh(self) -> bool:
        """Online and heard from within the fleet's ``stale_after`` seconds."""
        return (
            self.online
            and self.last_seen is not None
            and time.time() - self.last_seen <= self.fleet.stale_after
        )

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The contract's summary, with ``online``/``last_seen``/``age_seconds`` as of now."""
        if self._summary is None:
            self._build(time.time())
        assert self._summary is not None
        out = dict(self._summary)
        now = time.time() if now is None else now
        out["online"] = self.fresh
        out["last_seen"] = iso_time(self.last_seen)
        out["age_seconds"] = round(now - self.last_seen, 1) if self.last_seen is not None else None
        return out

    def summary_json(self, now: float | None = None) -> bytes:
        """:meth:`summary` as JSON bytes, encoded once per state change (see
        :func:`bambulab.farm.summary.summary_fragments`)."""
        if self._summary is None:
            self._build(time.time())
        summary = self._summary
        assert summary is not None
        cached = self._fragments
        if cached is None or cached[0] is not summary:
            cached = (summary, summary_fragments(summary))
            self._fragments = cached
        now = time.time() if now is None else now
        age = round(now - self.last_seen, 1) if self.last_seen is not None else None
        return render_summary(cached[1], self.fresh, self.last_seen, age)

    def encode_state(self, name: str, make: Callable[[dict[str, Any]], bytes]) -> bytes:
        """``make(state)`` for the current merged state, cached until the next state change."""
        state = self.printer.state
        cached = self.encoded.get(name)
        if cached is not None and cached[0] is state:
            return cached[1]
        data = make(state)
        self.encoded[name] = (state, data)
        return data

    # ------------------------------------------------------------------ internals

    def _build(self, now: float) -> dict[str, Any]:
        status = self.printer.status
        remaining = status.job.remaining
        minutes = int(remaining.total_seconds() // 60) if remaining is not None else None
        if minutes != self._remaining or (minutes is not None and self._finish_at is None):
            self._remaining = minutes
            self._finish_at = round((now + minutes * 60) / 60) * 60 if minutes is not None and minutes > 0 else None
        if not status.job.is_active:
            self._finish_at = None
        if status.job.state_raw != "FAILED":
            self._cancelled = False
        elif status.print_error is not None and status.print_error.value == CANCELLED_ERROR:
            self._cancelled = True
        summary = self._cache.build(
            status, serial=self.serial, name=self.name, source=self.source,
            model=self.printer.model, finish_at=self._finish_at, info=self.printer.state.get("info"),
            cancelled=self._cancelled,
        )
        if summary["model"] is None and self.config.model:
            summary["model"] = self.config.model
        old, self._summary = self._summary, summary
        return diff_summary(old, summary)

    def _flush(self, now: float) -> None:
        changes = self._build(now)
        if changes:
            self.revision += 1
            self.changed_at = now
            self.fleet._bump()
            self.fleet._publish(self.serial, "delta", {
                "changes": changes, "revision": self.revision, "last_seen": iso_time(self.last_seen),
            })

    def _check(self, now: float) -> None:
        """Run by the fleet's tick: message counter, connection state."""
        seen = self.printer.messages
        if seen != self._messages_seen:
            self._messages_seen = seen
            self.last_seen = now
        connected = self.printer.connected
        if connected != self.online:
            self.online = connected
            self.revision += 1
            self.changed_at = now
            self.fleet._bump()
            if connected:
                self._connects += 1
                if self._connects > 1:
                    self.reconnects += 1
                self.error = None
                self.last_seen = self.last_seen or now
                self._flush(now)
                self.fleet._publish(self.serial, "online", {"revision": self.revision})
            else:
                self.fleet._publish(self.serial, "offline", {"revision": self.revision, "error": self.error})

    def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bambulab-fleet-{self.serial}")

    async def _run(self) -> None:
        if self._owns_connection:
            await self._connect()

    async def _connect(self) -> None:
        """The first connect (later reconnects are the printer's): retried with jittered backoff."""
        attempt = 0
        rng = random.Random()
        initial, maximum = self.fleet.backoff
        while True:
            try:
                async with self.fleet._connect_gate:  # a farm does not open 1,000 TLS sessions at once
                    await self.printer.connect()
                self.error = None
                return
            except BambuError as exc:
                self.error = str(exc)
            except Exception as exc:  # a printer must never take the fleet down
                self.error = f"{type(exc).__name__}: {exc}"
            log.info("printer %s: connect failed (%s); retrying", self.serial, self.error)
            step = min(maximum, initial * 2 ** min(attempt, 16))
            await asyncio.sleep(step * rng.uniform(0.5, 1.0))
            attempt += 1

    async def _pump(self) -> None:
        """Handle the printer events queued since the last tick, without waiting for more.

        Run by the fleet's tick rather than by a task per printer: a task would be woken for every
        report (5,000 wake-ups a second in a big farm); here a report costs a queue append, and
        ``StateChanged`` only marks the printer dirty. Lifecycle events are published at once,
        after this printer's summary is brought up to date."""
        stream = self._stream
        while len(stream):
            try:
                event = await anext(stream)  # returns at once: the queue is not empty
            except StopAsyncIteration:
                return
            except BambuError as exc:  # the printer stopped for good (refused access code, ...)
                self.error = str(exc)
                log.warning("printer %s stopped: %s", self.serial, exc)
                return
            if type(event) is StateChanged:
                self.fleet._dirty.add(self)
            elif isinstance(event, ConnectionLost):
                self.error = str(event.error) if event.error is not None else "connection closed"
            elif isinstance(event, ConnectionRestored):
                self.fleet._dirty.add(self)
            else:
                now = time.time()
                self._check(now)
                self._flush(now)
                self.fleet._dirty.discard(self)
                self.fleet._publish(self.serial, "event", event_json(event))

    async def _close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._stream.close()
        if self._owns_connection or self.source == "cloud":
            with contextlib.suppress(Exception):
                await self.printer.close()


class CloudAccount:
    """One cloud account's connection and the members it serves."""

    def __init__(self, fleet: Fleet, config: CloudConfig, connection: Any) -> None:
        self.fleet = fleet
        self.config = config
        self.connection = connection
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        attempt = 0
        rng = random.Random()
        initial, maximum = self.fleet.backoff
        while True:
            try:
                await self.connection.connect()
                self.error = None
                break
            except BambuError as exc:
                self.error = str(exc)
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            log.warning("cloud account %s: connect failed (%s); retrying", self.config.name, self.error)
            step = min(maximum, initial * 2 ** min(attempt, 16))
            await asyncio.sleep(step * rng.uniform(0.5, 1.0))
            attempt += 1
        for printer in self.connection.printers:  # devices=None: the account's list is known now
            if printer.serial not in self.fleet.members:
                self.fleet._admit(PrinterConfig(serial=printer.serial, source="cloud", cloud=self.config.name),
                                  printer, source="cloud", owns_connection=False)


class Fleet:
    """Many printers on one loop (see the module docstring). Use ``async with Fleet() as fleet``."""

    def __init__(
        self,
        *,
        coalesce: float = 0.1,
        stale_after: float = 90.0,
        flush_budget: float = 0.2,
        connect_concurrency: int = 64,
        backoff: tuple[float, float] = (1.0, 60.0),
        printer_factory: Callable[[PrinterConfig], BasePrinter] | None = None,
    ) -> None:
        if coalesce <= 0:
            raise ValueError("coalesce must be positive")
        self.coalesce = coalesce
        self.stale_after = stale_after
        #: The share of one core summaries may take; past it, each printer's deltas are spaced out.
        self.flush_budget = flush_budget
        #: Seconds between two deltas of one printer (``coalesce``, more for a big, busy farm).
        self.spacing = coalesce
        self._flush_cost = 50e-6  # seconds per summary, measured (moving average)
        self._connect_gate = asyncio.Semaphore(connect_concurrency)
        self.backoff = backoff
        self._factory = printer_factory or _lan_printer
        self._members: dict[str, Member] = {}
        self._accounts: dict[str, CloudAccount] = {}
        self._subscriptions: set[FleetSubscription] = set()
        self._dirty: set[Member] = set()
        self._seq = itertools.count(1)
        self._last_seq = 0
        self.version = 0
        self._tick: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        #: Figures for /metrics and the benchmark: flushes done, time spent in them.
        self.flushes = 0
        self.flush_seconds = 0.0
        self.published = 0

    # ------------------------------------------------------------------ the public API

    @property
    def members(self) -> Mapping[str, Member]:
        return self._members

    @property
    def accounts(self) -> Mapping[str, CloudAccount]:
        return self._accounts

    @property
    def seq(self) -> int:
        """The ``seq`` of the last published event."""
        return self._last_seq

    def get(self, serial: str) -> Member | None:
        return self._members.get(serial.strip().upper())

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._tick is None:
            self._tick = asyncio.create_task(self._run(), name="bambulab-fleet-tick")

    async def close(self) -> None:
        """Close every printer and cloud connection (concurrently) and end the subscriptions."""
        self._closed = True
        tick, self._tick = self._tick, None
        if tick is not None:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
        members = list(self._members.values())
        self._members.clear()
        await asyncio.gather(*(m._close() for m in members), return_exceptions=True)
        accounts = list(self._accounts.values())
        self._accounts.clear()
        await asyncio.gather(*(self._close_account(a) for a in accounts), return_exceptions=True)
        self.end_subscriptions()

    async def add(self, cfg: PrinterConfig) -> Member:
        """Add a printer and start connecting it (returns at once; ``online`` tells when it is up).

        A LAN printer gets its own connection; ``source="cloud"`` adds a device to the account
        ``cfg.cloud`` (which may raise :class:`~bambulab.exceptions.CloudError` if not bound)."""
        if self._closed:
            raise BambuError("the fleet is closed")
        if cfg.serial in self._members:
            raise BambuError(f"printer {cfg.serial} is already in the fleet")
        if cfg.source == "cloud":
            account = self._accounts.get(cfg.cloud or "")
            if account is None:
                raise BambuError(f"no cloud account named {cfg.cloud!r} in the gateway")
            printer = await account.connection.add(cfg.serial, model=cfg.model)
            return self._admit(cfg, printer, source="cloud", owns_connection=False)
        printer = self._factory(cfg)
        return self._admit(cfg, printer, source="lan", owns_connection=True)

    async def remove(self, serial: str) -> None:
        """Close one printer's connection and forget it; the others are not touched."""
        member = self._members.pop(serial.strip().upper(), None)
        if member is None:
            return
        self._dirty.discard(member)
        await member._close()
        self._bump()
        self._publish(member.serial, "removed", {})

    async def add_cloud(self, cfg: CloudConfig, connection: Any | None = None) -> CloudAccount:
        """Add a cloud account: one connection for all its printers (members appear as known)."""
        if cfg.name in self._accounts:
            raise BambuError(f"cloud account {cfg.name!r} is already in the gateway")
        conn = connection if connection is not None else _cloud_connection(cfg)
        account = CloudAccount(self, cfg, conn)
        self._accounts[cfg.name] = account
        for printer in conn.printers:
            if printer.serial not in self._members:
                self._admit(PrinterConfig(serial=printer.serial, source="cloud", cloud=cfg.name), printer,
                            source="cloud", owns_connection=False)
        account._task = asyncio.create_task(account._run(), name=f"bambulab-fleet-cloud-{cfg.name}")
        return account

    async def remove_cloud(self, name: str) -> None:
        account = self._accounts.pop(name, None)
        if account is None:
            return
        for member in [m for m in self._members.values() if m.source == "cloud" and m.config.cloud == name]:
            await self.remove(member.serial)
        await self._close_account(account)

    def subscribe(self, serials: Iterable[str] | None = None, maxsize: int = 1024) -> FleetSubscription:
        """A bounded subscription to fleet events (optionally for some printers only)."""
        sub = FleetSubscription(self, set(serials) if serials else None, maxsize)
        self._subscriptions.add(sub)
        return sub

    def end_subscriptions(self) -> None:
        """End every subscription now (a shutting-down server closes its event streams first)."""
        for sub in list(self._subscriptions):
            sub.close()

    @property
    def subscriptions(self) -> list[FleetSubscription]:
        return list(self._subscriptions)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    # ------------------------------------------------------------------ internals

    def _admit(self, cfg: PrinterConfig, printer: BasePrinter, *, source: Literal["lan", "cloud"],
               owns_connection: bool) -> Member:
        member = Member(self, cfg, printer, source=source, owns_connection=owns_connection)
        self._members[member.serial] = member
        member._start()
        self._bump()
        self._publish(member.serial, "added", {"name": member.name, "source": source})
        return member

    async def _close_account(self, account: CloudAccount) -> None:
        task, account._task = account._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await account.connection.close()

    def _bump(self) -> None:
        self.version += 1

    def _publish(self, serial: str | None, kind: EventKind, data: dict[str, Any]) -> None:
        seq = next(self._seq)
        self._last_seq = seq
        self.published += 1
        if not self._subscriptions:
            return
        event = FleetEvent(seq, serial, kind, {"serial": serial, **data} if serial is not None else data)
        for sub in list(self._subscriptions):
            sub._put(event)

    def _wake_now(self, member: Member) -> None:
        self._dirty.add(member)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.coalesce):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._tick_once()
            except Exception:  # never let one bad summary stop the fleet
                log.exception("fleet tick failed")

    #: Longest stretch of fleet work before the loop gets to run other tasks (HTTP, reports).
    SLICE = 0.005

    async def _tick_once(self) -> None:
        """One tick: connection checks for every member, then the dirty members' summaries. The
        work is cut in slices of :attr:`SLICE` seconds, so a 1,000-printer tick never holds the
        event loop for long; reports that arrive meanwhile just mark their printer dirty again."""
        started = slice_start = time.perf_counter()
        now = time.time()
        for index, member in enumerate(list(self._members.values())):
            try:
                if len(member._stream):
                    await member._pump()
                member._check(now)
            except Exception:
                log.exception("printer %s: check failed", member.serial)
            if index % 64 == 63 and time.perf_counter() - slice_start > self.SLICE:
                await asyncio.sleep(0)
                slice_start = time.perf_counter()
        dirty, self._dirty = self._dirty, set()
        flushed = 0
        flush_seconds = 0.0
        mark = time.perf_counter()
        for member in dirty:
            if self._members.get(member.serial) is not member:
                continue
            if mark - member.flushed_at < self.spacing - self.coalesce / 2:  # ticks are `coalesce` apart
                self._dirty.add(member)  # flushed recently: this printer's next delta waits a little
                continue
            member.flushed_at = mark
            one = time.perf_counter()
            try:
                member._flush(time.time())
            except Exception:
                log.exception("printer %s: summary failed", member.serial)
            done = time.perf_counter()
            flush_seconds += done - one
            flushed += 1
            if done - slice_start > self.SLICE:
                await asyncio.sleep(0)
                slice_start = time.perf_counter()
        if flushed:
            cost = flush_seconds / flushed
            self._flush_cost += (cost - self._flush_cost) * min(1.0, flushed / 100)
            # Every printer flushing once per `spacing` must fit the budget (a 1,000-printer farm at
            # ~60 us a summary gets a delta per printer every ~0.3 s; 200 printers every `coalesce`).
            self.spacing = max(self.coalesce, len(self._members) * self._flush_cost / self.flush_budget)
        self.flushes += flushed
        self.flush_seconds += time.perf_counter() - started


def _lan_printer(cfg: PrinterConfig) -> BasePrinter:
    kwargs: dict[str, Any] = {"port": cfg.port, "model": cfg.model, "ftps_port": cfg.ftps_port,
                              "camera_port": cfg.camera_port, "watchdog": cfg.watchdog}
    if "ssl_context" not in cfg.options:
        if cfg.ca_file is not None:
            kwargs["ca_file"] = cfg.ca_file
        if cfg.insecure:
            kwargs["insecure"] = True
    kwargs.update(cfg.options)
    try:
        return Printer(cfg.host, cfg.serial, cfg.access_code, **kwargs)
    except (ValueError, KeyError, TypeError) as exc:
        raise BambuError(f"printer {cfg.serial}: {exc}") from None


def _cloud_connection(cfg: CloudConfig) -> Any:
    from bambulab.cloud.mqtt import CloudConnection

    ctx = cfg.options.get("ssl_context")
    if ctx is None and cfg.ca_file is not None:
        ctx = cloud_ssl_context(ca_file=cfg.ca_file)
    return CloudConnection(
        cfg.token, devices=cfg.devices, region=cfg.region, host=cfg.host, port=cfg.port,
        ssl_context=ctx, server_hostname=cfg.server_hostname, api_url=cfg.api_url, watchdog=cfg.watchdog,
        **{k: v for k, v in cfg.options.items() if k != "ssl_context"},
    )
