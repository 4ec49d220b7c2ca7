"""Wires :class:`bambulab.farm.publish.MqttPublisher` into the gateway (the ``[mqtt]`` table).

No routes of its own: ``routes(gateway)`` registers the publisher as a service when the config
has an ``[mqtt]`` table (``enabled = false`` keeps it off). Home Assistant button presses run
through the gateway's control path with the same rule as the HTTP route: nothing happens unless
control is enabled; every call is logged and kept in ``gateway.control_log`` as who =
``mqtt:<gateway id>``.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from bambulab.config import ConfigError
from bambulab.farm.publish import MqttPublisher, PublishConfig

if TYPE_CHECKING:
    from bambulab.servers.gateway import Gateway

__all__ = ["publisher_of", "routes"]

_publishers: weakref.WeakKeyDictionary[Any, MqttPublisher] = weakref.WeakKeyDictionary()


def publisher_of(gateway: Gateway) -> MqttPublisher | None:
    return _publishers.get(gateway)


def routes(gateway: Gateway) -> list[BaseRoute]:
    section = gateway.config.sections.get("mqtt")
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ConfigError("[mqtt] must be a table")
    cfg = PublishConfig.from_dict(section)
    if not cfg.enabled:
        return []
    if cfg.gateway_id is None:  # one id per gateway: [gateway] id, else the host name
        cfg = dataclasses.replace(cfg, gateway_id=str(getattr(gateway, "id", "") or "") or None)
    who = f"mqtt:{cfg.resolved_gateway_id()}"

    async def control(serial: str, action: str, body: dict[str, Any]) -> Any:
        # the same checks, log line and control_log as the HTTP route (who = mqtt:<gateway id>)
        return await gateway.control(serial, action, body, who=who)

    publisher = MqttPublisher(gateway.fleet, cfg, control=control, control_enabled=lambda: gateway.control_enabled)
    _publishers[gateway] = publisher
    gateway.add_service(publisher)
    return []
