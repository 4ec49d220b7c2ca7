"""The older command-line tools, run in this process against the fake cloud and a virtual printer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from compattools import EMAIL, PASSWORD, CloudThread

from bambulab.cloud.auth import load_token
from bambulab.compat import cli


@pytest.fixture
def env(cloud: CloudThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: HOME and the config in tmp_path, the API pointed at the fake cloud."""
    for key in ("BAMBU_CLOUD_TOKEN", "BAMBU_TOKEN_FILE", "BAMBU_ACCESS_CODE", "BAMBU_PASSWORD", "BAMBU_EMAIL",
                "BAMBU_CODE", "BAMBU_PRINTER", "BAMBU_CLOUD_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BAMBU_CONFIG", str(tmp_path / "config" / "config.toml"))
    monkeypatch.setenv("BAMBU_CLOUD_API_URL", cloud.api_url)
    return tmp_path


def test_query_with_the_token_as_an_argument_warns_once(cloud: CloudThread, env: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    token = cloud.token()
    assert cli.query([token, "--devices", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["dev_id"] for r in rows] == [p.serial for p in cloud.printers]
    assert len(err.strip().splitlines()) == 1 and "visible to other users" in err and "bambu-login" in err
    assert token not in out + err
    assert cli.query([token, "--status"]) == 0
    assert "P1S-1" in capsys.readouterr().out
    assert "BAMBU_CLOUD_TOKEN" not in os.environ  # handed over in-process only, and taken back


def test_login_tool_saves_bambu_token_then_query_and_checks_use_it(
    cloud: CloudThread, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.login(["--username", EMAIL, "--password", PASSWORD]) == 0
    out, err = capsys.readouterr()
    assert "visible to other users" in err and PASSWORD not in out + err
    path = env / ".bambu_token"
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert stored["token"] == stored["access_token"] and stored["region"] == "global"
    token = load_token(path)
    assert token is not None and token.access_token not in out
    assert cli.login(["--verify-only"]) == 0 and "is valid" in capsys.readouterr().out
    assert cli.login(["--test"]) == 0
    assert f"uid {cloud.account.uid}" in capsys.readouterr().out
    assert cli.query(["--projects"]) == 0  # no token argument: ~/.bambu_token, no warning
    assert capsys.readouterr().err == ""
    path.write_text(json.dumps({"region": "global", "token": "rejected-token"}))
    assert cli.login(["--verify-only"]) == 1 and "rejected" in capsys.readouterr().err
    path.unlink()
    assert cli.login(["--test"]) == 1 and "bambu-login" in capsys.readouterr().err


def test_monitor_older_positional_form(cloud: CloudThread, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = env / "cloud-ca.pem"
    ca.write_bytes(cloud.cloud.ca_pem)
    serial = cloud.printers[0].serial
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAMBU_CLOUD_MQTT_HOST", "127.0.0.1")
        mp.setenv("BAMBU_CLOUD_MQTT_PORT", str(cloud.cloud.mqtt_port))
        mp.setenv("BAMBU_CLOUD_CA_FILE", str(ca))
        token = cloud.token()
        assert cli.monitor([str(cloud.account.uid), token, serial, "--json", "--duration", "1.5"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and {r["serial"] for r in rows} == {serial} and rows[-1]["job"]["state"] == "IDLE"
    assert "visible to other users" in err and token not in out + err
    with pytest.raises(SystemExit):
        cli.monitor(["a", "b"])


def test_camera_looks_up_the_access_code_with_the_token(
    cloud: CloudThread, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printer = cloud.printers[0]
    ca = env / "sim-ca.pem"
    ca.write_bytes(cloud.sim.ca.ca_pem)
    out_file = env / "shot.jpg"
    base = ["--ip", printer.host, "--port", str(printer.mqtt.port), "--camera-port", str(printer.camera.port),
            "--ca-file", str(ca), "--output", str(out_file)]
    token = cloud.token()
    assert cli.camera([token, "--device", printer.serial, *base]) == 0
    assert out_file.read_bytes()[:2] == b"\xff\xd8"
    out, err = capsys.readouterr()
    assert printer.access_code not in out + err and token not in out + err
    out_file.unlink()
    assert cli.camera(["--serial", printer.serial, "--code", printer.access_code, *base]) == 0
    assert out_file.read_bytes()[:2] == b"\xff\xd8"
    assert "access code on the command line" in capsys.readouterr().err
    assert cli.camera([token, *base]) == 1  # two printers on the account: which one?
    assert "--device" in capsys.readouterr().err


def test_a_token_starting_with_a_dash_is_a_value_and_errors_never_echo_it(
    cloud: CloudThread, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = cloud.token()
    seen: list[str] = []

    def fake_bambu(args: list[str], env_vars: dict[str, str] | None = None) -> int:
        seen.append((env_vars or {}).get("BAMBU_CLOUD_TOKEN", ""))
        return 0

    monkeypatch.setattr(cli, "_bambu", fake_bambu)
    assert cli.query(["-" + token, "--devices"]) == 0  # URL-safe base64 may start with "-"
    assert seen == ["-" + token]
    for argv in (["-" + token, "-" + token], [token, token]):
        with pytest.raises(SystemExit):
            cli.query(argv)
        err = capsys.readouterr().err
        assert "unrecognized arguments" in err and token not in err
