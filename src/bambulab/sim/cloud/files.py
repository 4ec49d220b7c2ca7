"""Projects, uploads to the presigned object store, and slicer presets."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from bambulab.exceptions import SimulatorError
from bambulab.sim.cloud.accounts import AccountUseCases
from bambulab.sim.cloud.model import Account, CloudObject, Project, presign
from bambulab.sim.cloud.state import ACCESS_KEY_ID, BUCKET, URL_LIFETIME, Setting

__all__ = ["FileUseCases"]


class FileUseCases(AccountUseCases):
    """Use cases of :class:`~bambulab.sim.cloud.FakeCloud`, which composes them."""

    # ------------------------------------------------------------------ projects and uploads

    def add_project(self, who: str | int | Account, name: str) -> Project:
        """Create a cloud project (what ``POST /iot-service/api/user/project`` does)."""
        account = self.account(who)
        now = self.now()
        project = Project(
            project_id=str(self._rng.randrange(100_000_000, 999_999_999)),
            uid=account.uid,
            model_id="US" + "".join(self._rng.choice("0123456789abcdef") for _ in range(14)),
            profile_id=str(self._rng.randrange(100_000_000, 999_999_999)),
            name=name, created=now, updated=now,
        )
        self._projects[project.project_id] = project
        return project

    def projects(self, account: Account) -> list[Project]:
        return [p for p in self._projects.values() if p.uid == account.uid]

    def project(self, account: Account, project_id: str) -> Project | None:
        project = self._projects.get(project_id)
        return project if project is not None and project.uid == account.uid else None

    def _find_project(self, account: Account, body: dict[str, Any]) -> Project | None:
        wanted_project = str(body.get("projectId") or "")
        wanted_model = str(body.get("modelId") or "")
        for project in self.projects(account):
            if project.project_id == wanted_project or (wanted_model and project.model_id == wanted_model):
                return project
        return None

    def new_upload(self, account: Account, filename: str, size: int | None, os_type: str) -> CloudObject:
        """Reserve an object key for an upload; the PUT to its presigned URL stores the data."""
        safe = Path(filename.replace("\\", "/")).name or "upload.3mf"
        key = f"{account.uid}/{secrets.token_hex(8)}/{safe}"
        assert self._storage is not None, "start the cloud first"
        obj = CloudObject(key=key, uid=account.uid, filename=safe, path=self._storage / key.replace("/", "_"),
                          size=0, declared_size=size, os_type=os_type)
        self._objects[key] = obj
        return obj

    def presigned_url(self, method: str, key: str, *, content_type: str = "") -> str:
        expires = int(self.now()) + URL_LIFETIME
        resource = f"/{BUCKET}/{key}"
        signature = presign(self._secret, method, content_type, expires, resource)
        return (f"{self.api_url}/s3/{BUCKET}/{quote(key)}?AWSAccessKeyId={ACCESS_KEY_ID}"
                f"&Expires={expires}&Signature={quote(signature, safe='')}")

    def check_signature(self, method: str, key: str, content_type: str, expires: str, signature: str) -> str:
        """"" if a presigned request is valid, else the S3 error code."""
        if not expires.isdigit():
            return "AccessDenied"
        expected = presign(self._secret, method, content_type, int(expires), f"/{BUCKET}/{key}")
        if not secrets.compare_digest(expected.encode(), signature.encode()):
            return "SignatureDoesNotMatch"
        if int(expires) < self.now():
            return "AccessDenied"
        return ""

    def upload_object(self, key: str) -> CloudObject | None:
        return self._objects.get(key)

    def store_object(self, obj: CloudObject, data: bytes) -> None:
        obj.path.write_bytes(data)
        obj.size = len(data)

    def uploads(self, who: str | int | Account | None = None) -> list[CloudObject]:
        """Files stored through presigned URLs (of one account, or all)."""
        uid = self.account(who).uid if who is not None else None
        return [o for o in self._objects.values() if o.path.exists() and (uid is None or o.uid == uid)]

    def new_ticket(self, key: str) -> str:
        ticket = secrets.token_hex(12)
        self._tickets[ticket] = key
        return ticket

    def ticket_done(self, ticket: str) -> bool | None:
        key = self._tickets.get(ticket)
        if key is None:
            return None
        obj = self._objects.get(key)
        return obj is not None and obj.path.exists()

    def _object_for_url(self, url: str | None) -> CloudObject | None:
        if not url:
            return None
        path = unquote(urlsplit(url).path)
        prefix = f"/s3/{BUCKET}/"
        if not path.startswith(prefix):
            return None
        obj = self._objects.get(path[len(prefix):])
        return obj if obj is not None and obj.path.exists() else None

    def _resolve_object_url(self, url: str) -> Path | None:
        obj = self._object_for_url(url)
        return obj.path if obj is not None else None

    # ------------------------------------------------------------------ slicer settings

    def add_setting(
        self, who: str | int | Account, kind: str, name: str, setting: dict[str, Any] | None = None,
        *, filament_id: str | None = None,
    ) -> str:
        """Add a private preset (``kind`` print/printer/filament) to an account; returns its id."""
        if kind not in ("print", "printer", "filament"):
            raise SimulatorError("kind must be print, printer or filament")
        account = self.account(who)
        prefix = {"print": "PPUS", "printer": "PMUS", "filament": "PFUS"}[kind]
        setting_id = prefix + "".join(self._rng.choice("0123456789abcdef") for _ in range(14))
        self._settings[setting_id] = Setting(setting_id, kind, name, "1.0.0.0", False, account.uid,
                                              filament_id=filament_id, setting=dict(setting or {}))
        return setting_id

    def settings_list(self, account: Account) -> dict[str, Any]:
        out: dict[str, Any] = {k: {"public": [], "private": []} for k in ("print", "printer", "filament")}
        for s in self._settings.values():
            if s.public:
                out[s.kind]["public"].append(s.summary())
            elif s.uid == account.uid:
                out[s.kind]["private"].append(s.summary())
        return out

    def setting_detail(self, account: Account, setting_id: str) -> dict[str, Any] | None:
        s = self._settings.get(setting_id)
        if s is None or (not s.public and s.uid != account.uid):
            return None
        return {
            "public": s.public, "version": s.version, "type": s.kind, "name": s.name, "nickname": None,
            "base_id": None, "setting": {"name": s.name, **s.setting}, "filament_id": s.filament_id,
        }

    def delete_setting(self, account: Account, setting_id: str) -> bool:
        s = self._settings.get(setting_id)
        if s is None or s.public or s.uid != account.uid:
            return False
        del self._settings[setting_id]
        return True


