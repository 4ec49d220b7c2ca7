"""Handlers of the API's sign-in and account routes (login, codes, refresh, profile, messages).

Each handler module returns its :class:`~starlette.routing.Route` list;
:func:`bambulab.sim.cloud.http.build_api_app` puts them in one app.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bambulab.sim.cloud.model import Account, LoginMode
from bambulab.sim.cloud.responses import (
    authenticated,
    bad_request,
    bearer,
    error,
    json_body,
    pending_login,
    query_int,
    unauthorized,
)

if TYPE_CHECKING:
    from bambulab.sim.cloud import FakeCloud

__all__ = ["routes"]


def routes(cloud: FakeCloud) -> list[Route]:
    """The routes of this group, bound to ``cloud``."""
    authed = authenticated(cloud)

    # -- login ---------------------------------------------------------------

    async def login(request: Request) -> Response:
        body = await json_body(request)
        if body is None:
            return bad_request()
        name = body.get("account")
        if not isinstance(name, str) or not name:
            return bad_request("account is required")
        code = body.get("code")
        if isinstance(code, str) and code:
            account, problem = cloud.check_code(name, code)
            if problem == 1:
                return error(400, "The verification code has expired or was never sent.", code=1,
                              error="Code expired")
            if account is None:
                return error(400, "The verification code is incorrect.", code=2, error="Incorrect code")
            if account.login_mode is LoginMode.TFA:
                return JSONResponse(pending_login("tfa", cloud.new_tfa_key(account)))
            return JSONResponse(cloud.token_response(account))
        password = body.get("password")
        account = cloud.find_account(name)
        if (
            account is None
            or not isinstance(password, str)
            or not hmac.compare_digest(password.encode(), account.password.encode())
        ):
            return error(400, "Incorrect account or password.", error="Incorrect account or password.")
        if account.login_mode is LoginMode.VERIFY_CODE:
            if cloud.switches.auto_send_code:
                cloud.send_code(account.email)
            return JSONResponse(pending_login("verifyCode", ""))
        if account.login_mode is LoginMode.TFA:
            return JSONResponse(pending_login("tfa", cloud.new_tfa_key(account)))
        return JSONResponse(cloud.token_response(account))

    async def send_email_code(request: Request) -> Response:
        body = await json_body(request)
        email = body.get("email") if body else None
        if not isinstance(email, str) or not email:
            return bad_request("email is required")
        cloud.send_code(email)  # an unknown address gets the same answer (no account probing)
        return JSONResponse({})

    async def refresh_token(request: Request) -> Response:
        if not cloud.switches.refresh_works:
            return unauthorized()
        body = await json_body(request) or {}
        token = body.get("refreshToken")
        if not isinstance(token, str) or not token:
            token = bearer(request) or ""
        result = cloud.refresh(token) if token else None
        return JSONResponse(result) if result is not None else unauthorized()

    # -- account ---------------------------------------------------------------

    async def preference(request: Request, account: Account) -> Response:
        return JSONResponse({
            "uid": account.uid, "name": account.name, "handle": account.handle, "avatar": account.avatar,
            "bio": "", "links": [], "backgroundUrl": "", "isNSFWShown": 0, "taskWeightUnit": 0,
        })

    async def profile(request: Request, account: Account) -> Response:
        return JSONResponse({
            "uid": account.uid, "uidStr": str(account.uid), "account": account.email, "name": account.name,
            "avatar": account.avatar, "fanCount": 0, "followCount": 0, "likeCount": 0, "collectionCount": 0,
            "downloadCount": 0, "boostGained": 0, "productModels": [], "personal": {"bio": "", "links": []},
        })

    async def messages(request: Request, account: Account) -> Response:
        after = query_int(request, "after", None)
        limit = max(1, min(query_int(request, "limit", 20) or 20, 100))
        kind = query_int(request, "type", None)
        hits = cloud.messages(account, after, limit if kind is None else 10_000)
        if kind is not None:
            hits = [m for m in hits if m["type"] == kind][:limit]
        return JSONResponse({"hits": hits})

    return [
        Route("/v1/user-service/user/login", login, methods=["POST"]),
        Route("/v1/user-service/user/sendemail/code", send_email_code, methods=["POST"]),
        Route("/v1/user-service/user/refreshtoken", refresh_token, methods=["POST"]),
        Route("/v1/design-user-service/my/preference", authed(preference), methods=["GET"]),
        Route("/v1/user-service/my/profile", authed(profile), methods=["GET"]),
        Route("/v1/user-service/my/messages", authed(messages), methods=["GET"]),
    ]
