"""The fake cloud's web host (``bambulab.com``: CSRF cookie, two-factor sign-in) and its admin endpoint."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bambulab.sim.cloud.http import FaultMiddleware
from bambulab.sim.cloud.responses import (
    Handler,
    bad_request,
    bearer,
    cookie_flags,
    error,
    json_body,
    not_found,
    unauthorized,
)

if TYPE_CHECKING:
    from bambulab.sim.cloud import FakeCloud

__all__ = ["build_admin_app", "build_web_app"]


def build_web_app(cloud: FakeCloud) -> ASGIApp:
    """Routes of ``bambulab.com`` the clients use: the CSRF cookie and the two-factor sign-in."""

    async def csrf(request: Request) -> Response:
        response = Response(status_code=204)
        flags = cookie_flags(cloud.tls)
        flags["httponly"] = False  # the page's script reads it to echo it in the header
        response.set_cookie("bbl_csrf_token", cloud.new_csrf(), **flags)
        return response

    async def sign_in_tfa(request: Request) -> Response:
        cookie = request.cookies.get("bbl_csrf_token", "")
        header = request.headers.get("x-bbl-csrf-token", "")
        if not cookie:
            return _csrf_error("missing_cookie")
        if not header:
            return _csrf_error("missing_header")
        if not hmac.compare_digest(cookie.encode(), header.encode()) or not cloud.csrf_known(cookie):
            return _csrf_error("invalid_token")
        body = await json_body(request)
        if body is None or not isinstance(body.get("tfaKey"), str) or not isinstance(body.get("tfaCode"), str):
            return bad_request("tfaKey and tfaCode are required")
        account, why = cloud.check_tfa(body["tfaKey"], body["tfaCode"])
        if account is None:
            code = 1 if "expired" in why else 2
            return error(400, why, code=code, error="Code expired" if code == 1 else "Incorrect code")
        token = cloud.token_response(account)["accessToken"]
        response = JSONResponse({})
        response.set_cookie("token", token, max_age=cloud.token_expires_in(token), **cookie_flags(cloud.tls))
        return response

    routes = [
        Route("/api/csrf", csrf, methods=["GET"]),
        Route("/api/sign-in/tfa", sign_in_tfa, methods=["POST"]),
    ]
    return FaultMiddleware(Starlette(routes=routes), cloud)


def _csrf_error(reason: str) -> JSONResponse:
    return JSONResponse({"error": f"CSRF error: {reason}", "reason": reason}, status_code=403)


# ---------------------------------------------------------------------- admin


def build_admin_app(cloud: FakeCloud) -> ASGIApp:
    """The admin endpoint: switches, token expiry, the clock and the last emailed codes.

    Every route needs ``Authorization: Bearer <cloud.admin_token>``; the server binds 127.0.0.1.
    """

    def admin(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = bearer(request) or ""
            if not hmac.compare_digest(token.encode(), cloud.admin_token.encode()):
                return unauthorized()
            return await handler(request)

        return endpoint

    async def get_switches(request: Request) -> Response:
        return JSONResponse(cloud.switches.to_dict())

    async def patch_switches(request: Request) -> Response:
        body = await json_body(request)
        if body is None:
            return bad_request()
        try:
            cloud.switches.update(body)
        except ValueError as exc:
            return bad_request(str(exc))
        return JSONResponse(cloud.switches.to_dict())

    async def expire_tokens(request: Request) -> Response:
        body = await json_body(request) or {}
        email = body.get("email")
        if email is not None and (not isinstance(email, str) or cloud.find_account(email) is None):
            return not_found()
        return JSONResponse({"expired": cloud.expire_tokens(email)})

    async def advance(request: Request) -> Response:
        body = await json_body(request)
        seconds = body.get("seconds") if body else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return bad_request("seconds must be a non-negative number")
        cloud.advance(float(seconds))
        return JSONResponse({"now": cloud.now()})

    async def last_code(request: Request) -> Response:
        email = request.query_params.get("email", "")
        code = cloud.last_code(email) if email else None
        return JSONResponse({"email": email, "code": code}) if code is not None else not_found()

    routes = [
        Route("/admin/switches", admin(get_switches), methods=["GET"]),
        Route("/admin/switches", admin(patch_switches), methods=["PATCH", "POST"]),
        Route("/admin/expire-tokens", admin(expire_tokens), methods=["POST"]),
        Route("/admin/advance", admin(advance), methods=["POST"]),
        Route("/admin/last-code", admin(last_code), methods=["GET"]),
    ]
    return Starlette(routes=routes)
