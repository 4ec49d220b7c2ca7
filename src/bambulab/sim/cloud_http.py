"""The fake cloud's HTTP side: Starlette apps for the API host, the web host and the admin endpoint.

Each app is served in-process by uvicorn (:class:`HttpServer`) on its own port. The routes put
:class:`~bambulab.sim.cloud.FakeCloud`'s state on the wire in the shapes of the real cloud
(``docs/cloud-api.md``); faults and delays from the cloud's switches are applied by a small ASGI
middleware in front of the API and web apps.

Tokens, passwords and codes are never logged: uvicorn's access log is off and nothing here logs
request bodies or headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Generator
from html import escape
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bambulab.sim.cloud_model import Account, CloudSwitches, LoginMode

if TYPE_CHECKING:
    from bambulab.sim.ca import LeafCertificate
    from bambulab.sim.cloud import FakeCloud

__all__ = ["HttpServer", "build_admin_app", "build_api_app", "build_web_app"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
AuthedHandler = Callable[[Request, Account], Awaitable[Response]]

_MAX_UPLOAD = 512 * 1024 * 1024
_MAX_JSON = 1024 * 1024


# ---------------------------------------------------------------------- serving


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the host process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """One ASGI app served by uvicorn on the running event loop; port 0 picks a free port."""

    def __init__(self, app: ASGIApp, host: str, port: int, cert: LeafCertificate | None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = cert is not None
        self._cert = cert
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ssl_files: dict[str, Any] = {}
        if self._cert is not None:
            certfile, keyfile = self._cert.write_files()
            ssl_files = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off",
            server_header=False, timeout_graceful_shutdown=2, ws="none", **ssl_files,
        )
        server = _Server(config)
        self._task = asyncio.create_task(server.serve(), name=f"bambu-sim-cloud-http-{self.port}")
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError(f"cannot listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        self._server = server
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
        if task is not None:
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, SystemExit):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


# ---------------------------------------------------------------------- response helpers


def _envelope(**payload: Any) -> JSONResponse:
    return JSONResponse({"message": "success", "code": None, "error": None, **payload})


def _error(status: int, message: str, *, code: int | None = None, error: str | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "code": code, "error": error or message}, status_code=status)


def _bad_request(message: str = "invalid request body") -> JSONResponse:
    return _error(400, message, error="Bad Request")


def _forbidden() -> JSONResponse:
    return _error(403, "permission denied", code=8, error="Resource forbidden")


def _not_found() -> JSONResponse:
    return _error(404, "resource not found", code=2, error="Not Found")


def _unauthorized() -> Response:
    return Response(status_code=401)  # the real API answers an unknown token with an empty 401


async def _json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if len(raw) > _MAX_JSON:
        return None
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _query_int(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    return int(value)  # ValueError -> caller answers 400


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _cookie_flags(cloud_tls: bool) -> dict[str, Any]:
    return {"path": "/", "httponly": True, "samesite": "lax", "secure": cloud_tls}


# ---------------------------------------------------------------------- faults


def _ray() -> str:
    return secrets.token_hex(8)


def _cloudflare_block_page(host: str, ray: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>
<h2>You are unable to access {escape(host)}</h2>
<p>This website is using a security service to protect itself from online attacks. The request you
just made was refused by that service.</p>
<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by Cloudflare</p>
</div></body></html>
"""


def _cloudflare_rate_page(host: str, ray: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied | {escape(host)} used Cloudflare to restrict
access</title></head>
<body><h1>Error 1015</h1><h2>You are being rate limited</h2>
<p>The owner of {escape(host)} has limited how often you may send requests. Try again later.</p>
<p>Cloudflare Ray ID: <strong>{ray}</strong> &bull; Performance &amp; security by Cloudflare</p>
</body></html>
"""


def _fault_response(switches: CloudSwitches, host: str) -> Response:
    ray = _ray()
    cf_headers = {"server": "cloudflare", "cf-ray": f"{ray}-SJC"}
    if switches.cloudflare_block:
        return HTMLResponse(_cloudflare_block_page(host, ray), status_code=403, headers=cf_headers)
    if switches.rate_limit:
        headers = {"retry-after": str(switches.retry_after)}
        if switches.rate_limit_cloudflare:
            return HTMLResponse(_cloudflare_rate_page(host, ray), status_code=429, headers={**headers, **cf_headers})
        return JSONResponse({"message": "Too Many Requests", "code": None, "error": "Too Many Requests"},
                            status_code=429, headers=headers)
    status = switches.server_error
    return _error(status, "Internal Server Error" if status == 500 else "Service Unavailable")


class FaultMiddleware:
    """Applies the cloud's delay and fault switches to every request but the object store's."""

    def __init__(self, app: ASGIApp, cloud: FakeCloud) -> None:
        self.app = app
        self.cloud = cloud

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/s3/"):
            await self.app(scope, receive, send)
            return
        switches = self.cloud.switches
        if switches.delay > 0:
            await asyncio.sleep(switches.delay)
        if switches.faulty and (switches.fault_budget is None or switches.fault_budget > 0):
            response = _fault_response(switches, _host(scope))
            if switches.fault_budget is not None:
                switches.fault_budget -= 1
                if switches.fault_budget == 0:  # the budget is spent: the faults switch themselves off
                    switches.update({"cloudflare_block": False, "rate_limit": False, "server_error": 0,
                                     "fault_budget": None})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1")).split(":", 1)[0] or "api.bambulab.com"
    return "api.bambulab.com"


# ---------------------------------------------------------------------- the API host


def build_api_app(cloud: FakeCloud) -> ASGIApp:
    """Routes of ``api.bambulab.com`` (and ``.cn``), plus the presigned object store under ``/s3/``."""

    def authed(handler: AuthedHandler) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = _bearer(request)
            account = cloud.token_account(token) if token else None
            if account is None:
                return _unauthorized()
            try:
                return await handler(request, account)
            except ValueError:
                return _bad_request("invalid parameter")

        return endpoint

    # -- login ---------------------------------------------------------------

    async def login(request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return _bad_request()
        name = body.get("account")
        if not isinstance(name, str) or not name:
            return _bad_request("account is required")
        code = body.get("code")
        if isinstance(code, str) and code:
            account, problem = cloud.check_code(name, code)
            if problem == 1:
                return _error(400, "The verification code has expired or was never sent.", code=1,
                              error="Code expired")
            if account is None:
                return _error(400, "The verification code is incorrect.", code=2, error="Incorrect code")
            if account.login_mode is LoginMode.TFA:
                return JSONResponse(_pending("tfa", cloud.new_tfa_key(account)))
            return JSONResponse(cloud.token_response(account))
        password = body.get("password")
        account = cloud.find_account(name)
        if (
            account is None
            or not isinstance(password, str)
            or not hmac.compare_digest(password.encode(), account.password.encode())
        ):
            return _error(400, "Incorrect account or password.", error="Incorrect account or password.")
        if account.login_mode is LoginMode.VERIFY_CODE:
            if cloud.switches.auto_send_code:
                cloud.send_code(account.email)
            return JSONResponse(_pending("verifyCode", ""))
        if account.login_mode is LoginMode.TFA:
            return JSONResponse(_pending("tfa", cloud.new_tfa_key(account)))
        return JSONResponse(cloud.token_response(account))

    async def send_email_code(request: Request) -> Response:
        body = await _json_body(request)
        email = body.get("email") if body else None
        if not isinstance(email, str) or not email:
            return _bad_request("email is required")
        cloud.send_code(email)  # an unknown address gets the same answer (no account probing)
        return JSONResponse({})

    async def refresh_token(request: Request) -> Response:
        if not cloud.switches.refresh_works:
            return _unauthorized()
        body = await _json_body(request) or {}
        token = body.get("refreshToken")
        if not isinstance(token, str) or not token:
            token = _bearer(request) or ""
        result = cloud.refresh(token) if token else None
        return JSONResponse(result) if result is not None else _unauthorized()

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
        after = _query_int(request, "after", None)
        limit = max(1, min(_query_int(request, "limit", 20) or 20, 100))
        kind = _query_int(request, "type", None)
        hits = cloud.messages(account, after, limit if kind is None else 10_000)
        if kind is not None:
            hits = [m for m in hits if m["type"] == kind][:limit]
        return JSONResponse({"hits": hits})

    async def tasks(request: Request, account: Account) -> Response:
        after = _query_int(request, "after", None)
        limit = max(1, min(_query_int(request, "limit", 20) or 20, 100))
        device = request.query_params.get("deviceId") or None
        return JSONResponse(cloud.task_page(account, device, after, limit))

    async def create_task(request: Request, account: Account) -> Response:
        # Only the stock slicer's identity may start cloud prints (and the OS must match the uploader's).
        client = request.headers.get("x-bbl-client-name", "")
        os_type = request.headers.get("x-bbl-os-type", "")
        if client != "BambuStudio" or not os_type:
            return _error(403, "no access rights to the content", code=8, error="Resource forbidden")
        body = await _json_body(request)
        if body is None:
            return _bad_request()
        status, payload = await cloud.create_task(account, body, os_type)
        return JSONResponse(payload, status_code=status)

    # -- devices ---------------------------------------------------------------

    async def bind_list(request: Request, account: Account) -> Response:
        return _envelope(devices=cloud.bind_devices(account))

    async def unbind(request: Request, account: Account) -> Response:
        body = await _json_body(request)
        serial = body.get("dev_id") if body else None
        if not isinstance(serial, str) or not serial:
            return _bad_request("dev_id is required")
        if not cloud.owns(account, serial):
            return _forbidden()
        cloud.unbind(serial)
        return _envelope()

    async def print_status(request: Request, account: Account) -> Response:
        return _envelope(devices=cloud.print_devices(account))

    async def device_info(request: Request, account: Account) -> Response:
        body = await _json_body(request)
        if body is None or not isinstance(body.get("dev_id"), str):
            return _bad_request("dev_id is required")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            return _bad_request("name must be a string")
        if not cloud.owns(account, body["dev_id"]):
            return _forbidden()
        if name:
            cloud.rename_device(account, body["dev_id"], name)
        return _envelope()

    async def device_version(request: Request, account: Account) -> Response:
        serial = request.query_params.get("dev_id", "")
        if not serial:
            return _bad_request("dev_id is required")
        info = cloud.device_version(account, serial)
        return _envelope(devices=[info]) if info is not None else _forbidden()

    async def ttcode(request: Request, account: Account) -> Response:
        body = await _json_body(request)
        serial = body.get("dev_id") if body else None
        if not isinstance(serial, str) or not serial:
            return _bad_request("dev_id is required")
        info = cloud.ttcode(account, serial)
        return _envelope(**info) if info is not None else _forbidden()

    # -- projects, uploads ---------------------------------------------------------

    async def project_list(request: Request, account: Account) -> Response:
        return _envelope(projects=[p.summary() for p in cloud.projects(account)])

    async def project_create(request: Request, account: Account) -> Response:
        body = await _json_body(request)
        name = body.get("name") if body else None
        if not isinstance(name, str) or not name:
            return _bad_request("name is required")
        project = cloud.add_project(account, name)
        obj = cloud.new_upload(account, f"{name}_config.3mf", None, request.headers.get("x-bbl-os-type", ""))
        project.upload_key = obj.key
        project.upload_ticket = cloud.new_ticket(obj.key)
        return _envelope(
            project_id=project.project_id, model_id=project.model_id, profile_id=project.profile_id,
            upload_url=cloud.presigned_url("PUT", obj.key), upload_ticket=project.upload_ticket,
        )

    def profile_detail(project: Any, account: Account) -> dict[str, Any]:
        devices = cloud.bound_printers(account)
        first = devices[0] if devices else None
        plates = []
        for entry in project.prints:
            plate = int(entry.get("plate_idx") or 1)
            plates.append({
                "index": plate,
                "thumbnail": {"name": f"plate_{plate}.png", "dir": "Metadata", "url": ""},
                "prediction": 0, "weight": 0.0,
                "gcode": {"name": None, "dir": None, "url": None},
                "filaments": [],
            })
        return {
            "profile_id": project.profile_id, "model_id": project.model_id, "status": "ACTIVE",
            "name": project.name, "content": "{}",
            "create_time": project.summary()["create_time"], "update_time": project.summary()["update_time"],
            "context": {
                "compatibility": {
                    "dev_model_name": first.model.code if first else "",
                    "dev_product_name": first.model.name if first else "",
                    "nozzle_diameter": first.dynamic.nozzle_diameter if first else 0.4,
                },
                "pictures": None, "configs": [], "plates": plates, "materials": [],
                "auxiliary_pictures": [], "auxiliary_bom": [], "auxiliary_guide": [], "auxiliary_other": [],
            },
        }

    async def project_get(request: Request, account: Account) -> Response:
        project = cloud.project(account, request.path_params["project_id"])
        if project is None:
            return _forbidden()
        return _envelope(
            **project.summary(),
            profiles=[profile_detail(project, account)],
            download_url=None, download_md5=None, keystore_xml=None, upload_url=None, upload_ticket=None,
        )

    async def project_patch(request: Request, account: Account) -> Response:
        project = cloud.project(account, request.path_params["project_id"])
        if project is None:
            return _error(422, "invalid project", code=2, error="Unprocessable Entity")
        body = await _json_body(request)
        if body is None:
            return _bad_request()
        prints = body.get("profile_print_3mf")
        if prints is not None:
            if not isinstance(prints, list) or not all(isinstance(p, dict) for p in prints):
                return _bad_request("profile_print_3mf must be a list of objects")
            project.prints.extend(prints)
        if isinstance(body.get("name"), str) and body["name"]:
            project.name = body["name"]
        project.updated = cloud.now()
        return _envelope()

    async def profile_get(request: Request, account: Account) -> Response:
        wanted = request.path_params["profile_id"]
        for project in cloud.projects(account):
            if project.profile_id == wanted:
                detail = profile_detail(project, account)
                url = project.print_url(1)
                return _envelope(**detail, filename=f"{project.name}.3mf", url=url, md5=None, keystore_xml=None)
        return _forbidden()

    async def notification_get(request: Request, account: Account) -> Response:
        ticket = request.query_params.get("ticket", "")
        done = cloud.ticket_done(ticket)
        if done is None:
            return _forbidden()
        return _envelope() if done else JSONResponse({"message": "running", "code": None, "error": None})

    async def notification_put(request: Request, account: Account) -> Response:
        if await _json_body(request) is None:
            return _bad_request()
        return _envelope()

    async def upload(request: Request, account: Account) -> Response:
        filename = request.query_params.get("filename") or request.query_params.get("models") or ""
        if not filename:
            return _bad_request("filename is required")
        size = _query_int(request, "size", None)
        if size is not None and size < 0:
            return _bad_request("size must not be negative")
        obj = cloud.new_upload(account, filename, size, request.headers.get("x-bbl-os-type", ""))
        return _envelope(urls=[
            {"type": "filename", "file": obj.filename, "url": cloud.presigned_url("PUT", obj.key)},
            {"type": "size", "file": obj.filename, "url": cloud.presigned_url("PUT", obj.key + ".size")},
        ])

    # -- slicer settings ---------------------------------------------------------------

    async def settings(request: Request, account: Account) -> Response:
        return _envelope(**cloud.settings_list(account))

    async def setting_get(request: Request, account: Account) -> Response:
        detail = cloud.setting_detail(account, request.path_params["setting_id"])
        return _envelope(**detail) if detail is not None else _not_found()

    async def setting_delete(request: Request, account: Account) -> Response:
        return _envelope() if cloud.delete_setting(account, request.path_params["setting_id"]) else _not_found()

    # -- the object store (presigned S3-style URLs) --------------------------------------

    def s3_error(status: int, code: str, message: str) -> Response:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error>")
        return Response(body, status_code=status, media_type="application/xml")

    def s3_check(request: Request, method: str, key: str, content_type: str) -> Response | None:
        params = request.query_params
        if request.path_params["bucket"] != _bucket():
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
        problem = cloud.check_signature(
            method, key, content_type, params.get("Expires", ""), params.get("Signature", "")
        )
        if problem == "SignatureDoesNotMatch":
            return s3_error(403, problem, "The request signature we calculated does not match the signature "
                                          "you provided.")
        if problem:
            return s3_error(403, problem, "Request has expired")
        return None

    async def s3_put(request: Request) -> Response:
        key = request.path_params["key"]
        size_of = cloud.upload_object(key[: -len(".size")]) if key.endswith(".size") else None
        obj = cloud.upload_object(key)
        if obj is None and size_of is None:
            return s3_error(403, "AccessDenied", "Access Denied")
        strict = obj is not None and cloud.switches.upload_content_type_strict
        content_type = request.headers.get("content-type", "") if strict else ""
        denied = s3_check(request, "PUT", key, content_type)
        if denied is not None:
            return denied
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length) > _MAX_UPLOAD:
            return s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        data = await request.body()
        if obj is not None:
            cloud.store_object(obj, data)
        else:
            assert size_of is not None
            text = data.decode("ascii", "replace").strip()
            if not text.isdigit():
                return s3_error(400, "InvalidArgument", "the size record must be a decimal number")
            size_of.size_record = int(text)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return Response(status_code=200, headers={"etag": f'"{etag}"'})

    async def s3_get(request: Request) -> Response:
        key = request.path_params["key"]
        obj = cloud.upload_object(key)
        denied = s3_check(request, "GET", key, "")
        if denied is not None:
            return denied
        if obj is None or not obj.path.exists():
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(obj.path.read_bytes(), media_type="application/octet-stream")

    iot = "/v1/iot-service/api"
    routes = [
        Route("/v1/user-service/user/login", login, methods=["POST"]),
        Route("/v1/user-service/user/sendemail/code", send_email_code, methods=["POST"]),
        Route("/v1/user-service/user/refreshtoken", refresh_token, methods=["POST"]),
        Route("/v1/design-user-service/my/preference", authed(preference), methods=["GET"]),
        Route("/v1/user-service/my/profile", authed(profile), methods=["GET"]),
        Route("/v1/user-service/my/messages", authed(messages), methods=["GET"]),
        Route("/v1/user-service/my/tasks", authed(tasks), methods=["GET"]),
        Route("/v1/user-service/my/task", authed(create_task), methods=["POST"]),
        Route(f"{iot}/user/bind", authed(bind_list), methods=["GET"]),
        Route(f"{iot}/user/bind", authed(unbind), methods=["DELETE"]),
        Route(f"{iot}/user/print", authed(print_status), methods=["GET"]),
        Route(f"{iot}/user/device/info", authed(device_info), methods=["PATCH"]),
        Route(f"{iot}/user/device/version", authed(device_version), methods=["GET"]),
        Route(f"{iot}/user/ttcode", authed(ttcode), methods=["POST"]),
        Route(f"{iot}/user/project", authed(project_list), methods=["GET"]),
        Route(f"{iot}/user/project", authed(project_create), methods=["POST"]),
        Route(f"{iot}/user/project/{{project_id}}", authed(project_get), methods=["GET"]),
        Route(f"{iot}/user/project/{{project_id}}", authed(project_patch), methods=["PATCH"]),
        Route(f"{iot}/user/profile/{{profile_id}}", authed(profile_get), methods=["GET"]),
        Route(f"{iot}/user/notification", authed(notification_get), methods=["GET"]),
        Route(f"{iot}/user/notification", authed(notification_put), methods=["PUT"]),
        Route(f"{iot}/user/upload", authed(upload), methods=["GET"]),
        Route(f"{iot}/slicer/setting", authed(settings), methods=["GET"]),
        Route(f"{iot}/slicer/setting/{{setting_id}}", authed(setting_get), methods=["GET"]),
        Route(f"{iot}/slicer/setting/{{setting_id}}", authed(setting_delete), methods=["DELETE"]),
        Route("/s3/{bucket}/{key:path}", s3_put, methods=["PUT"]),
        Route("/s3/{bucket}/{key:path}", s3_get, methods=["GET"]),
    ]
    return RequestLogMiddleware(FaultMiddleware(Starlette(routes=routes), cloud), cloud)


class RequestLogMiddleware:
    """Records every request that reaches the API host in :meth:`FakeCloud.request_log`."""

    def __init__(self, app: ASGIApp, cloud: FakeCloud) -> None:
        self.app = app
        self.cloud = cloud

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = None
            for name, value in scope.get("headers", []):
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    token = value[7:].decode("latin-1").strip()
            self.cloud.log_request(str(scope["method"]), str(scope.get("path", "")),
                                   bytes(scope.get("query_string", b"")).decode("latin-1"), token)
        await self.app(scope, receive, send)


def _bucket() -> str:
    from bambulab.sim.cloud import BUCKET

    return BUCKET


def _pending(login_type: str, tfa_key: str) -> dict[str, Any]:
    return {"accessToken": "", "refreshToken": "", "loginType": login_type, "tfaKey": tfa_key,
            "expiresIn": 0, "refreshExpiresIn": 0}


# ---------------------------------------------------------------------- the web host


def build_web_app(cloud: FakeCloud) -> ASGIApp:
    """Routes of ``bambulab.com`` the clients use: the CSRF cookie and the two-factor sign-in."""

    async def csrf(request: Request) -> Response:
        response = Response(status_code=204)
        flags = _cookie_flags(cloud.tls)
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
        body = await _json_body(request)
        if body is None or not isinstance(body.get("tfaKey"), str) or not isinstance(body.get("tfaCode"), str):
            return _bad_request("tfaKey and tfaCode are required")
        account, why = cloud.check_tfa(body["tfaKey"], body["tfaCode"])
        if account is None:
            code = 1 if "expired" in why else 2
            return _error(400, why, code=code, error="Code expired" if code == 1 else "Incorrect code")
        token = cloud.token_response(account)["accessToken"]
        response = JSONResponse({})
        response.set_cookie("token", token, max_age=cloud.token_expires_in(token), **_cookie_flags(cloud.tls))
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
            token = _bearer(request) or ""
            if not hmac.compare_digest(token.encode(), cloud.admin_token.encode()):
                return _unauthorized()
            return await handler(request)

        return endpoint

    async def get_switches(request: Request) -> Response:
        return JSONResponse(cloud.switches.to_dict())

    async def patch_switches(request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return _bad_request()
        try:
            cloud.switches.update(body)
        except ValueError as exc:
            return _bad_request(str(exc))
        return JSONResponse(cloud.switches.to_dict())

    async def expire_tokens(request: Request) -> Response:
        body = await _json_body(request) or {}
        email = body.get("email")
        if email is not None and (not isinstance(email, str) or cloud.find_account(email) is None):
            return _not_found()
        return JSONResponse({"expired": cloud.expire_tokens(email)})

    async def advance(request: Request) -> Response:
        body = await _json_body(request)
        seconds = body.get("seconds") if body else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _bad_request("seconds must be a non-negative number")
        cloud.advance(float(seconds))
        return JSONResponse({"now": cloud.now()})

    async def last_code(request: Request) -> Response:
        email = request.query_params.get("email", "")
        code = cloud.last_code(email) if email else None
        return JSONResponse({"email": email, "code": code}) if code is not None else _not_found()

    routes = [
        Route("/admin/switches", admin(get_switches), methods=["GET"]),
        Route("/admin/switches", admin(patch_switches), methods=["PATCH", "POST"]),
        Route("/admin/expire-tokens", admin(expire_tokens), methods=["POST"]),
        Route("/admin/advance", admin(advance), methods=["POST"]),
        Route("/admin/last-code", admin(last_code), methods=["GET"]),
    ]
    return Starlette(routes=routes)
