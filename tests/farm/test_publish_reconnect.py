"""The MQTT publisher survives a broker that is down at start and one that restarts."""

from __future__ import annotations

from pathlib import Path

from farmtools import Consumer, free_port, running, until

from bambulab.farm.config import GatewayConfig
from bambulab.farm.demo import DemoFarm
from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import create_app
from bambulab.servers.gateway.publish import publisher_of

MOSQUITTO = "/usr/sbin/mosquitto"


async def test_publisher_waits_for_the_broker_and_reconnects(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    farm = DemoFarm(1, director=False, seed=5)
    cfg = GatewayConfig()
    cfg.printers.extend(await farm.start())
    cfg.sections = {"mqtt": {"host": "127.0.0.1", "port": port, "gateway_id": "solo", "interval": 0.1}}
    gw = Gateway(cfg)
    create_app(gw)
    await gw.start()
    publisher = publisher_of(gw)
    assert publisher is not None
    serial = cfg.printers[0].serial
    try:
        await until(lambda: publisher.last_error is not None, within=10, what="a refused connection")
        assert not publisher.connected and "cannot connect" in (publisher.last_error or "")
        for round_ in (1, 2):  # the broker comes up, then restarts
            with running([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")], cwd=tmp_path,
                         log_name=f"mosquitto{round_}.log"):
                await until(lambda: publisher.connected, within=30, what=f"connection {round_}")
                consumer = Consumer(port)
                try:
                    await until(lambda c=consumer: c.json(f"bambulab/{serial}/state") is not None, within=30,
                                what="the state on the broker")
                    assert consumer.get("bambulab/gateway/solo/availability") == b"online"
                    if round_ == 2:  # the printer leaves this gateway: its entities and state are withdrawn
                        progress = f"homeassistant/sensor/bambulab_{serial.lower()}/progress/config"
                        assert consumer.json(progress) is not None
                        await gw.remove_printer(serial)
                        await until(lambda c=consumer, t=progress: c.get(t) == b"", within=10, what="the removal")
                        assert consumer.get(f"bambulab/{serial}/state") == b""
                        assert consumer.get(f"bambulab/{serial}/availability") == b"offline"
                finally:
                    consumer.close()
            await until(lambda: not publisher.connected, within=30, what="the broker to go away")
        assert publisher.connects == 2
    finally:
        await gw.stop()
        await farm.stop()
