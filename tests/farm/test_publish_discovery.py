"""Home Assistant MQTT discovery payloads (pure) and the publisher's config."""

from __future__ import annotations

import json
from typing import Any

import jinja2
import pytest

from bambulab.config import ConfigError
from bambulab.farm.publish import PublishConfig, Topics, discovery_messages, gateway_messages, state_payload

SUMMARY: dict[str, Any] = {
    "serial": "01P00A000000001", "name": "P1S-1", "model": "P1S", "online": True, "state": "RUNNING",
    "stage_name": "Printing", "progress": 42, "remaining_minutes": 33, "firmware": "01.07.00.00",
    "temperatures": {"nozzle": 220.0, "nozzle_target": 220.0, "bed": 60.0, "bed_target": 60.0,
                     "chamber": None, "chamber_target": None},
    "ams": {"units": [{"id": 0, "humidity": 3, "temperature": 24.5,
                       "trays": [{"id": 0, "material": "PLA", "color": "#FF0000", "remaining": 80}]}]},
    "hms": [], "print_error": None, "finish_at": "2026-12-02T02:48:00Z", "file": "benchy.gcode.3mf",
    "layer": 10, "total_layers": 200,
}
TOPICS = Topics()


def configs(control: bool) -> dict[str, dict[str, Any] | None]:
    out = {}
    for topic, payload in discovery_messages(SUMMARY, topics=TOPICS, gateway_id="gw1", control=control):
        out[topic] = json.loads(payload) if payload else None
    return out


def test_one_device_per_printer_with_sensors_and_binary_sensors() -> None:
    c = configs(control=False)
    base = "homeassistant/{}/bambulab_01p00a000000001/{}/config"
    progress = c[base.format("sensor", "progress")]
    assert progress is not None
    assert progress["state_topic"] == "bambulab/01P00A000000001/state"
    assert progress["value_template"] == "{{ value_json.progress }}" and progress["unit_of_measurement"] == "%"
    assert progress["device"]["identifiers"] == ["bambulab_01p00a000000001"]
    assert progress["device"]["model"] == "P1S" and progress["device"]["sw_version"] == "01.07.00.00"
    assert progress["availability_mode"] == "all"
    assert [a["topic"] for a in progress["availability"]] == [
        "bambulab/gateway/gw1/availability", "bambulab/01P00A000000001/availability"]
    for obj in ("remaining", "state", "stage", "nozzle_temperature", "bed_target", "hms", "ams0_tray0",
                "ams0_humidity", "ams0_temperature"):
        assert c[base.format("sensor", obj)] is not None, obj
    assert base.format("sensor", "chamber_temperature") not in c  # P1S: no chamber sensor
    online = c[base.format("binary_sensor", "online")]
    assert online is not None and online["device_class"] == "connectivity"
    assert online["state_topic"] == "bambulab/01P00A000000001/availability"
    assert c[base.format("binary_sensor", "error")]["device_class"] == "problem"  # type: ignore[index]
    ids = [v["unique_id"] for v in c.values() if v]
    assert len(ids) == len(set(ids))
    hms = c[base.format("sensor", "hms")]
    assert hms is not None and hms["json_attributes_topic"] == hms["state_topic"]  # the template needs its topic
    # the printers name their gateway's device, which the gateway announces itself
    (topic, payload), = gateway_messages(topics=TOPICS, gateway_id="gw1")
    gateway = json.loads(payload)
    assert topic == "homeassistant/binary_sensor/bambulab_gateway_gw1/online/config"
    assert progress["device"]["via_device"] in gateway["device"]["identifiers"]
    assert gateway["state_topic"] == "bambulab/gateway/gw1/availability"
    # control disabled: button configs are withdrawn (empty retained payload)
    assert c[base.format("button", "pause")] is None and c[base.format("button", "stop")] is None


def test_buttons_only_when_control_is_enabled() -> None:
    c = configs(control=True)
    pause = c["homeassistant/button/bambulab_01p00a000000001/pause/config"]
    assert pause is not None
    assert pause["command_topic"] == "bambulab/01P00A000000001/command/pause" and pause["payload_press"] == "PRESS"
    assert TOPICS.parse_command(pause["command_topic"]) == ("01P00A000000001", "pause")


def test_templates_render_against_the_state_payload() -> None:
    """Every template renders with Jinja (what Home Assistant uses) against the state JSON."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 (not HTML)
    state = json.loads(state_payload({**SUMMARY, "hms": [{"code": "0300_0100_0001_0001"}]}, "gw1"))
    assert state["gateway"] == "gw1"
    rendered = {}
    for config in configs(control=False).values():
        if not config or "value_template" not in config:
            continue
        rendered[config["unique_id"].rsplit("_", 1)[-1] if "tray" not in config["unique_id"] else "tray"] = (
            env.from_string(config["value_template"]).render(value_json=state))
        if "json_attributes_template" in config:
            json.loads(env.from_string(config["json_attributes_template"]).render(value_json=state))
    assert rendered["progress"] == "42" and rendered["state"] == "RUNNING" and rendered["hms"] == "1"
    assert rendered["error"] == "ON" and rendered["tray"] == "PLA"


def test_command_topic_parsing() -> None:
    assert TOPICS.parse_command("bambulab/S1/command/stop") == ("S1", "stop")
    assert TOPICS.parse_command("bambulab/S1/state") is None
    assert TOPICS.parse_command("other/S1/command/stop") is None
    assert Topics("farm/eu").parse_command("farm/eu/S1/command/pause") == ("S1", "pause")


def test_config_validation_and_secrets() -> None:
    cfg = PublishConfig.from_dict({"enabled": True, "host": "broker", "port": 1883, "password": "hunter2",
                                   "gateway_id": "rack 1"})
    assert "hunter2" not in repr(cfg)
    assert cfg.resolved_gateway_id() == "rack_1"
    with pytest.raises(ConfigError, match="unknown"):
        PublishConfig.from_dict({"hots": "x"})
    with pytest.raises(ConfigError, match="port"):
        PublishConfig.from_dict({"port": 0})
    with pytest.raises(ConfigError, match="wildcards"):
        PublishConfig.from_dict({"prefix": "farm/#"})
    with pytest.raises(ConfigError, match="MQTT_PW"):
        PublishConfig.from_dict({"password_env": "MQTT_PW"}).resolved_password({})
    assert PublishConfig.from_dict({"password_env": "MQTT_PW"}).resolved_password({"MQTT_PW": "x"}) == "x"
