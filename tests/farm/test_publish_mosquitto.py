"""Scale-out over MQTT: two `bambu gateway` processes, each owning a shard of a virtual farm,
publish to one real mosquitto; an independent paho client sees the whole farm, presses a Home
Assistant button, and sees a gateway's last will when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from farmtools import Consumer, free_port, running, stop_process, until

from bambulab.farm.config import hash_token
from bambulab.farm.history import HistoryStore
from bambulab.sim import Simulator
from bambulab.sim.demo import demo_project

MOSQUITTO = "/usr/sbin/mosquitto"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    base = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    (base / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n"
    )
    with running([MOSQUITTO, "-c", str(base / "mosquitto.conf")], cwd=base, log_name="mosquitto.log") as proc:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (base / "mosquitto.log").read_text()
                time.sleep(0.05)
        yield port


def write_config(path: Path, name: str, printers: list[Any], ca: Path, broker: int, *, control: bool) -> None:
    lines = ["[gateway]", 'host = "127.0.0.1"', "port = 0", f"control = {'true' if control else 'false'}", ""]
    lines += ["[history]", f'path = "{name}.sqlite3"', ""]
    if control:
        lines += ["[[tokens]]", 'label = "ops"', f'sha256 = "{hash_token("not-used-here")}"', ""]
    for vp in printers:
        lines += ["[[printers]]", f'serial = "{vp.serial}"', f'name = "{vp.name}"', 'host = "127.0.0.1"',
                  f"port = {vp.mqtt.port}", f'access_code = "{vp.access_code}"', f'ca_file = "{ca}"', ""]
    lines += ["[mqtt]", 'host = "127.0.0.1"', f"port = {broker}", f'gateway_id = "{name}"', "interval = 0.2", ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def gateway_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "bambulab", "gateway", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=config.parent)


async def test_two_gateways_one_broker_whole_farm(mosquitto: int, tmp_path: Path) -> None:
    sim = Simulator(time_scale=1.0, seed=11)
    await sim.start()
    procs: list[subprocess.Popen[bytes]] = []
    consumer = Consumer(mosquitto)
    try:
        printers = [await sim.add_printer(model=m) for m in ("P1S", "X1C", "A1", "P1P")]
        project = demo_project(minutes=60, layers=100)
        for vp in printers:
            vp.put_file("job.gcode.3mf", project)
            await vp.start_print("job.gcode.3mf")
        ca = tmp_path / "ca.pem"
        ca.write_bytes(sim.ca.ca_pem)
        shard_a, shard_b = printers[:2], printers[2:]
        write_config(tmp_path / "a.toml", "gw-a", shard_a, ca, mosquitto, control=True)
        write_config(tmp_path / "b.toml", "gw-b", shard_b, ca, mosquitto, control=False)
        procs.append(gateway_process(tmp_path / "a.toml", tmp_path / "a.log"))
        procs.append(gateway_process(tmp_path / "b.toml", tmp_path / "b.log"))

        def whole_farm() -> bool:
            for p in procs:
                assert p.poll() is None, (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
            states = [consumer.json(f"bambulab/{vp.serial}/state") for vp in printers]
            return all(s and s.get("online") and s.get("state") in ("PREPARE", "RUNNING") for s in states)
        try:
            await until(whole_farm, within=60, what="the whole farm's state on the broker")
        except AssertionError as exc:
            logs = (tmp_path / "a.log").read_text()[-3000:] + (tmp_path / "b.log").read_text()[-3000:]
            raise AssertionError(f"{exc}\ntopics: {sorted(consumer.topics(''))[:40]}\n{logs}") from None

        for vp, gw in [(vp, "gw-a") for vp in shard_a] + [(vp, "gw-b") for vp in shard_b]:
            state = consumer.json(f"bambulab/{vp.serial}/state")
            assert state["gateway"] == gw and state["serial"] == vp.serial and state["name"] == vp.name
            assert consumer.get(f"bambulab/{vp.serial}/availability") == b"online"
            node = f"homeassistant/sensor/bambulab_{vp.serial.lower()}"
            progress = consumer.json(f"{node}/progress/config")
            assert progress["state_topic"] == f"bambulab/{vp.serial}/state"
            assert progress["availability"][0]["topic"] == f"bambulab/gateway/{gw}/availability"
            assert consumer.json(f"homeassistant/binary_sensor/bambulab_{vp.serial.lower()}/online/config")
        assert consumer.get("bambulab/gateway/gw-a/availability") == b"online"
        assert consumer.get("bambulab/gateway/gw-b/availability") == b"online"
        # buttons only where control is enabled
        a0, b0 = shard_a[0], shard_b[0]
        button = consumer.json(f"homeassistant/button/bambulab_{a0.serial.lower()}/pause/config")
        assert button["command_topic"] == f"bambulab/{a0.serial}/command/pause"
        assert consumer.get(f"homeassistant/button/bambulab_{b0.serial.lower()}/pause/config") in (None, b"")

        # a Home Assistant button press goes to the printer through gateway A's control path
        consumer.client.publish(button["command_topic"], b"PRESS", qos=1)
        await until(lambda: a0.engine.dyn.job.gcode_state == "PAUSE", within=30, what="the pause to reach the printer")
        await until(lambda: (consumer.json(f"bambulab/{a0.serial}/state") or {}).get("state") == "PAUSE",
                    within=30, what="the paused state on the broker")
        # gateway B has control off: the same press on its printer does nothing
        consumer.client.publish(f"bambulab/{b0.serial}/command/pause", b"PRESS", qos=1)
        consumer.client.publish(f"bambulab/{b0.serial}/command/stop", b"PRESS", qos=1)
        await asyncio.sleep(2.0)
        assert b0.engine.dyn.job.gcode_state in ("PREPARE", "RUNNING")

        # gateway A dies without a goodbye: the broker publishes its last will
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        await until(lambda: consumer.get("bambulab/gateway/gw-a/availability") == b"offline", within=90,
                    what="gateway A's last will")
        assert consumer.get("bambulab/gateway/gw-b/availability") == b"online"
        # gateway B stops cleanly (SIGTERM) and says so itself
        started = time.monotonic()
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(15) == 0
        assert time.monotonic() - started < 5.0  # every connection closed and the store flushed within 5 s
        with HistoryStore.open(tmp_path / "gw-b.sqlite3") as store:
            jobs, total = store.jobs()
        assert total == 2 and {j.serial for j in jobs} == {vp.serial for vp in shard_b}
        assert {j.result for j in jobs} == {"running"}
        await until(lambda: consumer.get("bambulab/gateway/gw-b/availability") == b"offline", within=10,
                    what="gateway B's goodbye")
        assert "not-used-here" not in (tmp_path / "a.log").read_text()
    finally:
        consumer.close()
        for proc in procs:
            stop_process(proc)
        await sim.stop()
