"""The LAN client: ``async with Printer(host, serial, access_code) as p``.

:class:`Printer` combines the MQTT transport (:mod:`bambulab.transports.mqtt`, TLS from
:mod:`bambulab.transports.tls`) with the pure protocol layer (:mod:`bambulab.protocol`):

* **Connect**: TLS verified against Bambu's CA chain (the certificate's CN must be the serial),
  MQTT login ``bblp`` + access code, subscribe ``device/{serial}/report``, then ``get_version``
  and ``pushall``. The printer is *ready* once a full report and the version reply are in (the
  version is optional: without it in ``command_timeout`` the model comes from the serial prefix).
  A first connection that fails raises at once (no retry): ``BambuConnectionError`` (unreachable,
  refused, too many clients), ``BambuTimeoutError`` (no answer), ``AuthenticationError`` (wrong
  access code, or ``PrinterCertificateError`` for a certificate that does not match).
* **State**: every report is folded with :func:`bambulab.protocol.state.merge` into
  :attr:`Printer.state`; :attr:`Printer.status` is a :class:`~bambulab.protocol.views.PrinterStatus`
  view of it, built on first access after each change.
* **Events**: :meth:`Printer.events` gives each consumer its own bounded stream of typed events
  (:mod:`bambulab.events`): a slow consumer loses the oldest ``StateChanged`` events, never the
  lifecycle ones. Lifecycle and HMS events describe changes between two known states: the first
  report after connecting is a snapshot and raises none (read ``status`` for it); after a
  reconnect the fresh report is compared with the last known state, so a print that finished
  while disconnected still yields ``PrintFinished``.
* **Commands**: :meth:`Printer.command` publishes to ``device/{serial}/request`` and resolves on the
  printer's acknowledgement (same section, command and ``sequence_id``). Failures raise
  ``CommandFailedError``; the "unsigned command" failure of authorization-control firmware raises
  ``SignatureRequiredError`` explaining Developer Mode; no ack in ``command_timeout`` raises
  ``BambuTimeoutError``; losing the connection while waiting raises ``BambuConnectionError``
  (the command may or may not have run). A command while disconnected raises
  ``NotConnectedError`` at once. Sequence ids come from one :class:`SequenceCounter` per printer,
  seeded from the clock in tenths of a second, so they do not repeat across reconnects or restarts.
* **pushall** has no ack: :meth:`Printer.refresh` sends it and waits for the next full report.
  Pushalls are at least ``pushall_interval`` seconds apart (3 s, as Bambu Studio; P1-series
  printers degrade under frequent pushalls): a refresh inside that window waits for it, and
  concurrent refreshes share one pushall. The same gate applies to the pushall after a reconnect.
* **Reconnect**: a lost connection is retried with jittered exponential backoff (``backoff``,
  from 1 s doubling to 60 s, each delay drawn from 50-100 % of the step), followed by a fresh
  pushall. A **watchdog** treats a connection that delivers no message for ``watchdog`` seconds
  as lost; half-way it nudges the printer with ``pushing.start``. CONNACK "not authorised" on a
  reconnect stops for good: the event streams end with ``AuthenticationError``, and every later
  call raises it.
* **Malformed payloads** never break anything: they are counted in :attr:`Printer.malformed` and
  logged at DEBUG (size only, never content).
* **Secrets**: the access code is never in a repr, a log line or an exception message. Payloads
  are never logged (a ``system.get_access_code`` reply carries the code).

Everything above except the connection itself lives in :class:`BasePrinter`, which talks through
a *link*: anything with ``connected`` and ``send(topic, payload)``. :class:`Printer` owns its link,
one :class:`~bambulab.transports.mqtt.MqttConnection` to the printer, with the reconnect and
watchdog policy described here; :class:`bambulab.cloud.mqtt.CloudPrinter` shares one cloud
connection with the other printers of an account. Both have the same state, status, events and
commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import random
import ssl
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Protocol

from bambulab._lifecycle import AsyncResource, backoff_delay
from bambulab.events import (
    ConnectionLost,
    ConnectionRestored,
    EventStream,
    HmsCleared,
    HmsRaised,
    PrinterEvent,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    CommandFailedError,
    NotConnectedError,
    SignatureRequiredError,
)
from bambulab.protocol import commands as cmd
from bambulab.protocol.hms import HmsMessage, decode_hms_list
from bambulab.protocol.models import PrinterModel, detect_model, model_by_code, model_for_serial
from bambulab.protocol.state import is_status_report, merge
from bambulab.protocol.views import GcodeState, PrinterStatus
from bambulab.transports.mqtt import MqttConnection
from bambulab.transports.tls import check_peer_serial, default_printer_context, printer_ssl_context

__all__ = ["BasePrinter", "Printer"]

log = logging.getLogger(__name__)

_USERNAME: Final = "bblp"
_DEFAULT_TEMP: Final = 220
_ACTIVE: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING})
_STARTING: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.SLICING})
_NOT_STARTED: Final = frozenset(
    {GcodeState.IDLE, GcodeState.FINISH, GcodeState.FAILED, GcodeState.INIT, GcodeState.OFFLINE}
)


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _is_full(section: object) -> bool:
    if not is_status_report(section):
        return False
    msg = section.get("msg")
    return (type(msg) is int and msg == 0) or msg == "0"


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared task's outcome as seen (its awaiters may all have timed out)."""
    if not future.cancelled():
        future.exception()


def _label(payload: Mapping[str, Any]) -> str:
    for section, body in payload.items():
        if section != "header" and isinstance(body, Mapping) and isinstance(body.get("command"), str):
            return f"{section}.{body['command']}"
    raise ValueError("a command needs a section with a 'command', e.g. {'print': {'command': 'pause'}}")


class _Link(Protocol):
    """What a printer sends through: an MQTT connection (its own on the LAN, a shared one in the cloud)."""

    @property
    def connected(self) -> bool: ...

    def send(self, topic: str, payload: bytes) -> None: ...


class _AckWaiter:
    __slots__ = ("future", "label", "request")

    def __init__(self, request: Mapping[str, Any], label: str, future: asyncio.Future[dict[str, Any]]) -> None:
        self.request = request
        self.label = label
        self.future = future


class BasePrinter(AsyncResource):
    """One printer's state, status, events and commands, over a link a subclass provides.

    :class:`Printer` is the LAN client (its own MQTT connection); :class:`bambulab.cloud.mqtt.CloudPrinter`
    goes through the cloud connection of an account. Both share everything here, so the state,
    status, events and command API is the same. See the module docstring for the contract.
    """

    #: How messages name the far end of the link ("the connection to ... was lost").
    _link_name: ClassVar[str] = "the printer"

    def __init__(
        self,
        serial: str,
        *,
        model: PrinterModel | str | None = None,
        command_timeout: float = 10.0,
        pushall_interval: float = 3.0,
    ) -> None:
        if not isinstance(serial, str) or not serial.strip():
            raise ValueError("serial must be the printer's serial number")
        if command_timeout <= 0 or pushall_interval < 0:
            raise ValueError("timeouts and the watchdog must be positive")
        self._serial = serial.strip().upper()
        self._explicit_model = model_by_code(model) if isinstance(model, str) else model
        self._model: PrinterModel | None = self._explicit_model or model_for_serial(self._serial)
        self._command_timeout = command_timeout
        self._pushall_interval = pushall_interval
        self._report_topic = f"device/{self._serial}/report"
        self._request_topic = f"device/{self._serial}/request"
        self._seq = cmd.SequenceCounter(int(time.time() * 10))

        self._state: dict[str, Any] = {}
        self._status: PrinterStatus | None = None
        self._last_status: PrinterStatus | None = None
        self._ready = False
        self._closed = False
        self._fatal: BaseException | None = None
        self._acks: list[_AckWaiter] = []
        self._full_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._status_waiters: list[tuple[Callable[[PrinterStatus], bool], asyncio.Future[PrinterStatus]]] = []
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._last_pushall = float("-inf")
        self._refreshing: asyncio.Future[dict[str, Any]] | None = None
        #: Messages received, and how many of them could not be used (not JSON, not an object, ...).
        self.messages = 0
        self.malformed = 0
        #: Connections made (1 after the first connect; more after reconnects).
        self.connections = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._model_name()} {self._serial} {self._repr_state()}>"

    def _model_name(self) -> str:
        return self._model.name if self._model is not None else "unknown model"

    def _repr_state(self) -> str:
        if self._closed:
            return "closed"
        if self._fatal is not None:
            return "failed"
        return "connected" if self.connected else "disconnected"

    # ------------------------------------------------------------------ the interface others rely on

    @property
    def serial(self) -> str:
        return self._serial

    @property
    def model(self) -> PrinterModel | None:
        """Given, detected from ``get_version``, or guessed from the serial prefix."""
        return self._model

    @property
    def connected(self) -> bool:
        link = self._current_link()
        return self._ready and link is not None and link.connected

    @property
    def state(self) -> dict[str, Any]:
        """The merged raw state (``{"print": {...}, "info": {...}}``). Treat it as read-only."""
        return self._state

    @property
    def status(self) -> PrinterStatus:
        """A decoded view of :attr:`state`, built once per state change."""
        status = self._status
        if status is None:
            status = PrinterStatus(self._state, self._model, previous=self._last_status)
            self._status = self._last_status = status
        return status

    @property
    def sequence(self) -> cmd.SequenceCounter:
        """The sequence-id counter, for building commands: ``p.command(commands.pause(p.sequence))``."""
        return self._seq

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect and wait until ready (see the subclass)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Disconnect for good. Later calls raise :class:`~bambulab.exceptions.NotConnectedError`."""
        if self._closed:
            return
        self._closed = True
        await self._close_link()
        self._ready = False
        self._fail_waiters(NotConnectedError("the printer client was closed"))
        for stream in list(self._streams):
            stream.end(None)
        await self._release()
        log.debug("printer %s closed", self._serial)

    async def _close_link(self) -> None:
        """Stop using the link (the subclass's part of :meth:`close`)."""

    async def _release(self) -> None:
        """Release helpers that live as long as the printer (after the link is closed)."""

    # ------------------------------------------------------------------ commands

    async def command(
        self, payload: Mapping[str, Any], *, timeout: float | None = None  # noqa: ASYNC109 (API contract)
    ) -> dict[str, Any]:
        """Send a command and return the printer's acknowledgement (see the module docstring).

        A payload without a ``sequence_id`` gets one (in a copy). ``pushing.pushall``, which the
        printer does not acknowledge, behaves like :meth:`refresh` and returns the full report.
        """
        link = self._usable()
        label = _label(payload)
        if label == "pushing.pushall":
            return await self._refresh(timeout)
        request = self._outgoing(self._with_sequence(payload))
        waiter = self._add_ack(request, label)
        limit = self._command_timeout if timeout is None else timeout
        try:
            link.send(self._request_topic, _dumps(request))
            async with asyncio.timeout(limit):
                reply = await waiter.future
        except BambuError:
            raise
        except TimeoutError:
            raise BambuTimeoutError(
                f"no acknowledgement of {label} from the printer within {limit:g} s{self._silence_hint()}"
            ) from None
        finally:
            self._remove_ack(waiter)
        return self._check_ack(label, reply)

    async def refresh(self, *, timeout: float | None = None) -> PrinterStatus:  # noqa: ASYNC109
        """Send ``pushall`` (rate-limited, see the module docstring) and wait for the full report."""
        self._usable()
        await self._refresh(timeout)
        return self.status

    async def wait_for(
        self, predicate: Callable[[PrinterStatus], bool], timeout: float | None = None  # noqa: ASYNC109
    ) -> PrinterStatus:
        """Wait until ``predicate(status)`` is true (checked now and after every state change).

        Survives reconnects; raises :class:`~bambulab.exceptions.BambuTimeoutError` after
        ``timeout`` seconds, and what the predicate raises.
        """
        self._check_open()
        status = self.status
        if predicate(status):
            return status
        future: asyncio.Future[PrinterStatus] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._status_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except BambuError:
            raise
        except TimeoutError:
            raise BambuTimeoutError(f"the awaited printer condition was not met within {timeout:g} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._status_waiters.remove(entry)

    def events(self, *, maxsize: int = 256) -> EventStream:
        """A new event stream for one consumer: ``async for event in p.events(): ...``."""
        self._check_open()
        stream = EventStream(maxsize)
        self._streams.add(stream)
        return stream

    # ------------------------------------------------------------------ convenience commands

    async def get_version(self) -> dict[str, Any]:
        """Ask for the module list again; the reply is also stored in ``state["info"]``."""
        return await self.command(cmd.get_version(self._seq))

    async def pause(self) -> dict[str, Any]:
        return await self.command(cmd.pause(self._seq))

    async def resume(self) -> dict[str, Any]:
        return await self.command(cmd.resume(self._seq))

    async def stop(self) -> dict[str, Any]:
        """Cancel the print (the printer reports FAILED with a "cancelled" print_error)."""
        return await self.command(cmd.stop(self._seq))

    async def set_speed(self, level: cmd.SpeedLevel | int | str) -> dict[str, Any]:
        """Speed profile: 1 silent, 2 standard, 3 sport, 4 ludicrous (or the name)."""
        return await self.command(cmd.print_speed(self._seq, level))

    async def set_light(
        self, on: bool | cmd.LedMode | str = True, node: cmd.LightNode | str = cmd.LightNode.CHAMBER
    ) -> dict[str, Any]:
        """Switch a light on or off (or ``"flashing"``); the chamber light by default."""
        mode = ("on" if on else "off") if isinstance(on, bool) else on
        return await self.command(cmd.ledctrl(self._seq, node, mode))

    async def set_nozzle_temp(self, celsius: float) -> dict[str, Any]:
        return await self.command(cmd.set_nozzle_temp(self._seq, celsius))

    async def set_bed_temp(self, celsius: float) -> dict[str, Any]:
        return await self.command(cmd.set_bed_temp(self._seq, celsius))

    async def set_chamber_temp(self, celsius: float) -> dict[str, Any]:
        """Chamber heater target (X1E and H2-class printers; others ignore it)."""
        return await self.command(cmd.set_chamber_temp(self._seq, celsius))

    async def set_fan(self, fan: cmd.Fan | int, percent: float) -> dict[str, Any]:
        return await self.command(cmd.set_fan(self._seq, fan, percent))

    async def gcode(self, lines: str | Iterable[str]) -> dict[str, Any]:
        """Send raw G-code lines."""
        return await self.command(cmd.gcode_line(self._seq, lines))

    async def home(self) -> dict[str, Any]:
        return await self.command(cmd.home(self._seq))

    async def skip_objects(self, object_ids: Iterable[int]) -> dict[str, Any]:
        return await self.command(cmd.skip_objects(self._seq, object_ids))

    async def gcode_file(self, path: str) -> dict[str, Any]:
        """Print a plain ``.gcode`` file already on the printer's storage."""
        return await self.command(cmd.gcode_file(self._seq, path))

    async def clean_print_error(self, *, print_error: int = 0, subtask_id: str = "") -> dict[str, Any]:
        return await self.command(cmd.clean_print_error(self._seq, print_error=print_error, subtask_id=subtask_id))

    async def calibration(self, **options: Any) -> dict[str, Any]:
        """Run calibrations (``lidar``, ``bed_leveling``, ``vibration``, ``motor_noise``)."""
        return await self.command(cmd.calibration(self._seq, **options))

    async def print_option(self, option: cmd.PrintOption | str, enabled: bool) -> dict[str, Any]:
        return await self.command(cmd.print_option(self._seq, option, enabled))

    async def ams_change_filament(
        self, target: int, *, tar_temp: int, curr_temp: int | None = None, extruder_id: int | None = None
    ) -> dict[str, Any]:
        """Load ``target`` (global tray, 254 external spool) or unload (255)."""
        return await self.command(
            cmd.ams_change_filament(self._seq, target, tar_temp=tar_temp, curr_temp=curr_temp, extruder_id=extruder_id)
        )

    async def ams_load(self, tray: int, *, temperature: int | None = None) -> dict[str, Any]:
        """Load filament from a tray (``unit*4+slot``; 254 the external spool). ``temperature``
        defaults to the tray's maximum nozzle temperature, else 220 °C."""
        temp = temperature if temperature is not None else self._tray_temperature(tray)
        return await self.ams_change_filament(tray, tar_temp=temp, curr_temp=self._loaded_temperature(temp))

    async def ams_unload(self, *, temperature: int | None = None) -> dict[str, Any]:
        """Unload the current filament; ``temperature`` defaults to the loaded tray's maximum."""
        temp = temperature if temperature is not None else self._loaded_temperature(_DEFAULT_TEMP)
        return await self.ams_change_filament(cmd.UNLOAD_TARGET, tar_temp=temp, curr_temp=temp)

    async def ams_control(self, action: cmd.AmsControlAction | str) -> dict[str, Any]:
        return await self.command(cmd.ams_control(self._seq, action))

    async def ams_filament_setting(self, **fields: Any) -> dict[str, Any]:
        """Describe the filament in a tray (see :func:`bambulab.protocol.commands.ams_filament_setting`)."""
        return await self.command(cmd.ams_filament_setting(self._seq, **fields))

    async def set_xcam(
        self,
        module: cmd.XcamModule | str,
        enabled: bool,
        *,
        print_halt: bool = True,
        sensitivity: cmd.XcamSensitivity | str = cmd.XcamSensitivity.MEDIUM,
    ) -> dict[str, Any]:
        """Switch an AI/camera detector (spaghetti detector, first-layer inspector, ...)."""
        return await self.command(
            cmd.xcam_control_set(self._seq, module, enabled, print_halt=print_halt, sensitivity=sensitivity)
        )

    async def set_camera_recording(self, enabled: bool) -> dict[str, Any]:
        return await self.command(cmd.ipcam_record_set(self._seq, enabled))

    async def set_timelapse(self, enabled: bool) -> dict[str, Any]:
        return await self.command(cmd.ipcam_timelapse(self._seq, enabled))

    def _tray_temperature(self, tray: int) -> int:
        status = self.status
        found = None
        if tray == cmd.EXTERNAL_SPOOL_TARGET:
            found = status.external_spools[0] if status.external_spools else None
        elif 0 <= tray < 128:
            found = status.ams.find_tray(tray // 4, tray % 4)
        elif 128 <= tray < 136:
            found = status.ams.find_tray(tray, 0)
        if found is not None and found.nozzle_temp_max:
            return found.nozzle_temp_max
        return _DEFAULT_TEMP

    def _loaded_temperature(self, default: int) -> int:
        tray = self.status.active_tray
        return tray.nozzle_temp_max if tray is not None and tray.nozzle_temp_max else default

    # ------------------------------------------------------------------ connecting (shared by every link)

    async def _greet(self, link: _Link) -> tuple[bool, bool]:
        """Send ``get_version`` and a (gated) pushall; wait up to ``command_timeout`` for both answers.

        Returns (a full report arrived, the version reply arrived).
        """
        loop = asyncio.get_running_loop()
        version = cmd.get_version(self._seq)
        version_waiter = self._add_ack(version, "info.get_version")
        full = self._expect_full()
        try:
            link.send(self._request_topic, _dumps(version))
            await self._pushall_gate()
            link.send(self._request_topic, _dumps(cmd.pushall(self._seq)))
            self._last_pushall = loop.time()
            await asyncio.wait([full, version_waiter.future], timeout=self._command_timeout)
        finally:
            self._remove_ack(version_waiter)
            if not full.done():
                full.cancel()
                with contextlib.suppress(ValueError):
                    self._full_waiters.remove(full)
        got_full = not full.cancelled() and full.exception() is None
        answered = version_waiter.future
        got_version = answered.done() and answered.exception() is None
        return got_full, got_version

    async def _pushall_gate(self) -> None:
        wait = self._last_pushall + self._pushall_interval - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _connection_lost(self, reason: BaseException | None) -> None:
        """The link went down: fail whatever waits on it (commands, full reports)."""
        self._ready = False
        if self._closed:
            error: BambuError = NotConnectedError("the printer client was closed")
        else:
            error = BambuConnectionError(f"the connection to {self._link_name} was lost")
            error.__cause__ = reason
        for waiter in list(self._acks):
            if not waiter.future.done():
                lost_error = (
                    error
                    if self._closed
                    else BambuConnectionError(
                        f"the connection to {self._link_name} was lost while waiting for the acknowledgement of "
                        f"{waiter.label}; the command may or may not have been carried out"
                    )
                )
                waiter.future.set_exception(lost_error)
                waiter.future.exception()
        for future in self._full_waiters:
            if not future.done():
                future.set_exception(error)
                future.exception()
        self._full_waiters.clear()

    def _stop_for_good(self, error: BaseException) -> None:
        self._fatal = error
        self._fail_waiters(error)
        for stream in list(self._streams):
            stream.end(error if isinstance(error, AuthenticationError) else None)

    # ------------------------------------------------------------------ incoming

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.messages += 1
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self.malformed += 1
            log.debug("printer %s sent %d bytes that are not JSON (%s)", self._serial, len(payload), type(exc).__name__)
            return
        if type(message) is not dict:
            self.malformed += 1
            log.debug("printer %s sent JSON that is not an object (%s)", self._serial, type(message).__name__)
            return
        try:
            self._handle(message)
        except Exception:  # one odd report must never break the connection
            self.malformed += 1
            log.debug("printer %s sent a report that could not be handled", self._serial, exc_info=True)

    def _handle(self, message: dict[str, Any]) -> None:
        if self._acks:
            for waiter in self._acks:
                if not waiter.future.done() and cmd.is_ack_for(waiter.request, message):
                    waiter.future.set_result(message)
        old = self._state
        new = merge(old, message)
        if new is old:
            return
        self._state = new
        self._status = None
        if new.get("info") is not old.get("info") and self._explicit_model is None:
            detected = detect_model(new["info"])
            if detected is not None:
                self._model = detected
        section = message.get("print")
        if self._full_waiters and _is_full(section):
            waiters, self._full_waiters = self._full_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(message)
        if not self._streams and not self._status_waiters:
            return
        status = self.status
        if self._streams:
            self._emit(StateChanged(self._serial, status))
            old_print = old.get("print")
            new_print = new.get("print")
            if isinstance(old_print, dict) and isinstance(new_print, dict) and old_print is not new_print:
                self._lifecycle(old_print, new_print, status)
        if self._status_waiters:
            for predicate, awaiter in list(self._status_waiters):
                if awaiter.done():
                    continue
                try:
                    if predicate(status):
                        awaiter.set_result(status)
                except Exception as exc:
                    awaiter.set_exception(exc)

    def _lifecycle(self, old: dict[str, Any], new: dict[str, Any], status: PrinterStatus) -> None:
        serial = self._serial
        old_state, new_state = old.get("gcode_state"), new.get("gcode_state")
        if old_state != new_state:
            before, after = GcodeState.parse(old_state), GcodeState.parse(new_state)
            event: PrinterEvent | None = None
            if after in _STARTING and before in _NOT_STARTED:
                event = PrintStarted(serial, status)
            elif before is GcodeState.PAUSE and after in (GcodeState.RUNNING, GcodeState.PREPARE):
                event = PrintResumed(serial, status)
            elif after is GcodeState.PAUSE and before in _ACTIVE:
                event = PrintPaused(serial, status)
            elif after is GcodeState.FINISH and before in _ACTIVE:
                event = PrintFinished(serial, status)
            elif after is GcodeState.FAILED and before in _ACTIVE:
                event = PrintFailed(serial, status, status.print_error)
            if event is not None:
                self._emit(event)
        old_hms, new_hms = old.get("hms"), new.get("hms")
        if old_hms is not new_hms and old_hms != new_hms:
            before_hms = {(m.attr, m.code): m for m in decode_hms_list(old_hms)}
            after_hms: dict[tuple[int, int], HmsMessage] = {(m.attr, m.code): m for m in status.hms}
            for key, message in after_hms.items():
                if key not in before_hms:
                    self._emit(HmsRaised(serial, message))
            for key, message in before_hms.items():
                if key not in after_hms:
                    self._emit(HmsCleared(serial, message))

    def _emit(self, event: PrinterEvent) -> None:
        for stream in self._streams:
            stream.put(event)

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnectedError("the printer client is closed")
        if self._fatal is not None:
            raise self._fatal

    def _current_link(self) -> _Link | None:
        """The link commands go through now (``None`` while there is none)."""
        return None

    def _outgoing(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        """A command as this link sends it (the cloud adds fields); the identity here."""
        return request

    def _silence_hint(self) -> str:
        """Appended to "no answer" timeouts (the cloud explains an offline printer)."""
        return ""

    def _usable(self) -> _Link:
        self._check_open()
        link = self._current_link()
        if link is None or not self._ready or not link.connected:
            raise NotConnectedError("not connected to the printer (connecting or waiting to reconnect)")
        return link

    def _with_sequence(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        missing = [
            section
            for section, body in payload.items()
            if section != "header" and isinstance(body, Mapping) and "command" in body and "sequence_id" not in body
        ]
        if not missing:
            return payload
        request = dict(payload)
        for section in missing:
            request[section] = {**payload[section], "sequence_id": self._seq.next()}
        return request

    def _add_ack(self, request: Mapping[str, Any], label: str) -> _AckWaiter:
        waiter = _AckWaiter(request, label, asyncio.get_running_loop().create_future())
        self._acks.append(waiter)
        return waiter

    def _remove_ack(self, waiter: _AckWaiter) -> None:
        with contextlib.suppress(ValueError):
            self._acks.remove(waiter)

    def _expect_full(self) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._full_waiters.append(future)
        return future

    async def _refresh(self, limit_s: float | None) -> dict[str, Any]:
        shared = self._refreshing
        if shared is None or shared.done():
            shared = self._refreshing = asyncio.ensure_future(self._do_refresh())
            shared.add_done_callback(_retrieve)
        limit = self._command_timeout + self._pushall_interval if limit_s is None else limit_s
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(shared)
        except BambuError:
            raise
        except TimeoutError:
            raise BambuTimeoutError(
                f"no full status report from the printer within {limit:g} s{self._silence_hint()}"
            ) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if shared.cancelled() and task is not None and not task.cancelling():
                raise NotConnectedError("the printer client was closed during a refresh") from None
            raise

    async def _do_refresh(self) -> dict[str, Any]:
        await self._pushall_gate()
        link = self._usable()
        full = self._expect_full()
        link.send(self._request_topic, _dumps(cmd.pushall(self._seq)))
        self._last_pushall = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._command_timeout):
                return await full
        except TimeoutError:
            raise BambuTimeoutError(
                f"no full status report within {self._command_timeout:g} s of a pushall{self._silence_hint()}"
            ) from None

    def _check_ack(self, label: str, reply: dict[str, Any]) -> dict[str, Any]:
        ack = cmd.ack_result(reply)
        if ack.success:
            return reply
        reason = ack.reason or ack.result or "no reason given"
        code = ack.err_code if ack.err_code is not None else ack.errno
        suffix = f" (code {code})" if code is not None else ""
        if ack.signature_required:
            raise SignatureRequiredError(
                f"the printer rejected {label}: it only accepts signed commands ({reason}){suffix}. "
                f"{SignatureRequiredError.ADVICE}",
                command=label,
                reason=reason,
                code=code,
            )
        if ack.replay:
            raise CommandFailedError(
                f"the printer rejected {label} as a replay (its sequence id was used before){suffix}",
                command=label,
                reason=reason,
                code=code,
            )
        raise CommandFailedError(
            f"the printer rejected {label}: {reason}{suffix}", command=label, reason=reason, code=code
        )

    def _fail_waiters(self, error: BaseException) -> None:
        for waiter in self._acks:
            if not waiter.future.done():
                waiter.future.set_exception(error)
                waiter.future.exception()
        for future in self._full_waiters:
            if not future.done():
                future.set_exception(error)
                future.exception()
        self._full_waiters.clear()
        for _, awaiter in self._status_waiters:
            if not awaiter.done():
                awaiter.set_exception(error)
                awaiter.exception()
        shared = self._refreshing
        if shared is not None and not shared.done():
            shared.cancel()


class Printer(BasePrinter):
    """One printer on the LAN. See the module docstring for the whole contract.

    ``ssl_context`` replaces the default verification (bundled Bambu CA chain); ``ca_file`` trusts
    another CA instead; ``insecure=True`` turns verification off (a warning is logged).
    ``model`` (a :class:`PrinterModel`, code or name) overrides detection. ``camera_port`` ``None``
    means the model's default (6000 for the JPEG stream, 322 for RTSPS).
    """

    def __init__(
        self,
        host: str,
        serial: str,
        access_code: str,
        *,
        port: int = 8883,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        model: PrinterModel | str | None = None,
        command_timeout: float = 10.0,
        ftps_port: int = 990,
        camera_port: int | None = None,
        watchdog: float = 30.0,
        reconnect: bool = True,
        pushall_interval: float = 3.0,
        connect_timeout: float = 10.0,
        keepalive: int = 30,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        if not isinstance(serial, str) or not serial.strip():
            raise ValueError("serial must be the printer's serial number")
        if not isinstance(access_code, str) or not access_code:
            raise ValueError("access_code must be the printer's LAN access code (a non-empty str)")
        if ssl_context is not None and (ca_file is not None or insecure):
            raise ValueError("pass either ssl_context or ca_file/insecure, not both")
        if command_timeout <= 0 or watchdog <= 0 or connect_timeout <= 0 or pushall_interval < 0:
            raise ValueError("timeouts and the watchdog must be positive")
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError("backoff must be (initial > 0, maximum >= initial)")
        super().__init__(serial, model=model, command_timeout=command_timeout, pushall_interval=pushall_interval)
        self._host = host
        self._access_code = access_code
        self._port = port
        if ssl_context is not None:
            self._ssl_context = ssl_context
        elif ca_file is not None:
            self._ssl_context = printer_ssl_context(ca_file=ca_file, insecure=insecure)
        else:
            self._ssl_context = default_printer_context(insecure)
        self._ftps_port = ftps_port
        self._camera_port = camera_port
        self._watchdog = watchdog
        self._reconnect = reconnect
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._backoff = backoff
        self._rng = random.Random()
        self._conn: MqttConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._files: Any = None
        self._camera: Any = None

    def __repr__(self) -> str:
        return f"<Printer {self._model_name()} {self._serial} at {self._host}:{self._port} {self._repr_state()}>"

    # ------------------------------------------------------------------ the interface others rely on

    @property
    def host(self) -> str:
        return self._host

    @property
    def access_code(self) -> str:
        """The LAN access code (for the FTPS and camera helpers). Never shown in ``repr``."""
        return self._access_code

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context used for MQTT; FTPS and the camera use the same verification."""
        return self._ssl_context

    @property
    def port(self) -> int:
        return self._port

    @property
    def ftps_port(self) -> int:
        return self._ftps_port

    @property
    def camera_port(self) -> int | None:
        return self._camera_port

    @property
    def files(self) -> Any:
        """FTPS access to the printer's storage (:class:`bambulab.files.PrinterFiles`)."""
        if self._files is None:
            self._files = importlib.import_module("bambulab.files").PrinterFiles(self)
        return self._files

    @property
    def camera(self) -> Any:
        """The printer's camera (:class:`bambulab.camera.Camera`)."""
        if self._camera is None:
            self._camera = importlib.import_module("bambulab.camera").Camera(self)
        return self._camera

    async def print_file(self, *args: Any, **kwargs: Any) -> Any:
        """Upload (if needed) and print a file: see :func:`bambulab.printing.print_file`."""
        return await importlib.import_module("bambulab.printing").print_file(self, *args, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect and wait until ready. A failure raises at once (no retry on the first connect)."""
        self._check_open()
        if self._supervisor is not None:
            return
        conn, lost = await self._open()
        self._supervisor = asyncio.create_task(self._supervise(conn, lost), name=f"bambulab-printer-{self._serial}")

    async def _close_link(self) -> None:
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        self._ready = False
        if conn is not None:
            await conn.close()

    async def _release(self) -> None:
        # FTPS keeps a worker thread and the camera its streams: release them with the printer.
        for helper in (self._files, self._camera):
            if helper is not None:
                with contextlib.suppress(Exception):
                    await helper.close()

    # ------------------------------------------------------------------ the LAN link

    def _current_link(self) -> MqttConnection | None:
        return self._conn

    async def _open(self) -> tuple[MqttConnection, asyncio.Future[BaseException | None]]:
        """One connection, made ready: connect, subscribe, get_version + pushall, full report."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[BaseException | None] = loop.create_future()
        conn = MqttConnection(
            self._host,
            self._port,
            on_message=self._on_message,
            on_close=functools.partial(self._on_close, lost),
            username=_USERNAME,
            password=self._access_code,
            ssl_context=self._ssl_context,
            verify_peer=functools.partial(
                check_peer_serial, serial=self._serial, where=f"{self._host}:{self._port}"
            ),
            keepalive=self._keepalive,
            connect_timeout=self._connect_timeout,
        )
        try:
            await conn.connect()
            await conn.subscribe(self._report_topic, timeout=self._command_timeout)
            got_full, got_version = await self._greet(conn)
            if lost.done():
                raise BambuConnectionError("the printer closed the connection while it was being set up")
            if not got_full:
                raise BambuTimeoutError(
                    f"the printer sent no status report within {self._command_timeout:g} s of connecting"
                )
            if not got_version:
                log.warning("printer %s did not answer get_version; the model is guessed from its serial", self._serial)
        except BaseException:
            conn.abort()
            raise
        self._conn = conn
        self._ready = True
        self.connections += 1
        log.info(
            "connected to printer %s (%s) at %s:%d",
            self._serial,
            self._model.name if self._model else "unknown model",
            self._host,
            self._port,
        )
        return conn, lost

    def _on_close(self, lost: asyncio.Future[BaseException | None], reason: BaseException | None) -> None:
        """The transport's close callback: fail whatever waits on this connection, wake the supervisor."""
        self._connection_lost(reason)
        if not lost.done():
            lost.set_result(reason)

    async def _supervise(self, conn: MqttConnection, lost: asyncio.Future[BaseException | None]) -> None:
        """Watch the connection (watchdog), and reconnect when it is lost."""
        while True:
            reason = await self._watch(conn, lost)
            self._conn = None
            self._ready = False
            if self._closed:
                return
            log.warning("lost the connection to printer %s: %s", self._serial, reason or "closed")
            self._emit(ConnectionLost(self._serial, reason, self._reconnect))
            if not self._reconnect:
                self._stop_for_good(NotConnectedError("the connection to the printer was lost (reconnect=False)"))
                return
            opened = await self._reconnect_loop()
            if opened is None:
                return
            conn, lost = opened
            self._emit(ConnectionRestored(self._serial, self.status))

    async def _watch(self, conn: MqttConnection, lost: asyncio.Future[BaseException | None]) -> BaseException | None:
        loop = asyncio.get_running_loop()
        interval = self._watchdog / 4
        seen = self.messages
        changed_at = loop.time()
        nudged = False
        while not lost.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await asyncio.shield(lost)
            if lost.done():
                break
            now = loop.time()
            if self.messages != seen:
                seen, changed_at, nudged = self.messages, now, False
                continue
            silence = now - changed_at
            if silence >= self._watchdog:
                conn.abort(
                    BambuTimeoutError(
                        f"no message from the printer for {silence:.1f} s (watchdog {self._watchdog:g} s)"
                    )
                )
            elif silence >= self._watchdog / 2 and not nudged:
                nudged = True
                log.debug("printer %s silent for %.1f s: sending pushing.start", self._serial, silence)
                with contextlib.suppress(BambuError):
                    conn.send(self._request_topic, _dumps(cmd.start_pushing(self._seq)))
        return lost.result()

    async def _reconnect_loop(self) -> tuple[MqttConnection, asyncio.Future[BaseException | None]] | None:
        initial, maximum = self._backoff
        attempt = 0
        while not self._closed:
            await asyncio.sleep(backoff_delay(attempt, initial, maximum, self._rng))
            attempt += 1
            try:
                return await self._open()
            except AuthenticationError as exc:
                log.error("printer %s refused the reconnect: %s; not retrying", self._serial, exc)
                self._emit(ConnectionLost(self._serial, exc, False))
                self._stop_for_good(exc)
                return None
            except BambuError as exc:
                log.info("reconnect to printer %s failed (attempt %d): %s", self._serial, attempt, exc)
        return None
