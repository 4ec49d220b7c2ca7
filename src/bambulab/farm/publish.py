"""Publish the farm's normalized state to an external MQTT broker, with Home Assistant discovery.

The scale-out path: several gateways, each owning a shard of the farm, publish to one broker
(mosquitto, EMQX...) and anything that subscribes there (Home Assistant, Node-RED, a script, a
central dashboard) sees the whole farm without a connection to any printer.

Topics (``prefix`` defaults to ``bambulab``; every message retained, so a late subscriber gets
the current picture at once):

* ``<prefix>/gateway/<gateway id>/availability``: ``online`` while the gateway runs; its MQTT
  last will publishes ``offline`` there when the gateway dies without saying goodbye.
* ``<prefix>/<serial>/availability``: ``online``/``offline``, the printer's connection.
* ``<prefix>/<serial>/state``: the printer summary JSON (the ``/api/v1/printers`` shape) plus
  ``"gateway": <gateway id>``, coalesced to at most one message per ``interval`` seconds.
* ``<prefix>/<serial>/command/<action>``: Home Assistant buttons publish ``PRESS`` here; the
  gateway runs the action through its control path, only when control is enabled.
* ``<discovery_prefix>/<component>/bambulab_<serial>/<object>/config``: Home Assistant MQTT
  discovery, one device per printer. Entities are available only while both the gateway and the
  printer are (``availability_mode: all``). Buttons are announced only when control is enabled
  and withdrawn (empty retained config) otherwise.

:func:`discovery_messages` is pure (summary dict in, ``(topic, payload)`` out) and tested as
such; :class:`MqttPublisher` is the gateway service that owns the broker connection, made with
the project's own MQTT client (:class:`bambulab.transports.mqtt.MqttConnection`, plain TCP or TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bambulab._version import __version__
from bambulab.config import ConfigError
from bambulab.exceptions import AuthenticationError, BambuError
from bambulab.transports.mqtt import MqttConnection, Will
from bambulab.transports.tls import cloud_ssl_context

__all__ = [
    "BUTTONS",
    "MqttPublisher",
    "PublishConfig",
    "Topics",
    "discovery_messages",
    "gateway_messages",
    "state_payload",
]

log = logging.getLogger(__name__)

#: Home Assistant buttons (action name → button name); published only when control is enabled.
BUTTONS: Final[Mapping[str, str]] = {"pause": "Pause", "resume": "Resume", "stop": "Stop", "clear_hms": "Clear error"}
_TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class PublishConfig:
    """The ``[mqtt]`` table of the gateway config. ``password`` is better given through
    ``password_env`` (an environment variable's name); it never appears in a repr or a log."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    tls: bool = False
    ca_file: str | None = None
    prefix: str = "bambulab"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    gateway_id: str | None = None
    interval: float = 1.0
    keepalive: int = 30

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublishConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ConfigError(f"[mqtt]: unknown setting(s) {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("enabled", "tls", "discovery"):
                ok = isinstance(value, bool)
            elif key in ("port", "keepalive"):
                ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
            elif key == "interval":
                ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 3600
            else:
                ok = isinstance(value, str) and bool(value)
            if not ok:
                raise ConfigError(f"[mqtt]: bad value for {key}")
            values[key] = value
        for key in ("prefix", "discovery_prefix"):
            topic = values.get(key, known[key].default)
            if any(c in topic for c in "#+\x00") or topic.startswith("/") or topic.endswith("/"):
                raise ConfigError(f"[mqtt]: {key} must be a plain topic prefix without wildcards")
        return cls(**values)

    def resolved_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        if self.password_env:
            env = os.environ if environ is None else environ
            value = env.get(self.password_env)
            if value is None:
                raise ConfigError(f"[mqtt]: environment variable {self.password_env} is not set")
            return value
        return self.password

    def resolved_gateway_id(self) -> str:
        return _TOPIC_SAFE.sub("_", self.gateway_id or socket.gethostname() or "gateway")


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "bambulab"
    discovery_prefix: str = "homeassistant"

    def gateway_availability(self, gateway_id: str) -> str:
        return f"{self.prefix}/gateway/{gateway_id}/availability"

    def availability(self, serial: str) -> str:
        return f"{self.prefix}/{serial}/availability"

    def state(self, serial: str) -> str:
        return f"{self.prefix}/{serial}/state"

    def command(self, serial: str, action: str) -> str:
        return f"{self.prefix}/{serial}/command/{action}"

    def command_filter(self) -> str:
        return f"{self.prefix}/+/command/+"

    def parse_command(self, topic: str) -> tuple[str, str] | None:
        parts = topic.split("/")
        head = self.prefix.split("/")
        if len(parts) != len(head) + 3 or parts[: len(head)] != head or parts[len(head) + 1] != "command":
            return None
        return parts[len(head)], parts[len(head) + 2]

    def config(self, component: str, serial: str, obj: str) -> str:
        return f"{self.discovery_prefix}/{component}/bambulab_{serial.lower()}/{obj}/config"


def state_payload(summary: Mapping[str, Any], gateway_id: str) -> bytes:
    return json.dumps({**summary, "gateway": gateway_id}, separators=(",", ":"), sort_keys=True).encode()


def _sensor(
    obj: str, name: str, template: str, *, unit: str | None = None, device_class: str | None = None,
    state_class: str | None = None, icon: str | None = None, attributes: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    config: dict[str, Any] = {"name": name, "value_template": template}
    if unit:
        config["unit_of_measurement"] = unit
    if device_class:
        config["device_class"] = device_class
    if state_class:
        config["state_class"] = state_class
    if icon:
        config["icon"] = icon
    if attributes:
        config["json_attributes_template"] = attributes
    return "sensor", obj, config


def discovery_messages(
    summary: Mapping[str, Any], *, topics: Topics, gateway_id: str, control: bool
) -> list[tuple[str, bytes]]:
    """Home Assistant discovery configs for one printer (retained ``(topic, payload)`` pairs).

    Buttons are included only when ``control`` is true; otherwise their config topics get an
    empty payload, which makes Home Assistant remove buttons announced earlier.
    """
    serial = str(summary["serial"])
    uid = f"bambulab_{serial.lower()}"
    device = {
        "identifiers": [uid],
        "name": summary.get("name") or serial,
        "manufacturer": "Bambu Lab",
        "model": summary.get("model") or "Bambu Lab printer",
        "serial_number": serial,
        "sw_version": summary.get("firmware"),
        "via_device": f"bambulab_gateway_{gateway_id}",
    }
    device = {k: v for k, v in device.items() if v is not None}
    origin = {"name": "bambulab", "sw_version": __version__}
    availability = [
        {"topic": topics.gateway_availability(gateway_id)},
        {"topic": topics.availability(serial)},
    ]
    state_topic = topics.state(serial)
    entities: list[tuple[str, str, dict[str, Any]]] = [
        _sensor("progress", "Progress", "{{ value_json.progress }}", unit="%", state_class="measurement",
                icon="mdi:progress-clock"),
        _sensor("remaining", "Remaining time", "{{ value_json.remaining_minutes }}", unit="min",
                device_class="duration"),
        _sensor("finish_at", "Finish time", "{{ value_json.finish_at }}", device_class="timestamp"),
        _sensor("state", "State", "{{ value_json.state }}", icon="mdi:printer-3d"),
        _sensor("stage", "Stage", "{{ value_json.stage_name }}", icon="mdi:list-status"),
        _sensor("file", "File", "{{ value_json.file }}", icon="mdi:file"),
        _sensor("layer", "Layer", "{{ value_json.layer }}", icon="mdi:layers",
                attributes='{{ {"total_layers": value_json.total_layers} | tojson }}'),
        _sensor("hms", "HMS alerts", "{{ value_json.hms | count }}", icon="mdi:alert",
                attributes='{{ {"alerts": value_json.hms} | tojson }}'),
    ]
    temps = summary.get("temperatures") or {}
    for key, name in (("nozzle", "Nozzle"), ("bed", "Bed"), ("chamber", "Chamber")):
        if key == "chamber" and temps.get("chamber") is None:
            continue  # no chamber sensor on this model: no entity that would read "unknown" forever
        entities.append(_sensor(f"{key}_temperature", f"{name} temperature",
                                f"{{{{ value_json.temperatures.{key} }}}}", unit="°C",
                                device_class="temperature", state_class="measurement"))
        if key != "chamber" or temps.get("chamber_target") is not None:
            entities.append(_sensor(f"{key}_target", f"{name} target",
                                    f"{{{{ value_json.temperatures.{key}_target }}}}",
                                    unit="°C", device_class="temperature"))
    units = ((summary.get("ams") or {}).get("units")) or []
    for u_index, unit in enumerate(units):
        uid_ams = unit.get("id", u_index)
        path = f"value_json.ams.units[{u_index}]"
        if unit.get("humidity") is not None:
            entities.append(_sensor(f"ams{uid_ams}_humidity", f"AMS {uid_ams} humidity level",
                                    f"{{{{ {path}.humidity }}}}", icon="mdi:water-percent"))
        if unit.get("temperature") is not None:
            entities.append(_sensor(f"ams{uid_ams}_temperature", f"AMS {uid_ams} temperature",
                                    f"{{{{ {path}.temperature }}}}", unit="°C", device_class="temperature",
                                    state_class="measurement"))
        for t_index, tray in enumerate(unit.get("trays") or []):
            tid = tray.get("id", t_index)
            tpath = f"{path}.trays[{t_index}]"
            entities.append(_sensor(
                f"ams{uid_ams}_tray{tid}", f"AMS {uid_ams} tray {tid}",
                f"{{{{ {tpath}.material or 'empty' }}}}", icon="mdi:printer-3d-nozzle",
                attributes=f'{{{{ {{"color": {tpath}.color, "remaining": {tpath}.remaining}} | tojson }}}}',
            ))
    out: list[tuple[str, bytes]] = []
    for component, obj, config in entities:
        if "json_attributes_template" in config:
            config["json_attributes_topic"] = state_topic
        config.update({
            "unique_id": f"{uid}_{obj}", "state_topic": state_topic,
            "availability": availability, "availability_mode": "all", "device": device, "origin": origin,
        })
        out.append((topics.config(component, serial, obj), json.dumps(config, sort_keys=True).encode()))
    binary: list[tuple[str, dict[str, Any]]] = [
        ("online", {"name": "Online", "device_class": "connectivity", "state_topic": topics.availability(serial),
                    "payload_on": "online", "payload_off": "offline",
                    "availability": [{"topic": topics.gateway_availability(gateway_id)}]}),
        ("error", {"name": "Error", "device_class": "problem", "state_topic": state_topic,
                   "value_template": "{{ 'ON' if (value_json.hms | count) > 0 or value_json.print_error else 'OFF' }}",
                   "availability": availability, "availability_mode": "all"}),
    ]
    for obj, config in binary:
        config.update({"unique_id": f"{uid}_{obj}", "device": device, "origin": origin})
        out.append((topics.config("binary_sensor", serial, obj), json.dumps(config, sort_keys=True).encode()))
    for action, name in BUTTONS.items():
        topic = topics.config("button", serial, action)
        if not control:
            out.append((topic, b""))
            continue
        config = {
            "name": name, "unique_id": f"{uid}_{action}",
            "command_topic": topics.command(serial, action), "payload_press": "PRESS",
            "availability": availability, "availability_mode": "all", "device": device, "origin": origin,
        }
        out.append((topic, json.dumps(config, sort_keys=True).encode()))
    return out


def discovery_shape(summary: Mapping[str, Any], control: bool) -> tuple[Any, ...]:
    """What the discovery configs depend on: when it is unchanged, so are they (a cheap check
    per state change instead of rebuilding some thirty JSON configs)."""
    temps = summary.get("temperatures") or {}
    units = ((summary.get("ams") or {}).get("units")) or []
    return (
        summary.get("name"), summary.get("model"), summary.get("firmware"), control,
        temps.get("chamber") is None, temps.get("chamber_target") is None,
        tuple((u.get("id"), u.get("humidity") is None, u.get("temperature") is None,
               tuple(t.get("id") for t in u.get("trays") or [])) for u in units),
    )


def gateway_messages(*, topics: Topics, gateway_id: str) -> list[tuple[str, bytes]]:
    """The gateway's own device (the printers name it as ``via_device``): one connectivity
    sensor on its availability topic, so Home Assistant shows which gateway serves what."""
    uid = f"bambulab_gateway_{gateway_id}"
    config = {
        "name": "Online", "unique_id": f"{uid}_online", "device_class": "connectivity",
        "state_topic": topics.gateway_availability(gateway_id), "payload_on": "online", "payload_off": "offline",
        "device": {"identifiers": [uid], "name": f"Bambu gateway {gateway_id}", "manufacturer": "bambulab",
                   "model": "bambu gateway", "sw_version": __version__},
        "origin": {"name": "bambulab", "sw_version": __version__},
    }
    topic = f"{topics.discovery_prefix}/binary_sensor/{uid}/online/config"
    return [(topic, json.dumps(config, sort_keys=True).encode())]


def removal_messages(topics_list: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Empty retained payloads for every config topic: Home Assistant removes the entities."""
    return [(topic, b"") for topic, _ in topics_list]


ControlCall = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


def _refusal(code: int) -> BambuError:
    if code in (4, 5):
        return AuthenticationError(
            f"the MQTT broker refused the login (CONNACK {code}): check [mqtt] username/password"
        )
    return BambuError(f"the MQTT broker refused the connection (CONNACK {code})")


class MqttPublisher:
    """The gateway service that publishes to the external broker (``async start()``/``stop()``).

    ``fleet`` provides ``members`` (with ``serial``, ``online``/``fresh`` and ``summary()``) and
    ``subscribe()``; ``control(serial, action, body)`` runs a Home Assistant button press
    (``None``, or ``control_enabled() == False``, ignores presses with a log line).
    Reconnects by itself with a capped backoff; a broker that is down never blocks the gateway.
    """

    def __init__(
        self,
        fleet: Any,
        config: PublishConfig,
        *,
        control: ControlCall | None = None,
        control_enabled: Callable[[], bool] = lambda: False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.fleet = fleet
        self.config = config
        self.gateway_id = config.resolved_gateway_id()
        self.topics = Topics(config.prefix, config.discovery_prefix)
        self._control = control
        self._control_enabled = control_enabled
        self._password = config.resolved_password(environ)
        self._conn: MqttConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._discovered: dict[str, list[tuple[str, bytes]]] = {}
        self._shapes: dict[str, tuple[Any, ...]] = {}
        self._availability: dict[str, str] = {}
        self._command_tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        self.commands = 0
        self.connects = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"<MqttPublisher {self.gateway_id} -> {self.config.host}:{self.config.port}>"

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(), name="mqtt-publish-follow"),
            asyncio.create_task(self._run(), name="mqtt-publish"),
        ]

    async def stop(self) -> None:
        conn = self._conn
        if conn is not None and conn.connected:
            with contextlib.suppress(BambuError, OSError):  # a clean goodbye: no last will needed
                await conn.publish(self.topics.gateway_availability(self.gateway_id), b"offline", 1,
                                   retain=True, timeout=1.0)
            await conn.close()  # DISCONNECT: the broker drops the will
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for task in list(self._command_tasks):
            task.cancel()
        self._conn = None

    # -- fleet side

    async def _follow(self) -> None:
        self._dirty.update(self.fleet.members)
        async with self.fleet.subscribe() as events:
            self._wake.set()
            async for event in events:
                if event.kind == "resync":
                    self._dirty.update(self.fleet.members)
                elif event.serial is not None and event.kind in ("delta", "online", "offline", "added", "removed"):
                    self._dirty.add(event.serial)
                else:
                    continue
                self._wake.set()

    # -- broker side

    def _connection(self) -> MqttConnection:
        context: ssl.SSLContext | None = None
        if self.config.tls:
            context = cloud_ssl_context(ca_file=self.config.ca_file)
        return MqttConnection(
            self.config.host, self.config.port,
            on_message=self._on_message, username=self.config.username, password=self._password,
            ssl_context=context, client_id=f"bambu-gateway-{self.gateway_id}", keepalive=self.config.keepalive,
            peer="the MQTT broker", refusal=_refusal,
            will=Will(self.topics.gateway_availability(self.gateway_id), b"offline", 1, True),
        )

    async def _run(self) -> None:
        delay = 1.0
        while True:
            conn = self._connection()
            try:
                await conn.connect()
            except BambuError as exc:
                self.last_error = str(exc)
                log.warning("MQTT publisher: %s; retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            self._conn = conn
            self.connects += 1
            delay = 1.0
            log.info("MQTT publisher: connected to %s:%d as gateway %s", self.config.host, self.config.port,
                     self.gateway_id)
            try:
                await self._session(conn)
            except BambuError as exc:
                self.last_error = str(exc)
                log.warning("MQTT publisher: connection lost: %s", exc)
            finally:
                self._conn = None
                conn.abort()
            await asyncio.sleep(delay)

    async def _session(self, conn: MqttConnection) -> None:
        topics = self.topics
        await conn.publish(topics.gateway_availability(self.gateway_id), b"online", 1, retain=True)
        if self.config.discovery:
            for topic, payload in gateway_messages(topics=topics, gateway_id=self.gateway_id):
                await self._send(conn, topic, payload)
        if self._control is not None:
            await conn.subscribe(topics.command_filter(), 1)
        self._discovered.clear()
        self._shapes.clear()
        self._availability.clear()
        self._dirty.update(self.fleet.members)
        self._wake.set()
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            while True:
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    waiter.cancel()
                    reason = closed.result()
                    raise reason if isinstance(reason, BambuError) else BambuError("the broker closed the connection")
                self._wake.clear()
                dirty, self._dirty = self._dirty, set()
                for serial in sorted(dirty):
                    await self._publish_member(conn, serial)
                if self.config.interval:
                    await asyncio.sleep(self.config.interval)
        finally:
            closed.cancel()

    async def _send(self, conn: MqttConnection, topic: str, payload: bytes) -> None:
        await conn.publish(topic, payload, 0, retain=True)
        self.published += 1

    async def _publish_member(self, conn: MqttConnection, serial: str) -> None:
        topics = self.topics
        member = self.fleet.members.get(serial)
        if member is None:  # removed from this gateway's shard: withdraw it
            self._shapes.pop(serial, None)
            for topic, payload in removal_messages(self._discovered.pop(serial, [])):
                await self._send(conn, topic, payload)
            await self._send(conn, topics.availability(serial), b"offline")
            await self._send(conn, topics.state(serial), b"")  # an empty retained message clears it
            self._availability.pop(serial, None)
            return
        summary = member.summary()
        online = "online" if summary.get("online") else "offline"
        if self._availability.get(serial) != online:
            self._availability[serial] = online
            await self._send(conn, topics.availability(serial), online.encode())
        if self.config.discovery:
            control = self._control is not None and self._control_enabled()
            shape = discovery_shape(summary, control)
            if self._shapes.get(serial) == shape:
                messages = self._discovered.get(serial, [])  # nothing Home Assistant needs changed
            else:
                self._shapes[serial] = shape
                messages = discovery_messages(summary, topics=topics, gateway_id=self.gateway_id, control=control)
            if self._discovered.get(serial) != messages:
                old = {t for t, _ in self._discovered.get(serial, [])}
                new = {t for t, _ in messages}
                for topic in sorted(old - new):
                    await self._send(conn, topic, b"")
                for topic, payload in messages:
                    await self._send(conn, topic, payload)
                self._discovered[serial] = messages
        await self._send(conn, topics.state(serial), state_payload(summary, self.gateway_id))

    def _on_message(self, topic: str, payload: bytes) -> None:
        parsed = self.topics.parse_command(topic)
        if parsed is None:
            return
        serial, action = parsed
        if serial not in self.fleet.members:
            return  # another gateway's printer
        task = asyncio.get_running_loop().create_task(self._command(serial, action, payload))
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _command(self, serial: str, action: str, payload: bytes) -> None:
        if self._control is None or not self._control_enabled():
            log.warning("MQTT command %s for %s ignored: control is disabled", action, serial)
            return
        if action not in BUTTONS:
            log.warning("MQTT command %r for %s ignored: not a button action", action, serial)
            return
        self.commands += 1
        try:
            await self._control(serial, action, {})
        except (BambuError, ValueError) as exc:
            log.warning("MQTT command %s for %s failed: %s", action, serial, exc)
