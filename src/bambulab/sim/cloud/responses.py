"""Response helpers shared by the fake cloud's HTTP handlers (envelopes, errors, request parsing)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bambulab.sim.cloud.model import Account

if TYPE_CHECKING:
    from bambulab.sim.cloud import FakeCloud

__all__ = [
    "IOT", "MAX_JSON", "MAX_UPLOAD", "AuthedHandler", "Handler", "authenticated", "bad_request", "bearer",
    "bucket", "cookie_flags", "envelope", "error", "forbidden", "json_body", "not_found", "pending_login",
    "query_int", "unauthorized",
]

Handler = Callable[[Request], Awaitable[Response]]
AuthedHandler = Callable[[Request, Account], Awaitable[Response]]

MAX_UPLOAD = 512 * 1024 * 1024
MAX_JSON = 1024 * 1024

#: The prefix of the device ("iot") routes.
IOT = "/v1/iot-service/api"


def envelope(**payload: Any) -> JSONResponse:
    return JSONResponse({"message": "success", "code": None, "error": None, **payload})


def error(status: int, message: str, *, code: int | None = None, error: str | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "code": code, "error": error or message}, status_code=status)


def bad_request(message: str = "invalid request body") -> JSONResponse:
    return error(400, message, error="Bad Request")


def forbidden() -> JSONResponse:
    return error(403, "permission denied", code=8, error="Resource forbidden")


def not_found() -> JSONResponse:
    return error(404, "resource not found", code=2, error="Not Found")


def unauthorized() -> Response:
    return Response(status_code=401)  # the real API answers an unknown token with an empty 401


async def json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if len(raw) > MAX_JSON:
        return None
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def query_int(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    return int(value)  # ValueError -> caller answers 400


def bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def cookie_flags(cloud_tls: bool) -> dict[str, Any]:
    return {"path": "/", "httponly": True, "samesite": "lax", "secure": cloud_tls}


def authenticated(cloud: FakeCloud) -> Callable[[AuthedHandler], Handler]:
    """Wraps a handler: the bearer token must name an account (else an empty 401), which it is given."""

    def authed(handler: AuthedHandler) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = bearer(request)
            account = cloud.token_account(token) if token else None
            if account is None:
                return unauthorized()
            try:
                return await handler(request, account)
            except ValueError:
                return bad_request("invalid parameter")

        return endpoint

    return authed


def bucket() -> str:
    from bambulab.sim.cloud import BUCKET

    return BUCKET


def pending_login(login_type: str, tfa_key: str) -> dict[str, Any]:
    return {"accessToken": "", "refreshToken": "", "loginType": login_type, "tfaKey": tfa_key,
            "expiresIn": 0, "refreshExpiresIn": 0}
