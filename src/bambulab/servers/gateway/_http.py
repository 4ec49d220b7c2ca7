"""Small helpers the gateway's route modules share: JSON bodies, errors, ETags, auth, redaction."""

from __future__ import annotations

import email.utils
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from bambulab.farm.config import ApiToken
    from bambulab.farm.fleet import Member
    from bambulab.servers.gateway import Gateway

__all__ = [
    "RawJson",
    "bearer_token",
    "cached_json",
    "error",
    "json_response",
    "member_or_404",
    "redact",
]

_SECRET_KEYS = ("access_code", "password", "passwd", "token", "secret", "dev_access_code")


class RawJson(bytes):
    """Bytes that are already JSON (sent as they are)."""


def _dumps(body: Any) -> bytes:
    if isinstance(body, RawJson):
        return bytes(body)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str).encode()


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(body), status_code=status, media_type="application/json", headers=dict(headers or {}))


def error(status: int, code: str, message: str, printer_code: int | None = None) -> Response:
    """The gateway's error shape: ``{"error", "message", "printer_code"}``."""
    return json_response({"error": code, "message": message, "printer_code": printer_code}, status)


def _http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def cached_json(request: Request, tag: str, body_factory: Any, last_modified: float | None = None) -> Response:
    """``304 Not Modified`` when ``If-None-Match`` names ``tag``; else the JSON body with ``ETag``
    (and ``Last-Modified``). ``body_factory`` is only called when a body is sent."""
    etag = '"' + hashlib.blake2b(tag.encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if last_modified is not None:
        headers["Last-Modified"] = _http_date(last_modified)
    match = request.headers.get("if-none-match")
    if match is not None and (match.strip() == "*" or etag in [m.strip().removeprefix("W/") for m in match.split(",")]):
        return Response(status_code=304, headers=headers)
    return json_response(body_factory(), headers=headers)


def member_or_404(gateway: Gateway, serial: str) -> Member | Response:
    member = gateway.fleet.get(serial)
    if member is None:
        return error(404, "unknown_printer", f"no printer with serial {serial.strip().upper()!r} in this gateway")
    return member


def bearer_token(gateway: Gateway, request: Request) -> ApiToken | None:
    """The configured token presented in ``Authorization: Bearer ...``, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return gateway.config.find_token(value.strip())


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` without keys that look like secrets and with known secret strings
    replaced (for the raw state routes: a ``get_access_code`` reply must never leak)."""
    known = [s for s in secrets if s]

    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: ("***" if any(s in str(k).lower() for s in _SECRET_KEYS) else walk(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and known:
            for s in known:
                if s in v:
                    v = v.replace(s, "***")
        return v

    return walk(value)
