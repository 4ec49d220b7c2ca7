"""Where a printer is on the LAN and how to reach it: one value for MQTT, FTPS and the camera.

A :class:`PrinterEndpoint` is what :class:`~bambulab.printer.Printer` connects with and hands to
its helpers (:class:`~bambulab.files.PrinterFiles`, :class:`~bambulab.camera.Camera`,
:func:`~bambulab.printing.print_file`), so they all verify the printer's certificate the same way:
``ssl_context`` for the chain, ``serial`` for the certificate's CN. The access code never appears
in its repr.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace

from bambulab.transports.tls import default_printer_context, printer_ssl_context

__all__ = ["DEFAULT_FTPS_PORT", "DEFAULT_MQTT_PORT", "PrinterEndpoint"]

DEFAULT_MQTT_PORT = 8883
DEFAULT_FTPS_PORT = 990


@dataclass(frozen=True, slots=True)
class PrinterEndpoint:
    """Host, serial, access code, TLS context and ports of one printer.

    ``serial`` may be ``None`` only for standalone helpers that were given none: then only the
    certificate chain is checked (a warning says so). ``camera_port`` ``None`` means the model's
    default (6000 for the JPEG stream, 322 for RTSPS).
    """

    host: str
    serial: str | None
    access_code: str = field(repr=False)
    ssl_context: ssl.SSLContext = field(repr=False, compare=False)
    port: int = DEFAULT_MQTT_PORT
    ftps_port: int = DEFAULT_FTPS_PORT
    camera_port: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError("host must be the printer's address")
        if not isinstance(self.access_code, str) or not self.access_code:
            raise ValueError("access_code must be the printer's LAN access code (a non-empty str)")
        if self.serial is not None and (not isinstance(self.serial, str) or not self.serial.strip()):
            raise ValueError("serial must be the printer's serial number")

    def __repr__(self) -> str:
        return (
            f"PrinterEndpoint(host={self.host!r}, serial={self.serial!r}, access_code='***', port={self.port}, "
            f"ftps_port={self.ftps_port}, camera_port={self.camera_port})"
        )

    @classmethod
    def create(
        cls,
        host: str,
        serial: str | None,
        access_code: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        port: int = DEFAULT_MQTT_PORT,
        ftps_port: int = DEFAULT_FTPS_PORT,
        camera_port: int | None = None,
    ) -> PrinterEndpoint:
        """An endpoint with the TLS context built from ``ssl_context``, ``ca_file`` or the bundled CA."""
        if ssl_context is not None and (ca_file is not None or insecure):
            raise ValueError("pass either ssl_context or ca_file/insecure, not both")
        if ssl_context is None:
            ssl_context = (
                printer_ssl_context(ca_file=ca_file, insecure=insecure)
                if ca_file is not None
                else default_printer_context(insecure)
            )
        serial = serial.strip().upper() if isinstance(serial, str) and serial.strip() else serial
        return cls(host, serial, access_code, ssl_context, port, ftps_port, camera_port)

    def with_ports(self, *, ftps_port: int | None = None, camera_port: int | None = None) -> PrinterEndpoint:
        """A copy with other service ports."""
        return replace(
            self,
            ftps_port=self.ftps_port if ftps_port is None else ftps_port,
            camera_port=self.camera_port if camera_port is None else camera_port,
        )
