"""The virtual printer's MQTT broker: amqtt, extended through its plugin hooks.

A real printer runs its own MQTT 3.1.1 broker on TLS port 8883: user ``bblp``, password = access
code, topics ``device/{serial}/report`` (printer to clients) and ``device/{serial}/request``
(clients to printer). Each virtual printer gets its own amqtt broker, so one printer's topics can
never reach another printer's clients, exactly as with separate hardware.

What amqtt's plugins cannot express is done in a small :class:`Broker` subclass: the client limit
with its three failure modes, CONNACK codes, and P1's habit of dropping a client that subscribes
to the request topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.mqtt.connack import SERVER_UNAVAILABLE, ConnackPacket
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin

from bambulab.sim.ca import LeafCertificate
from bambulab.sim.config import MaxClientsMode, Quirks
from bambulab.sim.service import PrinterHandle, Service

__all__ = ["BrokerService", "MqttService", "TlsBroker", "tls_listener_config"]

log = logging.getLogger(__name__)

RequestHandler = Callable[[bytes], Awaitable[None]]


def _topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard match of ``topic`` against ``topic_filter`` ("+" one level, "#" the rest)."""
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


@dataclass
class _Binding:
    """What the plugins of one printer's broker need to know about that printer."""

    serial: str
    access_code: str
    on_request: RequestHandler

    @property
    def report_topic(self) -> str:
        return f"device/{self.serial}/report"

    @property
    def request_topic(self) -> str:
        return f"device/{self.serial}/request"


class BambuAuthPlugin(BaseAuthPlugin):
    """User ``bblp`` with the printer's access code; anything else is refused (CONNACK 5)."""

    binding: _Binding | None = None

    async def authenticate(self, *, session: Any) -> bool | None:
        if self.binding is None:
            return False
        username = session.username or ""
        password = session.password or ""
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        return username == "bblp" and hmac.compare_digest(
            password.encode("utf-8"), self.binding.access_code.encode("utf-8")
        )


class BambuTopicPlugin(BaseTopicPlugin):
    """Clients may publish only to the request topic and may not subscribe to ``$SYS``."""

    binding: _Binding | None = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        if self.binding is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return topic == self.binding.request_topic
        return not topic.startswith("$")


class BambuRequestPlugin(BasePlugin[Any]):
    """Hands every message published to the request topic to the printer engine."""

    binding: _Binding | None = None

    async def on_broker_message_received(self, *, client_id: str, message: Any) -> None:
        binding = self.binding
        if binding is None or message is None or message.topic != binding.request_topic:
            return
        data = bytes(message.data or b"")
        try:
            await binding.on_request(data)
        except Exception:  # a bad command must never take the broker down
            log.exception("virtual printer %s failed to handle a request", binding.serial)


_PLUGIN_PATHS: dict[str, dict[str, Any]] = {
    f"{__name__}.BambuAuthPlugin": {},
    f"{__name__}.BambuTopicPlugin": {},
    f"{__name__}.BambuRequestPlugin": {},
}


class _NoPayloadDebug(logging.Filter):
    """Drops amqtt's DEBUG records: they print whole packets and messages, payload included.

    A ``get_access_code`` reply carries the access code, and cloud payloads carry tokens, so
    ``bambu --debug sim`` must not show them. amqtt logs no payload at INFO and above.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_AMQTT_FILTER = _NoPayloadDebug()


def filter_amqtt_payload_logs() -> None:
    """Attach the payload filter to every amqtt logger that exists (idempotent).

    A logger's filter sees only the records logged on that logger, so each of amqtt's
    per-module loggers gets it; called whenever a broker is made, after amqtt made its loggers.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "amqtt" or name.startswith("amqtt.")) and isinstance(logger, logging.Logger) \
                and _AMQTT_FILTER not in logger.filters:
            logger.addFilter(_AMQTT_FILTER)


class TlsBroker(Broker):
    """amqtt's broker serving our own TLS context, able to list and drop its clients.

    Shared by a virtual printer's broker and the fake cloud's broker.
    """

    def __init__(self, config: dict[str, Any], *, ssl_context: ssl.SSLContext, plugin_namespace: str) -> None:
        filter_amqtt_payload_logs()
        super().__init__(config, plugin_namespace=plugin_namespace)
        filter_amqtt_payload_logs()  # the loggers amqtt made for this broker's plugins
        self._ssl_context = ssl_context

    # amqtt calls this as self._create_ssl_context(listener): no client certificates are asked
    # for, and TLS 1.2 and 1.3 are accepted.
    def _create_ssl_context(self, listener: Any) -> ssl.SSLContext:
        return self._ssl_context

    async def _authenticate(self, session: Any, listener: Any) -> bool:
        result = bool(await super()._authenticate(session, listener))
        session.tls_authenticated = result
        return result

    async def _handle_client_session(
        self, reader: Any, writer: Any, client_session: Any, handler: Any, server: Any, listener_name: str
    ) -> None:
        try:
            await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)
        finally:
            if getattr(client_session, "tls_authenticated", True) is False:
                # amqtt marks the session connected before it sends CONNACK 5 and leaves it so (closing
                # the socket may even raise); a refused client must not count as connected.
                with contextlib.suppress(Exception):
                    client_session.transitions.disconnect()
                if client_session.client_id:
                    self._sessions.pop(client_session.client_id, None)

    def bind_plugins(self, kinds: tuple[type, ...], **attributes: Any) -> None:
        """Give the plugins of these classes what they need (amqtt builds them from config)."""
        for plugin in self.plugins_manager.plugins:
            if isinstance(plugin, kinds):
                for name, value in attributes.items():
                    setattr(plugin, name, value)

    def connected_sessions(self) -> list[tuple[Any, Any]]:
        return [
            (session, handler)
            for session, handler in self._sessions.values()
            if session.transitions.is_connected()
        ]

    async def close_client(self, client_id: str) -> None:
        entry = self._sessions.get(client_id)
        if entry is None:
            return
        _, handler = entry
        writer = getattr(handler, "writer", None)
        transport = getattr(getattr(writer, "_writer", None), "transport", None)
        if transport is not None:
            transport.abort()
        elif writer is not None:
            with contextlib.suppress(Exception):
                await writer.close()

    async def close_all_clients(self) -> None:
        for session, _ in self.connected_sessions():
            await self.close_client(session.client_id)


def tls_listener_config(host: str, port: int, cert: LeafCertificate, plugins: dict[str, Any]) -> dict[str, Any]:
    """amqtt configuration for one TLS listener (its schema wants the files to exist)."""
    certfile, keyfile = cert.write_files()
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": f"{host}:{port}", "ssl": True, "certfile": certfile, "keyfile": keyfile}
        },
        "plugins": plugins,
    }


class BrokerService:
    """Start, stop and drop the clients of one :class:`TlsBroker` on a fixed host and port."""

    _broker: TlsBroker | None = None
    _host: str = "127.0.0.1"
    _port: int = 0
    published: int = 0

    def _make_broker(self) -> TlsBroker:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._broker is not None

    @property
    def client_count(self) -> int:
        return len(self._broker.connected_sessions()) if self._broker else 0

    async def start(self) -> None:
        if self._broker is not None:
            return
        broker = self._make_broker()
        await broker.start()
        self._port = broker._servers["default"].instance.sockets[0].getsockname()[1]
        self._broker = broker

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        await broker.close_all_clients()
        with contextlib.suppress(Exception):
            await broker.shutdown()

    async def drop_clients(self) -> None:
        if self._broker is not None:
            await self._broker.close_all_clients()

    async def _broadcast(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        broker = self._broker
        if broker is None:
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.published += 1
        await broker.internal_message_broadcast(topic, data, 0)


class _PrinterBroker(TlsBroker):
    """amqtt's broker with a real printer's connection quirks."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        binding: _Binding,
        quirks: Quirks,
        ssl_context: ssl.SSLContext,
    ) -> None:
        super().__init__(config, ssl_context=ssl_context, plugin_namespace=f"bambulab.sim.{binding.serial}")
        self._binding = binding
        self._quirks = quirks
        self.stalled = False
        self.login_attempts = 0  # CONNECTs that reached authentication, accepted or not
        self._connect_order: list[str] = []  # client ids, oldest first
        self.bind_plugins((BambuAuthPlugin, BambuTopicPlugin, BambuRequestPlugin), binding=binding)

    async def _handle_client_session(
        self, reader: Any, writer: Any, client_session: Any, handler: Any, server: Any, listener_name: str
    ) -> None:
        authenticated = await Broker._authenticate(self, client_session, self.listeners_config[listener_name])
        self.login_attempts += 1
        client_session.bambu_auth = authenticated
        client_session.bambu_silent = False
        if authenticated:
            connected = [s for s, _ in self.connected_sessions() if s.client_id != client_session.client_id]
            limit = self._quirks.max_clients or 0
            if limit and len(connected) >= limit:
                mode = self._quirks.max_clients_mode
                if mode is MaxClientsMode.REFUSE:
                    log.info("virtual printer %s refuses a client: limit of %d reached",
                             self._binding.serial, limit)
                    with contextlib.suppress(Exception):
                        await ConnackPacket.build(0, SERVER_UNAVAILABLE).to_stream(writer)
                    with contextlib.suppress(Exception):
                        await writer.close()
                    return
                if mode is MaxClientsMode.DROP_OLDEST:
                    await self._drop_oldest(connected)
                else:
                    client_session.bambu_silent = True
        if authenticated and client_session.client_id:
            with contextlib.suppress(ValueError):
                self._connect_order.remove(client_session.client_id)
            self._connect_order.append(client_session.client_id)
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    async def _drop_oldest(self, connected: list[Any]) -> None:
        alive = {s.client_id for s in connected}
        for client_id in list(self._connect_order):
            if client_id in alive:
                self._connect_order.remove(client_id)
                await self.close_client(client_id)
                return

    async def _authenticate(self, session: Any, listener: Any) -> bool:
        cached = getattr(session, "bambu_auth", None)
        if cached is not None:
            session.tls_authenticated = bool(cached)
            return bool(cached)
        return await super()._authenticate(session, listener)

    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        topic_filter, qos = subscription
        if self._quirks.drop_on_request_subscribe and _topic_matches(
            topic_filter, self._binding.request_topic
        ):
            # P1-series firmware disconnects a client that subscribes to its request topic.
            log.info("virtual printer %s drops a client that subscribed to %s",
                     self._binding.serial, topic_filter)
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self.close_client(session.client_id))
            )
            return 0x80
        if getattr(session, "bambu_silent", False):
            return min(qos, 1)  # granted, but never registered: the client hears nothing
        return int(await super().add_subscription(subscription, session))

    def set_stalled(self, stalled: bool) -> None:
        """Stop (or resume) reading from every connected client; publishing is stopped by the owner."""
        self.stalled = stalled
        for _, handler in self.connected_sessions():
            transport = getattr(getattr(getattr(handler, "writer", None), "_writer", None), "transport", None)
            if transport is None:
                continue
            with contextlib.suppress(Exception):
                if stalled:
                    transport.pause_reading()
                else:
                    transport.resume_reading()


class MqttService(BrokerService, Service):
    """One printer's MQTT broker on TLS.

    ``on_request`` is awaited with the raw payload of every message a client publishes to the
    request topic; :meth:`publish` sends a payload to the report topic.
    """

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        on_request: RequestHandler,
        quirks: Quirks,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._handle = handle
        self._binding = _Binding(handle.serial, handle.access_code, on_request)
        self._quirks = quirks
        self._host = host
        self._port = port
        self._broker: _PrinterBroker | None = None
        self._ssl: ssl.SSLContext | None = None
        self.published = 0

    def _make_broker(self) -> _PrinterBroker:
        if self._ssl is None:
            self._ssl = self._handle.tls.server_context()
        config = tls_listener_config(self._host, self._port, self._handle.tls, _PLUGIN_PATHS)
        return _PrinterBroker(config, binding=self._binding, quirks=self._quirks, ssl_context=self._ssl)

    @property
    def login_attempts(self) -> int:
        """How many MQTT logins (right or wrong) this printer has seen since it started."""
        return self._broker.login_attempts if self._broker else 0

    @property
    def stalled(self) -> bool:
        return bool(self._broker and self._broker.stalled)

    @stalled.setter
    def stalled(self, value: bool) -> None:
        if self._broker is not None:
            self._broker.set_stalled(value)

    async def publish(self, payload: dict[str, Any] | bytes) -> None:
        """Publish to ``device/{serial}/report`` at QoS 0 (nothing is sent while stalled)."""
        if self._broker is None or self._broker.stalled:
            return
        await self._broadcast(self._binding.report_topic, payload)
