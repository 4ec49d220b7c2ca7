"""Prometheus metrics for a farm: a collector that reads the fleet at scrape time.

Why a custom collector instead of gauges updated per message: a farm of 1,000 printers sends
thousands of reports a second and Prometheus scrapes every 15 s or so. Reading each member's
decoded status (already cached by the printer) once per scrape costs a few milliseconds; updating
a dozen labelled gauges on every report would cost more than the rest of the gateway. Printers
that leave the fleet also vanish from the output by themselves (no stale label sets to delete).

Names follow the Prometheus conventions: the ``bambu_`` prefix, base units in the name
(``_celsius``, ``_seconds``, ``_ratio`` for 0-1 fractions), ``_total`` only on counters, state
as a labelled gauge (one series per state, 1 for the current one). Every metric is listed in
:data:`METRICS` (the docs and the Grafana dashboard test read it).

The gateway's own figures live in :class:`GatewayMetrics`: a request-latency histogram, the
event-loop lag (measured by :class:`LoopLagMonitor`, a gateway service), and gauges read at scrape
time (printers, SSE clients, history queue). Each gateway has its own registry, so two gateways in
one process (tests, demos) never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bambulab._version import __version__
from bambulab.protocol.views import GcodeState, PrinterStatus

__all__ = ["METRICS", "FleetCollector", "GatewayMetrics", "LoopLagMonitor"]

log = logging.getLogger(__name__)

#: name -> (type, help). The single list of what the gateway exports.
METRICS: Final[Mapping[str, tuple[str, str]]] = {
    "bambu_printer_info": ("gauge", "Always 1; the printer's name, model, source and firmware as labels."),
    "bambu_printer_up": ("gauge", "1 while the gateway's connection to the printer is up and fresh."),
    "bambu_printer_temperature_celsius": ("gauge", "Measured temperature by sensor (nozzle, bed, chamber)."),
    "bambu_printer_target_temperature_celsius": ("gauge", "Target temperature by sensor (nozzle, bed, chamber)."),
    "bambu_printer_progress_ratio": ("gauge", "Progress of the current job, 0 to 1."),
    "bambu_printer_remaining_seconds": ("gauge", "Remaining time of the current job as the printer estimates it."),
    "bambu_printer_state": ("gauge", "1 for the printer's current gcode_state, 0 for the others."),
    "bambu_printer_stage": ("gauge", "Current stage id (stg_cur)."),
    "bambu_printer_layer": ("gauge", "Current layer of the job."),
    "bambu_printer_layers": ("gauge", "Layer count of the job."),
    "bambu_printer_fan_speed_ratio": ("gauge", "Fan speed by fan (part, aux, chamber, heatbreak), 0 to 1."),
    "bambu_printer_speed_level": ("gauge", "Speed profile: 1 silent, 2 standard, 3 sport, 4 ludicrous."),
    "bambu_printer_hms_active": ("gauge", "Active HMS alerts by severity."),
    "bambu_printer_reconnects_total": ("counter", "Reconnections of the gateway to the printer."),
    "bambu_printer_messages_received_total": ("counter", "MQTT reports received from the printer."),
    "bambu_printer_last_message_age_seconds": ("gauge", "Seconds since the last report from the printer."),
    "bambu_ams_humidity_ratio": ("gauge", "AMS humidity (newer firmware sends percent), 0 to 1."),
    "bambu_ams_humidity_level": ("gauge", "AMS humidity level, 1 (wet) to 5 (dry)."),
    "bambu_ams_temperature_celsius": ("gauge", "AMS temperature."),
    "bambu_ams_tray_remaining_ratio": ("gauge", "Filament left on an AMS tray (RFID spools), 0 to 1."),
    "bambu_gateway_info": ("gauge", "Always 1; the gateway's version as a label."),
    "bambu_gateway_printers": ("gauge", "Printers in the fleet."),
    "bambu_gateway_printers_online": ("gauge", "Printers online and fresh."),
    "bambu_gateway_sse_clients": ("gauge", "Server-Sent Events clients connected."),
    "bambu_gateway_event_loop_lag_seconds": ("gauge", "How late the event loop ran a timer, last measurement."),
    "bambu_gateway_event_loop_lag_max_seconds": ("gauge", "Largest event-loop lag in the last minute."),
    "bambu_gateway_request_duration_seconds": ("histogram", "HTTP request latency by route and method."),
    "bambu_history_writes_total": ("counter", "Rows written to the history store."),
    "bambu_history_dropped_total": ("counter", "Telemetry samples dropped because the writer queue was full."),
    "bambu_history_queue_length": ("gauge", "Writes waiting for the history writer thread."),
    "bambu_mqtt_publisher_connected": ("gauge", "1 while the external MQTT publisher is connected."),
    "bambu_mqtt_published_messages_total": ("counter", "Messages published to the external MQTT broker."),
}

_STATES: Final = tuple(s.value for s in GcodeState)
_SEVERITIES: Final = ("fatal", "serious", "common", "info", "unknown")


def _family(name: str, labels: Iterable[str]) -> Metric:
    kind, text = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), text, labels=list(labels))
    return GaugeMetricFamily(name, text, labels=list(labels))


_PRINTER: Final = ("serial", "printer")
_LABELS: Final[Mapping[str, tuple[str, ...]]] = {
    "bambu_printer_info": (*_PRINTER, "model", "source", "firmware"),
    "bambu_printer_temperature_celsius": (*_PRINTER, "sensor"),
    "bambu_printer_target_temperature_celsius": (*_PRINTER, "sensor"),
    "bambu_printer_state": (*_PRINTER, "state"),
    "bambu_printer_fan_speed_ratio": (*_PRINTER, "fan"),
    "bambu_printer_hms_active": (*_PRINTER, "severity"),
    "bambu_ams_humidity_ratio": (*_PRINTER, "ams"),
    "bambu_ams_humidity_level": (*_PRINTER, "ams"),
    "bambu_ams_temperature_celsius": (*_PRINTER, "ams"),
    "bambu_ams_tray_remaining_ratio": (*_PRINTER, "ams", "tray", "material"),
}
_PER_PRINTER: Final = tuple(n for n in METRICS if n.startswith(("bambu_printer_", "bambu_ams_")))


class FleetCollector(Collector):
    """Yields the per-printer metrics of every fleet member at scrape time.

    ``members`` returns the current members (objects with ``serial``, ``name``, ``source``,
    ``online``/``fresh``, ``last_seen``, ``reconnects``, ``messages`` and ``printer.status``).
    """

    def __init__(self, members: Callable[[], Iterable[Any]], *, clock: Callable[[], float] = time.time) -> None:
        self._members = members
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: the label sets depend on the fleet

    def collect(self) -> Iterator[Metric]:
        yield from self.families(self.snapshot())

    def snapshot(self) -> list[tuple[str, list[str], float]]:
        """Every sample as ``(metric, label values, value)``: the part that reads the fleet, so
        the part that must run on the event loop (building and formatting the exposition from it
        can run in a thread)."""
        now = self._clock()
        rows: list[tuple[str, list[str], float]] = []

        def add(name: str, labels: list[str], value: float | None) -> None:
            if value is not None:
                rows.append((name, labels, float(value)))

        for member in list(self._members()):
            mark = len(rows)
            try:
                self._member(member, add, now)
            except Exception:  # one odd printer must not break the scrape of the farm
                del rows[mark:]
                log.debug("metrics: skipping %r", member, exc_info=True)
        return rows

    @staticmethod
    def families(rows: Iterable[tuple[str, list[str], float]]) -> list[Metric]:
        fams = {name: _family(name, _LABELS.get(name, _PRINTER)) for name in _PER_PRINTER}
        for name, labels, value in rows:
            fams[name].add_metric(labels, value)  # type: ignore[attr-defined]
        return list(fams.values())

    @staticmethod
    def _member(member: Any, add: Callable[[str, list[str], float | None], None], now: float) -> None:
        serial, name = str(member.serial), str(member.name)
        base = [serial, name]
        status: PrinterStatus = member.printer.status
        model = status.model
        model_name = model.name if model is not None else (getattr(member, "model", None) or "")
        add("bambu_printer_info", [*base, str(model_name), str(member.source), status.firmware or ""], 1)
        up = getattr(member, "fresh", member.online)
        add("bambu_printer_up", base, 1 if up else 0)
        add("bambu_printer_reconnects_total", base, member.reconnects)
        add("bambu_printer_messages_received_total", base, member.messages)
        if member.last_seen is not None:
            add("bambu_printer_last_message_age_seconds", base, max(0.0, now - member.last_seen))
        if not status.raw:  # never heard from: no made-up zeros
            return
        temps = status.temperatures
        for sensor, current, target in (
            ("nozzle", temps.nozzle, temps.nozzle_target),
            ("bed", temps.bed, temps.bed_target),
            ("chamber", temps.chamber, temps.chamber_target),
        ):
            add("bambu_printer_temperature_celsius", [*base, sensor], current)
            add("bambu_printer_target_temperature_celsius", [*base, sensor], target)
        job = status.job
        add("bambu_printer_progress_ratio", base, None if job.progress is None else job.progress / 100)
        add("bambu_printer_remaining_seconds", base, None if job.remaining is None else job.remaining.total_seconds())
        if job.state_raw is not None:
            for state in _STATES:
                add("bambu_printer_state", [*base, state], 1 if state == job.state.value else 0)
        add("bambu_printer_stage", base, job.stage_id)
        add("bambu_printer_layer", base, job.layer)
        add("bambu_printer_layers", base, job.total_layers)
        fans = status.fans
        for fan, value in (("part", fans.part_cooling), ("aux", fans.aux), ("chamber", fans.chamber),
                           ("heatbreak", fans.heatbreak)):
            add("bambu_printer_fan_speed_ratio", [*base, fan], None if value is None else value / 100)
        add("bambu_printer_speed_level", base, status.speed.level)
        counts = dict.fromkeys(_SEVERITIES, 0)
        for message in status.hms:
            counts[message.severity.value] = counts.get(message.severity.value, 0) + 1
        for severity, count in counts.items():
            add("bambu_printer_hms_active", [*base, severity], count)
        for unit in status.ams.units:
            if unit.id is None:
                continue
            ams = [*base, str(unit.id)]
            add("bambu_ams_humidity_ratio", ams, None if unit.humidity is None else unit.humidity / 100)
            add("bambu_ams_humidity_level", ams, unit.humidity_level)
            add("bambu_ams_temperature_celsius", ams, unit.temperature)
            for tray in unit.trays:
                if tray.is_empty or tray.remaining is None or tray.remaining < 0 or tray.slot is None:
                    continue
                add("bambu_ams_tray_remaining_ratio", [*ams, str(tray.slot), tray.material or ""],
                    tray.remaining / 100)


class _GatewayCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self._m
        gw = m.gateway
        info = GaugeMetricFamily("bambu_gateway_info", METRICS["bambu_gateway_info"][1], labels=["version"])
        info.add_metric([str(getattr(gw, "version", __version__))], 1)
        yield info
        members = list(gw.fleet.members.values())
        yield GaugeMetricFamily("bambu_gateway_printers", METRICS["bambu_gateway_printers"][1], value=len(members))
        online = sum(1 for x in members if getattr(x, "fresh", getattr(x, "online", False)))
        yield GaugeMetricFamily("bambu_gateway_printers_online", METRICS["bambu_gateway_printers_online"][1],
                                value=online)
        yield GaugeMetricFamily("bambu_gateway_sse_clients", METRICS["bambu_gateway_sse_clients"][1],
                                value=int(getattr(gw, "sse_clients", 0)))
        lag = m.lag
        yield GaugeMetricFamily("bambu_gateway_event_loop_lag_seconds",
                                METRICS["bambu_gateway_event_loop_lag_seconds"][1], value=lag.last)
        yield GaugeMetricFamily("bambu_gateway_event_loop_lag_max_seconds",
                                METRICS["bambu_gateway_event_loop_lag_max_seconds"][1], value=lag.window_max)
        history = m.history
        if history is not None:
            yield CounterMetricFamily("bambu_history_writes", METRICS["bambu_history_writes_total"][1],
                                      value=history.written)
            yield CounterMetricFamily("bambu_history_dropped", METRICS["bambu_history_dropped_total"][1],
                                      value=history.dropped)
            yield GaugeMetricFamily("bambu_history_queue_length", METRICS["bambu_history_queue_length"][1],
                                    value=history.pending)
        publisher = m.publisher
        if publisher is not None:
            yield GaugeMetricFamily("bambu_mqtt_publisher_connected", METRICS["bambu_mqtt_publisher_connected"][1],
                                    value=1 if publisher.connected else 0)
            yield CounterMetricFamily("bambu_mqtt_published_messages",
                                      METRICS["bambu_mqtt_published_messages_total"][1], value=publisher.published)


class LoopLagMonitor:
    """A gateway service that measures how late the event loop runs a timer (``interval`` s)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.last = 0.0
        self._recent: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def window_max(self) -> float:
        cutoff = time.monotonic() - 60
        return max((lag for t, lag in self._recent if t >= cutoff), default=self.last)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, loop.time() - before - self.interval)
            now = time.monotonic()
            self._recent.append((now, self.last))
            if len(self._recent) > 240:  # bounded: 2 minutes at the default interval
                del self._recent[:120]


class GatewayMetrics:
    """One gateway's registry: fleet collector, gateway collector, request histogram, loop lag."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        #: Set by the history and MQTT wiring: objects with ``written``/``dropped``/``pending``
        #: and ``connected``/``published``.
        self.history: Any = None
        self.publisher: Any = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.lag = LoopLagMonitor()
        self.fleet = FleetCollector(lambda: gateway.fleet.members.values())
        self.registry.register(self.fleet)
        self.registry.register(_GatewayCollector(self))
        self.requests = Histogram(
            "bambu_gateway_request_duration_seconds",
            METRICS["bambu_gateway_request_duration_seconds"][1],
            labelnames=("route", "method"),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The exposition, all in the calling thread."""
        return generate_latest(self.registry)

    async def render_async(self) -> bytes:
        """The exposition for the ``/metrics`` route: the fleet is read on the event loop (the
        only part that touches printer state), the text is built in a worker thread (three
        quarters of the cost with a thousand printers)."""
        rows = self.fleet.snapshot()
        gateway = list(_GatewayCollector(self).collect())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Static([*FleetCollector.families(rows), *gateway]))
        registry.register(self.requests)
        return await asyncio.to_thread(generate_latest, registry)


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._families
