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

import logging
import ssl
from typing import TYPE_CHECKING, Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin

from bambulab.sim.mqtt import BrokerService, TlsBroker, tls_listener_config

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


class _CloudBroker(TlsBroker):
    """amqtt's broker with the cloud's TLS context and its request-topic subscription rule."""

    def __init__(self, config: dict[str, Any], *, cloud: FakeCloud, ssl_context: ssl.SSLContext) -> None:
        global _plugin_namespaces
        _plugin_namespaces += 1
        super().__init__(config, ssl_context=ssl_context, plugin_namespace=f"bambulab.sim.cloud.{_plugin_namespaces}")
        self.bind_plugins((CloudAuthPlugin, CloudTopicPlugin, CloudRelayPlugin), cloud=cloud)

    async def add_subscription(self, subscription: tuple[str, int], session: Any) -> int:
        topic_filter, qos = subscription
        parsed = _device_topic(topic_filter)
        if parsed is not None and parsed[1] == "request":
            # Granted for the account's own devices, but the cloud never delivers requests back.
            if not await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE):
                return 0x80
            return min(qos, 1)
        return int(await super().add_subscription(subscription, session))


class CloudMqttService(BrokerService):
    """The cloud broker on TLS; :meth:`publish` sends a payload to a device's report topic."""

    def __init__(self, cloud: FakeCloud, cert: LeafCertificate, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._cloud = cloud
        self._cert = cert
        self._host = host
        self._port = port
        self._broker: TlsBroker | None = None
        self.published = 0

    def _make_broker(self) -> TlsBroker:
        config = tls_listener_config(self._host, self._port, self._cert, _PLUGIN_PATHS)
        return _CloudBroker(config, cloud=self._cloud, ssl_context=self._cert.server_context())

    async def publish(self, serial: str, payload: dict[str, Any] | bytes) -> None:
        """Publish to ``device/{serial}/report`` at QoS 0."""
        await self._broadcast(f"device/{serial}/report", payload)
