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
  (:mod:`bambulab.events`): a consumer that falls ``maxsize`` events behind gets one
  ``EventsDropped`` with the current status instead of what it missed. Lifecycle and HMS events
  (:func:`~bambulab.events.derive_events`) describe changes between two known states: the first
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

Everything above except the connection itself lives in :class:`Printer`, which talks through a
*link* (:mod:`bambulab.link`): ``Printer(host, serial, access_code)`` makes a
:class:`~bambulab.link.LanLink`, one MQTT connection to the printer with the reconnect and
watchdog policy described here; :class:`bambulab.cloud.mqtt.CloudConnection` hands out printers
whose link is its shared account connection (:class:`~bambulab.cloud.mqtt.CloudLink`). Both have
the same state, status, events and commands; ``Printer.over(serial, link)`` builds one over any
other :class:`~bambulab.link.PrinterLink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Self

from bambulab._lifecycle import AsyncResource
from bambulab.endpoint import DEFAULT_FTPS_PORT, DEFAULT_MQTT_PORT, PrinterEndpoint
from bambulab.events import (
    ConnectionLost,
    ConnectionRestored,
    EventStream,
    PrinterEvent,
    StateChanged,
    derive_events,
)
from bambulab.exceptions import (
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    CommandFailedError,
    NotConnectedError,
    SignatureRequiredError,
    UnsupportedError,
)
from bambulab.link import Clock, LanLink, PrinterLink
from bambulab.protocol import commands as cmd
from bambulab.protocol.models import PrinterModel, detect_model, model_by_code, model_for_serial
from bambulab.protocol.state import is_full_report, merge
from bambulab.protocol.views import PrinterStatus

if TYPE_CHECKING:
    from bambulab.camera import Camera
    from bambulab.files import PrinterFiles
    from bambulab.printing import PrintJob
    from bambulab.transports.ftps import Progress

__all__ = ["BasePrinter", "Printer"]

log = logging.getLogger(__name__)

_DEFAULT_TEMP: Final = 220
_LAN_ONLY: Final = (
    "a printer reached through {} has no LAN endpoint (host, access code, FTPS, camera): use a LAN Printer"
)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared task's outcome as seen (its awaiters may all have timed out)."""
    if not future.cancelled():
        future.exception()


def _label(payload: Mapping[str, Any]) -> str:
    for section, body in payload.items():
        if section != "header" and isinstance(body, Mapping) and isinstance(body.get("command"), str):
            return f"{section}.{body['command']}"
    raise ValueError("a command needs a section with a 'command', e.g. {'print': {'command': 'pause'}}")


class _AckWaiter:
    __slots__ = ("future", "label", "request")

    def __init__(self, request: Mapping[str, Any], label: str, future: asyncio.Future[dict[str, Any]]) -> None:
        self.request = request
        self.label = label
        self.future = future


class Printer(AsyncResource):
    """One printer's state, status, events and commands, over a link (see the module docstring).

    ``Printer(host, serial, access_code)`` is the LAN client: ``ssl_context`` replaces the default
    verification (bundled Bambu CA chain); ``ca_file`` trusts another CA instead; ``insecure=True``
    turns verification off (a warning is logged). ``model`` (a :class:`PrinterModel`, code or
    name) overrides detection. ``camera_port`` ``None`` means the model's default (6000 for the
    JPEG stream, 322 for RTSPS). ``clock`` replaces the event loop's clock for the watchdog and
    the reconnect backoff (tests). :meth:`over` builds a printer over another link (the cloud).
    """

    _endpoint: PrinterEndpoint | None

    def __init__(
        self,
        host: str,
        serial: str,
        access_code: str,
        *,
        port: int = DEFAULT_MQTT_PORT,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        model: PrinterModel | str | None = None,
        command_timeout: float = 10.0,
        ftps_port: int = DEFAULT_FTPS_PORT,
        camera_port: int | None = None,
        watchdog: float = 30.0,
        reconnect: bool = True,
        pushall_interval: float = 3.0,
        connect_timeout: float = 10.0,
        keepalive: int = 30,
        backoff: tuple[float, float] = (1.0, 60.0),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(serial, str) or not serial.strip():
            raise ValueError("serial must be the printer's serial number")
        if not isinstance(access_code, str) or not access_code:
            raise ValueError("access_code must be the printer's LAN access code (a non-empty str)")
        if command_timeout <= 0 or watchdog <= 0 or connect_timeout <= 0 or pushall_interval < 0:
            raise ValueError("timeouts and the watchdog must be positive")
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError("backoff must be (initial > 0, maximum >= initial)")
        endpoint = PrinterEndpoint.create(
            host,
            serial,
            access_code,
            ssl_context=ssl_context,
            ca_file=ca_file,
            insecure=insecure,
            port=port,
            ftps_port=ftps_port,
            camera_port=camera_port,
        )
        link = LanLink(
            endpoint,
            watchdog=watchdog,
            reconnect=reconnect,
            connect_timeout=connect_timeout,
            keepalive=keepalive,
            backoff=backoff,
            clock=clock,
        )
        self._setup(serial, link, model=model, command_timeout=command_timeout, pushall_interval=pushall_interval)
        self._endpoint = endpoint

    @classmethod
    def over(
        cls,
        serial: str,
        link: PrinterLink,
        *,
        model: PrinterModel | str | None = None,
        command_timeout: float = 10.0,
        pushall_interval: float = 3.0,
    ) -> Self:
        """A printer that talks through ``link`` (which it then owns: :meth:`close` closes it)."""
        printer = cls.__new__(cls)
        printer._setup(serial, link, model=model, command_timeout=command_timeout, pushall_interval=pushall_interval)
        return printer

    def _setup(
        self,
        serial: str,
        link: PrinterLink,
        *,
        model: PrinterModel | str | None,
        command_timeout: float,
        pushall_interval: float,
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
        self._endpoint = None
        self._link = link

        self._state: dict[str, Any] = {}
        self._status: PrinterStatus | None = None
        self._last_status: PrinterStatus | None = None
        self._ready = False
        self._announced = False  # a ConnectionLost went out and no ConnectionRestored yet
        self._closed = False
        self._fatal: BaseException | None = None
        self._acks: list[_AckWaiter] = []
        self._full_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._status_waiters: list[tuple[Callable[[PrinterStatus], bool], asyncio.Future[PrinterStatus]]] = []
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._last_pushall = float("-inf")
        self._refreshing: asyncio.Future[dict[str, Any]] | None = None
        self._pushall_handle: asyncio.TimerHandle | None = None
        self._files: PrinterFiles | None = None
        self._camera: Camera | None = None
        #: Messages received, and how many of them could not be used (not JSON, not an object, ...).
        self.messages = 0
        self.malformed = 0
        #: Connections made (1 after the first connect; more after reconnects).
        self.connections = 0
        link.attach(_Side(self))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._model_name()} {self._serial} {self._link.where} {self._repr_state()}>"

    def _model_name(self) -> str:
        return self._model.name if self._model is not None else "unknown model"

    def _repr_state(self) -> str:
        if self._closed:
            return "closed"
        if self._fatal is not None:
            return "failed"
        if self.connected:
            return "connected"
        return "offline" if self._link.offline and self._link.connected else "disconnected"

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
        return self._ready and self._link.connected

    @property
    def link(self) -> PrinterLink:
        """What this printer talks through (a :class:`~bambulab.link.LanLink` on the LAN)."""
        return self._link

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

    # ------------------------------------------------------------------ the LAN services

    @property
    def endpoint(self) -> PrinterEndpoint:
        """Host, serial, access code, TLS context and ports (LAN printers only)."""
        endpoint = self._endpoint
        if endpoint is None:
            raise UnsupportedError(_LAN_ONLY.format(self._link.name))
        return endpoint

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def access_code(self) -> str:
        """The LAN access code (for the FTPS and camera helpers). Never shown in ``repr``."""
        return self.endpoint.access_code

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context used for MQTT; FTPS and the camera use the same verification."""
        return self.endpoint.ssl_context

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def ftps_port(self) -> int:
        return self.endpoint.ftps_port

    @property
    def camera_port(self) -> int | None:
        return self.endpoint.camera_port

    @property
    def files(self) -> PrinterFiles:
        """FTPS access to the printer's storage (:class:`bambulab.files.PrinterFiles`)."""
        if self._files is None:
            from bambulab.files import PrinterFiles

            self._files = PrinterFiles(self.endpoint)
        return self._files

    @property
    def camera(self) -> Camera:
        """The printer's camera (:class:`bambulab.camera.Camera`)."""
        if self._camera is None:
            from bambulab.camera import Camera

            self._camera = Camera(self)
        return self._camera

    async def print_file(
        self,
        path: str | os.PathLike[str] | bytes,
        *,
        plate: int = 1,
        ams_mapping: str | Sequence[int] | None = "auto",
        remote_name: str | None = None,
        bed_type: cmd.BedType | str = "auto",
        timelapse: bool = False,
        bed_leveling: bool = True,
        flow_cali: bool = False,
        vibration_cali: bool = False,
        use_ams: bool | None = None,
        progress: Progress | None = None,
        start_timeout: float = 60.0,
    ) -> PrintJob:
        """Upload (if needed) and print a file: see :func:`bambulab.printing.print_file`."""
        from bambulab.printing import print_file

        return await print_file(
            self,
            path,
            plate=plate,
            ams_mapping=ams_mapping,
            remote_name=remote_name,
            bed_type=bed_type,
            timelapse=timelapse,
            bed_leveling=bed_leveling,
            flow_cali=flow_cali,
            vibration_cali=vibration_cali,
            use_ams=use_ams,
            progress=progress,
            start_timeout=start_timeout,
        )


    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect and wait until ready. A failure raises at once (no retry on the first connect)."""
        self._check_open()
        await self._link.connect()

    async def close(self) -> None:
        """Disconnect for good. Later calls raise :class:`~bambulab.exceptions.NotConnectedError`."""
        if self._closed:
            return
        self._closed = True
        self._cancel_full_request()
        await self._link.close()
        self._ready = False
        self._fail_waiters(NotConnectedError("the printer client was closed"))
        for stream in list(self._streams):
            stream.end(None)
        await self._release()
        log.debug("printer %s closed", self._serial)

    async def _release(self) -> None:
        # FTPS keeps a worker thread and the camera its streams: release them with the printer.
        helpers: list[PrinterFiles | Camera | None] = [self._files, self._camera]
        for helper in helpers:
            if helper is not None:
                with contextlib.suppress(Exception):
                    await helper.close()

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
        request = self._with_sequence(payload)
        waiter = self._add_ack(request, label)
        limit = self._command_timeout if timeout is None else timeout
        try:
            link.send(request)
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

    async def _greet(self) -> tuple[bool, bool]:
        """Send ``get_version`` and a (gated) pushall; wait up to ``command_timeout`` for both answers.

        Returns (a full report arrived, the version reply arrived).
        """
        loop = asyncio.get_running_loop()
        version = cmd.get_version(self._seq)
        version_waiter = self._add_ack(version, "info.get_version")
        full = self._expect_full()
        try:
            self._link.send(version)
            await self._pushall_gate()
            self._link.send(cmd.pushall(self._seq))
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
            error = BambuConnectionError(f"the connection to {self._link.name} was lost")
            error.__cause__ = reason
        for waiter in list(self._acks):
            if not waiter.future.done():
                lost_error = (
                    error
                    if self._closed
                    else BambuConnectionError(
                        f"the connection to {self._link.name} was lost while waiting for the acknowledgement of "
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

    def _up(self) -> None:
        self._ready = True
        self.connections += 1
        self._cancel_full_request()
        if self._announced:
            self._announced = False
            self._emit(ConnectionRestored(self._serial, self.status))

    def _down(self, reason: BaseException | None) -> None:
        self._connection_lost(reason)
        self._cancel_full_request()

    def _lost(self, reason: BaseException | None, reconnecting: bool) -> None:
        """Out of reach: one ConnectionLost per outage (a refusal after it only ends the streams)."""
        self._ready = False
        if not self._announced and not self._closed and self._fatal is None:
            self._announced = True
            self._emit(ConnectionLost(self._serial, reason, reconnecting))

    def _stop(self, error: BaseException) -> None:
        if self._closed or self._fatal is not None:
            return
        self._lost(error, False)
        self._stop_for_good(error)

    def _request_full(self) -> None:
        """A printer that was silent spoke: fetch a full report (one pushall in flight, rate-limited)."""
        if self._pushall_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pushall + self._pushall_interval - loop.time()
        self._pushall_handle = loop.call_later(max(0.0, wait), self._send_pushall)

    def _send_pushall(self) -> None:
        self._pushall_handle = None
        if self._ready or self._closed or self._fatal is not None or not self._link.connected:
            return
        with contextlib.suppress(BambuError):
            self._link.send(cmd.pushall(self._seq))
            self._last_pushall = asyncio.get_running_loop().time()

    def _cancel_full_request(self) -> None:
        if self._pushall_handle is not None:
            self._pushall_handle.cancel()
            self._pushall_handle = None

    def _stop_for_good(self, error: BaseException) -> None:
        self._ready = False
        self._fatal = error
        self._fail_waiters(error)
        for stream in list(self._streams):
            stream.end(None if isinstance(error, NotConnectedError) else error)

    # ------------------------------------------------------------------ incoming

    def _decode(self, payload: bytes) -> dict[str, Any] | None:
        self.messages += 1
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            self.malformed += 1
            log.debug("printer %s sent %d bytes that are not JSON (%s)", self._serial, len(payload), type(exc).__name__)
            return None
        if type(message) is not dict:
            self.malformed += 1
            log.debug("printer %s sent JSON that is not an object (%s)", self._serial, type(message).__name__)
            return None
        return message

    def _handle_safely(self, message: dict[str, Any]) -> None:
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
        if self._full_waiters and is_full_report(section):
            waiters, self._full_waiters = self._full_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(message)
        if not self._streams and not self._status_waiters:
            return
        status = self.status
        if self._streams:
            self._emit(StateChanged(self._serial, status))
            for event in derive_events(old, new, serial=self._serial, status=status):
                self._emit(event)
        if self._status_waiters:
            for predicate, awaiter in list(self._status_waiters):
                if awaiter.done():
                    continue
                try:
                    if predicate(status):
                        awaiter.set_result(status)
                except Exception as exc:
                    awaiter.set_exception(exc)

    def _emit(self, event: PrinterEvent) -> None:
        for stream in self._streams:
            stream.put(event)

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnectedError("the printer client is closed")
        if self._fatal is not None:
            raise self._fatal

    def _silence_hint(self) -> str:
        return self._link.silence_hint()

    def _usable(self) -> PrinterLink:
        self._check_open()
        link = self._link
        if not link.usable():
            raise NotConnectedError(f"not connected to {link.name} (connecting or waiting to reconnect)")
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
        link.send(cmd.pushall(self._seq))
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


class _Side:
    """The printer's side of its link (:class:`~bambulab.link.LinkClient`): what the link may call."""

    __slots__ = ("_p",)

    def __init__(self, printer: Printer) -> None:
        self._p = printer

    @property
    def serial(self) -> str:
        return self._p._serial

    @property
    def report_topic(self) -> str:
        return self._p._report_topic

    @property
    def request_topic(self) -> str:
        return self._p._request_topic

    @property
    def sequence(self) -> cmd.SequenceCounter:
        return self._p._seq

    @property
    def messages(self) -> int:
        return self._p.messages

    @property
    def ready(self) -> bool:
        return self._p._ready

    @property
    def active(self) -> bool:
        return not self._p._closed and self._p._fatal is None

    @property
    def command_timeout(self) -> float:
        return self._p._command_timeout

    def decode(self, payload: bytes) -> dict[str, Any] | None:
        return self._p._decode(payload)

    def handle(self, message: dict[str, Any]) -> None:
        self._p._handle_safely(message)

    async def greet(self) -> tuple[bool, bool]:
        return await self._p._greet()

    def up(self) -> None:
        self._p._up()

    def down(self, reason: BaseException | None) -> None:
        self._p._down(reason)

    def lost(self, reason: BaseException | None, reconnecting: bool) -> None:
        self._p._lost(reason, reconnecting)

    def stop(self, error: BaseException) -> None:
        self._p._stop(error)

    def request_full(self) -> None:
        self._p._request_full()


#: The name the cloud printer and the sync wrapper knew before there was one class.
BasePrinter = Printer
