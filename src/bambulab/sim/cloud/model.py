"""The fake Bambu cloud's data: accounts, tokens, switches, tasks, projects and stored uploads.

Pure data and small pure helpers (token shapes, TOTP, time formats, S3-style URL signatures):
no sockets, no event loop. :mod:`bambulab.sim.cloud` holds the state and the use cases,
:mod:`bambulab.sim.cloud.http` and :mod:`bambulab.sim.cloud.mqtt` put it on the wire.
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "Account",
    "CloudObject",
    "CloudSwitches",
    "LoginMode",
    "Project",
    "TaskRecord",
    "TaskStatus",
    "iso_time",
    "jwt_token",
    "opaque_token",
    "presign",
    "project_time",
    "totp",
]

#: gcode_state values of a job in progress.
ACTIVE_STATES = frozenset({"PREPARE", "RUNNING", "PAUSE", "SLICING"})


class LoginMode(enum.StrEnum):
    """What a password login of this account answers with."""

    TOKEN = "token"  # noqa: S105 - the token straight away (loginType "")
    VERIFY_CODE = "verifyCode"  # loginType "verifyCode": log in again with an emailed code
    TFA = "tfa"  # loginType "tfa" + tfaKey: post an authenticator code to the web host


class TaskStatus(enum.IntEnum):
    """``status`` of a task in ``/my/tasks``. 2 and 3 are documented; 1 (printing) is our choice."""

    PRINTING = 1
    FINISHED = 2
    FAILED = 3


@dataclass
class Account:
    """A cloud account. Secrets stay out of ``repr``."""

    email: str
    password: str = field(repr=False)
    uid: int
    name: str
    login_mode: LoginMode = LoginMode.TOKEN
    #: base32 TOTP secret for ``login_mode=tfa`` (RFC 6238, 6 digits, 30 s steps)
    tfa_secret: str | None = field(default=None, repr=False)
    #: a code accepted as email code and as TFA code, so tests need not read ``last_code``
    fixed_code: str | None = field(default=None, repr=False)
    handle: str = ""
    avatar: str = ""
    #: serials of the devices bound to this account, in binding order
    devices: list[str] = field(default_factory=list)

    @property
    def mqtt_username(self) -> str:
        return f"u_{self.uid}"


@dataclass
class CloudSwitches:
    """Behaviour switches of the fake cloud, settable at runtime.

    Faults (``cloudflare_block``, ``rate_limit``, ``server_error``) and ``delay`` apply to every
    request to the API and web hosts except the object store (``/s3/``). With ``fault_budget``
    set, faults apply to that many requests and then switch themselves off.
    """

    cloudflare_block: bool = False  # 403 with Cloudflare's HTML "you have been blocked" page
    rate_limit: bool = False  # 429 with Retry-After
    rate_limit_cloudflare: bool = False  # the 429 body is Cloudflare's HTML (error 1015), not JSON
    retry_after: int = 60  # seconds, the Retry-After header of a 429
    server_error: int = 0  # 0 = off, else the 5xx status every request gets
    fault_budget: int | None = None  # None = faults stay on until switched off
    delay: float = 0.0  # seconds added before every response
    refresh_works: bool = True  # False: /user/refreshtoken answers 401 (as OBA reports today)
    access_code_newline: bool = False  # bind/print: dev_access_code with a trailing "\n"
    jwt_tokens: bool = False  # new tokens are JWT-shaped with a ``username: u_<uid>`` claim
    token_lifetime: int = 7_776_000  # expiresIn of new tokens (90 days)
    code_ttl: float = 300.0  # seconds an emailed code stays valid
    auto_send_code: bool = False  # a verifyCode password login also "emails" a code
    record_local_prints: bool = True  # prints not started through /my/task also become tasks
    upload_content_type_strict: bool = True  # presigned file PUTs are signed with an empty Content-Type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, values: dict[str, Any]) -> None:
        """Set switches from a dict; unknown names or wrong types raise ``ValueError``."""
        known = {f.name: f for f in fields(self)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown switch(es): {', '.join(sorted(unknown))}")
        checked: dict[str, Any] = {}
        for name, value in values.items():
            current = getattr(self, name)
            if name == "fault_budget":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                    raise ValueError("fault_budget must be a non-negative integer or null")
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} must be an integer")
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{name} must be a non-negative number")
                value = float(value)
            checked[name] = value
        if "server_error" in checked and checked["server_error"] and not 500 <= checked["server_error"] <= 599:
            raise ValueError("server_error must be 0 or a status from 500 to 599")
        for name, value in checked.items():
            setattr(self, name, value)

    @property
    def faulty(self) -> bool:
        return self.cloudflare_block or self.rate_limit or bool(self.server_error)


@dataclass
class TaskRecord:
    """One entry of the print history (``/my/tasks``)."""

    id: int
    uid: int
    device_id: str
    device_name: str
    device_model: str
    title: str
    start: float  # cloud clock
    status: TaskStatus = TaskStatus.PRINTING
    cost_time: int = 0  # printer seconds the print took
    mode: str = "cloud_file"
    model_id: str = ""
    profile_id: int = 0
    project_id: str = ""
    plate_index: int = 1
    weight: float = 0.0
    length: int = 0
    bed_type: str = "textured_plate"
    cover: str = ""
    ams_detail_mapping: list[dict[str, Any]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status is not TaskStatus.PRINTING

    def to_hit(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "designId": 0,
            "designTitle": "",
            "instanceId": 0,
            "modelId": self.model_id,
            "title": self.title,
            "cover": self.cover,
            "status": int(self.status),
            "feedbackStatus": 0,
            "startTime": iso_time(self.start),
            # While printing endTime equals startTime (clients read "within a minute" as running).
            "endTime": iso_time(self.start + (self.cost_time if self.terminal else 0)),
            "weight": self.weight,
            "length": self.length,
            "costTime": self.cost_time,
            "profileId": self.profile_id,
            "plateIndex": self.plate_index,
            "plateName": "",
            "deviceId": self.device_id,
            "amsDetailMapping": list(self.ams_detail_mapping),
            "mode": self.mode,
            "isPublicProfile": False,
            "isPrintable": True,
            "deviceModel": self.device_model,
            "deviceName": self.device_name,
            "bedType": self.bed_type,
        }


@dataclass
class Project:
    """A cloud project (what Studio creates before a cloud print)."""

    project_id: str
    uid: int
    model_id: str
    profile_id: str
    name: str
    created: float
    updated: float
    upload_ticket: str = ""
    #: the config upload's object key (the ``upload_url`` target)
    upload_key: str = ""
    #: ``profile_print_3mf`` entries registered by PATCH: {"md5", "plate_idx", "url"}
    prints: list[dict[str, Any]] = field(default_factory=list)
    content: str = "{}"

    def summary(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "user_id": str(self.uid),
            "model_id": self.model_id,
            "status": "ACTIVE",
            "name": self.name,
            "content": self.content,
            "create_time": project_time(self.created),
            "update_time": project_time(self.updated),
        }

    def print_url(self, plate: int) -> str | None:
        for entry in reversed(self.prints):
            if isinstance(entry, dict) and entry.get("url") and int(entry.get("plate_idx") or 1) == plate:
                return str(entry["url"])
        return None


@dataclass
class CloudObject:
    """A file stored through a presigned upload URL."""

    key: str
    uid: int
    filename: str
    path: Path
    size: int  # bytes received
    declared_size: int | None = None  # the ``size`` the upload URL was requested with
    size_record: int | None = None  # what was PUT to the size URL
    os_type: str = ""  # X-BBL-OS-Type of the client that asked for the upload URL


# ---------------------------------------------------------------------- helpers


def iso_time(epoch: float) -> str:
    """``2023-12-21T19:02:16Z`` (tasks, messages)."""
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def project_time(epoch: float) -> str:
    """``2024-11-17 06:12:33`` (projects)."""
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def opaque_token() -> str:
    """A random token with no structure (what newer accounts get)."""
    return secrets.token_urlsafe(48)


def jwt_token(uid: int, issued: float, expires: float) -> str:
    """A JWT-shaped token whose payload carries ``username: u_<uid>``; the signature is random bytes.

    Clients decode the payload without checking the signature, as they do with real tokens.
    """
    header = {"alg": "RS256", "typ": "JWT"}
    payload = {
        "username": f"u_{uid}",
        "iat": int(issued),
        "exp": int(expires),
        "jti": secrets.token_hex(8),
    }
    parts = [_b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, payload)]
    return ".".join([*parts, _b64url(secrets.token_bytes(64))])


def totp(secret_b32: str, at: float, *, step: int = 30, digits: int = 6) -> str:
    """The RFC 6238 code (HMAC-SHA1) of ``secret_b32`` at time ``at``."""
    padded = secret_b32.strip().replace(" ", "").upper()
    key = base64.b32decode(padded + "=" * (-len(padded) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at // step)), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def presign(secret: bytes, method: str, content_type: str, expires: int, resource: str) -> str:
    """An S3 signature-V2-style query signature: base64(HMAC-SHA1(verb, md5, type, expires, resource))."""
    to_sign = f"{method}\n\n{content_type}\n{expires}\n{resource}"
    return base64.b64encode(hmac.new(secret, to_sign.encode(), hashlib.sha1).digest()).decode()
