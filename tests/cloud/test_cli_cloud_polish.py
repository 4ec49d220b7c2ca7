"""`bambu monitor --cloud` names rows as the app does; empty cloud listings say so (issue 12, 21-22)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from bambulab.cli.main import cli

if TYPE_CHECKING:
    from conftest import CloudEnv


def run(env: CloudEnv, tmp_path: Path, *args: str, **values: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("BAMBU_")}
    return CliRunner().invoke(cli, list(args), env={
        **clean, "BAMBU_CONFIG": str(tmp_path / "config.toml"), "BAMBU_CLOUD_API_URL": env.api_url,
        "BAMBU_CLOUD_WEB_URL": env.web_url, "BAMBU_CLOUD_TOKEN": env.token(), "COLUMNS": "80", **values,
    })


def test_monitor_cloud_rows_carry_the_app_names(cloud_env: CloudEnv, tmp_path: Path) -> None:
    ca = tmp_path / "cloud-ca.pem"
    ca.write_bytes(cloud_env.cloud.ca_pem)
    done = run(cloud_env, tmp_path, "monitor", "--cloud", "--duration", "2", "--ca-file", str(ca),
               "--broker-host", "127.0.0.1", "--broker-port", str(cloud_env.cloud.mqtt_port))
    assert done.exit_code == 0, done.output
    assert "Workshop" in done.output and "Studio" in done.output
    for printer in cloud_env.printers:
        assert printer.serial[:6] not in done.output  # names, not (cut) serials
    assert max(len(line) for line in done.output.splitlines()) <= 80


def test_empty_cloud_listings_say_so(cloud_env: CloudEnv, tmp_path: Path) -> None:
    done = run(cloud_env, tmp_path, "cloud", "projects")
    assert done.exit_code == 0 and done.output.strip() == "No cloud projects."
    tasks = run(cloud_env, tmp_path, "cloud", "tasks")
    assert tasks.exit_code == 0 and tasks.output.strip() == "No print tasks."
    quiet = run(cloud_env, tmp_path, "cloud", "projects", "--json")
    assert quiet.exit_code == 0 and quiet.output == ""
