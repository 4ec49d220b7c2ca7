"""The fake cloud's MQTT broker: amqtt on TLS, extended through its plugin hooks.

What the real cloud broker (``us.mqtt.bambulab.com:8883``) does, and this one too:

* username ``u_{uid}`` and password = a valid access token of that account; anything else
  (unknown, expired, another account's token) gets CONNACK 5;
* an account reaches only its bound devices: it may subscribe to ``device/{serial}/report``
  and publish to ``device/{serial}/request``; a subscription to a bound device's request topic is
  granted but never delivers anything; wildcard subscriptions are refused (SUBACK 0x80);
* what a client publishes to a request topic is relayed to that virtual printer's engine, and
  everything the printer publishes comes out on the report topic (see
  :meth:`FakeCloud.relay_request` and ``VirtualPrinter.add_report_sink``).

Publishing to a topic the account may not use is dropped silently (the connection stays up).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin

if TYPE_CHECKING:
    from bambulab.sim.ca import LeafCertificate
    from bambulab.sim.cloud import FakeCloud

__all__ = ["CloudMqttService"]

log = logging.getLogger(__name__)


def _device_topic(topic: str) -> tuple[str, str] | None:
    """(serial, "report"|"request") for ``device/{serial}/report|request``, else None."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "device" or not parts[1] or parts[2] not in ("report", "request"):
        return None
    return parts[1], parts[2]


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value or "")


class CloudAuthPlugin(BaseAuthPlugin):  # amqtt is untyped
    """``u_{uid}`` + a valid access token of that account; anything else is refused (CONNACK 5)."""

    cloud: FakeCloud | None = None

    async def authenticate(self, *, session: Any) -> bool | None:
        if self.cloud is None:
            return False
        return self.cloud.mqtt_authenticate(_text(session.username), _text(session.password))


class CloudTopicPlugin(BaseTopicPlugin):
    """Only the account's bound devices; no wildcards; publish to request topics only."""

    cloud: FakeCloud | None = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        if self.cloud is None or topic is None or session is None:
            return False
        if "+" in topic or "#" in topic:
            return False
        parsed = _device_topic(topic)
        if parsed is None:
            return False
        serial, kind = parsed
        if not self.cloud.mqtt_may_access(_text(session.username), serial):
            return False
        return kind == "request" if action == Action.PUBLISH else True


class CloudRelayPlugin(BasePlugin[Any]):
    """Hands every permitted request-topic message to the fake cloud, which relays it to the printer."""

    cloud: FakeCloud | None = None

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        if self.cloud is None or message is None:
            return
        parsed = _device_topic(str(message.topic or ""))
        if parsed is None or parsed[1] != "request":
            return
        try:
            await self.cloud.relay_request(parsed[0], bytes(message.data or b""))
        except Exception:  # a bad command must never take the broker down
            log.exception("the fake cloud failed to relay a request to %s", parsed[0])


_PLUGIN_PATHS: dict[str, dict[str, Any]] = {
    f"{__name__}.CloudAuthPlugin": {},
    f"{__name__}.CloudTopicPlugin": {},
    f"{__name__}.CloudRelayPlugin": {},
}

_plugin_namespaces = 0


class _CloudBroker(Broker):
    """amqtt's broker with the cloud's TLS context and its request-topic subscription rule."""

    def __init__(self, config: dict[str, Any], *, cloud: FakeCloud, ssl_context: ssl.SSLContext) -> None:
        global _plugin_namespaces
        _plugin_namespaces += 1
        super().__init__(config, plugin_namespace=f"bambulab.sim.cloud.{_plugin_namespaces}")
        self._ssl_context = ssl_context
        for plugin in self.plugins_manager.plugins:
            if isinstance(plugin, CloudAuthPlugin | CloudTopicPlugin | CloudRelayPlugin):
                plugin.cloud = cloud

    # amqtt calls this as self._create_ssl_context(listener); no client certificates are asked for.
    def _create_ssl_context(self, listener: Any) -> ssl.SSLContext:
        return self._ssl_context

    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        topic_filter, qos = subscription
        parsed = _device_topic(topic_filter)
        if parsed is not None and parsed[1] == "request":
            # Granted for the account's own devices, but the cloud never delivers requests back.
            if not await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE):
                return 0x80
            return min(qos, 1)
        return int(await super().add_subscription(subscription, session))

    def connected_sessions(self) -> list[Any]:
        return [s for s, _ in self._sessions.values() if s.transitions.is_connected()]

    async def close_all_clients(self) -> None:
        for session, handler in list(self._sessions.values()):
            if not session.transitions.is_connected():
                continue
            writer = getattr(handler, "writer", None)
            transport = getattr(getattr(writer, "_writer", None), "transport", None)
            if transport is not None:
                transport.abort()


class CloudMqttService:
    """The cloud broker on TLS; :meth:`publish` sends a payload to a device's report topic."""

    def __init__(self, cloud: FakeCloud, cert: LeafCertificate, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._cloud = cloud
        self._cert = cert
        self._host = host
        self._port = port
        self._broker: _CloudBroker | None = None
        self.published = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def client_count(self) -> int:
        return len(self._broker.connected_sessions()) if self._broker else 0

    async def start(self) -> None:
        if self._broker is not None:
            return
        certfile, keyfile = self._cert.write_files()
        config = {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self._host}:{self._port}",
                    "ssl": True,
                    # amqtt's schema checks these exist; the context it uses is ours (see above).
                    "certfile": certfile,
                    "keyfile": keyfile,
                }
            },
            "plugins": _PLUGIN_PATHS,
        }
        broker = _CloudBroker(config, cloud=self._cloud, ssl_context=self._cert.server_context())
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

    async def publish(self, serial: str, payload: dict[str, Any] | bytes) -> None:
        """Publish to ``device/{serial}/report`` at QoS 0."""
        broker = self._broker
        if broker is None:
            return
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self.published += 1
        await broker.internal_message_broadcast(f"device/{serial}/report", data, 0)
