"""Kept so ``bambulab.sim.cloud_mqtt`` still imports: the code is in :mod:`bambulab.sim.cloud.mqtt`."""

from __future__ import annotations

from bambulab.sim.cloud.mqtt import (
    CloudMqttService,
)

__all__ = [
    "CloudMqttService",
]
