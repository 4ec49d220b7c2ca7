"""``bambu proxy tokens ...`` and ``bambu proxy strict|full`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from click.testing import CliRunner
from proxytools import Stack

from bambulab.cli.main import cli
from bambulab.cloud.auth import Token, save_token

REAL = "real-token-from-the-login-0123456789abcdef"


def run(tmp_path: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    env = {"BAMBU_CONFIG": str(tmp_path / "config.toml"), "BAMBU_PROXY_TOKENS": str(tmp_path / "proxy.json")}
    result = CliRunner().invoke(cli, list(args), input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_tokens_add_list_revoke_import(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "proxy", "tokens", "add", "--name", "dash")
    assert code != 0 and "bambu login" in err
    save_token(tmp_path / "token.json", Token(REAL))
    code, out, _ = run(tmp_path, "proxy", "tokens", "add", "--name", "dash", "--expires", "30d", "--json")
    assert code == 0, out
    made = json.loads(out)
    assert made["scope"] == "strict" and made["expires"] > time.time() + 29 * 86400 and len(made["token"]) >= 40
    code, out, _ = run(tmp_path, "proxy", "tokens", "add", "--name", "ci", "--scope", "full",
                       "--real-token-stdin", input="other-real-token-xyz\n")
    assert code == 0 and "shown only this once" in out
    path = tmp_path / "proxy.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and made["token"] not in path.read_text()
    code, out, _ = run(tmp_path, "proxy", "tokens", "list")
    assert code == 0 and "dash" in out and "ci" in out and "full" in out
    assert made["token"] not in out and REAL not in out
    code, out, _ = run(tmp_path, "proxy", "tokens", "list", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["dash", "ci"]
    assert run(tmp_path, "proxy", "tokens", "revoke", "ci")[0] == 0
    code, _, err = run(tmp_path, "proxy", "tokens", "revoke", "ci")
    assert code != 0 and "no token named" in err
    old = tmp_path / "proxy_tokens.json"
    old.write_text(json.dumps({"legacy-custom-1": "legacy-real-1", "short": "legacy-real-2"}))
    code, out, _ = run(tmp_path, "proxy", "tokens", "import", str(old))
    assert code == 0 and "imported 2" in out
    assert "legacy-custom-1" not in path.read_text() and "legacy-real-1" in path.read_text()
    code, _, err = run(tmp_path, "proxy", "strict", "--host", "192.0.2.1")
    assert code != 0 and "--behind-tls-proxy" in err
    code, _, err = run(tmp_path, "proxy", "strict", "--cors-origin", "dash.example")
    assert code == 2 and "a CORS origin is a scheme and host" in err


def test_serve_a_full_proxy_in_a_subprocess(stack: Stack, tmp_path: Path) -> None:
    from bambulab.cloud.tokens import TokenManager

    tokens = TokenManager(tmp_path / "tokens.json")
    custom = tokens.add(stack.alice_real, name="dash", scope="full")
    log = tmp_path / "access.log"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "BAMBU_CONFIG": str(tmp_path / "config.toml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bambulab", "proxy", "full", "--port", "0", "--upstream", stack.cloud.api_url,
         "--tokens", str(tmp_path / "tokens.json"), "--access-log", str(log), "--loop", "uvloop"],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "bambu proxy (full) on http://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        with httpx2.Client(timeout=20) as http:
            r = http.get(url + "/v1/iot-service/api/user/bind", headers={"Authorization": f"Bearer {custom}"})
        assert r.status_code == 200 and len(r.json()["devices"]) == 2
        assert custom not in " ".join(proc.args)  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        if proc.stderr is not None:
            proc.stderr.close()
    entries = [json.loads(x) for x in log.read_text().splitlines()]
    assert entries and entries[0]["status"] == 200 and custom not in log.read_text()
