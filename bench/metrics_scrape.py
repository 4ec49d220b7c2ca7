"""Cost of one Prometheus scrape of the gateway's fleet collector, for N printers.

Run: ``python3 bench/metrics_scrape.py [--printers 1000] [--repeat 5]``. Each printer has a full,
real-shaped X1-style state (temperatures, fans, one AMS unit of four trays, two HMS entries);
the collector reads the decoded status every scrape (the printer caches it between reports), as
the gateway does. Prints the time per scrape, the part of it spent on the event loop (the
``/metrics`` route reads the fleet there and builds the text in a worker thread) and the size.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from bambulab.farm.metrics import FleetCollector
from bambulab.protocol.views import PrinterStatus


def _report(i: int) -> dict[str, Any]:
    trays = [{"id": str(t), "tray_type": "PLA", "tray_color": "FF0000FF", "remain": 10 + t * 20} for t in range(4)]
    return {"print": {
        "gcode_state": "RUNNING", "stg_cur": 2, "mc_percent": i % 100, "mc_remaining_time": 33, "layer_num": 10,
        "total_layer_num": 200, "nozzle_temper": 219.5, "nozzle_target_temper": 220, "bed_temper": 60,
        "bed_target_temper": 60, "chamber_temper": 35, "cooling_fan_speed": "15", "big_fan1_speed": "5",
        "big_fan2_speed": "0", "heatbreak_fan_speed": "15", "spd_lvl": 2,
        "hms": [{"attr": 0x03000100, "code": 0x00020001}, {"attr": 0x05000100, "code": 0x00030002}],
        "ams": {"ams": [{"id": "0", "humidity": "4", "temp": "24.5", "tray": trays}], "tray_now": "1"},
    }}


@dataclass
class _Printer:
    status: PrinterStatus


@dataclass
class _Member:
    serial: str
    name: str
    printer: _Printer
    online: bool = True
    fresh: bool = True
    last_seen: float = 0.0
    reconnects: int = 0
    messages: int = 100
    source: str = "lan"
    model: str = "X1C"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--printers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    members = []
    for i in range(args.printers):
        status = PrinterStatus(_report(i))
        _ = (status.job, status.temperatures, status.fans, status.ams, status.hms)  # decoded once, as in the gateway
        members.append(_Member(f"00M{i:012d}", f"X1C-{i}", _Printer(status), last_seen=time.time()))
    collector = FleetCollector(lambda: members)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    times, loop_times = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        text = generate_latest(registry)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        collector.snapshot()  # what the /metrics route does on the event loop; the rest runs in a thread
        loop_times.append(time.perf_counter() - start)
    lines = text.count(b"\n")
    print(f"{args.printers} printers: {min(times) * 1000:.0f} ms per scrape, of which "
          f"{min(loop_times) * 1000:.0f} ms on the event loop (best of {args.repeat}); "
          f"{len(text) / 1024:.0f} KiB, {lines} lines")


if __name__ == "__main__":
    main()
