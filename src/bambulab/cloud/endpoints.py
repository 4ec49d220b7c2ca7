"""The one table of Bambu cloud endpoints, shared by the sync and the async clients.

Each :class:`Endpoint` says what to send (method, host, path, how to build the query or the JSON
body from the caller's arguments, extra headers), how to read the answer (a parser from
:mod:`bambulab.cloud.models`), whether the call is idempotent (only those are retried) and whether
it needs the bearer token. Pure: no I/O, no clock, no globals that change.

Only endpoints documented in ``docs/cloud-api.md`` (and ``PROTOCOL.md`` §8) are here; see
``docs/cloud.md`` for what was left out and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from bambulab.cloud.models import (
    CameraCredentials,
    Device,
    FirmwareInfo,
    Message,
    Notification,
    Preference,
    PrintStatus,
    Profile,
    Project,
    ProjectCreated,
    ProjectDetail,
    SlicerSettingDetail,
    SlicerSettings,
    TaskPage,
    UploadTarget,
)
from bambulab.exceptions import CloudError

__all__ = ["ENDPOINTS", "Endpoint", "Host", "Request"]

T = TypeVar("T")
Host = Literal["api", "web"]

_PATH_PARAM = re.compile(r"{(\w+)}")
IOT = "/v1/iot-service/api"


@dataclass(frozen=True)
class Request:
    """What to send for one call (before base URL, default headers and token are added)."""

    endpoint: str
    method: str
    host: Host
    path: str
    params: dict[str, str] | None
    json: dict[str, Any] | None
    headers: dict[str, str]
    idempotent: bool
    auth: bool

    def __repr__(self) -> str:
        # The body holds passwords, codes and refresh tokens, the query tickets: names only.
        return (f"Request(endpoint={self.endpoint!r}, method={self.method!r}, host={self.host!r}, "
                f"path={self.path!r}, params={_masked(self.params)}, json={_masked(self.json)}, "
                f"headers={_masked(self.headers)}, idempotent={self.idempotent!r}, auth={self.auth!r})")

    __str__ = __repr__


def _masked(values: Mapping[str, Any] | None) -> str:
    if values is None:
        return "None"
    return "{" + ", ".join(f"{key!r}: '***'" for key in values) + "}"


@dataclass(frozen=True)
class Endpoint(Generic[T]):
    """One documented endpoint. ``build(**args)`` fills the path and the query/body builders."""

    name: str
    method: str
    path: str
    parse: Callable[[Any, Mapping[str, Any]], T]  # (decoded JSON body, the call's arguments)
    idempotent: bool
    auth: bool = True
    host: Host = "api"
    query: Callable[..., Mapping[str, Any]] | None = None
    body: Callable[..., Mapping[str, Any]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def read(self, body: Any, args: Mapping[str, Any] | None = None) -> T:
        """``parse`` the decoded JSON ``body``; any shape it cannot read is a :class:`CloudError`.

        The server decides what arrives (``{"devices": 5}``, ``true``, a nesting thousands deep):
        whatever the parser trips over becomes one error naming this endpoint, never a bare
        ``TypeError`` or ``RecursionError``.
        """
        try:
            return self.parse(body, args or {})
        except CloudError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError, OverflowError) as exc:
            raise CloudError(f"{self.name}: the Bambu cloud answered in an unexpected shape "
                             f"({type(exc).__name__})") from None

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    def build(self, **args: Any) -> Request:
        rest = dict(args)
        path = self.path
        for name in self.path_params:
            value = rest.pop(name, None)
            if value is None or str(value) == "":
                raise ValueError(f"{self.name}: {name} is required")
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        params: dict[str, str] | None = None
        body: dict[str, Any] | None = None
        if self.query is not None:
            params = {k: _query_value(v) for k, v in self.query(**rest).items() if v is not None}
        if self.body is not None:
            body = {k: v for k, v in self.body(**rest).items() if v is not None}
        if self.query is None and self.body is None and rest:
            raise TypeError(f"{self.name}: unexpected argument(s) {', '.join(sorted(rest))}")
        return Request(self.name, self.method, self.host, path, params or None, body, dict(self.headers),
                       self.idempotent, self.auth)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------- parsers


def _object(body: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's JSON object ({} for an empty body); any other JSON value is the wrong shape."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise TypeError(f"expected a JSON object, got {type(body).__name__}")
    return body


def _items(body: Any, args: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects in the list ``body[key]`` (missing or null: none); anything but a list is wrong."""
    value = _object(body, args).get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{key!r} should be a list, got {type(value).__name__}")
    return [item for item in value if isinstance(item, dict)]


def _devices(body: Any, args: Mapping[str, Any]) -> list[Device]:
    return [Device.from_dict(d) for d in _items(body, args, "devices")]


def _print_status(body: Any, args: Mapping[str, Any]) -> list[PrintStatus]:
    return [PrintStatus.from_dict(d) for d in _items(body, args, "devices")]


def _firmware(body: Any, args: Mapping[str, Any]) -> FirmwareInfo:
    devices = _items(body, args, "devices")
    wanted = str(args.get("dev_id", "")).upper()
    chosen = next((d for d in devices if str(d.get("dev_id", "")).upper() == wanted), devices[0] if devices else {})
    return FirmwareInfo.from_dict(chosen)


def _camera(body: Any, args: Mapping[str, Any]) -> CameraCredentials:
    return CameraCredentials.from_dict(_object(body, args), dev_id=str(args.get("dev_id", "")))


def _tasks(body: Any, args: Mapping[str, Any]) -> TaskPage:
    return TaskPage.from_dict(_object(body, args))


def _task_id(body: Any, args: Mapping[str, Any]) -> int:
    value = _object(body, args).get("id")
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def _messages(body: Any, args: Mapping[str, Any]) -> list[Message]:
    return [Message.from_dict(m) for m in _items(body, args, "hits")]


def _notification(body: Any, args: Mapping[str, Any]) -> Notification:
    data = _object(body, args)
    return Notification(action=str(args.get("action", "")), message=str(data.get("message", "")), raw=data)


def _projects(body: Any, args: Mapping[str, Any]) -> list[Project]:
    return [Project.from_dict(p) for p in _items(body, args, "projects")]


def _project(body: Any, args: Mapping[str, Any]) -> ProjectDetail:
    return ProjectDetail.from_dict(_object(body, args))


def _project_created(body: Any, args: Mapping[str, Any]) -> ProjectCreated:
    return ProjectCreated.from_dict(_object(body, args))


def _upload(body: Any, args: Mapping[str, Any]) -> UploadTarget:
    return UploadTarget.from_dict(_object(body, args), filename=str(args.get("filename", "")))


def _settings(body: Any, args: Mapping[str, Any]) -> SlicerSettings:
    return SlicerSettings.from_dict(_object(body, args))


def _setting(body: Any, args: Mapping[str, Any]) -> SlicerSettingDetail:
    return SlicerSettingDetail.from_dict(_object(body, args), setting_id=str(args.get("setting_id", "")))


def _preference(body: Any, args: Mapping[str, Any]) -> Preference:
    return Preference.from_dict(_object(body, args))


def _profile(body: Any, args: Mapping[str, Any]) -> Profile:
    return Profile.from_dict(_object(body, args))


def _none(body: Any, args: Mapping[str, Any]) -> None:
    return None


# ---------------------------------------------------------------------- builders


def _limit(limit: int) -> int:
    return max(1, min(int(limit), 100))  # the API caps a page at 100


def _tasks_query(device_id: str | None = None, after: int | None = None, limit: int = 20) -> dict[str, Any]:
    return {"deviceId": device_id or None, "after": after, "limit": _limit(limit)}


def _messages_query(type: int | None = None, after: int | None = None, limit: int = 20) -> dict[str, Any]:
    return {"type": type, "after": after, "limit": _limit(limit)}


def _create_task_body(**task: Any) -> dict[str, Any]:
    return dict(task)


# ---------------------------------------------------------------------- the table

LOGIN_PASSWORD: Endpoint[dict[str, Any]] = Endpoint(
    "login_password", "POST", "/v1/user-service/user/login", _object, idempotent=False, auth=False,
    body=lambda account, password: {"account": account, "password": password, "apiError": ""},
)
LOGIN_CODE: Endpoint[dict[str, Any]] = Endpoint(
    "login_code", "POST", "/v1/user-service/user/login", _object, idempotent=False, auth=False,
    body=lambda account, code: {"account": account, "code": code},
)
SEND_EMAIL_CODE: Endpoint[dict[str, Any]] = Endpoint(
    "send_email_code", "POST", "/v1/user-service/user/sendemail/code", _object, idempotent=False, auth=False,
    body=lambda email: {"email": email, "type": "codeLogin"},
)
REFRESH_TOKEN: Endpoint[dict[str, Any]] = Endpoint(
    "refresh_token", "POST", "/v1/user-service/user/refreshtoken", _object, idempotent=False, auth=False,
    body=lambda refresh_token: {"refreshToken": refresh_token},
)
CSRF: Endpoint[None] = Endpoint("csrf", "GET", "/api/csrf", _none, idempotent=True, auth=False, host="web")
TFA_SIGN_IN: Endpoint[dict[str, Any]] = Endpoint(
    "tfa_sign_in", "POST", "/api/sign-in/tfa", _object, idempotent=False, auth=False, host="web",
    body=lambda tfa_key, tfa_code: {"tfaKey": tfa_key, "tfaCode": tfa_code},
)

PREFERENCE: Endpoint[Preference] = Endpoint(
    "preference", "GET", "/v1/design-user-service/my/preference", _preference, idempotent=True
)
PROFILE: Endpoint[Profile] = Endpoint("profile", "GET", "/v1/user-service/my/profile", _profile, idempotent=True)
MESSAGES: Endpoint[list[Message]] = Endpoint(
    "messages", "GET", "/v1/user-service/my/messages", _messages, idempotent=True, query=_messages_query
)
TASKS: Endpoint[TaskPage] = Endpoint(
    "tasks", "GET", "/v1/user-service/my/tasks", _tasks, idempotent=True, query=_tasks_query
)
# The cloud only accepts new print tasks from the stock slicer's identity (403 otherwise), and the
# OS type must match the one the model file was uploaded with; every call sends the same OS type.
CREATE_TASK: Endpoint[int] = Endpoint(
    "create_task", "POST", "/v1/user-service/my/task", _task_id, idempotent=False, body=_create_task_body,
    headers={"X-BBL-Client-Name": "BambuStudio"},
)

DEVICES: Endpoint[list[Device]] = Endpoint("devices", "GET", f"{IOT}/user/bind", _devices, idempotent=True)
PRINT_STATUS: Endpoint[list[PrintStatus]] = Endpoint(
    "print_status", "GET", f"{IOT}/user/print", _print_status, idempotent=True,
    query=lambda force=True: {"force": force},
)
FIRMWARE: Endpoint[FirmwareInfo] = Endpoint(
    "firmware", "GET", f"{IOT}/user/device/version", _firmware, idempotent=True,
    query=lambda dev_id: {"dev_id": dev_id},
)
RENAME_DEVICE: Endpoint[None] = Endpoint(
    "rename_device", "PATCH", f"{IOT}/user/device/info", _none, idempotent=True,
    body=lambda dev_id, name: {"dev_id": dev_id, "name": name},
)
CAMERA_CREDENTIALS: Endpoint[CameraCredentials] = Endpoint(
    "camera_credentials", "POST", f"{IOT}/user/ttcode", _camera, idempotent=False,
    body=lambda dev_id: {"dev_id": dev_id},
)

PROJECTS: Endpoint[list[Project]] = Endpoint("projects", "GET", f"{IOT}/user/project", _projects, idempotent=True)
PROJECT: Endpoint[ProjectDetail] = Endpoint(
    "project", "GET", f"{IOT}/user/project/{{project_id}}", _project, idempotent=True
)
CREATE_PROJECT: Endpoint[ProjectCreated] = Endpoint(
    "create_project", "POST", f"{IOT}/user/project", _project_created, idempotent=False,
    body=lambda name: {"name": name},
)
SET_PROJECT_FILE: Endpoint[None] = Endpoint(
    "set_project_file", "PATCH", f"{IOT}/user/project/{{project_id}}", _none, idempotent=False,
    body=lambda profile_id, url, md5="", plate=1: {
        "profile_id": str(profile_id),
        "profile_print_3mf": [{"md5": md5, "plate_idx": int(plate), "url": url}],
    },
)
NOTIFICATION: Endpoint[Notification] = Endpoint(
    "notification", "GET", f"{IOT}/user/notification", _notification, idempotent=True,
    query=lambda ticket, action="upload": {"action": action, "ticket": ticket},
)
NOTIFY_UPLOAD: Endpoint[None] = Endpoint(
    "notify_upload", "PUT", f"{IOT}/user/notification", _none, idempotent=True,
    body=lambda ticket, action="upload": {"action": action, "ticket": ticket},
)
UPLOAD_URL: Endpoint[UploadTarget] = Endpoint(
    "upload_url", "GET", f"{IOT}/user/upload", _upload, idempotent=True,
    query=lambda filename, size=None: {"filename": filename, "size": size},
)

SLICER_SETTINGS: Endpoint[SlicerSettings] = Endpoint(
    "slicer_settings", "GET", f"{IOT}/slicer/setting", _settings, idempotent=True,
    query=lambda version: {"version": version},
)
SLICER_SETTING: Endpoint[SlicerSettingDetail] = Endpoint(
    "slicer_setting", "GET", f"{IOT}/slicer/setting/{{setting_id}}", _setting, idempotent=True
)
DELETE_SLICER_SETTING: Endpoint[None] = Endpoint(
    "delete_slicer_setting", "DELETE", f"{IOT}/slicer/setting/{{setting_id}}", _none, idempotent=False
)

#: Every endpoint by name (the CLI, the docs and the tests read it).
ENDPOINTS: dict[str, Endpoint[Any]] = {
    e.name: e
    for e in (
        LOGIN_PASSWORD, LOGIN_CODE, SEND_EMAIL_CODE, REFRESH_TOKEN, CSRF, TFA_SIGN_IN,
        PREFERENCE, PROFILE, MESSAGES, TASKS, CREATE_TASK,
        DEVICES, PRINT_STATUS, FIRMWARE, RENAME_DEVICE, CAMERA_CREDENTIALS,
        PROJECTS, PROJECT, CREATE_PROJECT, SET_PROJECT_FILE, NOTIFICATION, NOTIFY_UPLOAD, UPLOAD_URL,
        SLICER_SETTINGS, SLICER_SETTING, DELETE_SLICER_SETTING,
    )
}
