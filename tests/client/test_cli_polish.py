"""The CLI as a new user meets it with virtual printers (issue 12, points 19, 21, 22, 23).

Commands run in this process through click's runner (fast), against a simulator on its own event
loop in a background thread; Ctrl-C is tested on a real process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from bambulab.cli.common import ENVIRONMENT
from bambulab.cli.main import cli
from bambulab.protocol.models import PrinterModel, model_by_code
from bambulab.protocol.state import merge
from bambulab.protocol.views import PrinterStatus
from bambulab.sim import Simulator, VirtualPrinter

ROOT = Path(__file__).resolve().parents[2]


class SimThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(time_scale=50.0, seed=5)
        self.call(self.sim.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Farm:
    sim: SimThread
    p1s: VirtualPrinter
    a1: VirtualPrinter
    ca: Path


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    s = SimThread()
    try:
        p1s = s.call(s.sim.add_printer(model="P1S", quirks={"push_interval": 0.2}))
        a1 = s.call(s.sim.add_printer(model="A1", quirks={"push_interval": 0.2}))
        ca = tmp_path_factory.mktemp("ca") / "ca.pem"
        s.sim.write_ca(ca)
        yield Farm(s, p1s, a1, ca)
    finally:
        s.close()


def run(config: Path, *args: str, input: str | None = None, **env: str) -> Result:
    clean = {k: None for k in os.environ if k.startswith("BAMBU_")}
    return CliRunner().invoke(cli, list(args), input=input, env={**clean, "BAMBU_CONFIG": str(config), **env})


def add(config: Path, name: str, p: VirtualPrinter, *extra: str, ca: Path | None = None) -> Result:
    ports = ["--port", str(p.mqtt.port), "--ftps-port", str(p.ftps.port),  # type: ignore[union-attr]
             "--camera-port", str(p.camera.port)]  # type: ignore[union-attr]
    return run(config, "config", "add", name, "--host", p.host, "--serial", p.serial, *ports,
               *(["--ca-file", str(ca)] if ca else []), "--access-code-stdin", *extra, input=p.access_code + "\n")


# ------------------------------------------------------------------ point 19: config add / remove


def test_config_add_takes_every_connection_option_and_the_profile_just_works(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    added = add(config, "sim", farm.p1s, "--json", ca=farm.ca)
    assert added.exit_code == 0, added.output
    saved = json.loads(added.output)
    assert saved["saved"] == "sim" and saved["default"] is True
    assert (saved["port"], saved["ftps_port"], saved["camera_port"]) == (
        farm.p1s.mqtt.port, farm.p1s.ftps.port, farm.p1s.camera.port)  # type: ignore[union-attr]
    assert saved["ca_file"] == str(farm.ca.resolve())
    assert farm.p1s.access_code not in added.output + config.read_text().replace(farm.p1s.access_code, "", 1)
    # No other flag needed: MQTT, FTPS (its own port) and the CA all come from the profile.
    status = run(config, "status", "--printer", "sim", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["job"]["state"]
    listing = run(config, "files", "ls", "--printer", "sim", "--json")
    assert listing.exit_code == 0, listing.output


def test_config_add_refuses_to_overwrite_without_force_and_remove_moves_the_default(
    farm: Farm, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "one", farm.p1s, ca=farm.ca).exit_code == 0
    assert add(config, "two", farm.a1, ca=farm.ca).exit_code == 0
    again = add(config, "one", farm.a1, ca=farm.ca)
    assert again.exit_code == 1 and "add --force to replace it" in again.output
    replaced = add(config, "one", farm.a1, "--force", "--json", ca=farm.ca)
    assert replaced.exit_code == 0 and json.loads(replaced.output)["serial"] == farm.a1.serial
    removed = run(config, "config", "remove", "one", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.output) == {"removed": "one", "path": str(config), "default": "two"}
    listed = [json.loads(line) for line in run(config, "config", "list", "--json").output.splitlines()]
    assert [(p["name"], p["default"]) for p in listed] == [("two", True)]
    missing = run(config, "config", "remove", "nope")
    assert missing.exit_code == 1 and "no printer profile named 'nope'" in missing.output


def test_config_add_refuses_contradicting_options_and_an_empty_code(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    both = add(config, "x", farm.p1s, "--insecure", ca=farm.ca)
    assert both.exit_code == 2 and "contradict" in both.output
    empty = run(config, "config", "add", "x", "--host", "h", "--serial", "S", "--access-code-stdin", input="\n")
    assert empty.exit_code == 2 and "no access code" in empty.output
    assert not config.exists()


def test_piped_access_code_is_read_without_a_getpass_warning(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {"BAMBU_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "bambulab.cli.main", "config", "add", "piped", "--host", "h",
         "--serial", "S"], input="87654321\n", capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "GetPassWarning" not in done.stderr and "87654321" not in done.stdout + done.stderr


def test_monitor_takes_a_ca_file_and_tls_errors_name_the_cli_flags(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "bare", farm.p1s).exit_code == 0  # no CA in the profile: Bambu's is expected
    failed = run(config, "status", "--printer", "bare")
    assert failed.exit_code == 1
    assert "--ca-file" in failed.output and "--insecure" in failed.output
    assert "ca_file=" not in failed.output and "insecure=True" not in failed.output
    watched = run(config, "monitor", "--all", "--json", "--duration", "1.5", "--ca-file", str(farm.ca))
    assert watched.exit_code == 0, watched.output
    rows = [json.loads(line) for line in watched.output.splitlines()]
    assert rows and all(r["connected"] and r["serial"] == farm.p1s.serial for r in rows)


# ------------------------------------------------------------------ point 21: the monitor's table


@dataclass
class Row:
    """What the table reads from a printer (a stand-in: the table is pure rendering)."""

    serial: str
    connected: bool
    model: PrinterModel | None
    status: PrinterStatus


def _row(serial: str, code: str, connected: bool = True) -> Row:
    model = model_by_code(code)
    report = {"print": {"gcode_state": "RUNNING", "mc_percent": 42, "layer_num": 10, "total_layer_num": 200,
                        "mc_remaining_time": 33, "nozzle_temper": 220.0, "bed_temper": 60.0}}
    return Row(serial, connected, model, PrinterStatus(merge({}, report), model))


def test_the_table_fits_80_columns_with_whole_headers_and_names() -> None:
    from rich.console import Console

    from bambulab.cli.lan import monitor_table

    rows = [_row("01P00A000000001", "P1S"), _row("00M09A000000002", "X1E", connected=False),
            _row("0948AB000000003", "H2D")]
    labels = {"01P00A000000001": "Workshop P1S", "00M09A000000002": "Studio X1E",
              "0948AB000000003": "Basement H2D left"}
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    console.print(monitor_table(rows, labels))  # type: ignore[arg-type]
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "printer" in line)
    for name in ("printer", "model", "state", "done", "layer", "left", "nozzle", "bed", "err"):
        assert re.search(rf"\b{name}\b", header), (name, header)
    for label in labels.values():
        assert label in text
    assert "offline" in text and "RUNNING" in text and "42%" in text
    assert "01P00A" not in text  # named rows, not serials


def test_log_lines_during_the_live_table_go_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler made before the display started writes through rich's stderr stand-in, not past it."""
    from rich.console import Console
    from rich.live import Live

    from bambulab.cli.lan import _logs_above

    before = io.StringIO()
    monkeypatch.setattr(sys, "stderr", before)
    handler = logging.StreamHandler(before)
    root = logging.getLogger()
    root.addHandler(handler)
    screen = io.StringIO()
    try:
        console = Console(file=screen, force_terminal=True, width=80, color_system=None)
        with Live("the table", console=console, redirect_stderr=True) as _view, _logs_above(before):
            logging.getLogger("bambulab.test").warning("printer went offline")
        assert handler.stream is before  # restored
    finally:
        root.removeHandler(handler)
    assert "printer went offline" not in before.getvalue()
    assert "printer went offline" in screen.getvalue()


# ------------------------------------------------------------------ point 22: small things


def test_ctrl_c_ends_monitor_and_watch_quietly(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "sim", farm.p1s, ca=farm.ca).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {"BAMBU_CONFIG": str(config)}
    for args in (["monitor", "--json"], ["status", "--watch", "--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "bambulab.cli.main", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # connected and printing rows
            assert json.loads(first)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, (args, err)
        assert "Aborted" not in err and "Traceback" not in err


def test_files_get_keeps_an_existing_file_and_takes_output(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "sim", farm.p1s, ca=farm.ca).exit_code == 0
    local = tmp_path / "up.gcode"
    local.write_bytes(b"G28\n" * 100)
    assert run(config, "upload", str(local), "/up.gcode").exit_code == 0
    kept = tmp_path / "kept.gcode"
    kept.write_text("mine")
    refused = run(config, "files", "get", "/up.gcode", "-o", str(kept))
    assert refused.exit_code == 1 and "exists: add --force" in refused.output
    assert kept.read_text() == "mine"
    forced = run(config, "files", "get", "/up.gcode", "-o", str(kept), "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert kept.read_bytes() == local.read_bytes()
    both = run(config, "files", "get", "/up.gcode", str(kept), "-o", str(kept))
    assert both.exit_code == 2


def test_temp_chamber_without_a_chamber_heater_is_refused(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "sim", farm.p1s, ca=farm.ca).exit_code == 0
    done = run(config, "temp", "chamber", "40")
    assert done.exit_code == 1 and "has no chamber heater" in done.output
    assert "ok" not in done.output


def test_insecure_warning_is_one_cli_line(farm: Farm, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert add(config, "sim", farm.p1s, "--insecure").exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")} | {"BAMBU_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "bambulab.cli.main", "status", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: not checking"), done.stderr


def test_discover_hint_names_the_chosen_port() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run(Path("/nonexistent/config.toml"), "discover", "--timeout", "0.3", "--listen-port", str(port),
               "--target", f"127.0.0.1:{port}")
    assert done.exit_code == 0, done.output
    assert f"UDP {port} open" in done.output and "2021" not in done.output


# ------------------------------------------------------------------ points 20 and 23: documented


def _variables_read() -> set[str]:
    import bambulab.cli

    found: set[str] = set()
    sources = [p for p in Path(bambulab.cli.__file__).parent.glob("*.py") if p.name != "sim.py"]
    for path in [*sources, ROOT / "src" / "bambulab" / "config.py"]:
        found |= set(re.findall(r"\b(BAMBU_[A-Z_]+|XDG_CONFIG_HOME)\b", path.read_text()))
    return found


def test_every_environment_variable_the_cli_reads_is_in_help_and_docs() -> None:
    read = _variables_read()
    assert {"BAMBU_CLOUD_MQTT_HOST", "BAMBU_CLOUD_MQTT_PORT", "BAMBU_CLOUD_CA_FILE"} <= read
    assert read <= set(ENVIRONMENT)
    helptext = CliRunner().invoke(cli, ["--help"]).output
    docs = (ROOT / "docs" / "lan.md").read_text()
    for name in ENVIRONMENT:
        assert name in helptext and f"`{name}`" in docs, name
    assert max(len(line) for line in helptext.splitlines()) <= 80


def test_docs_promise_only_what_is_there() -> None:
    cloud = (ROOT / "docs" / "cloud.md").read_text()
    assert "pip install httpx2" not in cloud
    for page in (ROOT / "docs").glob("*.md"):
        assert "shared/reference" not in page.read_text(), page.name
    # "Every command that returns data takes --json": check it, and the two named exceptions.
    lan = (ROOT / "docs" / "lan.md").read_text()
    assert "Every command takes `--json`" not in lan
    from bambulab.cli import cloud as cloud_cli
    from bambulab.cli import lan as lan_cli

    group = click.Group()
    lan_cli.register(group)
    cloud_cli.register(group)

    def leaves(command: click.Command, name: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                yield from leaves(child, f"{name} {sub}".strip())
        else:
            yield name, command

    without = {name for name, command in leaves(group, "") if "as_json" not in {p.name for p in command.params}}
    assert without == {"login", "logout"}
