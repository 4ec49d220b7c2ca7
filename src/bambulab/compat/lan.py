"""The older package's ``LocalPrintClient``: print commands for files on the printer, and ``start_print``.

``from bambulab import LocalPrintClient`` is this class, an extension of
:class:`bambulab.sync.LocalPrintClient` with the older calls:

* ``create_print_command(file_path, use_ams=True, ams_mapping=None, ...)``: ``use_ams`` may be
  given positionally, and ``use_ams=True`` without a mapping uses :attr:`DEFAULT_AMS_MAPPING`
  (the modern one refuses to guess);
* ``create_gcode_print_command(file_path)``: a ``gcode_file`` command for a plain ``.gcode``;
* ``LocalPrintClient(ip, access_code, serial=...).start_print(file_path)``: connect, send, return
  the acknowledgement.
"""

from __future__ import annotations

import ssl
from typing import Any

from bambulab.exceptions import UnsupportedError
from bambulab.protocol import commands as cmd
from bambulab.protocol.models import PrinterModel, model_for_serial
from bambulab.sync import LocalPrintClient as _SyncLocalPrintClient
from bambulab.sync import MQTTClient

__all__ = ["LocalPrintClient"]


class LocalPrintClient(_SyncLocalPrintClient):
    """Print commands for files already on the printer (publish them with ``MQTTClient``)."""

    #: The mapping used for ``use_ams=True`` without one: the file's first filament from AMS tray 0
    #: (Home Assistant's default). Multi-colour files need their own ``ams_mapping``, or
    #: :meth:`bambulab.Printer.print_file` with ``ams_mapping="auto"``, which reads the 3MF.
    DEFAULT_AMS_MAPPING: tuple[int, ...] = (0,)

    def __init__(
        self,
        printer_ip: str | None = None,
        access_code: str | None = None,
        *,
        serial: str | None = None,
        port: int = 8883,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.printer_ip = printer_ip
        self.serial = serial
        self.port = port
        self.timeout = timeout
        self._secret = access_code
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"<LocalPrintClient {self.printer_ip} {self.serial or '(no serial)'}>"

    @staticmethod
    def create_print_command(
        file_path: str,
        use_ams: bool = True,
        ams_mapping: list[int] | None = None,
        *,
        plate: int = 1,
        bed_type: str = "auto",
        timelapse: bool = False,
        bed_leveling: bool = True,
        flow_cali: bool = False,
        vibration_cali: bool = True,
        model: PrinterModel | str | None = None,
    ) -> dict[str, Any]:
        """A ``project_file`` command for a 3MF on the printer's storage; ``use_ams=True`` without
        ``ams_mapping`` uses :attr:`DEFAULT_AMS_MAPPING`."""
        mapping = None
        if use_ams:
            mapping = list(ams_mapping) if ams_mapping is not None else list(LocalPrintClient.DEFAULT_AMS_MAPPING)
        return _SyncLocalPrintClient.create_print_command(
            file_path, plate=plate, use_ams=use_ams, ams_mapping=mapping, bed_type=bed_type, timelapse=timelapse,
            bed_leveling=bed_leveling, flow_cali=flow_cali, vibration_cali=vibration_cali, model=model,
        )

    @staticmethod
    def create_gcode_print_command(file_path: str) -> dict[str, Any]:
        """A ``gcode_file`` command: print a plain ``.gcode`` file on the printer's storage.

        ``"model.gcode"`` and ``"/model.gcode"`` (a path as FTPS shows it) become
        ``/sdcard/model.gcode``; paths under ``/sdcard/`` or ``/mnt/`` are sent as they are.
        """
        path = file_path if file_path.startswith(("/sdcard/", "/mnt/")) else "/sdcard/" + file_path.lstrip("/")
        return cmd.gcode_file(_SyncLocalPrintClient._counter, path)

    def start_print(self, file_path: str, **options: Any) -> dict[str, Any]:
        """Connect, send :meth:`create_print_command` (``.gcode`` files:
        :meth:`create_gcode_print_command`) and return the acknowledgement. Needs ``serial``."""
        if not self.printer_ip or self._secret is None or not self.serial:
            raise UnsupportedError(
                "start_print needs LocalPrintClient(printer_ip, access_code, serial=...): the serial is on the "
                "printer's screen and in `bambu discover`; or use upload_and_print()"
            )
        if file_path.lower().endswith(".gcode"):
            command = self.create_gcode_print_command(file_path)
        else:
            options.setdefault("model", model_for_serial(self.serial))
            command = self.create_print_command(file_path, **options)
        client = MQTTClient("bblp", self._secret, self.serial, host=self.printer_ip, port=self.port,
                            ssl_context=self._ssl_context, timeout=self.timeout)
        with client:
            return client.publish(command)
