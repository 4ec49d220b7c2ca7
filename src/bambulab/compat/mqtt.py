"""The older package's ``MQTTBridge``: many printers of one account over one cloud MQTT connection.

A blocking shell over :class:`bambulab.cloud.mqtt.CloudConnection` (one TLS connection to the
cloud broker, one subscription per printer), with the calls of :class:`bambulab.MQTTClient`
taking a device id::

    bridge = MQTTBridge("u_1234567", token, ["01P00A123456789", "00M09A350100001"], on_message=print)
    bridge.connect()
    bridge.get_last_data("01P00A123456789")["print"]["gcode_state"]
    bridge.publish("01P00A123456789", {"print": {"command": "pause"}})
    bridge.disconnect()

``MQTTBridge.from_client(client)`` takes the token, uid, region and broker of a
:class:`bambulab.BambuClient`; its :meth:`~bambulab.compat.cloud.LegacyClientMixin.get_ams_filaments`
then reads the bridge's live state instead of opening a connection of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import ssl
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bambulab.exceptions import NotConnectedError
from bambulab.sync import MQTTClient as _SyncMQTTClient
from bambulab.sync import _LoopThread, _run

if TYPE_CHECKING:
    from bambulab.cloud.client import BambuClient
    from bambulab.cloud.mqtt import CloudConnection, CloudPrinter
    from bambulab.protocol.views import PrinterStatus

__all__ = ["MQTTBridge", "MQTTClient"]

OnMessage = Callable[[str, dict[str, Any]], None]


class MQTTBridge:
    """Watch and control several printers of one account through the cloud broker (blocking).

    ``username`` is the account's uid (``"u_1234567"`` or ``"1234567"``; empty: read from a
    JWT-shaped token or asked from the HTTP API), ``access_token`` the cloud token, ``device_ids``
    the printers' serials (``None``: every printer bound to the account). ``on_message(device_id,
    data)`` is called from a background thread with the merged state after every report.
    ``broker_host``/``port``/``ssl_context``/``server_hostname`` replace the region's broker.
    """

    def __init__(
        self,
        username: str,
        access_token: str,
        device_ids: Iterable[str] | None = None,
        on_message: OnMessage | None = None,
        *,
        region: str = "global",
        broker_host: str | None = None,
        port: int = 8883,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        api_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        name = (username or "").strip()
        uid = name[2:] if name.startswith("u_") else name
        if uid and not uid.isdigit():
            raise ValueError("username must be the account's uid ('u_1234567' or '1234567'), not a login name")
        self._uid = uid or None
        self._secret = access_token
        self._devices = None if device_ids is None else [d.upper() for d in device_ids]
        self.on_message = on_message
        self.region = region
        self.timeout = timeout
        self._broker: dict[str, Any] = {"host": broker_host, "port": port, "ssl_context": ssl_context,
                                        "server_hostname": server_hostname, "api_url": api_url}
        self._cloud: CloudConnection | None = None
        self._pumps: dict[str, concurrent.futures.Future[None]] = {}
        self._client: BambuClient | None = None

    @classmethod
    def from_client(
        cls, client: BambuClient, device_ids: Iterable[str] | None = None, on_message: OnMessage | None = None
    ) -> MQTTBridge:
        """A bridge for the account of ``client`` (its token, uid, region and broker settings)."""
        broker = client._broker()
        bridge = cls(f"u_{client.uid()}", client.token, device_ids, on_message, region=client.region,
                     broker_host=broker.get("host"), port=broker.get("port", 8883),
                     ssl_context=broker.get("ssl_context"), server_hostname=broker.get("server_hostname"),
                     api_url=client.api_url)
        bridge._client = client
        return bridge

    def __repr__(self) -> str:
        where = self._broker["host"] or self.region
        return f"<MQTTBridge {len(self.devices)} device(s) via {where}{' connected' if self._cloud else ''}>"

    @property
    def connected(self) -> bool:
        return self._cloud is not None and self._cloud.connected

    @property
    def devices(self) -> list[str]:
        """The serials on the bridge."""
        if self._cloud is not None:
            return list(self._cloud.serials)
        return list(self._devices or [])

    def connect(self, blocking: bool = False) -> MQTTBridge:
        """Connect, subscribe every device and fetch its state. With ``blocking`` wait until interrupted."""
        if self._cloud is None:
            from bambulab.cloud.mqtt import CloudConnection

            options = {k: v for k, v in self._broker.items() if v is not None}
            cloud = CloudConnection(self._secret, uid=self._uid, devices=self._devices, region=self.region,
                                    **options)
            try:
                _run(cloud.connect(), self.timeout)
            except BaseException:
                _run(cloud.close(), self.timeout)
                raise
            self._cloud = cloud
            for printer in cloud.printers:
                self._start_pump(printer)
            if self._client is not None:
                self._client._register_bridge(self)
        if blocking:
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            self.disconnect()
        return self

    def _start_pump(self, printer: CloudPrinter) -> None:
        if self.on_message is not None:
            self._pumps[printer.serial] = asyncio.run_coroutine_threadsafe(self._deliver(printer),
                                                                           _LoopThread.get().loop)

    async def _deliver(self, printer: CloudPrinter) -> None:
        from bambulab.events import StateChanged

        async with printer.events() as stream:
            async for event in stream:
                callback = self.on_message
                if isinstance(event, StateChanged) and callback is not None:
                    await asyncio.to_thread(callback, printer.serial, copy.deepcopy(printer.state))

    def disconnect(self) -> None:
        cloud, self._cloud = self._cloud, None
        for pump in self._pumps.values():
            pump.cancel()
        self._pumps.clear()
        if self._client is not None:
            self._client._forget_bridge(self)
        if cloud is not None:
            _run(cloud.close(), self.timeout)

    def _connection(self) -> CloudConnection:
        if self._cloud is None:
            raise NotConnectedError("call connect() first")
        return self._cloud

    def printer(self, device_id: str) -> CloudPrinter:
        """The async :class:`~bambulab.cloud.mqtt.CloudPrinter` of one device (the full modern API)."""
        return self._connection().printer(device_id.upper())

    def add_device(self, device_id: str) -> None:
        """Subscribe one more printer of the account."""
        printer = _run(self._connection().add(device_id.upper()), self.timeout)
        self._start_pump(printer)

    def remove_device(self, device_id: str) -> None:
        serial = device_id.upper()
        pump = self._pumps.pop(serial, None)
        if pump is not None:
            pump.cancel()
        _run(self._connection().remove(serial), self.timeout)

    def publish(self, device_id: str, command: dict[str, Any]) -> dict[str, Any]:
        """Send a command (``{"print": {...}}``) to one printer and return its acknowledgement."""
        return _run(self.printer(device_id).command(command), self.timeout)

    publish_command = publish

    def request_full_status(self, device_id: str) -> dict[str, Any]:
        """Ask one printer for a full report (pushall) and return its merged state."""
        _run(self.printer(device_id).refresh(), self.timeout)
        return self.get_last_data(device_id)

    def get_last_data(self, device_id: str | None = None) -> dict[str, Any]:
        """A copy of the merged state of one printer (``{"print": {...}, "info": {...}}``), or with
        no ``device_id`` a dict of them by serial. Copied on the connection's thread, where
        reports are merged, so it is consistent."""
        printers = [self.printer(device_id)] if device_id is not None else self._connection().printers

        async def snapshot() -> dict[str, Any]:
            return {p.serial: copy.deepcopy(p.state) for p in printers}

        states = _run(snapshot(), self.timeout)
        return states[printers[0].serial] if device_id is not None else states

    def get_status(self, device_id: str) -> PrinterStatus:
        """The decoded :class:`~bambulab.protocol.views.PrinterStatus` of one printer."""
        return self.printer(device_id).status

    def _state_of(self, serial: str) -> dict[str, Any] | None:
        """For ``get_ams_filaments``: the state of a printer that has reported, else ``None``."""
        cloud = self._cloud
        if cloud is None or serial not in cloud.serials:
            return None
        printer = cloud.printer(serial)
        if not printer.connected:
            return None
        state = self.get_last_data(serial)
        return state if state.get("print") else None

    def __enter__(self) -> MQTTBridge:
        return self.connect()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.disconnect()


class MQTTClient(_SyncMQTTClient):
    """:class:`bambulab.sync.MQTTClient` plus two spellings seen in the older examples.

    ``MQTTClient(..., token=...)`` is ``access_token=``, and ``subscribe_to_updates(callback)``
    calls ``callback(data)`` (one argument: the merged state) after every report, also when it is
    given after :meth:`connect`. ``from bambulab import MQTTClient`` is this class.
    """

    def __init__(
        self,
        username: str,
        access_token: str | None = None,
        device_id: str | None = None,
        on_message: OnMessage | None = None,
        *,
        token: str | None = None,
        **options: Any,
    ) -> None:
        secret = access_token if access_token is not None else token
        if secret is None or device_id is None:
            raise ValueError("MQTTClient needs access_token (or token=) and device_id")
        super().__init__(username, secret, device_id, on_message, **options)

    def subscribe_to_updates(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(data)`` with the merged state after every report (replaces ``on_message``)."""

        def relay(device_id: str, data: dict[str, Any]) -> None:
            callback(data)

        self.on_message = relay
        printer = self.__dict__.get("_printer")
        if printer is not None and self._pump is None:
            self._pump = asyncio.run_coroutine_threadsafe(self._deliver(printer), _LoopThread.get().loop)
