"""The I/O drivers of the cloud clients: one blocking, one async, otherwise the same.

A session knows the base URLs, the default headers and the retry policy, and owns (or borrows) an
HTTP transport. :meth:`SyncSession.send` sends one :class:`Call`, mapping error answers through
:func:`~bambulab.cloud._base.error_for` and retrying idempotent calls; :meth:`SyncSession.run`
drives a *flow*: a generator (the login flows in :mod:`bambulab.cloud.auth`) that yields
:class:`Call` and :class:`Ask` steps and receives the answers, so every multi-step protocol is
written once for both clients.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from xml.etree import ElementTree

from bambulab.cloud._base import RetryPolicy, check_token, decode_json, default_headers, error_for, resolve_urls
from bambulab.cloud.endpoints import Endpoint, Request
from bambulab.exceptions import BambuConnectionError, BambuError, BambuTimeoutError, CloudError, NotConnectedError
from bambulab.transports.http import AsyncHttpTransport, HttpResponse, HttpTransport, redact_url

if TYPE_CHECKING:
    import httpx2

__all__ = ["Ask", "AsyncSession", "Call", "Flow", "SyncSession"]

log = logging.getLogger("bambulab.cloud")

T = TypeVar("T")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Call:
    """Send ``request`` (with ``token`` as bearer when given); statuses in ``accept`` come back as answers."""

    request: Request = field(repr=False)
    token: str | None = field(default=None, repr=False)
    accept: frozenset[int] = frozenset()
    headers: Mapping[str, str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # The request is shown through its own redacting repr; the token only as "set".
        return (f"Call(request={self.request!r}, token={'***' if self.token else None}, "
                f"accept={sorted(self.accept)!r}, headers={'***' if self.headers else None})")


@dataclass(frozen=True)
class Ask:
    """Ask the caller for a code (the payload is a :class:`~bambulab.cloud.auth.CodeRequest`)."""

    prompt: Any


Flow = Generator[Call | Ask, Any, T]


class _SessionBase:
    def __init__(
        self,
        *,
        region: str = "global",
        api_url: str | None = None,
        web_url: str | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.region = region
        self.api_url, self.web_url = resolve_urls(region, api_url, web_url)
        self.retry = retry if retry is not None else RetryPolicy()
        self.headers = {**default_headers(), **(headers or {})}
        self.closed = False
        self._rng = random.Random()

    def _check_open(self) -> None:
        if self.closed:
            raise NotConnectedError("the Bambu cloud client is closed")

    def url(self, request: Request) -> str:
        return (self.api_url if request.host == "api" else self.web_url) + request.path

    def request_headers(self, call: Call) -> dict[str, str]:
        out = {**self.headers, **call.request.headers, **(call.headers or {})}
        if call.token:
            out["Authorization"] = f"Bearer {check_token(call.token)}"
        return out

    def outcome(self, call: Call, response: HttpResponse) -> HttpResponse | BambuError:
        if response.status < 400:
            return response
        error = error_for(response, call.request, token_sent=bool(call.token))
        if response.status in call.accept and type(error) is CloudError:
            return response  # the flow reads this answer itself (e.g. "code expired")
        return error

    def next_delay(self, call: Call, retry: int, error: BambuError) -> float | None:
        delay = self.retry.delay(call.request, retry, error, rng=self._rng)
        if delay is not None:
            log.info("%s: %s; retry %d in %.2f s", call.request.endpoint, type(error).__name__, retry + 1, delay)
        return delay


def _storage_error(response: HttpResponse, what: str) -> CloudError:
    code = ""
    try:
        root = ElementTree.fromstring(response.content)  # noqa: S314 - a short error document from the object store
        code = root.findtext("Code") or ""
    except ElementTree.ParseError:
        pass
    detail = f" {code}" if code else ""
    return CloudError(f"{what}: the object store answered HTTP {response.status}{detail} ({response.url})",
                      status=response.status, code=code or None)


def _file_chunks(path: str, size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        left = size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


class SyncSession(_SessionBase):
    """The blocking driver over :class:`~bambulab.transports.http.HttpTransport`."""

    def __init__(
        self,
        *,
        http_client: httpx2.Client | None = None,
        timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http = HttpTransport(http_client, timeout=timeout, ssl_context=ssl_context)
        self._sleep = sleep

    def send(self, call: Call) -> HttpResponse:
        retry = 0
        while True:
            self._check_open()
            request = call.request
            result: HttpResponse | BambuError
            try:
                response = self.http.request(
                    request.method, self.url(request), params=request.params, json=request.json,
                    headers=self.request_headers(call),
                )
                result = self.outcome(call, response)
            except (BambuConnectionError, BambuTimeoutError) as exc:
                result = exc
            if isinstance(result, HttpResponse):
                return result
            delay = self.next_delay(call, retry, result)
            if delay is None:
                raise result
            self._sleep(delay)
            retry += 1

    def call(self, endpoint: Endpoint[T], token: str | None, **args: Any) -> T:
        request = endpoint.build(**args)
        response = self.send(Call(request, token if endpoint.auth else None))
        return endpoint.read(decode_json(response, endpoint.name), args)

    def run(self, flow: Flow[T], ask: Callable[[Any], Any]) -> T:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                value, error = None, None
                if isinstance(step, Call):
                    try:
                        value = self.send(step)
                    except BambuError as exc:
                        error = exc
                else:
                    value = ask(step.prompt)
        finally:
            flow.close()

    def put(self, url: str, path: str, size: int, what: str) -> HttpResponse:
        """PUT a file to a presigned URL: no Content-Type, no bearer token, a fixed Content-Length."""
        request = Request(what, "PUT", "api", "", None, None, {}, True, False)
        retry = 0
        while True:
            self._check_open()
            result: HttpResponse | BambuError
            try:
                response = self.http.request("PUT", url, content=_file_chunks(path, size), content_length=size,
                                             headers={"User-Agent": self.headers["User-Agent"]})
                result = response if response.status < 400 else _storage_error(response, what)
            except (BambuConnectionError, BambuTimeoutError) as exc:
                result = exc
            if isinstance(result, HttpResponse):
                return result
            delay = self.next_delay(Call(request), retry, result)
            if delay is None:
                raise result
            self._sleep(delay)
            retry += 1

    def put_bytes(self, url: str, data: bytes, what: str) -> HttpResponse:
        self._check_open()
        response = self.http.request("PUT", url, content=data, headers={"User-Agent": self.headers["User-Agent"]})
        if response.status >= 400:
            raise _storage_error(response, what)
        return response

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.http.close()


async def _afile_chunks(path: str, size: int) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)


class AsyncSession(_SessionBase):
    """The async twin of :class:`SyncSession` over :class:`~bambulab.transports.http.AsyncHttpTransport`."""

    def __init__(
        self,
        *,
        http_client: httpx2.AsyncClient | None = None,
        timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.http = AsyncHttpTransport(http_client, timeout=timeout, ssl_context=ssl_context)

    async def send(self, call: Call) -> HttpResponse:
        retry = 0
        while True:
            self._check_open()
            request = call.request
            result: HttpResponse | BambuError
            try:
                response = await self.http.request(
                    request.method, self.url(request), params=request.params, json=request.json,
                    headers=self.request_headers(call),
                )
                result = self.outcome(call, response)
            except (BambuConnectionError, BambuTimeoutError) as exc:
                result = exc
            if isinstance(result, HttpResponse):
                return result
            delay = self.next_delay(call, retry, result)
            if delay is None:
                raise result
            await asyncio.sleep(delay)
            retry += 1

    async def call(self, endpoint: Endpoint[T], token: str | None, **args: Any) -> T:
        request = endpoint.build(**args)
        response = await self.send(Call(request, token if endpoint.auth else None))
        return endpoint.read(decode_json(response, endpoint.name), args)

    async def run(self, flow: Flow[T], ask: Callable[[Any], Any]) -> T:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(value)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                value, error = None, None
                if isinstance(step, Call):
                    try:
                        value = await self.send(step)
                    except BambuError as exc:
                        error = exc
                else:
                    value = ask(step.prompt)
                    if inspect.isawaitable(value):
                        value = await value
        finally:
            flow.close()

    async def put(self, url: str, path: str, size: int, what: str) -> HttpResponse:
        request = Request(what, "PUT", "api", "", None, None, {}, True, False)
        retry = 0
        while True:
            self._check_open()
            result: HttpResponse | BambuError
            try:
                response = await self.http.request(
                    "PUT", url, content=_afile_chunks(path, size), content_length=size,
                    headers={"User-Agent": self.headers["User-Agent"]},
                )
                result = response if response.status < 400 else _storage_error(response, what)
            except (BambuConnectionError, BambuTimeoutError) as exc:
                result = exc
            if isinstance(result, HttpResponse):
                return result
            delay = self.next_delay(Call(request), retry, result)
            if delay is None:
                raise result
            await asyncio.sleep(delay)
            retry += 1

    async def put_bytes(self, url: str, data: bytes, what: str) -> HttpResponse:
        self._check_open()
        response = await self.http.request("PUT", url, content=data,
                                           headers={"User-Agent": self.headers["User-Agent"]})
        if response.status >= 400:
            raise _storage_error(response, what)
        return response

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.http.aclose()


def describe(url: str) -> str:
    """A URL as it may appear in a message (no query: presigned URLs carry a signature there)."""
    return redact_url(url)
