"""Handlers of the API's project, upload, slicer-setting and object-store routes.

Each handler module returns its :class:`~starlette.routing.Route` list;
:func:`bambulab.sim.cloud.http.build_api_app` puts them in one app.
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bambulab.sim.cloud.model import Account
from bambulab.sim.cloud.responses import (
    IOT,
    MAX_UPLOAD,
    authenticated,
    bad_request,
    bucket,
    envelope,
    error,
    forbidden,
    json_body,
    not_found,
    query_int,
)

if TYPE_CHECKING:
    from bambulab.sim.cloud import FakeCloud

__all__ = ["routes"]


def routes(cloud: FakeCloud) -> list[Route]:
    """The routes of this group, bound to ``cloud``."""
    authed = authenticated(cloud)
    iot = IOT

    # -- projects, uploads ---------------------------------------------------------

    async def project_list(request: Request, account: Account) -> Response:
        return envelope(projects=[p.summary() for p in cloud.projects(account)])

    async def project_create(request: Request, account: Account) -> Response:
        body = await json_body(request)
        name = body.get("name") if body else None
        if not isinstance(name, str) or not name:
            return bad_request("name is required")
        project = cloud.add_project(account, name)
        obj = cloud.new_upload(account, f"{name}_config.3mf", None, request.headers.get("x-bbl-os-type", ""))
        project.upload_key = obj.key
        project.upload_ticket = cloud.new_ticket(obj.key)
        return envelope(
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
            return forbidden()
        return envelope(
            **project.summary(),
            profiles=[profile_detail(project, account)],
            download_url=None, download_md5=None, keystore_xml=None, upload_url=None, upload_ticket=None,
        )

    async def project_patch(request: Request, account: Account) -> Response:
        project = cloud.project(account, request.path_params["project_id"])
        if project is None:
            return error(422, "invalid project", code=2, error="Unprocessable Entity")
        body = await json_body(request)
        if body is None:
            return bad_request()
        prints = body.get("profile_print_3mf")
        if prints is not None:
            if not isinstance(prints, list) or not all(isinstance(p, dict) for p in prints):
                return bad_request("profile_print_3mf must be a list of objects")
            project.prints.extend(prints)
        if isinstance(body.get("name"), str) and body["name"]:
            project.name = body["name"]
        project.updated = cloud.now()
        return envelope()

    async def profile_get(request: Request, account: Account) -> Response:
        wanted = request.path_params["profile_id"]
        for project in cloud.projects(account):
            if project.profile_id == wanted:
                detail = profile_detail(project, account)
                url = project.print_url(1)
                return envelope(**detail, filename=f"{project.name}.3mf", url=url, md5=None, keystore_xml=None)
        return forbidden()

    async def notification_get(request: Request, account: Account) -> Response:
        ticket = request.query_params.get("ticket", "")
        done = cloud.ticket_done(ticket)
        if done is None:
            return forbidden()
        return envelope() if done else JSONResponse({"message": "running", "code": None, "error": None})

    async def notification_put(request: Request, account: Account) -> Response:
        if await json_body(request) is None:
            return bad_request()
        return envelope()

    async def upload(request: Request, account: Account) -> Response:
        filename = request.query_params.get("filename") or request.query_params.get("models") or ""
        if not filename:
            return bad_request("filename is required")
        size = query_int(request, "size", None)
        if size is not None and size < 0:
            return bad_request("size must not be negative")
        obj = cloud.new_upload(account, filename, size, request.headers.get("x-bbl-os-type", ""))
        return envelope(urls=[
            {"type": "filename", "file": obj.filename, "url": cloud.presigned_url("PUT", obj.key)},
            {"type": "size", "file": obj.filename, "url": cloud.presigned_url("PUT", obj.key + ".size")},
        ])

    # -- slicer settings ---------------------------------------------------------------

    async def settings(request: Request, account: Account) -> Response:
        return envelope(**cloud.settings_list(account))

    async def setting_get(request: Request, account: Account) -> Response:
        detail = cloud.setting_detail(account, request.path_params["setting_id"])
        return envelope(**detail) if detail is not None else not_found()

    async def setting_delete(request: Request, account: Account) -> Response:
        return envelope() if cloud.delete_setting(account, request.path_params["setting_id"]) else not_found()

    # -- the object store (presigned S3-style URLs) --------------------------------------

    def s3_error(status: int, code: str, message: str) -> Response:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error>")
        return Response(body, status_code=status, media_type="application/xml")

    def s3_check(request: Request, method: str, key: str, content_type: str) -> Response | None:
        params = request.query_params
        if request.path_params["bucket"] != bucket():
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
        if not length.isdigit() or int(length) > MAX_UPLOAD:
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

    return [
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
