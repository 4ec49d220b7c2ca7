"""Logging in to the Bambu cloud, checking and refreshing tokens, and a token file.

```python
from bambulab.cloud import BambuAuthenticator

with BambuAuthenticator() as auth:
    token = auth.login("me@example.com", password, code_callback=lambda req: input(req.message))
```

The login flows (PROTOCOL.md §8.2, ``docs/cloud-api.md``):

* **direct token**: the password login answers with the access token;
* **emailed code** (``loginType: verifyCode``): a code is emailed, ``code_callback`` returns it, and
  a code login follows. An expired code (400, ``code`` 1) gets a new code emailed once, and the
  callback is asked again; a wrong code (400, ``code`` 2) is asked for again, up to
  ``code_attempts`` tries in all, then :class:`~bambulab.exceptions.AuthenticationError`;
* **two-factor** (``loginType: tfa``): the web host's CSRF cookie is fetched, the authenticator
  code from ``code_callback`` is posted with it, and the token arrives in a ``token`` cookie.

Each flow is written once, as a generator of steps (:class:`~bambulab.cloud._session.Call` and
:class:`~bambulab.cloud._session.Ask`), and driven by a blocking or an async session, so
:class:`BambuAuthenticator` and :class:`AsyncBambuAuthenticator` differ only in their I/O.

Passwords, codes and tokens never appear in a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from bambulab.cloud import endpoints as ep
from bambulab.cloud._base import RetryPolicy, check_token, decode_json, error_for, uid_from_jwt
from bambulab.cloud._files import write_private
from bambulab.cloud._session import Ask, AsyncSession, Call, Flow, SyncSession
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuTimeoutError,
    CloudError,
    TokenExpiredError,
    UnsupportedError,
)
from bambulab.transports.http import HttpResponse

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "AsyncBambuAuthenticator",
    "BambuAuthenticator",
    "CodeCallback",
    "CodeRequest",
    "Token",
    "load_token",
    "save_token",
]

log = logging.getLogger("bambulab.cloud")

_ACCEPT_400 = frozenset({400})
_CSRF_COOKIE = "bbl_csrf_token"
_TOKEN_COOKIE = "token"  # noqa: S105 - a cookie name


@dataclass(frozen=True)
class Token:
    """A cloud access token. ``repr`` masks the secrets; ``expires_at`` is a Unix time (or None)."""

    access_token: str
    refresh_token: str = ""
    expires_at: float | None = None
    uid: int | None = None
    region: str = "global"

    def __repr__(self) -> str:
        return (f"Token(access_token='***', refresh_token='***', expires_at={self.expires_at!r}, "
                f"uid={self.uid!r}, region={self.region!r})")

    __str__ = __repr__

    def expired(self, now: float | None = None, *, margin: float = 0.0) -> bool:
        """True when ``expires_at`` has passed (False when unknown)."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) + margin >= self.expires_at

    @property
    def mqtt_username(self) -> str | None:
        return f"u_{self.uid}" if self.uid is not None else None

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"expires_at": self.expires_at, "uid": self.uid, "region": self.region}
        if include_secrets:
            out = {"access_token": self.access_token, "refresh_token": self.refresh_token, **out}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        access = data.get("access_token") or data.get("token")  # "token": the older package's file
        if not isinstance(access, str) or not access:
            raise ValueError("the token file has no access_token")
        refresh = str(data.get("refresh_token") or "").strip()
        try:
            access = check_token(access, "the token file's access_token")
            refresh = check_token(refresh, "the token file's refresh_token") if refresh else ""
        except AuthenticationError as exc:
            raise ValueError(str(exc)) from None
        expires = data.get("expires_at")
        uid = data.get("uid")
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=float(expires) if isinstance(expires, int | float) else None,
            uid=int(uid) if isinstance(uid, int) else None,
            region=str(data.get("region") or "global"),
        )


@dataclass(frozen=True)
class CodeRequest:
    """What ``code_callback`` is asked for: an emailed code (``kind="email"``) or an authenticator code."""

    kind: Literal["email", "tfa"]
    account: str
    attempt: int = 1
    reason: Literal["expired", "incorrect"] | None = None  # why we ask again

    @property
    def message(self) -> str:
        text = f"Code sent to {self.account}: " if self.kind == "email" else "Code from your authenticator app: "
        if self.reason == "expired":
            return "The code expired; a new one was emailed. " + text
        if self.reason == "incorrect":
            return "That code was not accepted. " + text
        return text


#: ``code_callback(request) -> code`` (or a callable with no argument). Async authenticators also
#: accept a coroutine function.
CodeCallback = Callable[[CodeRequest], str] | Callable[[], str] | Callable[[CodeRequest], Awaitable[str]]


def load_token(path: str | os.PathLike[str]) -> Token | None:
    """The token in a token file, or None when the file is missing or unreadable."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        return Token.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def save_token(path: str | os.PathLike[str], token: Token) -> Path:
    """Write a token file atomically, mode 0600 from creation."""
    data = json.dumps({"version": 1, **token.to_dict(include_secrets=True)}, indent=2).encode() + b"\n"
    return write_private(path, data)


# ---------------------------------------------------------------------- the flows (no I/O)


def _token_body(data: Mapping[str, Any], region: str, now: float) -> Token | None:
    access = data.get("accessToken")
    if not isinstance(access, str) or not access:
        return None
    refresh = data.get("refreshToken")
    try:  # a token the server sent must still fit in a header: never store a corrupt one
        access = check_token(access, "the token the Bambu cloud sent")
        refresh = check_token(refresh, "the refresh token the Bambu cloud sent") if isinstance(refresh, str) \
            and refresh.strip() else access
    except AuthenticationError as exc:
        raise CloudError(f"login: {exc.args[0].split(';')[0]}") from None
    expires_in = data.get("expiresIn")
    expires_at = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and 0 < expires_in < 10 * 365 * 86400:
        expires_at = now + float(expires_in)
    return Token(access, refresh, expires_at, uid_from_jwt(access), region)


def _object(response: HttpResponse, endpoint: str) -> dict[str, Any]:
    data = decode_json(response, endpoint)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CloudError(f"{endpoint}: the Bambu cloud answered in an unexpected shape ({type(data).__name__})",
                         status=response.status)
    return data


def _code_number(response: HttpResponse) -> Any:
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data.get("code") if isinstance(data, dict) else None


def _server_message(response: HttpResponse) -> str:
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return ""
    message = data.get("message") or data.get("error") if isinstance(data, dict) else None
    return " ".join(str(message).split())[:200] if message else ""


def _raise_unexpected(response: HttpResponse, call: Call) -> None:
    raise error_for(response, call.request, token_sent=False)


def _with_uid(token: Token) -> Flow[Token]:
    if token.uid is not None:
        return token
    try:
        response = yield Call(ep.PREFERENCE.build(), token=token.access_token)
    except (CloudError, BambuConnectionError, BambuTimeoutError) as exc:
        log.info("logged in, but the account's uid is not known yet (%s)", type(exc).__name__)
        return token
    uid = ep.PREFERENCE.read(decode_json(response, "preference")).uid
    return replace(token, uid=uid or None)


def _email_code_flow(account: str, region: str, *, send_first: bool, attempts: int) -> Flow[Token]:
    if send_first:
        yield Call(ep.SEND_EMAIL_CODE.build(email=account))
        log.info("a login code was emailed to the account's address")
    renewed = False
    wrong = 0
    reason: Literal["expired", "incorrect"] | None = None
    asked = 0
    while True:
        asked += 1
        code = str((yield Ask(CodeRequest("email", account, asked, reason))) or "").strip()
        if not code:
            raise AuthenticationError("no login code was entered")
        call = Call(ep.LOGIN_CODE.build(account=account, code=code), accept=_ACCEPT_400)
        response = yield call
        if response.status < 400:
            return (yield from _after_login(_object(response, "login_code"), account, region, attempts))
        number = _code_number(response)
        if number == 1:
            if renewed:
                raise AuthenticationError("the login code expired again; log in again")
            renewed = True
            yield Call(ep.SEND_EMAIL_CODE.build(email=account))
            log.info("the login code had expired; a new one was emailed")
            reason = "expired"
        elif number == 2:
            wrong += 1
            if wrong >= attempts:
                raise AuthenticationError(f"the login code was not accepted ({wrong} tries); log in again")
            reason = "incorrect"
        else:
            _raise_unexpected(response, call)


def _tfa_flow(account: str, tfa_key: str, region: str, attempts: int) -> Flow[Token]:
    csrf_response: HttpResponse = yield Call(ep.CSRF.build())
    csrf = csrf_response.cookie(_CSRF_COOKIE)
    if not csrf:
        raise AuthenticationError(
            "two-factor sign-in: the web host did not set its CSRF cookie (bbl_csrf_token); a proxy or "
            "filter may strip cookies. Try again from another network, or log in with an emailed code."
        )
    headers = {"x-bbl-csrf-token": csrf, "Cookie": f"{_CSRF_COOKIE}={csrf}"}
    wrong = 0
    reason: Literal["expired", "incorrect"] | None = None
    asked = 0
    while True:
        asked += 1
        code = str((yield Ask(CodeRequest("tfa", account, asked, reason))) or "").strip()
        if not code:
            raise AuthenticationError("no two-factor code was entered")
        call = Call(ep.TFA_SIGN_IN.build(tfa_key=tfa_key, tfa_code=code), accept=frozenset({400, 403}),
                    headers=headers)
        response = yield call
        if response.status == 403:
            error = error_for(response, call.request, token_sent=False)
            why = error.code if isinstance(error, CloudError) and error.code else "forbidden"
            raise AuthenticationError(
                f"two-factor sign-in refused by the web host's CSRF check ({why}): the CSRF cookie did not "
                "reach it. A proxy or filter may strip cookies; try again, or log in with an emailed code."
            )
        if response.status == 400:
            number = _code_number(response)
            if number == 2:
                wrong += 1
                if wrong >= attempts:
                    raise AuthenticationError(f"the two-factor code was not accepted ({wrong} tries); log in again")
                reason = "incorrect"
                continue
            if number == 1:
                raise AuthenticationError("the two-factor sign-in expired (tfaKey); log in again")
            _raise_unexpected(response, call)
        value = response.cookie(_TOKEN_COOKIE)
        if not value:
            raise AuthenticationError("two-factor sign-in succeeded but no token cookie came back")
        max_age = response.cookie_max_age(_TOKEN_COOKIE)
        expires = time.time() + max_age if max_age and max_age > 0 else None
        return Token(value, value, expires, uid_from_jwt(value), region)


def _after_login(data: Mapping[str, Any], account: str, region: str, attempts: int) -> Flow[Token]:
    token = _token_body(data, region, time.time())
    if token is not None:
        return token
    login_type = data.get("loginType")
    if login_type == "verifyCode":
        return (yield from _email_code_flow(account, region, send_first=True, attempts=attempts))
    if login_type == "tfa":
        key = data.get("tfaKey")
        if not isinstance(key, str) or not key:
            raise AuthenticationError("the cloud asked for two-factor sign-in without a tfaKey")
        return (yield from _tfa_flow(account, key, region, attempts))
    raise AuthenticationError(f"the cloud answered the login without a token (loginType {login_type!r})")


def login_flow(
    account: str, password: str, region: str, *, request_code: bool = True, attempts: int = 3
) -> Flow[Token]:
    """Password login, then whatever the account needs (emailed code, two-factor), then the uid."""
    call = Call(ep.LOGIN_PASSWORD.build(account=account, password=password), accept=_ACCEPT_400)
    response = yield call
    if response.status == 400:
        raise AuthenticationError(f"login refused: {_server_message(response) or 'incorrect e-mail or password'}")
    data = _object(response, "login_password")
    if data.get("loginType") == "verifyCode" and not request_code:
        token = yield from _email_code_flow(account, region, send_first=False, attempts=attempts)
    else:
        token = yield from _after_login(data, account, region, attempts)
    return (yield from _with_uid(token))


def code_login_flow(account: str, code: str, region: str) -> Flow[Token]:
    """Log in with an emailed code the caller already has (no password)."""

    def once() -> Flow[Token]:
        call = Call(ep.LOGIN_CODE.build(account=account, code=code), accept=_ACCEPT_400)
        response = yield call
        if response.status == 400:
            number = _code_number(response)
            if number == 1:
                raise AuthenticationError("the login code has expired (or was never sent); request a new one")
            if number == 2:
                raise AuthenticationError("the login code was not accepted")
            _raise_unexpected(response, call)
        token = _token_body(_object(response, "login_code"), region, time.time())
        if token is None:
            raise AuthenticationError("the code login needs a second step (two-factor); use login()")
        return token

    token = yield from once()
    return (yield from _with_uid(token))


def verify_flow(token: str) -> Flow[bool]:
    try:
        yield Call(ep.PREFERENCE.build(), token=token)
    except TokenExpiredError:
        return False
    return True


def refresh_flow(token: Token) -> Flow[Token]:
    try:
        response = yield Call(ep.REFRESH_TOKEN.build(refresh_token=token.refresh_token or token.access_token))
    except AuthenticationError as exc:
        raise TokenExpiredError("the Bambu cloud refused to refresh the token; log in again (bambu login)") from exc
    fresh = _token_body(_object(response, "refresh_token"), token.region, time.time())
    if fresh is None:
        raise TokenExpiredError("the token refresh answered without a token; log in again (bambu login)")
    return replace(fresh, uid=fresh.uid or token.uid)


def uid_flow(token: str) -> Flow[int]:
    uid = uid_from_jwt(token)
    if uid is not None:
        return uid
    response = yield Call(ep.PREFERENCE.build(), token=token)
    return ep.PREFERENCE.read(decode_json(response, "preference")).uid


def token_file_flow(
    path: Path, username: str | None, password: str | None, region: str, *, request_code: bool, attempts: int
) -> Flow[Token]:
    token = load_token(path)
    if token is not None and not token.expired(margin=60):
        if (yield from verify_flow(token.access_token)):
            if token.uid is None:
                token = yield from _with_uid(token)
            return token
        log.info("the saved token was rejected; trying to refresh it")
    if token is not None and token.refresh_token:
        try:
            fresh = yield from refresh_flow(token)
        except TokenExpiredError:
            log.info("the saved token could not be refreshed")
        else:
            save_token(path, fresh)
            return fresh
    if not username or not password:
        if token is None:
            raise AuthenticationError(f"no token in {path}: log in first (bambu login)")
        raise TokenExpiredError(f"the token in {path} has expired: log in again (bambu login)")
    token = yield from login_flow(username, password, region, request_code=request_code, attempts=attempts)
    save_token(path, token)
    return token


# ---------------------------------------------------------------------- callbacks


def _path(token_file: str | os.PathLike[str]) -> Path:
    return Path(os.path.expanduser(token_file))


def _wants_argument(callback: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


_ASYNC_CALLBACK = ("code_callback is a coroutine function, which the blocking BambuAuthenticator cannot await: "
                   "pass a plain function, or use AsyncBambuAuthenticator")


def _asker(callback: Callable[..., Any] | None, *, blocking: bool = False) -> Callable[[Any], Any]:
    """``ask(request)`` for a flow. ``blocking``: an async callback is refused before anything is sent
    (and a coroutine returned anyway is closed, never sent as the code)."""
    if blocking and callback is not None and inspect.iscoroutinefunction(callback):
        raise UnsupportedError(_ASYNC_CALLBACK)

    def ask(request: CodeRequest) -> Any:
        if callback is None:
            what = "an emailed code" if request.kind == "email" else "a two-factor code"
            raise AuthenticationError(f"this account needs {what} to log in: pass code_callback")
        value = callback(request) if _wants_argument(callback) else callback()
        if blocking and inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if callable(close):
                close()
            raise UnsupportedError(_ASYNC_CALLBACK)
        return value

    return ask


# ---------------------------------------------------------------------- the authenticators


class _AuthBase:
    def __init__(self, region: str, code_attempts: int) -> None:
        if region not in ("global", "china"):
            raise ValueError(f"unknown region {region!r}: use 'global' or 'china'")
        self.region = region
        self.code_attempts = code_attempts

    @staticmethod
    def _access(token: Token | str) -> str:
        return token.access_token if isinstance(token, Token) else token

    def _token(self, token: Token | str) -> Token:
        return token if isinstance(token, Token) else Token(token, token, None, uid_from_jwt(token), self.region)


class BambuAuthenticator(_AuthBase):
    """Log in to the Bambu cloud and manage tokens (blocking). Use as a context manager or ``close()``.

    ``http_client`` is an ``httpx2.Client`` you own (it is not closed here); ``api_url`` and
    ``web_url`` replace the region's hosts (a fake cloud, a proxy).
    """

    def __init__(
        self,
        region: str = "global",
        api_url: str | None = None,
        web_url: str | None = None,
        http_client: httpx2.Client | None = None,
        *,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        code_attempts: int = 3,
    ) -> None:
        super().__init__(region, code_attempts)
        self._session = SyncSession(http_client=http_client, timeout=timeout, ssl_context=ssl_context,
                                    region=region, api_url=api_url, web_url=web_url, retry=retry, headers=headers)

    @property
    def api_url(self) -> str:
        """The HTTP API's base URL (the region's, or ``api_url=``)."""
        return self._session.api_url

    @property
    def web_url(self) -> str:
        """The web site's base URL, where login pages live (the region's, or ``web_url=``)."""
        return self._session.web_url

    def login(
        self, username: str, password: str, code_callback: CodeCallback | None = None, *, request_code: bool = True
    ) -> Token:
        """Log in with e-mail and password (and a code when the account needs one).

        ``request_code=False`` skips emailing a code for ``verifyCode`` accounts: use it when
        ``code_callback`` returns a code that was emailed before (it is asked first).
        """
        flow = login_flow(username.strip(), password, self.region, request_code=request_code,
                          attempts=self.code_attempts)
        return self._session.run(flow, _asker(code_callback, blocking=True))

    def send_code(self, username: str) -> None:
        """Have the cloud email a login code to ``username``."""
        self._session.call(ep.SEND_EMAIL_CODE, None, email=username.strip())

    def login_with_code(self, username: str, code: str) -> Token:
        """Log in with an emailed code you already have."""
        return self._session.run(code_login_flow(username.strip(), code.strip(), self.region), _asker(None))

    def verify_token(self, token: Token | str) -> bool:
        """True when the cloud accepts the token (``GET .../my/preference``); False on 401."""
        return self._session.run(verify_flow(self._access(token)), _asker(None))

    def refresh(self, token: Token | str) -> Token:
        """A fresh token; :class:`~bambulab.exceptions.TokenExpiredError` when the cloud refuses."""
        return self._session.run(refresh_flow(self._token(token)), _asker(None))

    def uid(self, token: Token | str) -> int:
        """The account's numeric uid (from a JWT token, else ``GET .../my/preference``)."""
        return self._session.run(uid_flow(self._access(token)), _asker(None))

    def get_or_create_token(
        self,
        token_file: str | os.PathLike[str],
        username: str | None = None,
        password: str | None = None,
        code_callback: CodeCallback | None = None,
        *,
        request_code: bool = True,
    ) -> Token:
        """The token in ``token_file`` if the cloud accepts it (refreshed if possible), else a new login.

        A new token is written atomically with mode 0600 from creation.
        """
        flow = token_file_flow(_path(token_file), username, password, self.region,
                               request_code=request_code, attempts=self.code_attempts)
        return self._session.run(flow, _asker(code_callback, blocking=True))

    def close(self) -> None:
        """Close the HTTP client (unless it is yours)."""
        self._session.close()

    def __enter__(self) -> BambuAuthenticator:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BambuAuthenticator(region={self.region!r}, api_url={self.api_url!r})"


class AsyncBambuAuthenticator(_AuthBase):
    """The async twin of :class:`BambuAuthenticator` (``httpx2.AsyncClient``; callbacks may be async)."""

    def __init__(
        self,
        region: str = "global",
        api_url: str | None = None,
        web_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        *,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        code_attempts: int = 3,
    ) -> None:
        super().__init__(region, code_attempts)
        self._session = AsyncSession(http_client=http_client, timeout=timeout, ssl_context=ssl_context,
                                     region=region, api_url=api_url, web_url=web_url, retry=retry, headers=headers)

    @property
    def api_url(self) -> str:
        """The HTTP API's base URL (the region's, or ``api_url=``)."""
        return self._session.api_url

    @property
    def web_url(self) -> str:
        """The web site's base URL, where login pages live (the region's, or ``web_url=``)."""
        return self._session.web_url

    async def login(
        self, username: str, password: str, code_callback: CodeCallback | None = None, *, request_code: bool = True
    ) -> Token:
        """Log in with e-mail and password (and a code when the account needs one).

        ``request_code=False`` skips emailing a code for ``verifyCode`` accounts: use it when
        ``code_callback`` returns a code that was emailed before (it is asked first).
        """
        flow = login_flow(username.strip(), password, self.region, request_code=request_code,
                          attempts=self.code_attempts)
        return await self._session.run(flow, _asker(code_callback))

    async def send_code(self, username: str) -> None:
        """Have the cloud email a login code to ``username``."""
        await self._session.call(ep.SEND_EMAIL_CODE, None, email=username.strip())

    async def login_with_code(self, username: str, code: str) -> Token:
        """Log in with an emailed code you already have."""
        return await self._session.run(code_login_flow(username.strip(), code.strip(), self.region), _asker(None))

    async def verify_token(self, token: Token | str) -> bool:
        """True when the cloud accepts the token (``GET .../my/preference``); False on 401."""
        return await self._session.run(verify_flow(self._access(token)), _asker(None))

    async def refresh(self, token: Token | str) -> Token:
        """A fresh token; :class:`~bambulab.exceptions.TokenExpiredError` when the cloud refuses."""
        return await self._session.run(refresh_flow(self._token(token)), _asker(None))

    async def uid(self, token: Token | str) -> int:
        """The account's numeric uid (from a JWT token, else ``GET .../my/preference``)."""
        return await self._session.run(uid_flow(self._access(token)), _asker(None))

    async def get_or_create_token(
        self,
        token_file: str | os.PathLike[str],
        username: str | None = None,
        password: str | None = None,
        code_callback: CodeCallback | None = None,
        *,
        request_code: bool = True,
    ) -> Token:
        """The token in ``token_file`` if the cloud accepts it (refreshed if possible), else a new login.

        A new token is written atomically with mode 0600 from creation.
        """
        flow = token_file_flow(_path(token_file), username, password, self.region,
                               request_code=request_code, attempts=self.code_attempts)
        return await self._session.run(flow, _asker(code_callback))

    async def aclose(self) -> None:
        """Close the HTTP client (unless it is yours)."""
        await self._session.aclose()

    async def __aenter__(self) -> AsyncBambuAuthenticator:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBambuAuthenticator(region={self.region!r}, api_url={self.api_url!r})"
