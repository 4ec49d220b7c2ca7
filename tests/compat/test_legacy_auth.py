"""The older ``BambuAuthenticator`` calls, the ``~/.bambu_token`` file, and async code callbacks."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from compattools import EMAIL, PASSWORD, CloudThread

import bambulab
from bambulab import BambuAuthenticator, BambuAuthError
from bambulab.cloud import BambuAuthenticator as ModernAuthenticator
from bambulab.cloud.auth import CodeRequest, load_token
from bambulab.exceptions import AuthenticationError, BambuError, UnsupportedError


def _code_account(cloud: CloudThread, email: str) -> None:
    cloud.do(lambda: cloud.cloud.add_account(email, PASSWORD, login_mode="verifyCode"))


def _last_code(cloud: CloudThread, email: str) -> str | None:
    return cloud.do(lambda: cloud.cloud.last_code(email))


def test_older_import_paths() -> None:
    assert bambulab.BambuAuthenticator is BambuAuthenticator and issubclass(BambuAuthenticator, ModernAuthenticator)
    assert BambuAuthError is AuthenticationError and issubclass(BambuAuthError, BambuError)


def test_default_token_file_is_home_bambu_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with BambuAuthenticator() as auth:
        assert auth.token_file == tmp_path / ".bambu_token" and auth.region == "global"
        assert auth.load_token() is None
    with BambuAuthenticator(region="china", token_file=tmp_path / "t.json") as auth:
        assert auth.token_file == tmp_path / "t.json" and "bambulab.cn" in auth.api_url


def test_login_returns_a_string_and_saves_the_older_shape(cloud: CloudThread, tmp_path: Path) -> None:
    email = "code@example.com"
    _code_account(cloud, email)
    path = tmp_path / ".bambu_token"
    old_umask = os.umask(0)
    try:
        with BambuAuthenticator(token_file=path, api_url=cloud.api_url) as auth:
            token = auth.login(email, PASSWORD, lambda: _last_code(cloud, email) or "")  # older no-argument callback
            assert isinstance(token, str) and auth.verify_token(token)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["token"] == token and stored["region"] == "global"  # the older package's keys
    modern = load_token(path)  # ... and the modern loader reads the same file
    assert modern is not None and modern.access_token == token
    assert token not in repr(auth)


def test_a_file_the_older_package_wrote_is_read(cloud: CloudThread, tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"region": "global", "token": cloud.token()}))
    with BambuAuthenticator(token_file=path, api_url=cloud.api_url) as auth:
        saved = auth.load_token()
        assert saved is not None and auth.verify_token(saved)
        assert auth.get_or_create_token() == saved  # valid: no credentials needed
    modern = load_token(path)
    assert modern is not None and modern.access_token == saved


def test_get_or_create_token_older_calls(cloud: CloudThread, tmp_path: Path) -> None:
    path = tmp_path / "tok"
    with BambuAuthenticator(token_file=path, api_url=cloud.api_url) as auth:
        with pytest.raises(BambuAuthError, match="username and password"):
            auth.get_or_create_token()
        first = auth.get_or_create_token(username=EMAIL, password=PASSWORD)
        assert auth.load_token() == first
        assert auth.get_or_create_token(EMAIL, PASSWORD) == first  # positional; the saved token is reused
        fresh = auth.get_or_create_token(EMAIL, PASSWORD, None, True)  # force_new
        assert fresh != first and auth.load_token() == fresh
        auth.save_token("not-a-valid-token")
        assert not auth.verify_token("not-a-valid-token")
        assert auth.get_or_create_token(EMAIL, PASSWORD) not in ("not-a-valid-token", fresh)  # rejected: new login
        with pytest.raises(BambuAuthError):
            auth.login(EMAIL, "wrong password")


def test_prompts_only_on_a_terminal(cloud: CloudThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    email = "prompt@example.com"
    _code_account(cloud, email)
    with BambuAuthenticator(token_file=tmp_path / "t", api_url=cloud.api_url) as auth:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        with pytest.raises(AuthenticationError, match=r"not a terminal.*code_callback"):
            auth.login(email, PASSWORD)

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        prompts: list[str] = []

        def fake_input(prompt: str) -> str:
            prompts.append(prompt)
            return (_last_code(cloud, email) or "") + "\n"

        monkeypatch.setattr(sys, "stdin", Terminal(""))
        monkeypatch.setattr("builtins.input", fake_input)
        assert auth.verify_token(auth.login(email, PASSWORD))
        assert prompts and email in prompts[0]


@pytest.mark.parametrize("authenticator", [ModernAuthenticator, BambuAuthenticator])
def test_an_async_code_callback_is_refused_not_sent(
    cloud: CloudThread, tmp_path: Path, authenticator: type[ModernAuthenticator]
) -> None:
    email = f"async-{authenticator.__module__.split('.')[1]}@example.com"
    _code_account(cloud, email)

    async def code(request: CodeRequest) -> str:
        return "123456"

    options = {"token_file": tmp_path / "t"} if authenticator is BambuAuthenticator else {}
    with authenticator(api_url=cloud.api_url, **options) as auth:  # type: ignore[arg-type]
        with pytest.raises(UnsupportedError, match=r"coroutine function.*AsyncBambuAuthenticator"):
            auth.login(email, PASSWORD, code)
        assert _last_code(cloud, email) is None  # refused before anything was sent
        with pytest.raises(UnsupportedError, match="AsyncBambuAuthenticator"):
            auth.login(email, PASSWORD, lambda request: code(request))  # a coroutine returned anyway
        assert _last_code(cloud, email) is not None  # the code was emailed, but no "<coroutine ...>" was sent
