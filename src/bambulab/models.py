"""The older package's ``bambulab.models`` import path: see :mod:`bambulab.compat.models`.

The modern models are :mod:`bambulab.cloud.models` (cloud JSON) and
:class:`bambulab.PrinterStatus` (a decoded MQTT report).
"""

from bambulab.compat.models import Device, PrinterStatus, Project

__all__ = ["Device", "PrinterStatus", "Project"]
