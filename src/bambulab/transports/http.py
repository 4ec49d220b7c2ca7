"""HTTP for the Bambu cloud: a blocking transport and its async twin over httpx2.

This is the only module that imports the HTTP library. It sends one request and hands back an
:class:`HttpResponse` (status, headers, body, cookies); what the status *means* is decided one layer
up, in :mod:`bambulab.cloud`. Network failures are mapped here, at the boundary:

* no connection, a reset, a protocol error → :class:`~bambulab.exceptions.BambuConnectionError`
* no answer within the timeout → :class:`~bambulab.exceptions.BambuTimeoutError`

both raised ``from`` the library's exception. Messages and log lines name the method, host and
path only: never the query (presigned upload URLs carry their signature there), never a header
(the ``Authorization`` bearer token), never a body.

Both transports accept an ``httpx2.Client`` / ``httpx2.AsyncClient`` the caller owns (it is then
never closed here); otherwise they create one and close it in :meth:`close`. Cookies a response
sets are read from that response and removed from the client's jar again, so a token that arrives
in a cookie (the two-factor sign-in) never lingers in a shared client. Filters on the ``httpx2`` and
``httpcore2`` loggers drop the query from the URLs they log and the response headers from their
DEBUG traces.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import time
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from bambulab.exceptions import BambuConnectionError, BambuTimeoutError

try:
    import httpx2
except ImportError as _missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Bambu cloud client needs httpx2, a dependency of bambulab that is missing here: "
        "reinstall bambulab (pip install --force-reinstall bambulab) or pip install httpx2"
    ) from _missing

__all__ = ["AsyncHttpTransport", "Headers", "HttpResponse", "HttpTransport", "check_headers", "redact_url"]

log = logging.getLogger(__name__)

Content = bytes | Iterable[bytes] | AsyncIterable[bytes] | None


def redact_url(url: str) -> str:
    """``scheme://host/path`` without query, fragment or user info (safe for logs and errors)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


#: Header values never shown in a repr (cookies carry the two-factor token, Authorization the bearer).
SECRET_HEADERS = frozenset({"set-cookie", "cookie", "authorization", "x-amz-security-token"})


class Headers(dict[str, str]):
    """Response headers (lower-case names) whose ``repr`` masks the values of :data:`SECRET_HEADERS`."""

    def __repr__(self) -> str:
        shown = ", ".join(f"{k!r}: {'***' if k.lower() in SECRET_HEADERS else v!r}" for k, v in self.items())
        return "{" + shown + "}"

    __str__ = __repr__


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP answer, read completely. ``headers`` has lower-case names (the last value wins).

    The ``repr`` (and the ``headers``' own) masks cookie and authorization values.
    """

    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)
    set_cookie: tuple[str, ...] = field(default=(), repr=False)
    url: str = ""  # redacted: no query

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers({k.lower(): v for k, v in self.headers.items()}))

    def __repr__(self) -> str:
        return (f"HttpResponse(status={self.status!r}, headers={Headers(self.headers)!r}, "
                f"content=<{len(self.content)} bytes>, url={self.url!r})")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def cookie(self, name: str) -> str | None:
        """The value of a cookie this response sets, or None."""
        morsel = self._morsel(name)
        return morsel.value if morsel is not None else None

    def cookie_max_age(self, name: str) -> int | None:
        morsel = self._morsel(name)
        if morsel is None or not str(morsel["max-age"]).strip().lstrip("-").isdigit():
            return None
        return int(morsel["max-age"])

    def _morsel(self, name: str) -> Any:
        for value in reversed(self.set_cookie):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value)
            except CookieError:
                continue
            if name in jar:
                return jar[name]
        return None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _RedactUrls(logging.Filter):
    """httpx2 logs every request's full URL at INFO; presigned URLs carry their signature in the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx2.URL) for a in record.args):
            record.args = tuple(redact_url(str(a)) if isinstance(a, httpx2.URL) else a for a in record.args)
        return True


_FAILED = re.compile(r"^(?P<step>[\w.]+\.failed) exception=(?P<kind>\w+).*", re.DOTALL)


class _RedactHeaders(logging.Filter):
    """httpcore2's DEBUG trace prints the response headers (a ``Set-Cookie`` may carry a token) and
    the text of every exception (``Illegal header value b'Bearer ...'``): keep only the names."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            if record.msg.startswith("receive_response_headers.complete"):
                record.msg = "receive_response_headers.complete (headers not logged)"
                record.args = None
            elif (failed := _FAILED.match(record.getMessage())) is not None:
                record.msg = f"{failed['step']} exception={failed['kind']} (details not logged)"
                record.args = None
        return True


def _install_log_filters() -> None:
    targets: list[tuple[str, type[logging.Filter]]] = [("httpx2", _RedactUrls)] + [
        (f"httpcore2.{name}", _RedactHeaders) for name in ("http11", "http2", "connection", "proxy", "socks")
    ]
    for name, kind in targets:
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


_install_log_filters()


def _timeout(seconds: float | None) -> httpx2.Timeout:
    return httpx2.Timeout(seconds)


def _map_error(exc: Exception, method: str, url: str, timeout: float | None) -> Exception:
    where = f"{method} {redact_url(url)}"
    if isinstance(exc, httpx2.TimeoutException):
        return BambuTimeoutError(f"{where}: no answer within {timeout} s")
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return ValueError(f"{where}: invalid URL")
    # Only socket-level errors have safe text; a protocol error quotes what was sent (a header
    # holding the bearer token), so only its class is named.
    detail = (str(exc).strip() if isinstance(exc, httpx2.NetworkError) else "") or type(exc).__name__
    return BambuConnectionError(f"{where}: cannot reach the server ({detail})")


def check_headers(headers: Mapping[str, str], method: str, url: str) -> None:
    """Refuse header values HTTP cannot carry (CR, LF, other controls, non-ASCII) before sending.

    The value is never quoted: the ``Authorization`` header holds the bearer token.
    """
    for name, value in headers.items():
        if not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"{method} {redact_url(url)}: the {name} header holds characters HTTP cannot "
                             "carry (line breaks, control or non-ASCII characters); value not shown")


_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")


def _response(raw: httpx2.Response, url: str, content: bytes) -> HttpResponse:
    headers = Headers({k.lower(): v for k, v in raw.headers.items()})
    cookies = tuple(raw.headers.get_list("set-cookie"))
    return HttpResponse(raw.status_code, headers, content, cookies, redact_url(url))


def _forget_cookies(client: httpx2.Client | httpx2.AsyncClient, raw: httpx2.Response) -> None:
    """Take the cookies this response set out of the client's jar again."""
    for cookie in list(raw.cookies.jar):
        with contextlib.suppress(KeyError):
            client.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)


def _log(method: str, url: str, status: int, started: float) -> None:
    log.debug("%s %s -> %d (%.0f ms)", method, redact_url(url), status, (time.monotonic() - started) * 1000)


def _headers(
    headers: Mapping[str, str] | None, content: Content, length: int | None, method: str, url: str
) -> dict[str, str]:
    out = dict(headers or {})
    if length is not None and content is not None and not isinstance(content, bytes):
        out["Content-Length"] = str(length)  # streamed bodies: no chunked encoding (S3 refuses it)
    check_headers(out, method, url)
    return out


class HttpTransport:
    """Blocking HTTP over ``httpx2.Client`` (yours, or one made here and closed by :meth:`close`)."""

    def __init__(
        self,
        client: httpx2.Client | None = None,
        *,
        timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._owned = client is None
        self.timeout = timeout
        self._client = client if client is not None else httpx2.Client(
            timeout=_timeout(timeout), verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        content_length: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        seconds = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            raw = self._client.request(
                method, url, params=params, json=json, content=content,
                headers=_headers(headers, content, content_length, method, url), timeout=_timeout(seconds),
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise _map_error(exc, method, url, seconds) from exc
        try:
            _forget_cookies(self._client, raw)
            _log(method, url, raw.status_code, started)
            return _response(raw, url, raw.content)
        finally:
            raw.close()

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def __repr__(self) -> str:
        return f"HttpTransport(timeout={self.timeout}, owned_client={self._owned})"


class AsyncHttpTransport:
    """The async twin of :class:`HttpTransport` over ``httpx2.AsyncClient``."""

    def __init__(
        self,
        client: httpx2.AsyncClient | None = None,
        *,
        timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._owned = client is None
        self.timeout = timeout
        self._client = client if client is not None else httpx2.AsyncClient(
            timeout=_timeout(timeout), verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        content_length: int | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - handed to httpx2, which enforces it per operation
    ) -> HttpResponse:
        seconds = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            raw = await self._client.request(
                method, url, params=params, json=json, content=content,
                headers=_headers(headers, content, content_length, method, url), timeout=_timeout(seconds),
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise _map_error(exc, method, url, seconds) from exc
        try:
            _forget_cookies(self._client, raw)
            _log(method, url, raw.status_code, started)
            return _response(raw, url, raw.content)
        finally:
            await raw.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"AsyncHttpTransport(timeout={self.timeout}, owned_client={self._owned})"
