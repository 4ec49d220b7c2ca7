"""The Prometheus collector over fleet members, read at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bambulab.farm.metrics import METRICS, FleetCollector, GatewayMetrics
from bambulab.protocol.views import PrinterStatus

NOW = 1_800_000_000.0
REPORT = {
    "print": {
        "gcode_state": "RUNNING", "stg_cur": 2, "mc_percent": 42, "mc_remaining_time": 33,
        "layer_num": 10, "total_layer_num": 200, "nozzle_temper": 219.5, "nozzle_target_temper": 220,
        "bed_temper": 60, "bed_target_temper": 60, "cooling_fan_speed": "15", "big_fan1_speed": "0",
        "spd_lvl": 2,
        "hms": [{"attr": 0x03000100, "code": 0x00020001}, {"attr": 0x05000100, "code": 0x00030002}],
        "ams": {"ams": [{"id": "0", "humidity": "4", "temp": "24.5",
                         "tray": [{"id": "0", "tray_type": "PLA", "remain": 80}, {"id": "1"}]}]},
    }
}


@dataclass
class _Printer:
    state: dict[str, Any]

    @property
    def status(self) -> PrinterStatus:
        return PrinterStatus(self.state)


@dataclass
class _Member:
    serial: str
    name: str
    state: dict[str, Any] = field(default_factory=dict)
    online: bool = True
    last_seen: float | None = NOW - 2.5
    reconnects: int = 3
    messages: int = 1234
    source: str = "lan"
    model: str | None = "P1S"

    @property
    def printer(self) -> _Printer:
        return _Printer(self.state)

    @property
    def fresh(self) -> bool:
        return self.online


def scrape(*members: _Member) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(lambda: members, clock=lambda: NOW))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    for (n, ls), v in samples.items():
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items()):
            return v
    return None


def test_per_printer_metrics() -> None:
    m = scrape(_Member("S1", "P1S-1", REPORT))
    assert value(m, "bambu_printer_up", serial="S1", printer="P1S-1") == 1
    assert value(m, "bambu_printer_temperature_celsius", serial="S1", sensor="nozzle") == 219.5
    assert value(m, "bambu_printer_target_temperature_celsius", sensor="bed") == 60
    assert value(m, "bambu_printer_progress_ratio") == 0.42
    assert value(m, "bambu_printer_remaining_seconds") == 33 * 60
    assert value(m, "bambu_printer_state", state="RUNNING") == 1
    assert value(m, "bambu_printer_state", state="IDLE") == 0
    assert value(m, "bambu_printer_layer") == 10 and value(m, "bambu_printer_layers") == 200
    assert value(m, "bambu_printer_fan_speed_ratio", fan="part") == 1.0
    assert value(m, "bambu_printer_speed_level") == 2
    assert value(m, "bambu_printer_hms_active", severity="serious") == 1
    assert value(m, "bambu_printer_hms_active", severity="common") == 1
    assert value(m, "bambu_printer_hms_active", severity="fatal") == 0
    assert value(m, "bambu_ams_humidity_level", ams="0") == 4
    assert value(m, "bambu_ams_temperature_celsius", ams="0") == 24.5
    assert value(m, "bambu_ams_tray_remaining_ratio", ams="0", tray="0", material="PLA") == 0.8
    assert value(m, "bambu_ams_tray_remaining_ratio", tray="1") is None  # an empty tray has no series
    assert value(m, "bambu_printer_reconnects_total") == 3
    assert value(m, "bambu_printer_messages_received_total") == 1234
    assert value(m, "bambu_printer_last_message_age_seconds") == 2.5
    # P1S has no chamber sensor: no made-up zero
    assert value(m, "bambu_printer_temperature_celsius", sensor="chamber") is None


def test_a_silent_printer_has_connection_figures_only() -> None:
    m = scrape(_Member("S2", "new", {}, online=False, last_seen=None, reconnects=0, messages=0))
    assert value(m, "bambu_printer_up", serial="S2") == 0
    assert value(m, "bambu_printer_state", serial="S2") is None
    assert value(m, "bambu_printer_temperature_celsius", serial="S2") is None
    assert value(m, "bambu_printer_last_message_age_seconds", serial="S2") is None


def test_a_broken_member_does_not_break_the_scrape() -> None:
    class Broken(_Member):
        @property
        def printer(self) -> _Printer:
            raise RuntimeError("boom")

    m = scrape(Broken("BAD", "bad"), _Member("S1", "ok", REPORT))
    assert value(m, "bambu_printer_up", serial="S1") == 1


def test_names_follow_the_conventions() -> None:
    for name, (kind, text) in METRICS.items():
        assert name.startswith("bambu_") and text
        assert name.endswith("_total") == (kind == "counter"), name


def test_gateway_metrics_render_every_listed_family() -> None:
    @dataclass
    class _Fleet:
        members: dict[str, _Member]

    @dataclass
    class _Gateway:
        fleet: _Fleet
        sse_clients: int = 2
        version: str = "9.9"

    @dataclass
    class _History:
        written: int = 5
        dropped: int = 0
        pending: int = 1

    @dataclass
    class _Publisher:
        connected: bool = True
        published: int = 7

    gm = GatewayMetrics(_Gateway(_Fleet({"S1": _Member("S1", "P1S-1", REPORT)})))
    gm.history, gm.publisher = _History(), _Publisher()
    gm.requests.labels(route="/api/v1/printers", method="GET").observe(0.003)
    text = gm.render().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}
    assert set(METRICS) <= exported, set(METRICS) - exported
    assert "bambu_gateway_request_duration_seconds" in families
    assert 'bambu_gateway_sse_clients 2.0' in text and 'bambu_gateway_info{version="9.9"} 1.0' in text
