"""Login flows, token checks and the token file, against the fake cloud over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from bambulab.cloud import AsyncBambuAuthenticator, BambuAuthenticator, BambuClient, CodeRequest, Token
from bambulab.cloud.auth import load_token, save_token
from bambulab.exceptions import AuthenticationError, TokenExpiredError

if TYPE_CHECKING:
    from conftest import CloudEnv

EMAIL = "alice@example.com"  # the cloud_env fixture's account
PASSWORD = "correct horse battery"

TFA_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NINETY_DAYS = 7_776_000


def totp(secret: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), written here independently of the fake cloud's."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int((time.time() if at is None else at) // 30)), hashlib.sha1).digest()
    start = digest[19] & 0xF
    return f"{(int.from_bytes(digest[start:start + 4], 'big') & 0x7FFFFFFF) % 1_000_000:06d}"


def auth_for(env: CloudEnv, **kwargs: Any) -> BambuAuthenticator:
    return BambuAuthenticator(api_url=env.api_url, web_url=env.web_url, **kwargs)


def wrong_code(right: str | None) -> str:
    return "123456" if right != "123456" else "654321"


# ---------------------------------------------------------------------- login flows


def test_password_login_gives_a_token_with_uid_and_expiry(cloud_env: CloudEnv) -> None:
    before = time.time()
    with auth_for(cloud_env) as auth:
        token = auth.login(EMAIL, PASSWORD)
        assert token.uid == cloud_env.account.uid
        assert token.expires_at is not None
        assert before + NINETY_DAYS - 5 <= token.expires_at <= time.time() + NINETY_DAYS + 5
        assert auth.verify_token(token)
        assert cloud_env.do(lambda: cloud_env.cloud.token_account(token.access_token)) == cloud_env.account
    text = repr(token) + str(token)
    assert token.access_token not in text and "***" in text


async def test_async_password_login(cloud_env: CloudEnv) -> None:
    async with AsyncBambuAuthenticator(api_url=cloud_env.api_url, web_url=cloud_env.web_url) as auth:
        token = await auth.login(EMAIL, PASSWORD)
        assert token.uid == cloud_env.account.uid
        assert await auth.verify_token(token.access_token)
        assert await auth.uid(token.access_token) == cloud_env.account.uid


def test_wrong_password_is_an_authentication_error(cloud_env: CloudEnv) -> None:
    with auth_for(cloud_env) as auth, pytest.raises(AuthenticationError) as info:
        auth.login(EMAIL, "not the password")
    assert "not the password" not in str(info.value)
    assert "login refused" in str(info.value)


def test_email_code_login_asks_for_the_emailed_code(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    asked: list[CodeRequest] = []

    def callback(request: CodeRequest) -> str:
        asked.append(request)
        code = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
        assert code is not None, "the client should have requested a code before asking"
        return code

    with auth_for(cloud_env) as auth:
        token = auth.login("bob@example.com", PASSWORD, code_callback=callback)
        assert auth.verify_token(token)
    assert [(r.kind, r.reason) for r in asked] == [("email", None)]
    assert "bob@example.com" in asked[0].message


async def test_async_email_code_login_with_an_async_callback(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")

    async def callback(request: CodeRequest) -> str:
        return str(cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com")))

    async with AsyncBambuAuthenticator(api_url=cloud_env.api_url, web_url=cloud_env.web_url) as auth:
        token = await auth.login("bob@example.com", PASSWORD, code_callback=callback)
        assert await auth.verify_token(token)


def test_an_expired_code_gets_a_new_code_once_and_asks_again(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    asked: list[CodeRequest] = []
    codes: list[str] = []

    def callback(request: CodeRequest) -> str:
        asked.append(request)
        code = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
        assert code is not None
        codes.append(code)
        if len(asked) == 1:
            cloud_env.do(lambda: cloud_env.cloud.advance(301))  # the emailed code expires (ttl 300 s)
        return code

    with auth_for(cloud_env) as auth:
        token = auth.login("bob@example.com", PASSWORD, code_callback=callback)
        assert auth.verify_token(token)
    assert [r.reason for r in asked] == [None, "expired"]
    assert "expired" in asked[1].message


def test_a_code_that_expires_twice_fails(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")

    def callback(request: CodeRequest) -> str:
        code = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
        cloud_env.do(lambda: cloud_env.cloud.advance(301))
        return str(code)

    with auth_for(cloud_env) as auth, pytest.raises(AuthenticationError, match="expired again"):
        auth.login("bob@example.com", PASSWORD, code_callback=callback)


def test_a_wrong_code_is_asked_again_then_the_right_one_works(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    asked: list[CodeRequest] = []

    def callback(request: CodeRequest) -> str:
        asked.append(request)
        right = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
        return wrong_code(right) if len(asked) == 1 else str(right)

    with auth_for(cloud_env) as auth:
        token = auth.login("bob@example.com", PASSWORD, code_callback=callback)
        assert auth.verify_token(token)
    assert [r.reason for r in asked] == [None, "incorrect"]


def test_three_wrong_codes_raise_authentication_error(cloud_env: CloudEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    given: list[str] = []

    def callback() -> str:  # a callback without an argument works too
        given.append(wrong_code(cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))))
        return given[-1]

    with auth_for(cloud_env) as auth, pytest.raises(AuthenticationError, match="not accepted") as info:
        auth.login("bob@example.com", PASSWORD, code_callback=callback)
    assert len(given) == 3
    for secret in [*given, PASSWORD]:
        assert secret not in str(info.value)
        assert secret not in caplog.text


def test_a_code_account_without_a_callback_says_what_it_needs(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    with auth_for(cloud_env) as auth, pytest.raises(AuthenticationError, match="code_callback"):
        auth.login("bob@example.com", PASSWORD)


def test_request_code_false_uses_a_code_the_caller_already_has(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode", fixed_code="424242")
    with auth_for(cloud_env) as auth:
        token = auth.login("bob@example.com", PASSWORD, code_callback=lambda: "424242", request_code=False)
        assert auth.verify_token(token)
    assert cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com")) is None  # nothing was emailed


def test_login_with_code_and_send_code(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    with auth_for(cloud_env) as auth:
        auth.send_code("bob@example.com")
        code = cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))
        assert code is not None
        token = auth.login_with_code("bob@example.com", code)
        assert token.uid is not None and auth.verify_token(token)
        with pytest.raises(AuthenticationError, match="expired"):
            auth.login_with_code("bob@example.com", code)  # a code works once


def test_two_factor_login_reads_the_token_cookie(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("carol@example.com", login_mode="tfa", tfa_secret=TFA_SECRET)
    asked: list[CodeRequest] = []

    def callback(request: CodeRequest) -> str:
        asked.append(request)
        return totp(TFA_SECRET, cloud_env.do(cloud_env.cloud.now))

    client = httpx2.Client()
    try:
        with auth_for(cloud_env, http_client=client) as auth:
            token = auth.login("carol@example.com", PASSWORD, code_callback=callback)
            assert auth.verify_token(token)
        assert [r.kind for r in asked] == ["tfa"]
        assert token.expires_at is not None and token.expires_at > time.time() + NINETY_DAYS - 60
        assert "token" not in client.cookies and "bbl_csrf_token" not in client.cookies  # nothing lingers
        assert not client.is_closed  # the caller's client stays open
    finally:
        client.close()


def test_two_factor_wrong_code_three_times(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("carol@example.com", login_mode="tfa", tfa_secret=TFA_SECRET)
    calls: list[int] = []

    def callback(request: CodeRequest) -> str:
        calls.append(request.attempt)
        right = totp(TFA_SECRET, cloud_env.do(cloud_env.cloud.now))
        return wrong_code(right)

    with auth_for(cloud_env) as auth, pytest.raises(AuthenticationError, match="two-factor code was not accepted"):
        auth.login("carol@example.com", PASSWORD, code_callback=callback)
    assert calls == [1, 2, 3]


def test_two_factor_without_the_csrf_cookie_is_a_clear_error(cloud_env: CloudEnv) -> None:
    """A client (or proxy) that loses the CSRF cookie gets the web host's 403 missing_cookie, explained."""
    cloud_env.add_account("carol@example.com", login_mode="tfa", fixed_code="777777")

    def drop_cookie(request: httpx2.Request) -> None:
        if request.url.path == "/api/sign-in/tfa":
            del request.headers["cookie"]

    client = httpx2.Client(event_hooks={"request": [drop_cookie]})
    try:
        with auth_for(cloud_env, http_client=client) as auth, pytest.raises(AuthenticationError) as info:
            auth.login("carol@example.com", PASSWORD, code_callback=lambda: "777777")
    finally:
        client.close()
    message = str(info.value)
    assert "CSRF" in message and "missing_cookie" in message
    assert "777777" not in message


def test_two_factor_when_the_web_host_sets_no_csrf_cookie(cloud_env: CloudEnv) -> None:
    cloud_env.add_account("carol@example.com", login_mode="tfa", fixed_code="777777")

    def strip_set_cookie(response: httpx2.Response) -> None:
        if response.request.url.path == "/api/csrf":
            del response.headers["set-cookie"]

    client = httpx2.Client(event_hooks={"response": [strip_set_cookie]})
    try:
        with auth_for(cloud_env, http_client=client) as auth, pytest.raises(AuthenticationError, match="CSRF cookie"):
            auth.login("carol@example.com", PASSWORD, code_callback=lambda: "777777")
    finally:
        client.close()


# ---------------------------------------------------------------------- verify, refresh, uid


def test_verify_and_refresh_and_the_401_switch(cloud_env: CloudEnv) -> None:
    with auth_for(cloud_env) as auth:
        token = auth.login(EMAIL, PASSWORD)
        fresh = auth.refresh(token)
        assert fresh.access_token != token.access_token
        assert fresh.uid == token.uid
        assert auth.verify_token(fresh)
        cloud_env.switches(refresh_works=False)
        with pytest.raises(TokenExpiredError) as info:
            auth.refresh(fresh)
        assert fresh.access_token not in str(info.value)
        cloud_env.do(cloud_env.cloud.expire_tokens)
        assert auth.verify_token(fresh) is False
        assert auth.verify_token(token.access_token) is False


def test_uid_from_a_jwt_token_needs_no_request(cloud_env: CloudEnv) -> None:
    cloud_env.switches(jwt_tokens=True)
    seen: list[str] = []
    client = httpx2.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    try:
        with auth_for(cloud_env, http_client=client) as auth:
            token = auth.login(EMAIL, PASSWORD)
            assert token.uid == cloud_env.account.uid
            assert "/v1/design-user-service/my/preference" not in seen
            assert auth.uid(token) == cloud_env.account.uid
    finally:
        client.close()


# ---------------------------------------------------------------------- the token file


def _guard_permissions(monkeypatch: pytest.MonkeyPatch, created: list[tuple[str, int]]) -> None:
    """Fail on any chmod; record the mode of every file os.open creates."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("files holding secrets must be created 0600, never chmod'ed afterwards")

    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            created.append((os.fspath(path), mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    monkeypatch.setattr(os, "open", recording_open)


def test_token_file_is_0600_from_creation_and_reused(
    cloud_env: CloudEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, int]] = []
    _guard_permissions(monkeypatch, created)
    old_umask = os.umask(0)  # a naive open() would now create a world-readable file
    try:
        path = tmp_path / "conf" / "token.json"
        with auth_for(cloud_env) as auth:
            token = auth.get_or_create_token(path, EMAIL, PASSWORD)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert created and all(mode == 0o600 for _, mode in created)
            assert all(Path(p).parent == path.parent for p, _ in created)
            stored = json.loads(path.read_text())
            assert stored["access_token"] == token.access_token and stored["uid"] == token.uid
            assert load_token(path) == token
            again = auth.get_or_create_token(path)  # valid: no credentials needed, no new login
            assert again.access_token == token.access_token
    finally:
        os.umask(old_umask)
    assert [p.name for p in path.parent.iterdir()] == ["token.json"]  # no temporary file left


def test_token_file_is_replaced_atomically_when_the_token_expired(
    cloud_env: CloudEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token.json"
    with auth_for(cloud_env) as auth:
        first = auth.get_or_create_token(path, EMAIL, PASSWORD)
        inode = path.stat().st_ino
        cloud_env.do(cloud_env.cloud.expire_tokens)
        with pytest.raises(TokenExpiredError, match="log in again"):
            auth.get_or_create_token(path)  # rejected, refresh refused, no credentials
        second = auth.get_or_create_token(path, EMAIL, PASSWORD)
        assert second.access_token != first.access_token
        assert load_token(path) == second
        assert path.stat().st_ino != inode  # a new file renamed over the old one
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

        def broken_replace(src: Any, dst: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            save_token(path, Token("x" * 40))
    assert load_token(path) == second  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


def test_an_expired_token_in_the_file_is_refreshed(cloud_env: CloudEnv, tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    with auth_for(cloud_env) as auth:
        token = auth.login(EMAIL, PASSWORD)
        save_token(path, Token(token.access_token, token.refresh_token, time.time() - 10, token.uid))
        fresh = auth.get_or_create_token(path)  # expired by its date: refreshed, not re-logged
        assert fresh.access_token != token.access_token
        assert load_token(path) == fresh


async def test_async_get_or_create_token(cloud_env: CloudEnv, tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    async with AsyncBambuAuthenticator(api_url=cloud_env.api_url, web_url=cloud_env.web_url) as auth:
        with pytest.raises(AuthenticationError, match="bambu login"):
            await auth.get_or_create_token(path)
        token = await auth.get_or_create_token(path, EMAIL, PASSWORD)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (await auth.get_or_create_token(path)).access_token == token.access_token


# ---------------------------------------------------------------------- secrets, regions


def test_no_secret_in_any_log_line(cloud_env: CloudEnv, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    cloud_env.add_account("bob@example.com", login_mode="verifyCode")
    cloud_env.add_account("carol@example.com", login_mode="tfa", fixed_code="909090")
    codes: list[str] = []

    def email_code() -> str:
        codes.append(str(cloud_env.do(lambda: cloud_env.cloud.last_code("bob@example.com"))))
        return codes[-1]

    with auth_for(cloud_env) as auth:
        tokens = [
            auth.get_or_create_token(tmp_path / "a.json", EMAIL, PASSWORD),
            auth.login("bob@example.com", PASSWORD, code_callback=email_code),
            auth.login("carol@example.com", PASSWORD, code_callback=lambda: "909090"),
        ]
        tokens.append(auth.refresh(tokens[0]))
        with BambuClient(tokens[0], api_url=cloud_env.api_url) as client:
            client.devices()
            cloud_env.do(cloud_env.cloud.expire_tokens)
            with pytest.raises(TokenExpiredError):
                client.devices()
    assert "bambulab" in caplog.text  # our debug lines were captured
    secrets = [PASSWORD, "909090", *codes]
    for token in tokens:
        secrets += [token.access_token, token.refresh_token]
    for secret in secrets:
        assert secret not in caplog.text


def test_region_china_builds_cn_urls_and_overrides_win() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={"uid": 7})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        auth = BambuAuthenticator(region="china", http_client=http)
        assert (auth.api_url, auth.web_url) == ("https://api.bambulab.cn", "https://bambulab.cn")
        assert auth.uid("opaque-token-value") == 7
        assert seen == ["https://api.bambulab.cn/v1/design-user-service/my/preference"]
        glob = BambuAuthenticator(http_client=http)
        assert (glob.api_url, glob.web_url) == ("https://api.bambulab.com", "https://bambulab.com")
        client = BambuClient("t" * 20, region="china", http_client=http)
        assert client.api_url == "https://api.bambulab.cn"
        custom = BambuAuthenticator(region="china", api_url="http://127.0.0.1:9/", http_client=http)
        assert custom.api_url == "http://127.0.0.1:9" and custom.web_url == "https://bambulab.cn"
    with pytest.raises(ValueError, match="region"):
        BambuAuthenticator(region="mars")
