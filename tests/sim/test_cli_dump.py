"""`bambu dump` against a virtual printer: a redacted fixture file, as a contributor would make one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from simtools import SimThread

from bambulab.cli.main import cli


def test_dump_writes_a_redacted_fixture(simthread: SimThread, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BAMBU_HOST", "BAMBU_SERIAL", "BAMBU_ACCESS_CODE", "BAMBU_PRINTER", "BAMBU_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BAMBU_CONFIG", str(tmp_path / "none.toml"))
    printer = simthread.add(model="X1C", quirks={"push_interval": 0.3})
    ca = simthread.sim.write_ca(tmp_path / "ca.pem")
    args = ["dump", "--host", printer.host, "--serial", printer.serial, "--port", str(printer.mqtt.port),
            "--ca-file", str(ca), "--access-code-stdin", "-o", str(tmp_path / "fixtures"),
            "--deltas", "2", "--seconds", "15", "--json"]
    result = CliRunner().invoke(cli, args, input=printer.access_code + "\n")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    path = Path(summary["path"])
    assert path.name == f"X1-Carbon_{printer.dynamic.firmware}.json"
    text = path.read_text()
    assert printer.serial not in text and printer.access_code not in text and "127.0.0.1" not in text
    assert printer.access_code not in result.output
    doc = json.loads(text)
    assert doc["model"] == "X1 Carbon" and doc["source"] == "real printer"
    assert doc["pushall"]["print"]["msg"] == 0 and len(doc["deltas"]) == 2
    assert {m["sn"] for m in doc["get_version"]["info"]["module"] if m.get("sn")} == {"00M000000000000"}

    again = CliRunner().invoke(cli, args, input=printer.access_code + "\n")
    assert again.exit_code == 1 and "exists (--force replaces it)" in again.output


def test_dump_wrong_access_code_is_one_clear_line(simthread: SimThread, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBU_CONFIG", str(tmp_path / "none.toml"))
    printer = simthread.add(model="P1S")
    ca = simthread.sim.write_ca(tmp_path / "ca.pem")
    result = CliRunner().invoke(cli, [
        "dump", "--host", printer.host, "--serial", printer.serial, "--port", str(printer.mqtt.port),
        "--ca-file", str(ca), "--access-code-stdin", "-o", str(tmp_path)], input="00000000\n")
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not list(tmp_path.glob("*.json"))
