"""`bambu sim --write-profiles --cloud`: the CLI's own commands work against it with no hand editing.

``--write-profiles`` saves one profile per virtual printer into the (0600) config file, so
``bambu status --printer sim-1`` works at once; ``--cloud`` runs the fake cloud and prints (and
writes, with ``--cloud-env``) the environment a cloud client needs.
"""

from __future__ import annotations

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

CLI = [sys.executable, "-m", "bambulab.cli.main"]


def _clean_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAMBU_")}
    return {**env, "PYTHONUNBUFFERED": "1", "BAMBU_CONFIG": str(config)}


@pytest.fixture(scope="module")
def sim_for_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("clients")
    config = home / "bambulab" / "config.toml"
    env = _clean_env(config)
    proc = subprocess.Popen(
        [*CLI, "sim", "--printers", "2", "--models", "P1S,X1C", "--json", "--duration", "90",
         "--write-profiles", "--cloud", "--cloud-env", str(home / "cloud.env")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    watchdog = threading.Timer(40, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        lines = []
        while len(lines) < 3:
            line = proc.stdout.readline()
            assert line, "bambu sim exited early"
            lines.append(json.loads(line))
        watchdog.cancel()
        yield {"printers": lines[:2], "cloud": lines[2]["cloud"], "config": config, "env": env, "home": home}
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=15)


def _bambu(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_profiles_written_and_status_works_at_once(sim_for_clients: dict[str, Any]) -> None:
    printers, config = sim_for_clients["printers"], sim_for_clients["config"]
    assert [p["profile"] for p in printers] == ["sim-1", "sim-2"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert printers[0]["ca_file"] in text and str(printers[1]["ftps_port"]) in text
    for p in printers:
        done = _bambu(sim_for_clients["env"], "status", "--printer", p["profile"], "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout.splitlines()[0])
        assert status["model"] == p["model"]  # from the printer's own get_version reply
        assert status["job"]["layer"] == 0 and status["job"]["name"] is None  # idle
        assert p["access_code"] not in done.stdout + done.stderr


def test_cloud_environment_drives_the_cloud_commands(sim_for_clients: dict[str, Any]) -> None:
    cloud = sim_for_clients["cloud"]
    env = cloud["env"]
    assert set(env) >= {"BAMBU_CLOUD_API_URL", "BAMBU_CLOUD_TOKEN", "BAMBU_CLOUD_MQTT_HOST",
                        "BAMBU_CLOUD_MQTT_PORT", "BAMBU_CLOUD_CA_FILE"}
    assert env["BAMBU_CLOUD_CA_FILE"] == sim_for_clients["printers"][0]["ca_file"]
    env_file = sim_for_clients["home"] / "cloud.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"export BAMBU_CLOUD_MQTT_PORT={env['BAMBU_CLOUD_MQTT_PORT']}" in env_file.read_text().splitlines()
    client_env = {**sim_for_clients["env"], **env, "BAMBU_TOKEN_FILE": str(sim_for_clients["home"] / "token.json")}
    devices = _bambu(client_env, "cloud", "devices", "--json")
    assert devices.returncode == 0, devices.stderr
    serials = {json.loads(line)["dev_id"] for line in devices.stdout.splitlines()}
    assert serials == {p["serial"] for p in sim_for_clients["printers"]}
    monitor = _bambu(client_env, "monitor", "--cloud", "--json", "--duration", "4")
    assert monitor.returncode == 0, monitor.stderr
    assert sim_for_clients["printers"][1]["serial"] in monitor.stdout  # live reports over the cloud broker
