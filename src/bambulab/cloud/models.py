"""Typed views of the Bambu cloud's JSON answers.

Every model keeps the JSON it was made from in ``.raw`` (left out of ``repr``) and decodes the
fields people use, tolerating what the cloud really sends: numbers as strings, nulls, missing keys.
Field names follow the wire where they are clear and Python style where the wire is cryptic.

Secrets stay out of ``repr``: device access codes (stripped of the trailing newline the cloud
sometimes adds), camera relay credentials, presigned upload URLs. ``to_dict()`` leaves them out too
unless ``include_secrets=True``.

Pure: no I/O. The parsers at the bottom turn a decoded JSON body into these models and are what
:mod:`bambulab.cloud.endpoints` refers to.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from bambulab.compat._upload import LegacyRawKeys, LegacyUploadKeys

__all__ = [
    "CameraCredentials",
    "Device",
    "FirmwareInfo",
    "FirmwareUpdate",
    "Message",
    "Notification",
    "Preference",
    "PrintStatus",
    "Profile",
    "Project",
    "ProjectCreated",
    "ProjectDetail",
    "SlicerSetting",
    "SlicerSettingDetail",
    "SlicerSettings",
    "Task",
    "TaskPage",
    "TaskStatus",
    "UploadResult",
    "UploadTarget",
]


# ---------------------------------------------------------------------- decoding helpers


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    result = _int(value, default=-(2**63))
    return None if result == -(2**63) else result


def _opt_float(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _time(value: Any) -> _dt.datetime | None:
    """``2023-12-21T19:02:16Z`` or ``2024-11-17 06:12:33`` (UTC) as an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)


def access_code(value: Any) -> str:
    """A device access code as the cloud sends it, without the stray whitespace/newline."""
    return _str(value).strip()


class _Model:
    """``to_dict`` for the dataclasses below: JSON-friendly, secrets only when asked."""

    _secret_fields: tuple[str, ...] = ()

    def to_dict(self, *, include_secrets: bool = False, include_raw: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "raw" and not include_raw:
                continue
            if f.name in self._secret_fields and not include_secrets:
                continue
            out[f.name] = _plain(getattr(self, f.name), include_secrets)
        return out


def _plain(value: Any, include_secrets: bool) -> Any:
    if isinstance(value, _Model):
        return value.to_dict(include_secrets=include_secrets)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, include_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, include_secrets) for v in value]
    return value


# ---------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Device(_Model):
    """A printer bound to the account (``GET /v1/iot-service/api/user/bind``)."""

    _secret_fields = ("access_code",)

    dev_id: str  # the serial number
    name: str
    online: bool
    print_status: str  # RUNNING, SUCCESS, FAILED, PAUSE, IDLE ...
    model_code: str  # dev_model_name: "C12", "BL-P001", or a marketing name on newer models
    model_name: str  # dev_product_name: "P1S", "X1 Carbon" ...
    access_code: str = field(repr=False)  # LAN access code, trailing newline stripped
    nozzle_diameter: float | None = None
    structure: str = ""  # CoreXY, I3 ...
    print_job: int | None = None  # task id in progress (None when idle)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def serial(self) -> str:
        return self.dev_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Device:
        job = _opt_int(data.get("print_job"))
        return cls(
            dev_id=_str(data.get("dev_id")),
            name=_str(data.get("name")),
            online=_bool(data.get("online")),
            print_status=_str(data.get("print_status")),
            model_code=_str(data.get("dev_model_name")),
            model_name=_str(data.get("dev_product_name")),
            access_code=access_code(data.get("dev_access_code")),
            nozzle_diameter=_opt_float(data.get("nozzle_diameter")),
            structure=_str(data.get("dev_structure")),
            print_job=job or None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class PrintStatus(_Model):
    """Live print state of one device (``GET /v1/iot-service/api/user/print``)."""

    _secret_fields = ("access_code",)

    dev_id: str
    name: str
    online: bool
    model_code: str
    model_name: str
    access_code: str = field(repr=False)
    task_id: str | None = None
    task_name: str | None = None
    task_status: str | None = None  # the printer's gcode_state while a job runs
    model_id: str | None = None
    project_id: str | None = None
    profile_id: str | None = None
    start_time: _dt.datetime | None = None
    prediction: int | None = None  # seconds the print is predicted to take
    progress: int | None = None  # percent
    thumbnail: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def printing(self) -> bool:
        return self.task_id is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrintStatus:
        return cls(
            dev_id=_str(data.get("dev_id")),
            name=_str(data.get("dev_name")),
            online=_bool(data.get("dev_online")),
            model_code=_str(data.get("dev_model_name")),
            model_name=_str(data.get("dev_product_name")),
            access_code=access_code(data.get("dev_access_code")),
            task_id=_opt_str(data.get("task_id")),
            task_name=_opt_str(data.get("task_name")),
            task_status=_opt_str(data.get("task_status")),
            model_id=_opt_str(data.get("model_id")),
            project_id=_opt_str(data.get("project_id")),
            profile_id=_opt_str(data.get("profile_id")),
            start_time=_time(data.get("start_time")),
            prediction=_opt_int(data.get("prediction")),
            progress=_opt_int(data.get("progress")),
            thumbnail=_opt_str(data.get("thumbnail")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class FirmwareUpdate(_Model):
    """One firmware version the cloud offers for a device (``url`` is the signed manifest)."""

    version: str
    force_update: bool
    url: str
    description: str


@dataclass(frozen=True)
class FirmwareInfo(_Model):
    """Firmware of one device and the versions offered (``GET .../user/device/version``)."""

    dev_id: str
    version: str  # installed
    firmware: list[FirmwareUpdate] = field(default_factory=list)
    ams: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def latest(self) -> str | None:
        return self.firmware[0].version if self.firmware else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FirmwareInfo:
        return cls(
            dev_id=_str(data.get("dev_id")),
            version=_str(data.get("version")),
            firmware=[
                FirmwareUpdate(
                    version=_str(f.get("version")), force_update=_bool(f.get("force_update")),
                    url=_str(f.get("url")), description=_str(f.get("description")),
                )
                for f in map(_dict, _list(data.get("firmware")))
            ],
            ams=[_dict(a) for a in _list(data.get("ams"))],
            raw=dict(data),
        )


@dataclass(frozen=True)
class CameraCredentials(_Model):
    """Credentials for the cloud (TUTK relay) camera of one device (``POST .../user/ttcode``)."""

    _secret_fields = ("ttcode", "passwd", "authkey")

    dev_id: str
    ttcode: str = field(repr=False)
    passwd: str = field(repr=False)
    authkey: str = field(repr=False)
    region: str = ""
    type: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], dev_id: str = "") -> CameraCredentials:
        return cls(
            dev_id=dev_id, ttcode=_str(data.get("ttcode")), passwd=_str(data.get("passwd")),
            authkey=_str(data.get("authkey")), region=_str(data.get("region")), type=_str(data.get("type")),
            raw=dict(data),
        )


# ---------------------------------------------------------------------- print history


class TaskStatus(IntEnum):
    """``status`` of a task in the print history. 2 and 3 are documented; 1 is "printing"."""

    PRINTING = 1
    FINISHED = 2
    FAILED = 3
    UNKNOWN = 0

    @classmethod
    def of(cls, value: Any) -> TaskStatus:
        number = _int(value, 0)
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class Task(_Model):
    """One print in the history (``GET /v1/user-service/my/tasks``)."""

    id: int
    title: str
    status: TaskStatus
    device_id: str
    device_name: str = ""
    device_model: str = ""
    start_time: _dt.datetime | None = None
    end_time: _dt.datetime | None = None
    cost_time: int = 0  # seconds
    weight: float = 0.0  # grams
    length: int = 0  # millimetres of filament
    model_id: str = ""
    profile_id: int = 0
    design_id: int = 0
    plate_index: int = 1
    mode: str = ""  # cloud_file, lan_file, local ...
    bed_type: str = ""
    cover: str = ""
    ams_detail_mapping: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        return cls(
            id=_int(data.get("id")),
            title=_str(data.get("title")),
            status=TaskStatus.of(data.get("status")),
            device_id=_str(data.get("deviceId")),
            device_name=_str(data.get("deviceName")),
            device_model=_str(data.get("deviceModel")),
            start_time=_time(data.get("startTime")),
            end_time=_time(data.get("endTime")),
            cost_time=_int(data.get("costTime")),
            weight=_opt_float(data.get("weight")) or 0.0,
            length=_int(data.get("length")),
            model_id=_str(data.get("modelId")),
            profile_id=_int(data.get("profileId")),
            design_id=_int(data.get("designId")),
            plate_index=_int(data.get("plateIndex"), 1),
            mode=_str(data.get("mode")),
            bed_type=_str(data.get("bedType")),
            cover=_str(data.get("cover")),
            ams_detail_mapping=[_dict(m) for m in _list(data.get("amsDetailMapping"))],
            raw=dict(data),
        )


@dataclass(frozen=True)
class TaskPage(_Model):
    """One page of the print history: ``total`` counts every matching task."""

    total: int
    tasks: list[Task]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskPage:
        return cls(total=_int(data.get("total")), tasks=[Task.from_dict(_dict(h)) for h in _list(data.get("hits"))])


@dataclass(frozen=True)
class Message(_Model):
    """An account message (``GET /v1/user-service/my/messages``); type 6 is a print result."""

    id: int
    type: int
    created: _dt.datetime | None
    task_id: int | None = None
    title: str = ""
    device_id: str = ""
    task_status: TaskStatus | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        task = _dict(data.get("taskMessage"))
        return cls(
            id=_int(data.get("id")),
            type=_int(data.get("type")),
            created=_time(data.get("createTime")),
            task_id=_opt_int(task.get("id")),
            title=_str(task.get("title")),
            device_id=_str(task.get("deviceId")),
            task_status=TaskStatus.of(task.get("status")) if task else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Notification(_Model):
    """State of an upload ticket (``GET .../user/notification?action=upload&ticket=``)."""

    action: str
    message: str  # "success" once the file has arrived, "running" before
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.message == "success"


# ---------------------------------------------------------------------- account


@dataclass(frozen=True)
class Preference(_Model):
    """``GET /v1/design-user-service/my/preference``: where clients read the numeric ``uid``."""

    uid: int
    name: str = ""
    handle: str = ""
    avatar: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mqtt_username(self) -> str:
        return f"u_{self.uid}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preference:
        return cls(uid=_int(data.get("uid")), name=_str(data.get("name")), handle=_str(data.get("handle")),
                   avatar=_str(data.get("avatar")), raw=dict(data))


@dataclass(frozen=True)
class Profile(_Model):
    """``GET /v1/user-service/my/profile``: the account's public profile and e-mail address."""

    uid: int
    account: str  # the e-mail address (or phone number)
    name: str = ""
    avatar: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(uid=_int(data.get("uid") or data.get("uidStr")), account=_str(data.get("account")),
                   name=_str(data.get("name")), avatar=_str(data.get("avatar")), raw=dict(data))


# ---------------------------------------------------------------------- projects and uploads


@dataclass(frozen=True)
class Project(_Model):
    """A cloud project (``GET /v1/iot-service/api/user/project``)."""

    project_id: str
    name: str
    model_id: str = ""
    status: str = ""
    user_id: str = ""
    content: str = ""
    create_time: _dt.datetime | None = None
    update_time: _dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _fields_from(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "project_id": _str(data.get("project_id")), "name": _str(data.get("name")),
            "model_id": _str(data.get("model_id")), "status": _str(data.get("status")),
            "user_id": _str(data.get("user_id")), "content": _str(data.get("content")),
            "create_time": _time(data.get("create_time")), "update_time": _time(data.get("update_time")),
            "raw": dict(data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Project:
        return cls(**cls._fields_from(data))


@dataclass(frozen=True)
class ProjectDetail(Project):
    """One project with its profiles and plates (``GET .../user/project/{id}``)."""

    _secret_fields = ("upload_url", "upload_ticket")

    profiles: list[dict[str, Any]] = field(default_factory=list)
    download_url: str | None = field(default=None, repr=False)
    upload_url: str | None = field(default=None, repr=False)
    upload_ticket: str | None = field(default=None, repr=False)

    @property
    def plates(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for profile in self.profiles:
            out.extend(_dict(p) for p in _list(_dict(profile.get("context")).get("plates")))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectDetail:
        return cls(
            **cls._fields_from(data),
            profiles=[_dict(p) for p in _list(data.get("profiles"))],
            download_url=_opt_str(data.get("download_url")),
            upload_url=_opt_str(data.get("upload_url")),
            upload_ticket=_opt_str(data.get("upload_ticket")),
        )


@dataclass(frozen=True)
class ProjectCreated(LegacyRawKeys, _Model):
    """The answer to creating a project: ids, and where to upload its config file."""

    _secret_fields = ("upload_url", "upload_ticket")

    project_id: str
    model_id: str
    profile_id: str
    upload_url: str = field(repr=False)
    upload_ticket: str = field(repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectCreated:
        return cls(project_id=_str(data.get("project_id")), model_id=_str(data.get("model_id")),
                   profile_id=_str(data.get("profile_id")), upload_url=_str(data.get("upload_url")),
                   upload_ticket=_str(data.get("upload_ticket")), raw=dict(data))


@dataclass(frozen=True)
class UploadTarget(_Model):
    """Presigned URLs for one upload (``GET .../user/upload``). The URLs grant write access: secret."""

    _secret_fields = ("url", "size_url")

    filename: str
    url: str = field(repr=False)  # PUT the file here, with no Content-Type
    size_url: str | None = field(default=None, repr=False)  # PUT the size in decimal here
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], filename: str = "") -> UploadTarget:
        entries = [_dict(u) for u in _list(data.get("urls"))]
        by_type = {_str(e.get("type")): e for e in entries}
        main = by_type.get("filename") or (entries[0] if entries else {})
        size = by_type.get("size")
        return cls(
            filename=_str(main.get("file")) or filename,
            url=_str(main.get("url")),
            size_url=_opt_str(size.get("url")) if size else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class UploadResult(LegacyUploadKeys, _Model):
    """A finished upload: what was stored, checked against the object store's ETag (MD5).

    Also readable as the older package's dict (``result["file_url"]``, see
    :class:`bambulab.compat._upload.LegacyUploadKeys`).
    """

    _secret_fields = ("url",)

    filename: str
    size: int
    md5: str
    url: str = field(repr=False)  # the presigned URL the file was PUT to (register it with a project)
    size_recorded: bool = False


# ---------------------------------------------------------------------- slicer presets


@dataclass(frozen=True)
class SlicerSetting(_Model):
    """One preset in the list (``GET /v1/iot-service/api/slicer/setting``)."""

    setting_id: str
    name: str
    kind: str  # print, printer, filament
    public: bool
    version: str = ""
    nickname: str | None = None
    filament_id: str | None = None
    filament_type: str | None = None
    nozzle_temperature: list[int] = field(default_factory=list)
    update_time: _dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], kind: str = "", public: bool = True) -> SlicerSetting:
        return cls(
            setting_id=_str(data.get("setting_id")), name=_str(data.get("name")), kind=kind, public=public,
            version=_str(data.get("version")), nickname=_opt_str(data.get("nickname")),
            filament_id=_opt_str(data.get("filament_id")), filament_type=_opt_str(data.get("filament_type")),
            nozzle_temperature=[_int(t) for t in _list(data.get("nozzle_temperature"))],
            update_time=_time(data.get("update_time")), raw=dict(data),
        )


@dataclass(frozen=True)
class SlicerSettings(_Model):
    """Every preset visible to the account, by kind; ``public`` ones first."""

    print: list[SlicerSetting] = field(default_factory=list)
    printer: list[SlicerSetting] = field(default_factory=list)
    filament: list[SlicerSetting] = field(default_factory=list)

    @property
    def all(self) -> list[SlicerSetting]:
        return [*self.print, *self.printer, *self.filament]

    @property
    def private(self) -> list[SlicerSetting]:
        return [s for s in self.all if not s.public]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlicerSettings:
        out: dict[str, list[SlicerSetting]] = {}
        for kind in ("print", "printer", "filament"):
            section = _dict(data.get(kind))
            out[kind] = [SlicerSetting.from_dict(_dict(s), kind, True) for s in _list(section.get("public"))] + [
                SlicerSetting.from_dict(_dict(s), kind, False) for s in _list(section.get("private"))
            ]
        return cls(**out)


@dataclass(frozen=True)
class SlicerSettingDetail(_Model):
    """One preset with its settings (``GET /v1/iot-service/api/slicer/setting/{id}``)."""

    setting_id: str
    name: str
    kind: str
    public: bool
    version: str = ""
    base_id: str | None = None
    filament_id: str | None = None
    nickname: str | None = None
    setting: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], setting_id: str = "") -> SlicerSettingDetail:
        return cls(
            setting_id=setting_id, name=_str(data.get("name")), kind=_str(data.get("type")),
            public=_bool(data.get("public")), version=_str(data.get("version")),
            base_id=_opt_str(data.get("base_id")), filament_id=_opt_str(data.get("filament_id")),
            nickname=_opt_str(data.get("nickname")), setting=_dict(data.get("setting")), raw=dict(data),
        )
