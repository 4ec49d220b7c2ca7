"""The cloud API proxy as an ASGI app (see ``docs/proxy.md`` for the behaviour, this for the why).

The request path is plain ASGI rather than a router: a cached device list is served in a few
dozen microseconds, which is what lets one proxy stand in front of a hundred dashboards. Order of
the checks, each answering with a JSON error when it refuses:

1. ``/health``, ``/metrics`` and ``/admin/...`` are the proxy's own.
2. The custom token (``Authorization: Bearer``) must be valid and unexpired: 401.
3. Strict mode (the proxy's, or a token scoped ``strict``): the path is normalised, must match a
   strict rule, carry no method-override or URL-rewrite header and no body: 403 naming the rule.
4. An account in backoff (upstream 429 or Cloudflare) waits: 429 or 503 with Retry-After.
5. Cacheable reads are served from the per-account cache or coalesced with a call under way.
6. Anything that goes upstream spends the account's budget for its endpoint class: 429.
7. Upstream: the real token replaces the client's Authorization; hop-by-hop headers are dropped
   both ways; the answer goes back as it came (status, body, headers that matter), streamed
   unless it is cached or filtered. Strict answers lose ``dev_access_code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bambulab.cloud.mqtt import CloudConnection
from bambulab.cloud.tokens import SCOPES, TokenGrant, TokenManager
from bambulab.exceptions import BambuConnectionError, BambuTimeoutError
from bambulab.servers.proxy.accesslog import AccessLog, redact_query
from bambulab.servers.proxy.cache import CachedResponse, ResponseCache
from bambulab.servers.proxy.limits import Backoff, RateLimiter
from bambulab.servers.proxy.realtime import RealtimeSessions, _RealtimeRefusal
from bambulab.servers.proxy.rules import MAX_QUERY, Rule, _PathRefused, match, normalise_path
from bambulab.transports.passthrough import AsyncPassThrough, HttpStream

__all__ = ["UPSTREAMS", "ProxyApp", "ProxyConfig"]

log = logging.getLogger(__name__)

UPSTREAMS = {"global": "https://api.bambulab.com", "china": "https://api.bambulab.cn"}
MODES = ("strict", "full")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Headers = list[tuple[bytes, bytes]]

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
#: Request headers never forwarded: ours to replace, or the client's own business.
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"authorization", b"cookie", b"forwarded",
                               b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"}
#: Response headers never returned as they are: hop-by-hop, able to carry a credential, or the
#: length (set again for the body actually sent).
_RESPONSE_DROP = {name.decode() for name in _HOP_BY_HOP} | {"content-length", "set-cookie"} | {
    # The upstream's CORS policy is about its own origin; the proxy's (--cors-origin) is its own.
    "access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers",
    "access-control-allow-methods", "access-control-expose-headers", "access-control-max-age"}
#: Headers that make some servers treat a request as another method or another URL.
_SMUGGLING = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override",
                        b"x-original-url", b"x-rewrite-url", b"x-original-method", b"x-override-url"})
_OVERRIDE_PARAM = re.compile(r"(?:^|&)(?:_method|x-http-method-override|_httpmethod)(?:=|&|$)", re.IGNORECASE)
_ACCESS_CODE_KEYS = frozenset({"dev_access_code", "access_code", "accesscode"})
_ACCESS_CODE_BYTES = (b"access_code", b"accesscode")  # every key above contains one of these
_JSON = (b"content-type", b"application/json")
_ORIGIN = re.compile(r"https?://(?:[a-z0-9.\-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?", re.IGNORECASE)  # no path, no user
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


@dataclass
class ProxyConfig:
    """Everything the proxy needs; the CLI builds one, tests build their own."""

    tokens: TokenManager
    mode: str = "strict"
    upstream: str = UPSTREAMS["global"]
    upstream_ssl_context: ssl.SSLContext | None = None
    upstream_timeout: float = 15.0
    admin_token: str | None = field(default=None, repr=False)
    cache: bool = True
    ttls: dict[str, float] = field(default_factory=dict)  # rule name -> seconds, overriding the rule's
    rate_limit: bool = True
    budgets: dict[str, float] | None = None  # requests per minute per endpoint class
    max_response: int = 16 * 1024 * 1024  # bytes read into memory (cached or filtered answers)
    max_upload: int = 512 * 1024 * 1024
    mqtt_host: str | None = None
    mqtt_port: int = 8883
    mqtt_ssl_context: ssl.SSLContext | None = None
    mqtt_server_hostname: str | None = None
    realtime_idle: float = 120.0
    access_log: IO[str] | None = None
    health_interval: float = 30.0
    #: Browser origins (``https://dash.example``) whose pages may call the proxy; ``*`` for any.
    #: None of them is needed by scripts or servers, only by a web page on another origin.
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be strict or full, not {self.mode!r}")
        self.upstream = UPSTREAMS.get(self.upstream, self.upstream).rstrip("/")
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError("the upstream must be global, china or an http(s) URL")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("the admin token must have at least 16 characters")
        origins = []
        for origin in self.cors_origins:
            origin = origin.strip().rstrip("/")
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"a CORS origin is a scheme and host (https://dash.example:8443), not {origin!r}")
            origins.append(origin.lower())
        self.cors_origins = tuple(origins)


class _Refusal(Exception):
    """An answer decided before or instead of going upstream."""

    def __init__(self, status: int, error: str, message: str, *, retry_after: float | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": str(self)}
        if self.retry_after is not None:
            out["retry_after"] = _seconds(self.retry_after)
        out.update(self.extra)
        return out


@dataclass
class _Exchange:
    """What one request did, for the access log and the metrics."""

    method: str
    path: str
    query: str
    route: str = "other"
    status: int = 0
    cache: str = "none"
    token: str | None = None
    account: str | None = None
    size: int = 0


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def _without_access_codes(obj: dict[str, Any], removed: list[bool]) -> dict[str, Any]:
    """``json.loads``'s object hook: called once per JSON object, at any depth, as it is built."""
    for key in obj:
        if key.lower() in _ACCESS_CODE_KEYS:
            removed[0] = True
            return {k: v for k, v in obj.items() if k.lower() not in _ACCESS_CODE_KEYS}
    return obj


def _filter_strict(body: bytes) -> bytes:
    """A JSON body without access codes; anything else passes unchanged (it cannot hold one by name).

    Parsed and serialised again only when it might name one: a body whose lower-case bytes hold
    no access-code key, no ``\\u`` escape (which could spell one) and no NUL (UTF-16/32 JSON)
    passes as it is, without the cost of a round trip through :mod:`json`. The keys are dropped by
    an object hook while the JSON is parsed (one call per object rather than a walk over every
    value afterwards: the filter was a quarter of the proxy's CPU on an uncached device list).
    A body nested too deeply to parse is refused rather than passed: it might hide a code.
    """
    lower = body.lower()
    if b"\x00" not in body and b"\\u" not in lower and not any(key in lower for key in _ACCESS_CODE_BYTES):
        return body
    removed = [False]
    try:
        data = json.loads(body, object_hook=lambda obj: _without_access_codes(obj, removed))
        return _COMPACT.encode(data).encode() if removed[0] else body
    except RecursionError:
        raise _Refusal(502, "upstream_unreadable", "the Bambu cloud's answer is nested too deeply for the "
                       "strict filter") from None
    except ValueError:
        return body


def _json_response(status: int, payload: Any, extra: Headers | None = None) -> tuple[int, Headers, bytes]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return status, [_JSON, *(extra or [])], body


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bambu_proxy_requests", "Requests by route, status and cache result",
                                ["route", "status", "cache"], registry=self.registry)
        self.upstream = Histogram("bambu_proxy_upstream_seconds", "Upstream latency (headers received)",
                                  ["route"], registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.rejected = Counter("bambu_proxy_rate_limited", "Requests refused for a budget or an upstream backoff",
                                ["reason"], registry=self.registry)
        self.cache_entries = Gauge("bambu_proxy_cache_entries", "Entries in the response cache",
                                   registry=self.registry)
        self.sessions = Gauge("bambu_proxy_realtime_sessions", "Open real-time (cloud MQTT) sessions",
                              registry=self.registry)
        self._children: dict[tuple[str, str, str], Any] = {}
        self._upstream_children: dict[str, Any] = {}

    def count(self, route: str, status: int, cache: str) -> None:
        key = (route, str(status), cache)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(*key)
        child.inc()

    def upstream_seconds(self, route: str, seconds: float) -> None:
        child = self._upstream_children.get(route)
        if child is None:  # labels() takes a lock and builds the key each time: once per route
            child = self._upstream_children[route] = self.upstream.labels(route)
        child.observe(seconds)


class ProxyApp:
    """The ASGI application. Build with a :class:`ProxyConfig`; serve with uvicorn (``ProxyServer``)."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.tokens = config.tokens
        self.cache = ResponseCache()
        self.limiter = RateLimiter(config.budgets, enabled=config.rate_limit)
        self.backoff = Backoff()
        self.metrics = _Metrics()
        self.access = AccessLog(config.access_log)
        self.realtime = RealtimeSessions(self._connection, idle_timeout=config.realtime_idle)
        self._admin_digest = (hashlib.sha256(config.admin_token.encode()).digest()
                              if config.admin_token else None)
        self._upstream: AsyncPassThrough | None = None
        self._health: tuple[float, dict[str, Any]] | None = None
        self._health_lock: asyncio.Lock | None = None
        self.started = time.time()
        self.requests = 0

    def __repr__(self) -> str:
        return f"<ProxyApp {self.config.mode} -> {self.config.upstream}>"

    # ------------------------------------------------------------------ plumbing

    @property
    def upstream(self) -> AsyncPassThrough:
        if self._upstream is None:
            self._upstream = AsyncPassThrough(timeout=self.config.upstream_timeout,
                                              ssl_context=self.config.upstream_ssl_context)
        return self._upstream

    def _connection(self, real_token: str) -> CloudConnection:
        cfg = self.config
        return CloudConnection(
            real_token, devices=None, api_url=cfg.upstream, host=cfg.mqtt_host, port=cfg.mqtt_port,
            ssl_context=cfg.mqtt_ssl_context, server_hostname=cfg.mqtt_server_hostname,
            region="china" if cfg.upstream.endswith(".cn") else "global",
        )

    async def aclose(self) -> None:
        self.access.flush()
        await self.realtime.close()
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        with contextlib.suppress(OSError):
            self.tokens.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        self.requests += 1
        if self.config.cors_origins:
            origin = _header(scope["headers"], b"origin")
            if origin is not None:
                allowed = self._cors_allowed(origin)
                if scope["method"] == "OPTIONS" and _header(scope["headers"], b"access-control-request-method"):
                    await self._preflight(scope, send, allowed)
                    return
                if allowed is not None:
                    send = _with_cors(send, allowed)
        started = time.perf_counter()
        path = scope["path"]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        ex = _Exchange(scope["method"], path, query)
        try:
            if path == "/health" or path == "/metrics" or path.startswith("/admin"):
                ex.route = path.strip("/").split("/")[0] or "root"
                await self._own(scope, receive, send, ex)
            else:
                await self._proxy(scope, receive, send, ex)
        finally:
            self.metrics.count(ex.route, ex.status, ex.cache)
            if self.access.stream is not None:
                client = scope.get("client")
                self.access.write(method=ex.method, path=ex.path, query=redact_query(ex.query), status=ex.status,
                                  ms=round((time.perf_counter() - started) * 1000, 2), cache=ex.cache,
                                  route=ex.route, label=ex.token, account=ex.account, bytes=ex.size,
                                  client=client[0] if client else None)

    # ------------------------------------------------------------------ CORS

    def _cors_allowed(self, origin: bytes) -> bytes | None:
        """The ``Access-Control-Allow-Origin`` value for this origin, or None when it is not allowed."""
        text = origin.decode("latin-1").strip().rstrip("/").lower()
        if text in self.config.cors_origins:
            return text.encode("latin-1")
        return b"*" if "*" in self.config.cors_origins else None

    async def _preflight(self, scope: Scope, send: Send, allowed: bytes | None) -> None:
        """A browser asking first: answered here, never upstream; no token is needed (none is sent)."""
        if allowed is None:
            status, headers, body = _json_response(403, {"error": "cors_origin", "message": "this origin may not "
                                                         "call the proxy (see --cors-origin)"}, [(b"vary", b"origin")])
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        methods = b"GET, POST" if self.config.mode == "strict" else b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", allowed), (b"access-control-allow-methods", methods),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", b"600"), (b"vary", b"origin")]})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _respond(send: Send, ex: _Exchange, status: int, headers: Headers, body: bytes) -> None:
        ex.status = status
        ex.size = len(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, send: Send, ex: _Exchange, refusal: _Refusal) -> None:
        extra: Headers = []
        if refusal.retry_after is not None:
            extra.append((b"retry-after", str(_seconds(refusal.retry_after)).encode()))
        status, headers, body = _json_response(refusal.status, refusal.body(), extra)
        await self._respond(send, ex, status, headers, body)

    # ------------------------------------------------------------------ the proxy path

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        try:
            await self._forward(scope, receive, send, ex)
        except _Refusal as refusal:
            if refusal.status == 429 or refusal.error.startswith("upstream_blocked"):
                self.metrics.rejected.labels(refusal.error).inc()
            await self._refuse(send, ex, refusal)
        except _RealtimeRefusal as exc:
            await self._refuse(send, ex, _Refusal(exc.status, exc.error, str(exc)))

    def _grant(self, headers: Headers) -> TokenGrant:
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None:
            raise _Refusal(401, "missing_token", "send Authorization: Bearer <your proxy token>")
        text = value.decode("latin-1")
        if not text[:7].lower() == "bearer ":
            raise _Refusal(401, "invalid_token", "the Authorization header must be Bearer <token>")
        grant = self.tokens.lookup(text[7:].strip())
        if grant is None:
            raise _Refusal(401, "invalid_token", "unknown, revoked or expired proxy token")
        return grant

    async def _forward(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        headers: Headers = scope["headers"]
        method: str = scope["method"]
        grant = self._grant(headers)
        ex.token, ex.account = grant.name, grant.account
        strict = self.config.mode == "strict" or grant.scope == "strict"
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        try:
            canonical: str | None = normalise_path(raw_path)
        except _PathRefused as exc:
            if strict:
                raise _Refusal(403, "forbidden", str(exc), rule=exc.rule) from None
            canonical = None
        rule = match(method, canonical) if canonical is not None else None
        if canonical is not None:
            ex.path = canonical
        if rule is not None:
            ex.route = rule.name
        if strict:
            self._check_strict(method, rule, headers, ex.query)
        if rule is not None and rule.local:
            await self._realtime(rule, grant, scope, receive, send, ex)
            return
        blocked = self.backoff.blocked(grant.account)
        if blocked is not None:
            wait, reason = blocked
            status = 503 if reason == "upstream_blocked" else 429
            raise _Refusal(status, reason, "the Bambu cloud refused this account recently; the proxy waits "
                           "before asking again", retry_after=wait)
        # Strict forwards the one canonical path it matched; full forwards the raw path as it came,
        # and caches only when that raw path is already canonical (else the upstream might read it
        # differently from the key it would be stored under).
        exact = canonical is not None and raw_path == canonical.encode()
        url = self.config.upstream + (canonical if strict and canonical else raw_path.decode("latin-1"))
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in headers) and not any(
            k == b"content-length" and v.strip() == b"0" for k, v in headers)
        ttl = self._ttl(rule) if strict or exact else 0.0
        if ttl > 0 and method == "GET" and not has_body:
            key = (grant.account, "strict" if strict else "full", ex.path, ex.query)
            cached, outcome = await self.cache.fetch(
                key, ttl, lambda: self._fetch(method, url, ex.query, headers, grant, rule, strict))
            ex.cache = outcome
            age = max(0, int(time.monotonic() - cached.stored))
            await self._respond(send, ex, cached.status, [
                *cached.headers, (b"age", str(age).encode()), (b"x-cache", outcome.encode())], cached.body)
            return
        self._spend(grant, rule, method)
        body: bytes | AsyncIterator[bytes] | None = None
        if has_body:
            body = _request_body(receive, self.config.max_upload)
        elif any(k == b"content-length" for k, _ in headers):
            body = b""  # an explicit empty body stays explicit (some servers want a length on POST)
        stream = await self._send_upstream(method, url, ex.query, headers, grant, rule, body, identity=strict)
        async with stream:
            self._judge(grant, stream)
            out = _response_headers(stream, grant)
            if strict:
                data = _filter_strict(await self._read(stream, strict=True))
                await self._respond(send, ex, stream.status, out, data)
                return
            await self._stream(send, ex, stream, out)

    def _check_strict(self, method: str, rule: Rule | None, headers: Headers, query: str) -> None:
        if rule is None or not rule.strict:
            raise _Refusal(403, "forbidden", f"{method} on this path is not on the strict allowlist",
                           rule="not-on-allowlist")
        for name, _ in headers:
            if name in _SMUGGLING:
                raise _Refusal(403, "forbidden", f"the {name.decode()} header is refused in strict mode",
                               rule="override-header")
        if method == "GET" and any(
                (k == b"content-length" and v.strip() not in (b"", b"0")) or k == b"transfer-encoding"
                for k, v in headers):
            raise _Refusal(403, "forbidden", "a read carries no body", rule="body-on-read")
        if len(query) > MAX_QUERY:
            raise _Refusal(403, "forbidden", f"the query is longer than {MAX_QUERY} bytes", rule="query-too-long")
        if _OVERRIDE_PARAM.search(query):
            raise _Refusal(403, "forbidden", "method-override parameters are refused in strict mode",
                           rule="override-parameter")

    def _ttl(self, rule: Rule | None) -> float:
        if rule is None or not self.config.cache:
            return 0.0
        return self.config.ttls.get(rule.name, rule.ttl)

    def _spend(self, grant: TokenGrant, rule: Rule | None, method: str) -> None:
        klass = rule.klass if rule is not None else ("other" if method in ("GET", "HEAD") else "write")
        wait = self.limiter.acquire(grant.account, klass)
        if wait > 0:
            raise _Refusal(429, "rate_limited", f"this account's budget for {klass} requests is spent",
                           retry_after=wait, limit_per_minute=self.limiter.budgets.get(klass))

    async def _send_upstream(self, method: str, url: str, query: str, headers: Headers, grant: TokenGrant,
                             rule: Rule | None, body: bytes | AsyncIterator[bytes] | None, *,
                             identity: bool) -> HttpStream:
        named = _connection_named(v.decode("latin-1") for k, v in headers if k == b"connection")
        out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k not in _REQUEST_DROP
               and not k.startswith(b"x-forwarded-") and k.decode("latin-1") not in named]
        out.append(("authorization", f"Bearer {grant.real_token}"))
        if identity:  # the answer is parsed or cached for every client: it must come uncompressed
            out = [(k, v) for k, v in out if k != "accept-encoding"] + [("accept-encoding", "identity")]
        started = time.perf_counter()
        try:
            stream = await self.upstream.send(method, url, query=query, headers=out, content=body)
        except BambuTimeoutError:
            raise _Refusal(504, "upstream_timeout", "the Bambu cloud did not answer in time") from None
        except (BambuConnectionError, ValueError):
            raise _Refusal(502, "upstream_unreachable", "the Bambu cloud cannot be reached") from None
        finally:
            self.metrics.upstream_seconds(rule.name if rule else "other", time.perf_counter() - started)
        return stream

    def _judge(self, grant: TokenGrant, stream: HttpStream) -> None:
        """Upstream 429 and Cloudflare blocks put the account in backoff and become our own refusals."""
        status = stream.status
        cloudflare = (stream.header("server") or "").lower() == "cloudflare" or stream.header("cf-ray") is not None
        html = "html" in (stream.header("content-type") or "")
        retry = _retry_after(stream.header("retry-after"))
        if status == 429:
            wait = self.backoff.failed(grant.account, "upstream_rate_limited", retry)
            raise _Refusal(429, "upstream_rate_limited", "the Bambu cloud is rate-limiting this account",
                           retry_after=wait, cloudflare=cloudflare)
        if status in (403, 503) and cloudflare and html:
            wait = self.backoff.failed(grant.account, "upstream_blocked", retry)
            raise _Refusal(503, "upstream_blocked", "Cloudflare is blocking requests to the Bambu cloud",
                           retry_after=wait)
        if status < 400:
            self.backoff.succeeded(grant.account)

    async def _read(self, stream: HttpStream, *, strict: bool) -> bytes:
        if strict and (stream.header("content-encoding") or "identity").lower() != "identity":
            raise _Refusal(502, "upstream_encoding", "the Bambu cloud sent a compressed answer the strict "
                           "filter cannot read")
        try:
            return await stream.read(self.config.max_response)
        except (BambuConnectionError, BambuTimeoutError):
            raise _Refusal(502, "upstream_failed", "the Bambu cloud's answer broke off or was too large") from None

    async def _fetch(self, method: str, url: str, query: str, headers: Headers, grant: TokenGrant,
                     rule: Rule | None, strict: bool) -> CachedResponse:
        self._spend(grant, rule, method)
        stream = await self._send_upstream(method, url, query, headers, grant, rule, None, identity=True)
        async with stream:
            self._judge(grant, stream)
            body = await self._read(stream, strict=True)
            out = _response_headers(stream, grant)
        if strict:
            body = _filter_strict(body)
        return CachedResponse(stream.status, tuple(out), body, time.monotonic(),
                              cacheable="no-store" not in (stream.header("cache-control") or ""))

    async def _stream(self, send: Send, ex: _Exchange, stream: HttpStream, out: Headers) -> None:
        length = stream.header("content-length")
        if length is not None:
            out.append((b"content-length", length.encode()))
        ex.status = stream.status
        await send({"type": "http.response.start", "status": stream.status, "headers": out})
        try:
            async for chunk in stream.iter_bytes():
                ex.size += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (BambuConnectionError, BambuTimeoutError):
            log.warning("the upstream answer to %s %s broke off after %d bytes", ex.method, ex.path, ex.size)
            raise
        await send({"type": "http.response.body", "body": b""})

    # ------------------------------------------------------------------ real-time data

    async def _realtime(self, rule: Rule, grant: TokenGrant, scope: Scope, receive: Receive, send: Send,
                        ex: _Exchange) -> None:
        if rule.name == "realtime-start":
            payload = await _small_json(receive)
            device = payload.get("device_id") if isinstance(payload, dict) else None
            if not isinstance(device, str) or not device.strip():
                raise _Refusal(400, "bad_request", 'send {"device_id": "<serial>"}')
            self._spend(grant, rule, "POST")
            result = await self.realtime.start(grant.account, grant.real_token, device)
            self.metrics.sessions.set(len(self.realtime))
            await self._respond(send, ex, *_json_response(200, result))
            return
        device = _query_value(ex.query, "device_id")
        if not device:
            raise _Refusal(400, "bad_request", "device_id is required: ?device_id=<serial>")
        if rule.name == "realtime":
            await self._respond(send, ex, *_json_response(200, self.realtime.snapshot(grant.account, device)))
            return
        events = self.realtime.stream(grant.account, device)
        first = await anext(events)  # raises _RealtimeRefusal before any header is sent
        ex.status = 200
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]})
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            while not disconnected.done():
                next_event = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({next_event, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if next_event not in done:
                    next_event.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_event
                    break
                try:
                    chunk = next_event.result()
                except StopAsyncIteration:
                    break
                ex.size += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass
        finally:
            disconnected.cancel()
            await events.aclose()

    # ------------------------------------------------------------------ the proxy's own endpoints

    async def _own(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/health" and method == "GET":
            report = await self.health()
            await self._respond(send, ex, *_json_response(200 if report["status"] == "ok" else 503, report))
            return
        if path == "/metrics" and method == "GET":
            self.metrics.cache_entries.set(len(self.cache))
            self.metrics.sessions.set(len(self.realtime))
            body = generate_latest(self.metrics.registry)
            await self._respond(send, ex, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)
            return
        try:
            await self._admin(scope, receive, send, ex, path, method)
        except _Refusal as refusal:
            await self._refuse(send, ex, refusal)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange, path: str, method: str) -> None:
        if self._admin_digest is None:
            raise _Refusal(404, "admin_disabled", "the admin endpoints are off (no admin token configured)")
        value = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        given = value[7:].strip() if value[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._admin_digest):
            raise _Refusal(401, "invalid_admin_token", "the admin endpoints need the admin token")
        parts = [p for p in path.split("/") if p]
        if parts == ["admin", "stats"] and method == "GET":
            await self._respond(send, ex, *_json_response(200, self.stats()))
        elif parts == ["admin", "tokens"] and method == "GET":
            await self._respond(send, ex, *_json_response(200, {"tokens": [asdict(i) for i in self.tokens.list()]}))
        elif parts == ["admin", "tokens"] and method == "POST":
            await self._respond(send, ex, *_json_response(201, self._create_token(await _small_json(receive))))
        elif len(parts) == 3 and parts[:2] == ["admin", "tokens"] and method == "DELETE":
            if not self.tokens.remove(parts[2]):
                raise _Refusal(404, "not_found", "no token with that name")
            await self._respond(send, ex, 204, [], b"")
        else:
            raise _Refusal(404, "not_found", "no such admin endpoint")

    def _create_token(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _Refusal(400, "bad_request", "send a JSON object")
        real = payload.get("real_token")
        like = payload.get("same_account_as")
        if like is not None:  # a new token for the account an existing entry stands for
            grant = next((g for g in self.tokens.grants() if g.name == like), None)
            if grant is None:
                raise _Refusal(404, "not_found", "no token with that name")
            real = grant.real_token
        scope = payload.get("scope", "strict")
        expires_in = payload.get("expires_in")
        name = payload.get("name")
        if not isinstance(real, str) or scope not in SCOPES or (name is not None and not isinstance(name, str)):
            raise _Refusal(400, "bad_request", "real_token (or same_account_as), scope strict|full, name")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
                                       or expires_in <= 0):
            raise _Refusal(400, "bad_request", "expires_in must be a positive number of seconds")
        expires = time.time() + expires_in if expires_in is not None else None
        try:
            custom = self.tokens.add(real, name=name, scope=scope, expires=expires)
        except ValueError as exc:
            raise _Refusal(400, "bad_request", str(exc)) from None
        made = self.tokens.lookup(custom, touch=False)
        info = next(i for i in self.tokens.list() if made is not None and i.name == made.name)
        return {"token": custom, **asdict(info)}

    def stats(self) -> dict[str, Any]:
        return {
            "mode": self.config.mode, "uptime_s": round(time.time() - self.started, 1), "requests": self.requests,
            "tokens": len(self.tokens), "cache": {"entries": len(self.cache), "bytes": self.cache.size_bytes,
                                                   "upstream_calls": self.cache.upstream_calls},
            "rate_limited": self.limiter.rejected, "accounts_in_backoff": len(self.backoff),
            "realtime_sessions": len(self.realtime),
        }

    async def health(self) -> dict[str, Any]:
        """Upstream reachable, tokens valid (probed at most every ``health_interval`` s), cache size."""
        if self._health_lock is None:
            self._health_lock = asyncio.Lock()
        async with self._health_lock:
            now = time.monotonic()
            if self._health is None or now - self._health[0] >= self.config.health_interval:
                self._health = (now, await self._probe())
        probe = self._health[1]
        ok = probe["reachable"] and probe["valid_accounts"] == probe["accounts"]
        return {"status": "ok" if ok else "degraded", "mode": self.config.mode, "upstream": probe,
                "tokens": len(self.tokens), "cache": {"entries": len(self.cache), "bytes": self.cache.size_bytes},
                "realtime_sessions": len(self.realtime)}

    async def _probe(self) -> dict[str, Any]:
        accounts: dict[str, TokenGrant] = {}
        for grant in self.tokens.grants():
            accounts.setdefault(grant.account, grant)
        checked = list(accounts.values())[:10]
        reachable, valid, latency = False, 0, None
        targets: list[TokenGrant | None] = [*checked] if checked else [None]
        for target in targets:
            headers = [("authorization", f"Bearer {target.real_token}")] if target is not None else []
            started = time.perf_counter()
            try:
                stream = await self.upstream.send("GET", self.config.upstream + "/v1/design-user-service/my/preference",
                                                  headers=headers, timeout=5.0)
            except (BambuConnectionError, BambuTimeoutError, ValueError):
                continue
            async with stream:
                latency = round((time.perf_counter() - started) * 1000, 1)
                reachable = True
                valid += target is not None and stream.status == 200
        return {"url": self.config.upstream, "reachable": reachable, "latency_ms": latency,
                "accounts": len(checked), "valid_accounts": valid}


# ---------------------------------------------------------------------- helpers


def _header(headers: Headers, name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


_CORS_EXPOSE = (b"access-control-expose-headers", b"age, x-cache, retry-after")


def _with_cors(send: Send, allowed: bytes) -> Send:
    """``send`` that adds the CORS answer headers to the response's start."""

    async def cors_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"access-control-allow-origin", allowed),
                                               _CORS_EXPOSE, (b"vary", b"origin")]}
        await send(message)


    return cors_send


def _connection_named(values: Any) -> set[str]:
    """Header names a Connection header lists: hop-by-hop by declaration (RFC 9110 §7.6.1)."""
    return {name.strip().lower() for value in values for name in value.split(",") if name.strip()}


def _response_headers(stream: HttpStream, grant: TokenGrant) -> Headers:
    named = _connection_named(v for k, v in stream.headers if k == "connection")
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stream.headers
            if k not in _RESPONSE_DROP and k not in named and grant.real_token not in v]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _query_value(query: str, name: str) -> str | None:
    from urllib.parse import parse_qsl

    return next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == name), None)


async def _request_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BambuConnectionError("the client went away during the upload")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BambuConnectionError(f"the request body is larger than {limit} bytes")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _small_json(receive: Receive, limit: int = 64 * 1024) -> Any:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refusal(400, "bad_request", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, "too_large", f"the JSON body is larger than {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return json.loads(b"".join(parts) or b"null")
    except ValueError:
        raise _Refusal(400, "bad_request", "the body is not JSON") from None


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
