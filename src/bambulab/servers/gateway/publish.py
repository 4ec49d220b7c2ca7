"""Wires :class:`bambulab.farm.publish.MqttPublisher` into the gateway (the ``[mqtt]`` table).

No routes of its own: ``routes(gateway)`` registers the publisher as a service when the config
has an ``[mqtt]`` table (``enabled = false`` keeps it off). Home Assistant button presses run
through the gateway's control path with the same rule as the HTTP route: nothing happens unless
control is enabled; every call is logged and kept in ``gateway.control_log`` as who =
``mqtt:<gateway id>``.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from bambulab.config import ConfigError
from bambulab.exceptions import BambuError
from bambulab.farm.publish import MqttPublisher, PublishConfig

if TYPE_CHECKING:
    from bambulab.servers.gateway import Gateway

__all__ = ["publisher_of", "routes"]

log = logging.getLogger("bambulab.gateway.control")

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
    who = f"mqtt:{cfg.resolved_gateway_id()}"

    async def control(serial: str, action: str, body: dict[str, Any]) -> Any:
        from bambulab.servers.gateway import control as ctl

        member = gateway.fleet.get(serial)
        if member is None or not gateway.control_enabled:
            return None
        started = time.monotonic()
        result = "ok"
        try:
            runner = getattr(ctl, "run_control", None)
            if runner is not None:
                return await runner(gateway, serial, action, body, who=who)
            return await ctl._run(member, action, body)
        except BambuError as exc:
            result = type(exc).__name__
            raise
        finally:
            if getattr(ctl, "run_control", None) is None:
                entry = {"t": time.time(), "who": who, "action": action, "printer": serial, "result": result,
                         "ms": round((time.monotonic() - started) * 1000, 1)}
                gateway.control_log.append(entry)
                log.warning("control: %s %s %s -> %s (%.0f ms)", who, action, serial, result, entry["ms"])

    publisher = MqttPublisher(gateway.fleet, cfg, control=control, control_enabled=lambda: gateway.control_enabled)
    _publishers[gateway] = publisher
    gateway.add_service(publisher)
    return []
