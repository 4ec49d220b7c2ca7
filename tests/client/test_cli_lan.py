"""`bambu status|pause|light|temp|fan|gcode|files|upload|print|camera|config` against virtual printers.

Each command runs as a real process, configured through environment variables and flags as a
user would, and talks to a simulator running in this test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bambulab.sim import Simulator, VirtualPrinter
from bambulab.sim.demo import demo_project


class SimLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(time_scale=100.0, seed=11)
        self.call(self.sim.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimLoop, dict[str, VirtualPrinter], Path]]:
    s = SimLoop()
    printers = {
        "p1s": s.call(s.sim.add_printer(model="P1S", camera_fps=10.0, quirks={"push_interval": 0.2})),
        "x1c": s.call(s.sim.add_printer(model="X1C", quirks={"push_interval": 0.2})),
    }
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    s.sim.write_ca(ca)
    yield s, printers, ca
    s.close()


def bambu(printer: VirtualPrinter, ca: Path, *args: str, env: dict[str, str] | None = None,
          stdin: str | None = None, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "BAMBU_CONFIG": str(ca.parent / "no-config.toml"),
        "BAMBU_HOST": printer.host,
        "BAMBU_SERIAL": printer.serial,
        "BAMBU_ACCESS_CODE": printer.access_code,
        "BAMBU_PORT": str(printer.mqtt.port),
        **(env or {}),
    }
    ports = ["--ftps-port", str(printer.ftps.port), "--camera-port", str(printer.camera.port),  # type: ignore[union-attr]
             "--ca-file", str(ca)]
    # Connection options belong to the leaf command: right after its name.
    split = 2 if args[0] in ("files", "camera") else 1
    argv = [sys.executable, "-m", "bambulab.cli.main", *args[:split], *ports, *args[split:]]
    done = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=60, input=stdin, cwd=cwd)
    if check:
        assert done.returncode == 0, f"{args}: {done.stderr}"
    return done


def test_status_human_and_json(farm: tuple[SimLoop, dict[str, VirtualPrinter], Path]) -> None:
    _, printers, ca = farm
    human = bambu(printers["p1s"], ca, "status").stdout
    assert "state     IDLE" in human
    assert "nozzle" in human
    data = json.loads(bambu(printers["x1c"], ca, "status", "--json").stdout)
    assert data["job"]["state"] == "IDLE"
    for p in printers.values():
        assert p.access_code not in human


def test_controls_change_the_printer(farm: tuple[SimLoop, dict[str, VirtualPrinter], Path]) -> None:
    _, printers, ca = farm
    p = printers["x1c"]
    bambu(p, ca, "light", "off")
    assert p.dynamic.lights["chamber_light"] == "off"
    bambu(p, ca, "temp", "bed", "62")
    assert p.dynamic.bed.target == 62
    bambu(p, ca, "fan", "part", "100")
    assert p.dynamic.fan_part == 255
    out = json.loads(bambu(p, ca, "gcode", "M104 S215", "--json").stdout)
    assert out["ok"] is True
    assert p.dynamic.nozzles[0].target == 215
    failed = bambu(p, ca, "pause", check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr


def test_files_upload_print_and_camera(farm: tuple[SimLoop, dict[str, VirtualPrinter], Path], tmp_path: Path) -> None:
    _, printers, ca = farm
    p = printers["p1s"]
    local = tmp_path / "cube.gcode.3mf"
    local.write_bytes(demo_project(minutes=60))
    out = json.loads(bambu(p, ca, "upload", str(local), "--json").stdout)
    assert out["size"] == local.stat().st_size
    listing = [json.loads(line) for line in bambu(p, ca, "files", "ls", "--json").stdout.splitlines()]
    assert "cube.gcode.3mf" in {e["name"] for e in listing}
    bambu(p, ca, "files", "get", "/cube.gcode.3mf", str(tmp_path / "back.3mf"))
    assert (tmp_path / "back.3mf").read_bytes() == local.read_bytes()
    bambu(p, ca, "files", "rm", "/cube.gcode.3mf")
    assert not (p.storage / "cube.gcode.3mf").exists()
    printed = json.loads(bambu(p, ca, "print", str(local), "--ams", "none", "--json").stdout)
    assert printed["gcode_state"] in ("PREPARE", "RUNNING")
    bambu(p, ca, "stop")
    assert p.dynamic.job.gcode_state == "FAILED"
    snap = tmp_path / "snap.jpg"
    bambu(p, ca, "camera", "snapshot", "-o", str(snap))
    assert snap.read_bytes()[:2] == b"\xff\xd8"
    lines = bambu(p, ca, "camera", "stream", "--frames", "2", "-o", str(tmp_path / "f"), "--json").stdout
    assert len(lines.splitlines()) == 2
    url = bambu(printers["x1c"], ca, "camera", "stream").stdout.strip()
    assert url.startswith("rtsps://")
    assert printers["x1c"].access_code not in url


def test_access_code_never_from_argument_without_the_flag(
    farm: tuple[SimLoop, dict[str, VirtualPrinter], Path],
) -> None:
    _, printers, ca = farm
    p = printers["p1s"]
    env = {"BAMBU_ACCESS_CODE": ""}
    refused = bambu(p, ca, "status", "--access-code", p.access_code, env=env, check=False)
    assert refused.returncode != 0
    assert "refusing to read the access code" in refused.stderr
    assert p.access_code not in refused.stderr
    bambu(p, ca, "status", "--access-code", p.access_code, "--allow-code-argument", env=env)
    bambu(p, ca, "status", "--access-code-stdin", env=env, stdin=p.access_code + "\n")
    wrong = bambu(p, ca, "status", env={"BAMBU_ACCESS_CODE": "00000000"}, check=False)
    assert wrong.returncode == 1
    assert "00000000" not in wrong.stderr + wrong.stdout


def test_config_add_and_list_keep_the_code_private(
    farm: tuple[SimLoop, dict[str, VirtualPrinter], Path], tmp_path: Path,
) -> None:
    _, printers, ca = farm
    p = printers["p1s"]
    cfg = tmp_path / "config.toml"
    env = {**os.environ, "BAMBU_CONFIG": str(cfg)}
    done = subprocess.run(
        [sys.executable, "-m", "bambulab.cli.main", "config", "add", "shop", "--host", p.host, "--serial",
         p.serial, "--port", str(p.mqtt.port), "--default"],
        input=p.access_code + "\n", capture_output=True, text=True, env=env, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert p.access_code not in done.stdout
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    listed = subprocess.run([sys.executable, "-m", "bambulab.cli.main", "config", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert json.loads(listed.stdout)["serial"] == p.serial
    assert p.access_code not in listed.stdout
    # The profile alone is enough to talk to the printer.
    status = subprocess.run(
        [sys.executable, "-m", "bambulab.cli.main", "status", "--json", "--ca-file", str(ca)],
        capture_output=True, text=True, env={k: v for k, v in env.items() if not k.startswith("BAMBU_")} |
        {"BAMBU_CONFIG": str(cfg)}, timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["job"]["state"] == p.dynamic.job.gcode_state


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_discover_finds_virtual_printers_on_loopback() -> None:
    listen, search = _free_udp_port(), _free_udp_port()
    s = SimLoop.__new__(SimLoop)
    s.loop = asyncio.new_event_loop()
    s.thread = threading.Thread(target=s.loop.run_forever, daemon=True)
    s.thread.start()
    s.sim = Simulator(ssdp_target=("127.0.0.1", listen), ssdp_listen=("127.0.0.1", search), ssdp_interval=0.2)
    s.call(s.sim.start())
    try:
        a = s.call(s.sim.add_printer(model="P1S", name="Workshop P1S"))
        b = s.call(s.sim.add_printer(model="X1C"))
        done = subprocess.run(
            [sys.executable, "-m", "bambulab.cli.main", "discover", "--timeout", "2", "--listen-port", str(listen),
             "--target", f"127.0.0.1:{search}", "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        found = {d["serial"]: d for d in map(json.loads, done.stdout.splitlines())}
        assert set(found) == {a.serial, b.serial}
        assert found[a.serial]["name"] == "Workshop P1S"
        assert found[a.serial]["ip"] == "127.0.0.1"
        bad = subprocess.run([sys.executable, "-m", "bambulab.cli.main", "discover", "--target", "nowhere"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2
        assert "HOST:PORT" in bad.stderr
    finally:
        s.close()


def test_monitor_json_for_configured_printers(
    farm: tuple[SimLoop, dict[str, VirtualPrinter], Path], tmp_path: Path,
) -> None:
    from bambulab.config import PrinterProfile, save_profile

    _, printers, ca = farm
    cfg = tmp_path / "config.toml"
    for name, p in printers.items():
        save_profile(PrinterProfile(name=name, host=p.host, serial=p.serial, access_code=p.access_code,
                                    port=p.mqtt.port, ca_file=str(ca)), path=cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {"BAMBU_CONFIG": str(cfg)}
    done = subprocess.run(
        [sys.executable, "-m", "bambulab.cli.main", "monitor", "--all", "--json", "--duration", "2.5"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["serial"] for r in rows} == {p.serial for p in printers.values()}
    assert all(r["connected"] for r in rows)
    assert len(rows) >= 4  # a row per printer per second
    for p in printers.values():
        assert p.access_code not in done.stdout


def test_monitor_table_for_people(farm: tuple[SimLoop, dict[str, VirtualPrinter], Path], tmp_path: Path) -> None:
    from bambulab.config import PrinterProfile, save_profile

    _, printers, ca = farm
    cfg = tmp_path / "config.toml"
    for name, p in printers.items():
        save_profile(PrinterProfile(name=f"shop-{name}", host=p.host, serial=p.serial, access_code=p.access_code,
                                    port=p.mqtt.port, ca_file=str(ca)), path=cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {"BAMBU_CONFIG": str(cfg),
                                                                                  "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "bambulab.cli.main", "monitor", "--all", "--duration", "1.5"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shop-p1s" in done.stdout
    assert "shop-x1c" in done.stdout
    assert "X1 Carbon" in done.stdout
    for p in printers.values():
        assert p.access_code not in done.stdout
