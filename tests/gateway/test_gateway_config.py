"""The gateway's TOML config: where secrets may come from, and the messages when they may not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bambulab.cli.main import cli
from bambulab.cloud.auth import Token, save_token
from bambulab.config import ConfigError, PrinterProfile, save_profile
from bambulab.farm.config import hash_token, load_config

CODE = "87654321"


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_access_code_in_clear_needs_mode_0600(tmp_path: Path) -> None:
    text = f'[[printers]]\nserial = "01p00a000000001"\nhost = "10.0.0.5"\naccess_code = "{CODE}"\n'
    loose = _write(tmp_path / "farm.toml", text, 0o644)
    with pytest.raises(ConfigError) as info:
        load_config(loose, env={})
    message = str(info.value)
    assert f"chmod 600 {loose}" in message and CODE not in message
    os.chmod(loose, 0o600)
    cfg = load_config(loose, env={})
    printer = cfg.printers[0]
    assert printer.serial == "01P00A000000001" and printer.access_code == CODE and printer.name == printer.serial
    assert CODE not in repr(cfg) and CODE not in repr(printer)


def test_access_code_from_env_and_from_a_profile(tmp_path: Path) -> None:
    profiles = tmp_path / "config.toml"
    save_profile(PrinterProfile(name="workshop", host="10.0.0.7", serial="01S00C000000002", access_code="11223344"),
                 path=profiles)
    text = ('[gateway]\nport = 9000\ncontrol = true\n'
            '[[printers]]\nprofile = "workshop"\n'
            '[[printers]]\nserial = "01P00A000000003"\nhost = "10.0.0.8"\naccess_code_env = "P1S_CODE"\nname = "P1S"\n'
            '[[printers]]\nserial = "01P00A000000004"\nhost = "10.0.0.9"\n'
            '[history]\npath = "farm.db"\n')
    farm = _write(tmp_path / "farm.toml", text, 0o644)  # no secret in the file: any mode is fine
    env = {"P1S_CODE": CODE, "BAMBU_ACCESS_CODE_01P00A000000004": "99990000"}
    cfg = load_config(farm, env=env, profiles_path=profiles)
    assert cfg.port == 9000 and cfg.control is True
    assert [p.access_code for p in cfg.printers] == ["11223344", CODE, "99990000"]
    assert cfg.printers[0].host == "10.0.0.7" and cfg.printers[0].name == "workshop"
    assert cfg.sections == {"history": {"path": "farm.db"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[printers]]\nserial = "01P00A000000009"\nhost = "h"\n', "BAMBU_ACCESS_CODE_01P00A000000009"),
        ('[[printers]]\nserial = "S"\nhost = "h"\naccess_code_env = "NOPE"\n', "NOPE is not set"),
        ('[[printers]]\nhost = "h"\naccess_code_env = "X"\n', "a serial"),
        ('[[printers]]\nprofile = "missing"\n', "no printer profile named 'missing'"),
        ('[gateway]\nhots = "x"\n', "unknown setting(s) hots"),
        ('[gateway]\nport = "80"\n', "whole number"),
        ('[[tokens]]\nsha256 = "abc"\n', "64 hex digits"),
        ('[[tokens]]\nlabel = "x"\n', "sha256"),
        ("[[printers]\n", "cannot read it"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path / "farm.toml", text, 0o600)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"X": "1"}, profiles_path=tmp_path / "none.toml")
    assert expected in str(info.value)


def test_duplicate_printers_and_missing_file(tmp_path: Path) -> None:
    text = '[[printers]]\nserial = "A"\nhost = "h"\n[[printers]]\nserial = "a"\nhost = "h2"\n'
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(_write(tmp_path / "f.toml", text, 0o600), env={"BAMBU_ACCESS_CODE_A": CODE})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_tokens_are_kept_hashed_and_compared(tmp_path: Path) -> None:
    secret = "tok-" + "z" * 40
    text = (f'[[tokens]]\nlabel = "ha"\nsha256 = "{hash_token(secret)}"\n'
            '[[tokens]]\nlabel = "ci"\ntoken_env = "CI_TOKEN"\n')
    cfg = load_config(_write(tmp_path / "f.toml", text, 0o644), env={"CI_TOKEN": "ci-secret-value"})
    assert [t.label for t in cfg.tokens] == ["ha", "ci"]
    found = cfg.find_token(secret)
    assert found is not None and found.label == "ha"
    ci = cfg.find_token("ci-secret-value")
    assert ci is not None and ci.label == "ci"
    assert cfg.find_token("nope") is None and cfg.find_token("") is None
    assert secret not in repr(cfg.tokens) and hash_token(secret) not in repr(cfg.tokens)
    clear = _write(tmp_path / "g.toml", '[[tokens]]\ntoken = "in-clear-token"\n', 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(clear, env={})


def test_cloud_tokens_from_the_token_file_or_env(tmp_path: Path) -> None:
    token_file = tmp_path / "token.json"
    save_token(token_file, Token("access-abc-123", uid=42, region="global"))
    text = (f'[[clouds]]\nname = "office"\ntoken_file = "{token_file}"\ndevices = ["01p00a000000001"]\n'
            '[[clouds]]\nname = "home"\ntoken_env = "HOME_TOKEN"\n')
    cfg = load_config(_write(tmp_path / "f.toml", text, 0o644), env={"HOME_TOKEN": "home-token-xyz"})
    office, home = cfg.clouds
    assert office.token.access_token == "access-abc-123" and office.devices == ["01P00A000000001"]
    assert home.token == "home-token-xyz" and home.devices is None
    assert "access-abc-123" not in repr(cfg) and "home-token-xyz" not in repr(cfg)
    missing = _write(tmp_path / "m.toml", f'[[clouds]]\ntoken_file = "{tmp_path / "none.json"}"\n', 0o644)
    with pytest.raises(ConfigError, match="bambu login"):
        load_config(missing, env={})
    clear = _write(tmp_path / "c.toml", '[[clouds]]\ntoken = "cloud-in-clear"\n', 0o644)
    with pytest.raises(ConfigError) as info:
        load_config(clear, env={})
    assert "chmod 600" in str(info.value) and "cloud-in-clear" not in str(info.value)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_refuses_a_loose_config_and_says_how_to_fix_it(tmp_path: Path) -> None:
    loose = _write(tmp_path / "farm.toml", f'[[printers]]\nserial = "S"\nhost = "h"\naccess_code = "{CODE}"\n',
                   0o644)
    result = CliRunner().invoke(cli, ["gateway", "--config", str(loose)])
    assert result.exit_code == 1
    assert f"chmod 600 {loose}" in result.output and CODE not in result.output


def test_cli_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    empty = _write(tmp_path / "farm.toml", "[gateway]\n", 0o644)
    result = CliRunner().invoke(cli, ["gateway", "--config", str(empty), "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code == 1 and "refusing to listen on 0.0.0.0" in result.output
    assert "[[tokens]]" in result.output


def test_cli_needs_a_config_or_demo_and_makes_tokens() -> None:
    result = CliRunner().invoke(cli, ["gateway"])
    assert result.exit_code == 2 and "--demo" in result.output
    made = CliRunner().invoke(cli, ["gateway", "--new-token"])
    assert made.exit_code == 0
    token = made.output.split("stored anywhere): ", 1)[1].split()[0]
    assert f'sha256 = "{hash_token(token)}"' in made.output
    hashed = CliRunner().invoke(cli, ["gateway", "--hash-token"], input="my-token\n")
    assert hashed.exit_code == 0 and hash_token("my-token") in hashed.output and "my-token" not in hashed.output


def test_pre_encoded_summaries_equal_the_plain_json() -> None:
    import json
    import random

    from bambulab.farm.summary import SummaryCache, build_summary, render_summary, summary_fragments
    from bambulab.protocol.models import model_by_code
    from bambulab.protocol.state import merge
    from bambulab.protocol.views import PrinterStatus
    from bambulab.sim import payloads

    for code in ("P1S", "X1C", "H2D", "A1"):
        model = model_by_code(code)
        report = payloads.build_report(model, payloads.default_dynamic(model, rng=random.Random(2)), serial="S")
        state = merge({}, {"print": {**report, "command": "push_status", "msg": 0}})
        cache = SummaryCache()
        for step in range(3):
            state = merge(state, {"print": {"nozzle_temper": 100.5 + step, "mc_percent": step, "hms": [
                {"attr": 0x03000100, "code": 0x00010001}] if step == 2 else []}})
            status = PrinterStatus(state, model)
            summary = cache.build(status, serial="S", name="n\u00e9", source="lan", model=model)
            assert summary == build_summary(status, serial="S", name="n\u00e9", source="lan", model=model)
            live = {**summary, "online": True, "last_seen": "2026-01-01T00:00:00Z", "age_seconds": 0.3}
            encoded = render_summary(summary_fragments(summary), True, 1767225600.0, 0.3)
            assert json.loads(encoded) == live
            assert list(json.loads(encoded)) == list(live)


def test_a_cancelled_print_is_told_from_a_failed_one() -> None:
    from bambulab.farm.summary import CANCELLED_ERROR, build_summary, job_ended
    from bambulab.protocol.views import PrinterStatus

    def status(state: str, error: int = 0) -> PrinterStatus:
        return PrinterStatus({"print": {"gcode_state": state, "print_error": error}})

    assert job_ended(status("FINISH"), False) == "finished"
    assert job_ended(status("FAILED", CANCELLED_ERROR), False) == "cancelled"  # while the code lasts
    assert job_ended(status("FAILED"), True) == "cancelled"  # after it faded: the caller remembers
    assert job_ended(status("FAILED"), False) == "failed"
    assert job_ended(status("FAILED", 0x07008011), False) == "failed"
    assert job_ended(status("RUNNING"), True) is None and job_ended(PrinterStatus({}), False) is None
    summary = build_summary(status("FAILED"), serial="S", name="n", source="lan", cancelled=True)
    assert summary["state"] == "FAILED" and summary["ended"] == "cancelled"


def test_raw_state_is_redacted_only_when_it_holds_a_secret() -> None:
    import json

    from bambulab.servers.gateway._http import redacted_json

    plain = {"print": {"mc_percent": 5, "ipcam": {"rtsp_url": "rtsps://10.0.0.5/streaming/live/1"}}}
    assert json.loads(redacted_json(plain, [CODE])) == plain
    leaky = {"print": {"note": f"code={CODE}", "nested": [{"dev_access_code": "x"}], "Password": "p"}}
    out = redacted_json(leaky, [CODE])
    assert CODE.encode() not in out and b'"x"' not in out and b'"p"' not in out
    assert json.loads(out)["print"]["note"] == "code=***"
