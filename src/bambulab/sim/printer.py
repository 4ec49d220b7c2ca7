"""A virtual printer: the engine plus its network services, and the use cases tests call.

Service + State + UseCases, as in pyatv's fake devices: the services speak the real protocols on
real sockets, the state is :class:`~bambulab.sim.state.Dynamic` driven by the
:class:`~bambulab.sim.engine.PrinterEngine`, and the use cases (``start_print``, ``inject_hms``,
``disconnect_clients``, ``go_offline`` ...) are what tests and demos call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bambulab.protocol.models import CameraKind, PrinterModel
from bambulab.sim.ca import LeafCertificate, SimCA
from bambulab.sim.config import PrinterConfig
from bambulab.sim.engine import Message, PrinterEngine
from bambulab.sim.mqtt import MqttService
from bambulab.sim.state import Dynamic

if TYPE_CHECKING:
    from bambulab.sim.camera import JpegCameraService, RtspService
    from bambulab.sim.ftps import FtpsHub, FtpsService

__all__ = ["STORAGE_LAYOUT", "ReportSink", "VirtualPrinter"]

#: Receives every message the printer publishes on its report topic (see ``add_report_sink``).
ReportSink = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

#: Folders a real printer's SD card has.
STORAGE_LAYOUT = ("cache", "model", "timelapse", "timelapse/thumbnail", "image", "logger")


class VirtualPrinter:
    """One virtual printer. Create it through :meth:`Simulator.add_printer`."""

    def __init__(
        self,
        config: PrinterConfig,
        *,
        ca: SimCA,
        time_scale: float,
        ftps_hub: FtpsHub | None = None,
    ) -> None:
        self.config = config
        self._model = config.printer_model
        self._ca = ca
        self._tls = ca.issue(config.serial)
        self.time_scale = config.time_scale if config.time_scale is not None else time_scale
        self._temp_storage: Path | None = None
        if config.storage_dir is None:
            self._temp_storage = Path(tempfile.mkdtemp(prefix=f"bambu-sim-{config.serial}-"))
            storage = self._temp_storage
        else:
            storage = Path(config.storage_dir)
        storage.mkdir(parents=True, exist_ok=True)
        for folder in STORAGE_LAYOUT:
            (storage / folder).mkdir(parents=True, exist_ok=True)
        self._storage = storage
        rng = random.Random(config.seed) if config.seed is not None else random.Random()
        self.engine = PrinterEngine(
            model=self._model,
            serial=config.serial,
            access_code=config.access_code,
            storage=storage,
            quirks=config.quirks,
            rng=rng,
        )
        if config.firmware:
            self.engine.dyn.firmware = config.firmware
        self.engine.dyn.ip = config.host if config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        self.mqtt = MqttService(
            self, on_request=self._on_request, quirks=self.engine.quirks,
            host=config.host, port=config.mqtt_port,
        )
        self._ftps_hub = ftps_hub
        self.ftps: FtpsService | None = None
        self.camera: JpegCameraService | RtspService | None = None
        self._last_real: float | None = None
        self.online = False
        self._lock = asyncio.Lock()
        self._report_sinks: list[ReportSink] = []

    # ------------------------------------------------------------------ PrinterHandle

    @property
    def serial(self) -> str:
        return self.config.serial

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> PrinterModel:
        return self._model

    @property
    def access_code(self) -> str:
        return self.config.access_code

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def tls(self) -> LeafCertificate:
        return self._tls

    @property
    def storage(self) -> Path:
        return self._storage

    @property
    def dynamic(self) -> Dynamic:
        return self.engine.dyn

    def __repr__(self) -> str:
        return f"<VirtualPrinter {self._model.name} {self.serial} {self.host}:{self.mqtt.port}>"

    # ------------------------------------------------------------------ lifecycle

    def _build_services(self) -> None:
        from bambulab.sim.camera import JpegCameraService, RtspService
        from bambulab.sim.ftps import FtpsService

        if self.ftps is None:
            self.ftps = FtpsService(self, host=self.config.host, port=self.config.ftps_port, hub=self._ftps_hub,
                                    tls_max_version=self.engine.quirks.ftps_tls_max)
        if self.camera is None:
            if self._model.camera is CameraKind.JPEG:
                self.camera = JpegCameraService(
                    self, host=self.config.host, port=self.config.camera_port, fps=self.config.camera_fps
                )
            elif self._model.camera is CameraKind.RTSP:
                self.camera = RtspService(self, host=self.config.host, port=self.config.camera_port)
                self.engine.dyn.rtsp_port = self.config.camera_port or 322

    def _services(self) -> list[Any]:
        return [s for s in (self.mqtt, self.ftps, self.camera) if s is not None]

    async def start(self) -> None:
        """Start every service (MQTT, FTPS, camera) and begin simulating."""
        self._build_services()
        started: list[Any] = []
        try:
            for service in self._services():
                # RtspService keeps its port closed while LAN liveview is off and opens it when it turns on.
                await service.start()
                started.append(service)
        except BaseException:
            for service in started:
                with contextlib.suppress(Exception):
                    await service.stop()
            raise
        if self.camera is not None and self._model.camera is CameraKind.RTSP:
            self.engine.dyn.rtsp_port = self.camera.port or self.engine.dyn.rtsp_port
        self.online = True
        self._last_real = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Stop every service and remove the temporary storage folder, if the simulator made one."""
        await self._stop_services()
        self._tls.remove_files()  # the temporary folder holds the private key
        if self._temp_storage is not None:
            shutil.rmtree(self._temp_storage, ignore_errors=True)
            self._temp_storage = None

    async def _stop_services(self) -> None:
        self.online = False
        for service in self._services():
            with contextlib.suppress(Exception):
                await service.stop()

    # ------------------------------------------------------------------ the clock

    def _catch_up(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._last_real is not None:
            self.engine.advance((now - self._last_real) * self.time_scale)
        self._last_real = now

    async def tick(self) -> None:
        """Advance simulated time to now and publish the periodic report (called by the simulator)."""
        if not self.online:
            return
        async with self._lock:
            self._catch_up()
            report = self.engine.periodic_report()
            if report is not None:
                await self._emit(report)

    async def _on_request(self, raw: bytes) -> None:
        async with self._lock:
            self._catch_up()
            for message in self.engine.handle(raw):
                await self._emit(message)

    async def push_now(self) -> None:
        """Publish the state change right away (after a use case changed it)."""
        async with self._lock:
            self._catch_up()
            report = self.engine.change_report()
            if report is not None:
                await self._emit(report)

    async def publish(self, message: Message) -> None:
        """Publish an arbitrary payload on the report topic (for tests of client robustness)."""
        await self._emit(message)

    # ------------------------------------------------------------------ the cloud connection

    def add_report_sink(self, sink: ReportSink) -> None:
        """Also hand every published report to ``sink``, as a real printer also reports to the cloud.

        The fake cloud uses this to relay reports to its own broker. Sinks are awaited in order
        after the LAN broker got the message, even while the LAN broker is stalled; they run
        under the printer's lock, so a sink must not call back into this printer.
        """
        self._report_sinks.append(sink)

    def remove_report_sink(self, sink: ReportSink) -> None:
        with contextlib.suppress(ValueError):
            self._report_sinks.remove(sink)

    async def handle_cloud_request(self, raw: bytes) -> None:
        """Handle a payload the cloud relayed from ``device/{serial}/request``.

        Exactly what a command over the LAN does (same engine, replies to every sink); ignored
        while the printer is offline, as a switched-off printer misses cloud commands.
        """
        if self.online:
            await self._on_request(raw)

    async def handle_cloud_command(self, message: Message) -> None:
        """Run a command the cloud itself sends (e.g. the print a ``/my/task`` dispatches).

        Trusted like a command from the printer's screen: the cloud authorised it, so no
        signature is checked. Ignored while offline.
        """
        if not self.online:
            return
        async with self._lock:
            self._catch_up()
            changed = False
            for section, body in message.items():
                if not isinstance(body, dict):
                    continue
                replies, did_change = self.engine.handle_local(section, body)
                for reply in replies:
                    await self._emit(reply)
                changed = changed or did_change
            report = self.engine.change_report() if changed else None
            if report is not None:
                await self._emit(report)

    async def _emit(self, message: Message) -> None:
        await self.mqtt.publish(message)
        for sink in list(self._report_sinks):
            try:
                await sink(message)
            except Exception:  # a broken sink must not stop the printer
                log.exception("virtual printer %s: a report sink failed", self.serial)

    # ------------------------------------------------------------------ use cases

    def put_file(self, relative_path: str, data: bytes) -> Path:
        """Place a file on the printer's storage, as an FTPS upload would."""
        target = (self._storage / relative_path.lstrip("/")).resolve()
        if self._storage.resolve() not in target.parents:
            raise ValueError("path escapes the printer's storage")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    async def start_print(self, file: str, *, plate: int = 1, use_ams: bool = True) -> Message:
        """Start printing a file already on the storage, as if from the printer's screen.

        Goes through the same code path as an MQTT ``project_file`` command and returns its ack.
        """
        body = {
            "command": "project_file", "sequence_id": "0", "param": f"Metadata/plate_{plate}.gcode",
            "url": f"file:///sdcard/{file.lstrip('/')}", "subtask_name": Path(file).name,
            "use_ams": use_ams, "ams_mapping": [0] if use_ams else [],
        }
        async with self._lock:
            self._catch_up()
            replies, _ = self.engine.handle_local("print", body)
        await self.push_now()
        return replies[0]

    async def inject_hms(self, attr: int, code: int) -> None:
        self.engine.inject_hms(attr, code)
        await self.push_now()

    async def clear_hms(self, attr: int | None = None, code: int | None = None) -> None:
        self.engine.clear_hms(attr, code)
        await self.push_now()

    async def filament_runout(self) -> None:
        self.engine.filament_runout()
        await self.push_now()

    async def set_door(self, open_: bool) -> None:
        self.dynamic.door_open = open_
        await self.push_now()

    async def disconnect_clients(self) -> None:
        """Drop every MQTT, FTPS and camera connection at once (the listeners stay up)."""
        for service in self._services():
            if service.running if hasattr(service, "running") else True:
                with contextlib.suppress(Exception):
                    await service.drop_clients()

    def stall(self, stalled: bool = True) -> None:
        """Keep every socket open but send nothing (and read nothing on MQTT)."""
        for service in self._services():
            service.stalled = stalled

    async def go_offline(self) -> None:
        """Close every listener and connection, as when the printer is switched off."""
        await self._stop_services()

    async def come_online(self) -> None:
        """Listen again on the same ports."""
        self.config.mqtt_port = self.mqtt.port
        if self.ftps is not None:
            self.config.ftps_port = self.ftps.port
        if self.camera is not None:
            self.config.camera_port = self.camera.port
        await self.start()

    def info(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """Connection details: what a client needs to talk to this printer."""
        out: dict[str, Any] = {
            "serial": self.serial,
            "model": self._model.name,
            "model_code": self._model.code,
            "name": self.name,
            "host": self.host,
            "mqtt_port": self.mqtt.port,
            "ftps_port": self.ftps.port if self.ftps else None,
            "camera": self._model.camera.value,
            "camera_port": self.camera.port if self.camera else None,
            "online": self.online,
        }
        if include_secrets:
            out["access_code"] = self.access_code
        return out
