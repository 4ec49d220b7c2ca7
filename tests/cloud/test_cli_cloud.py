"""`bambu login|logout|cloud ...` against the fake cloud, configured through the environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from bambulab.cli.main import cli
from bambulab.cloud.auth import load_token
from bambulab.sim.demo import demo_project

if TYPE_CHECKING:
    from conftest import CloudEnv

EMAIL = "alice@example.com"  # the cloud_env fixture's account
PASSWORD = "correct horse battery"
ENV_KEYS = ("BAMBU_EMAIL", "BAMBU_PASSWORD", "BAMBU_CODE", "BAMBU_CLOUD_TOKEN", "BAMBU_TOKEN_FILE",
            "BAMBU_CLOUD_REGION", "BAMBU_DEBUG")


def environment(env: CloudEnv, config_dir: Path, **values: str) -> dict[str, str | None]:
    out: dict[str, str | None] = dict.fromkeys(ENV_KEYS)
    out.update({
        "BAMBU_CONFIG": str(config_dir / "config.toml"),
        "BAMBU_CLOUD_API_URL": env.api_url,
        "BAMBU_CLOUD_WEB_URL": env.web_url,
        **values,
    })
    return out


def run(env: CloudEnv, config_dir: Path, *args: str, input: str | None = None, **values: str) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=environment(env, config_dir, **values))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def logged_in(env: CloudEnv, config_dir: Path) -> Path:
    result = run(env, config_dir, "login", BAMBU_EMAIL=EMAIL, BAMBU_PASSWORD=PASSWORD)
    assert result.exit_code == 0, result.output
    return config_dir / "token.json"


def test_login_from_the_environment_saves_a_private_token(cloud_env: CloudEnv, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = logged_in(cloud_env, tmp_path)
    finally:
        os.umask(old)
    token = load_token(path)
    assert token is not None and token.uid == cloud_env.account.uid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cloud_env.do(lambda: cloud_env.cloud.token_account(token.access_token)) == cloud_env.account
    again = run(cloud_env, tmp_path, "login", BAMBU_EMAIL=EMAIL, BAMBU_PASSWORD=PASSWORD)
    assert again.exit_code == 0
    for output in (again.output, run(cloud_env, tmp_path, "cloud", "devices").output):
        assert token.access_token not in output and PASSWORD not in output
    assert f"uid {cloud_env.account.uid}" in again.output


def test_interactive_login_with_an_emailed_code(cloud_env: CloudEnv, tmp_path: Path) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode", fixed_code="135790")
    result = run(cloud_env, tmp_path, "login", input=f"bob@example.com\n{PASSWORD}\n135790\n")
    assert result.exit_code == 0, result.output
    assert "E-mail" in result.output and "Password" in result.output and "Code sent to bob@example.com" in result.output
    assert PASSWORD not in result.output  # the password prompt does not echo
    token = load_token(tmp_path / "token.json")
    assert token is not None and token.access_token not in result.output


def test_non_interactive_code_login_takes_two_runs(cloud_env: CloudEnv, tmp_path: Path) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    first = run(cloud_env, tmp_path, "login", BAMBU_EMAIL="bob@example.com", BAMBU_PASSWORD=PASSWORD)
    assert first.exit_code == 1
    assert first.output.strip().count("\n") == 0 and "BAMBU_CODE" in first.output  # one clean line
    code = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
    assert code is not None
    second = run(cloud_env, tmp_path, "login", BAMBU_EMAIL="bob@example.com", BAMBU_PASSWORD=PASSWORD,
                 BAMBU_CODE=code)
    assert second.exit_code == 0, second.output
    assert code not in second.output
    # Had the second run emailed a new code, the old one in BAMBU_CODE would have been refused; it was
    # accepted and used up.
    assert cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com")) is None
    assert load_token(tmp_path / "token.json") is not None


def test_login_with_a_token_from_the_environment(cloud_env: CloudEnv, tmp_path: Path) -> None:
    token = cloud_env.token()
    result = run(cloud_env, tmp_path, "login", BAMBU_CLOUD_TOKEN=token)
    assert result.exit_code == 0, result.output
    assert token not in result.output
    saved = load_token(tmp_path / "token.json")
    assert saved is not None and saved.access_token == token and saved.uid == cloud_env.account.uid
    bad = run(cloud_env, tmp_path, "login", BAMBU_CLOUD_TOKEN="not-a-valid-token-xxxxxxxxxxxxxx")
    assert bad.exit_code == 1 and "rejected" in bad.output and "not-a-valid-token" not in bad.output


def test_wrong_password_is_one_clean_line(cloud_env: CloudEnv, tmp_path: Path) -> None:
    result = run(cloud_env, tmp_path, "login", BAMBU_EMAIL=EMAIL, BAMBU_PASSWORD="wrong-password-123")
    assert result.exit_code == 1
    assert result.output.startswith("error: login refused") and result.output.count("\n") == 1
    assert "wrong-password-123" not in result.output and not (tmp_path / "token.json").exists()


def test_cloud_devices_json_hides_access_codes_unless_asked(cloud_env: CloudEnv, tmp_path: Path) -> None:
    logged_in(cloud_env, tmp_path)
    cloud_env.switches(access_code_newline=True)
    codes = {p.serial: p.access_code for p in cloud_env.printers}
    plain = run(cloud_env, tmp_path, "cloud", "devices", "--json")
    assert plain.exit_code == 0, plain.output
    rows = json_lines(plain.output)
    assert {r["dev_id"] for r in rows} == set(codes) and all("access_code" not in r for r in rows)
    for code in codes.values():
        assert code not in plain.output
    shown = json_lines(run(cloud_env, tmp_path, "cloud", "devices", "--json", "--show-access-codes").output)
    assert {r["dev_id"]: r["access_code"] for r in shown} == codes  # stripped of the newline
    human = run(cloud_env, tmp_path, "cloud", "devices")
    assert "Workshop" in human.output and "Studio" in human.output
    for code in codes.values():
        assert code not in human.output


def test_cloud_status_tasks_projects_firmware(cloud_env: CloudEnv, tmp_path: Path) -> None:
    logged_in(cloud_env, tmp_path)
    p1s, x1c = cloud_env.printers
    cloud_env.do(lambda: p1s.put_file("cube.gcode.3mf", demo_project(minutes=30, layers=10)))
    assert cloud_env.call(p1s.start_print("cube.gcode.3mf"))["print"]["result"] == "success"
    cloud_env.do(lambda: cloud_env.cloud.add_project(cloud_env.account, "Vase"))

    status = json_lines(run(cloud_env, tmp_path, "cloud", "status", "--json").output)
    by_serial = {s["dev_id"]: s for s in status}
    assert by_serial[p1s.serial]["task_name"] == "cube" and by_serial[x1c.serial]["task_id"] is None
    assert all("access_code" not in s for s in status)

    tasks = json_lines(run(cloud_env, tmp_path, "cloud", "tasks", "--json", "--limit", "5").output)
    assert [t["title"] for t in tasks] == ["cube"] and tasks[0]["status"] == 1
    assert run(cloud_env, tmp_path, "cloud", "tasks", "--device", x1c.serial, "--json").output == ""

    projects = json_lines(run(cloud_env, tmp_path, "cloud", "projects", "--json").output)
    assert [p["name"] for p in projects] == ["Vase"]

    firmware = json_lines(run(cloud_env, tmp_path, "cloud", "firmware", "--json").output)
    assert {f["dev_id"]: f["version"] for f in firmware} == {p.serial: p.dynamic.firmware for p in (p1s, x1c)}
    one = run(cloud_env, tmp_path, "cloud", "firmware", x1c.serial)
    assert one.exit_code == 0 and x1c.serial in one.output and "installed" in one.output


def test_cloud_upload(cloud_env: CloudEnv, tmp_path: Path) -> None:
    logged_in(cloud_env, tmp_path)
    source = tmp_path / "gear.3mf"
    source.write_bytes(b"gear" * 5000)
    result = run(cloud_env, tmp_path, "cloud", "upload", str(source), "--json")
    assert result.exit_code == 0, result.output
    (row,) = json_lines(result.output)
    assert row["filename"] == "gear.3mf" and row["size"] == 20000 and "url" not in row
    stored = cloud_env.do(lambda: cloud_env.cloud.uploads(cloud_env.account))
    assert stored[0].path.read_bytes() == source.read_bytes() and stored[0].size_record == 20000


def test_cloud_errors_are_one_clean_line(cloud_env: CloudEnv, tmp_path: Path) -> None:
    missing = run(cloud_env, tmp_path, "cloud", "devices")
    assert missing.exit_code == 1 and "bambu login" in missing.output and missing.output.count("\n") == 1
    path = logged_in(cloud_env, tmp_path)
    cloud_env.switches(cloudflare_block=True)
    blocked = run(cloud_env, tmp_path, "cloud", "projects")
    assert blocked.exit_code == 1 and blocked.output.count("\n") == 1
    assert "Cloudflare" in blocked.output and "<html" not in blocked.output.lower()
    cloud_env.switches(cloudflare_block=False)
    cloud_env.do(cloud_env.cloud.expire_tokens)
    expired = run(cloud_env, tmp_path, "cloud", "devices")
    assert expired.exit_code == 1 and "log in again" in expired.output
    token = load_token(path)
    assert token is not None and token.access_token not in expired.output


def test_logout_removes_the_token(cloud_env: CloudEnv, tmp_path: Path) -> None:
    path = logged_in(cloud_env, tmp_path)
    result = run(cloud_env, tmp_path, "logout")
    assert result.exit_code == 0 and not path.exists()
    assert "Not logged in" in run(cloud_env, tmp_path, "logout").output


def test_login_in_a_real_process_reading_stdin(cloud_env: CloudEnv, tmp_path: Path) -> None:
    """The installed command, no terminal: e-mail and password from stdin, the rest from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update({k: v for k, v in environment(cloud_env, tmp_path).items() if v is not None})
    done = subprocess.run(
        [sys.executable, "-m", "bambulab.cli.main", "login", "--token-file", str(tmp_path / "t.json")],
        input=f"{EMAIL}\n{PASSWORD}\n", capture_output=True, text=True, timeout=30, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    token = load_token(tmp_path / "t.json")
    assert token is not None and token.uid == cloud_env.account.uid
    assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o600
    for secret in (PASSWORD, token.access_token):
        assert secret not in done.stdout and secret not in done.stderr


@pytest.mark.parametrize("region", ["global", "china"])
def test_region_option_is_accepted(cloud_env: CloudEnv, tmp_path: Path, region: str) -> None:
    result = run(cloud_env, tmp_path, "login", "--region", region, BAMBU_EMAIL=EMAIL, BAMBU_PASSWORD=PASSWORD)
    assert result.exit_code == 0, result.output
    token = load_token(tmp_path / "token.json")
    assert token is not None and token.region == region
