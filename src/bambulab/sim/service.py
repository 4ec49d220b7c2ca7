"""What every network service of a virtual printer provides.

A virtual printer runs several services (MQTT, FTPS, camera); each is started and stopped with
the printer, listens on its own port, and takes part in fault injection: dropping every
connection, stalling (sockets stay open, no data flows) and going offline.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bambulab.protocol.models import PrinterModel
    from bambulab.sim.ca import LeafCertificate
    from bambulab.sim.state import Dynamic

__all__ = ["PrinterHandle", "Service"]


class PrinterHandle(Protocol):
    """The view of a virtual printer that its services get.

    Services read from it; they never change the printer's state except through the methods
    listed here, so a service can be tested with a small stand-in object.
    """

    @property
    def serial(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> PrinterModel: ...
    @property
    def access_code(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def tls(self) -> LeafCertificate: ...
    @property
    def storage(self) -> Path:
        """The FTPS root folder (the printer's SD card)."""
        ...
    @property
    def dynamic(self) -> Dynamic:
        """Live physical and job state (read only for services)."""
        ...


class Service(abc.ABC):
    """A listening network service that belongs to one virtual printer."""

    #: When True the service keeps sockets open but sends nothing (fault injection).
    stalled: bool = False

    @abc.abstractmethod
    async def start(self) -> None:
        """Start listening. After a ``stop()`` it listens again on the same port."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close the listener and every open connection."""

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """The TCP port it listens on (known after ``start()``)."""

    @abc.abstractmethod
    async def drop_clients(self) -> None:
        """Close every open client connection abruptly; keep listening."""

    @property
    def client_count(self) -> int:
        """How many clients are connected now."""
        return 0
