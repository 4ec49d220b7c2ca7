"""Handlers of the API's device and print routes (bound printers, status, versions, tasks).

Each handler module returns its :class:`~starlette.routing.Route` list;
:func:`bambulab.sim.cloud.http.build_api_app` puts them in one app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bambulab.sim.cloud.model import Account
from bambulab.sim.cloud.responses import (
    IOT,
    authenticated,
    bad_request,
    envelope,
    error,
    forbidden,
    json_body,
    query_int,
)

if TYPE_CHECKING:
    from bambulab.sim.cloud import FakeCloud

__all__ = ["routes"]


def routes(cloud: FakeCloud) -> list[Route]:
    """The routes of this group, bound to ``cloud``."""
    authed = authenticated(cloud)
    iot = IOT

    async def tasks(request: Request, account: Account) -> Response:
        after = query_int(request, "after", None)
        limit = max(1, min(query_int(request, "limit", 20) or 20, 100))
        device = request.query_params.get("deviceId") or None
        return JSONResponse(cloud.task_page(account, device, after, limit))

    async def create_task(request: Request, account: Account) -> Response:
        # Only the stock slicer's identity may start cloud prints (and the OS must match the uploader's).
        client = request.headers.get("x-bbl-client-name", "")
        os_type = request.headers.get("x-bbl-os-type", "")
        if client != "BambuStudio" or not os_type:
            return error(403, "no access rights to the content", code=8, error="Resource forbidden")
        body = await json_body(request)
        if body is None:
            return bad_request()
        status, payload = await cloud.create_task(account, body, os_type)
        return JSONResponse(payload, status_code=status)

    # -- devices ---------------------------------------------------------------

    async def bind_list(request: Request, account: Account) -> Response:
        return envelope(devices=cloud.bind_devices(account))

    async def unbind(request: Request, account: Account) -> Response:
        body = await json_body(request)
        serial = body.get("dev_id") if body else None
        if not isinstance(serial, str) or not serial:
            return bad_request("dev_id is required")
        if not cloud.owns(account, serial):
            return forbidden()
        cloud.unbind(serial)
        return envelope()

    async def print_status(request: Request, account: Account) -> Response:
        return envelope(devices=cloud.print_devices(account))

    async def device_info(request: Request, account: Account) -> Response:
        body = await json_body(request)
        if body is None or not isinstance(body.get("dev_id"), str):
            return bad_request("dev_id is required")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            return bad_request("name must be a string")
        if not cloud.owns(account, body["dev_id"]):
            return forbidden()
        if name:
            cloud.rename_device(account, body["dev_id"], name)
        return envelope()

    async def device_version(request: Request, account: Account) -> Response:
        serial = request.query_params.get("dev_id", "")
        if not serial:
            return bad_request("dev_id is required")
        info = cloud.device_version(account, serial)
        return envelope(devices=[info]) if info is not None else forbidden()

    async def ttcode(request: Request, account: Account) -> Response:
        body = await json_body(request)
        serial = body.get("dev_id") if body else None
        if not isinstance(serial, str) or not serial:
            return bad_request("dev_id is required")
        info = cloud.ttcode(account, serial)
        return envelope(**info) if info is not None else forbidden()

    return [
        Route("/v1/user-service/my/tasks", authed(tasks), methods=["GET"]),
        Route("/v1/user-service/my/task", authed(create_task), methods=["POST"]),
        Route(f"{iot}/user/bind", authed(bind_list), methods=["GET"]),
        Route(f"{iot}/user/bind", authed(unbind), methods=["DELETE"]),
        Route(f"{iot}/user/print", authed(print_status), methods=["GET"]),
        Route(f"{iot}/user/device/info", authed(device_info), methods=["PATCH"]),
        Route(f"{iot}/user/device/version", authed(device_version), methods=["GET"]),
        Route(f"{iot}/user/ttcode", authed(ttcode), methods=["POST"]),
    ]
