"""Virtual Bambu Lab printers that speak the real LAN protocols on real sockets.

```python
async with Simulator(time_scale=60) as sim:
    printer = await sim.add_printer(model="P1S")
    print(printer.info(include_secrets=True))   # host, ports, serial, access code
```

Needs the ``sim`` extra (amqtt, pyftpdlib, pyOpenSSL, Pillow). This package never imports the
client side of bambulab: tests of the simulator use independent clients, so the two cannot agree
on a shared mistake. Names are imported lazily, so ``bambulab.sim.ca`` alone stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bambulab.sim.ca import LeafCertificate, SimCA
    from bambulab.sim.config import AuthMode, DeltaMode, MaxClientsMode, PrinterConfig, Quirks
    from bambulab.sim.engine import PrinterEngine
    from bambulab.sim.printer import VirtualPrinter
    from bambulab.sim.simulator import Simulator
    from bambulab.sim.state import AmsUnit, Dynamic, Heater, HmsEntry, Job, Tray

_EXPORTS = {
    "LeafCertificate": "ca", "SimCA": "ca",
    "AuthMode": "config", "DeltaMode": "config", "MaxClientsMode": "config", "PrinterConfig": "config",
    "Quirks": "config",
    "PrinterEngine": "engine",
    "VirtualPrinter": "printer",
    "Simulator": "simulator",
    "AmsUnit": "state", "Dynamic": "state", "Heater": "state", "HmsEntry": "state", "Job": "state",
    "Tray": "state",
}

__all__ = [
    "AmsUnit",
    "AuthMode",
    "DeltaMode",
    "Dynamic",
    "Heater",
    "HmsEntry",
    "Job",
    "LeafCertificate",
    "MaxClientsMode",
    "PrinterConfig",
    "PrinterEngine",
    "Quirks",
    "SimCA",
    "Simulator",
    "Tray",
    "VirtualPrinter",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bambulab.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bambulab.sim.{module}"), name)
