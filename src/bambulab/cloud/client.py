"""The Bambu cloud HTTP API: :class:`BambuClient` (blocking) and :class:`AsyncBambuClient`.

```python
from bambulab.cloud import BambuClient

with BambuClient(token) as cloud:
    for device in cloud.devices():
        print(device.dev_id, device.name, device.print_status)
    for task in cloud.tasks(limit=50):
        print(task.id, task.title, task.status.name)
```

Both clients read the same endpoint table (:mod:`bambulab.cloud.endpoints`) and differ only in
their I/O. Idempotent calls are retried on connection errors, timeouts, 5xx and 429 (with
jittered backoff, honouring ``Retry-After`` up to a cap: :class:`~bambulab.cloud._base.RetryPolicy`);
POSTs that change something never are. Error answers become exceptions a caller can act on:
401 → :class:`~bambulab.exceptions.TokenExpiredError`, a Cloudflare 403 →
:class:`~bambulab.exceptions.CloudflareBlockedError`, 429 →
:class:`~bambulab.exceptions.RateLimitedError` (``retry_after``), other errors →
:class:`~bambulab.exceptions.CloudError` (``status``, ``code``, the server's message); no network
→ :class:`~bambulab.exceptions.BambuConnectionError`, no answer →
:class:`~bambulab.exceptions.BambuTimeoutError`.

``http_client=`` takes an ``httpx2.Client`` (``httpx2.AsyncClient``) you own; it is not closed
by :meth:`BambuClient.close`. The token is never logged and never part of a ``repr``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bambulab.cloud import endpoints as ep
from bambulab.cloud._base import RetryPolicy, uid_from_jwt
from bambulab.cloud._session import AsyncSession, SyncSession
from bambulab.cloud.auth import Token
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
    Task,
    TaskPage,
    UploadResult,
    UploadTarget,
)
from bambulab.compat.cloud import LegacyClientMixin
from bambulab.exceptions import CloudError

if TYPE_CHECKING:
    import httpx2

__all__ = ["DEFAULT_SLICER_VERSION", "AsyncBambuClient", "BambuClient"]

T = TypeVar("T")

#: The slicer version sent with ``slicer_settings()`` when none is given.
DEFAULT_SLICER_VERSION = "02.00.00.00"


def _md5_file(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_info(path: str | os.PathLike[str], filename: str | None) -> tuple[str, str, int]:
    source = Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    return str(source), filename or source.name, source.stat().st_size


def _profile_of(project: ProjectDetail) -> str:
    """The profile a project's plate files are registered under (its first; Studio makes one)."""
    for profile in project.profiles:
        profile_id = profile.get("profile_id")
        if profile_id not in (None, ""):
            return str(profile_id)
    raise CloudError(f"project {project.project_id} has no profile to register a file under")


def _check_etag(etag: str | None, md5: str, filename: str) -> None:
    if etag and etag.strip('"').lower() != md5:
        raise CloudError(f"upload of {filename}: the object store stored different bytes (ETag does not match "
                         "the file's MD5)")


def _task_body(
    device_id: str, title: str, project_id: str | None, model_id: str | None, profile_id: int | str | None,
    plate_index: int, mode: str, bed_type: str, use_ams: bool | None, ams_mapping: list[int] | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deviceId": device_id, "title": title, "projectId": project_id, "modelId": model_id,
        "profileId": int(profile_id) if profile_id not in (None, "") else None, "plateIndex": plate_index,
        "mode": mode, "bedType": bed_type, "useAms": use_ams, "amsMapping": ams_mapping,
    }
    body.update(extra or {})
    return body


class _ClientBase:
    def __init__(self, token: Token | str) -> None:
        if isinstance(token, Token):
            self._token = token.access_token
            self._uid = token.uid
        else:
            self._token = str(token)
            self._uid = uid_from_jwt(self._token)
        if not self._token:
            raise ValueError("an access token is required (log in with BambuAuthenticator)")

    @property
    def token(self) -> str:
        """The access token in use (a secret: don't log it)."""
        return self._token


class _BlockingProjects(_ClientBase):
    """The modern blocking ``create_project``, below :class:`LegacyClientMixin` in the MRO.

    The older ``create_project(name, **kwargs)`` (:mod:`bambulab.compat.cloud`) sends
    ``create_project(name)`` here and handles the extra keywords itself, with a warning.
    """

    if TYPE_CHECKING:  # provided by BambuClient

        def _call(self, endpoint: ep.Endpoint[T], **args: Any) -> T: ...

    def create_project(self, name: str) -> ProjectCreated:
        """Create an empty project named ``name``: its ids, and the URL and ticket to upload its file."""
        return self._call(ep.CREATE_PROJECT, name=name)


class BambuClient(LegacyClientMixin, _BlockingProjects):
    """Blocking client of the Bambu cloud HTTP API. ``with BambuClient(token) as cloud: ...``.

    It also answers to the older package's names (``get_devices()`` ...: :mod:`bambulab.compat.cloud`).
    """

    def __init__(
        self,
        token: Token | str,
        *,
        region: str = "global",
        api_url: str | None = None,
        web_url: str | None = None,
        http_client: httpx2.Client | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(token)
        self._session = SyncSession(http_client=http_client, timeout=timeout, ssl_context=ssl_context,
                                    region=region, api_url=api_url, web_url=web_url, retry=retry, headers=headers)

    @property
    def api_url(self) -> str:
        """The HTTP API's base URL (the region's, or ``api_url=``)."""
        return self._session.api_url

    @property
    def web_url(self) -> str:
        """The web site's base URL, where login pages live (the region's, or ``web_url=``)."""
        return self._session.web_url

    @property
    def region(self) -> str:
        """``"global"`` or ``"china"``."""
        return self._session.region

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._session.closed

    def _call(self, endpoint: ep.Endpoint[T], **args: Any) -> T:
        return self._session.call(endpoint, self._token, **args)

    # -- account -----------------------------------------------------------------------------

    def preference(self) -> Preference:
        """The account's preferences (``GET /my/preference``): the uid and the display name among them."""
        return self._call(ep.PREFERENCE)

    def uid(self) -> int:
        """The numeric account id (cloud MQTT logs in as ``u_<uid>``); cached."""
        if self._uid is None:
            self._uid = self.preference().uid
        return self._uid

    def profile(self) -> Profile:
        """The account's profile (``GET /my/profile``): name, avatar, e-mail."""
        return self._call(ep.PROFILE)

    def messages(self, *, type: int | None = None, after: int | None = None, limit: int = 20) -> list[Message]:
        """Account messages, newest first (type 6: a print finished or failed)."""
        return self._call(ep.MESSAGES, type=type, after=after, limit=limit)

    # -- devices -----------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        """The printers bound to the account (access codes stripped, hidden from ``repr``)."""
        return self._call(ep.DEVICES)

    def print_status(self) -> list[PrintStatus]:
        """Live print state per device."""
        return self._call(ep.PRINT_STATUS, force=True)

    def firmware(self, dev_id: str) -> FirmwareInfo:
        """Installed firmware of one device and the versions offered."""
        return self._call(ep.FIRMWARE, dev_id=dev_id)

    def firmware_versions(self) -> dict[str, FirmwareInfo]:
        """:meth:`firmware` for every bound device, by serial."""
        return {d.dev_id: self.firmware(d.dev_id) for d in self.devices()}

    def rename_device(self, dev_id: str, name: str) -> None:
        """Change a device's name in the cloud (the printer's own name stays)."""
        self._call(ep.RENAME_DEVICE, dev_id=dev_id, name=name)

    def camera_credentials(self, dev_id: str) -> CameraCredentials:
        """Credentials for the cloud (TUTK relay) camera; secrets are hidden from ``repr``."""
        return self._call(ep.CAMERA_CREDENTIALS, dev_id=dev_id)

    # -- print history -----------------------------------------------------------------------

    def task_page(self, device_id: str | None = None, *, after: int | None = None, limit: int = 20) -> TaskPage:
        """One page of the print history (tasks with ids below ``after``), newest first."""
        return self._call(ep.TASKS, device_id=device_id, after=after, limit=limit)

    def tasks(self, device_id: str | None = None, limit: int = 20, *, max_tasks: int | None = None) -> Iterator[Task]:
        """Every task in the history, newest first, fetched ``limit`` (at most 100) per page (``for`` on the
        blocking client, ``async for`` on the async one)."""
        after: int | None = None
        count = 0
        while True:
            page = self.task_page(device_id, after=after, limit=limit)
            for task in page.tasks:
                yield task
                count += 1
                if max_tasks is not None and count >= max_tasks:
                    return
            if len(page.tasks) < max(1, min(limit, 100)):
                return
            last = page.tasks[-1].id
            if after is not None and last >= after:
                return  # the server did not move forward: stop rather than loop
            after = last

    def create_task(
        self,
        device_id: str,
        *,
        title: str,
        project_id: str | None = None,
        model_id: str | None = None,
        profile_id: int | str | None = None,
        plate_index: int = 1,
        mode: str = "cloud_file",
        bed_type: str = "auto",
        use_ams: bool | None = None,
        ams_mapping: list[int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Start a cloud print (``POST /my/task``); returns the new task id. Never retried.

        The project's file for ``plate_index`` must be registered first
        (:meth:`set_project_file`), or the cloud records the task without printing.
        """
        body = _task_body(device_id, title, project_id, model_id, profile_id, plate_index, mode, bed_type,
                          use_ams, ams_mapping, extra)
        return self._call(ep.CREATE_TASK, **body)

    # -- projects and uploads ----------------------------------------------------------------

    def projects(self) -> list[Project]:
        """The account's cloud projects (``GET /my/projects``)."""
        return self._call(ep.PROJECTS)

    def project(self, project_id: str) -> ProjectDetail:
        """One project with its plates and files."""
        return self._call(ep.PROJECT, project_id=project_id)

    def set_project_file(self, project_id: str, profile_id: str, url: str, *, md5: str = "", plate: int = 1) -> None:
        """Register an uploaded 3MF (its upload URL) as the print file of a project's plate."""
        self._call(ep.SET_PROJECT_FILE, project_id=project_id, profile_id=profile_id, url=url, md5=md5, plate=plate)

    def notification(self, ticket: str, *, action: str = "upload") -> Notification:
        """State of an upload ticket: ``.done`` once the file has arrived."""
        return self._call(ep.NOTIFICATION, ticket=ticket, action=action)

    def notify_upload(self, ticket: str) -> None:
        """Tell the cloud an upload for ``ticket`` has finished (poll :meth:`notification` next)."""
        self._call(ep.NOTIFY_UPLOAD, ticket=ticket)

    def upload_url(self, filename: str, size: int | None = None) -> UploadTarget:
        """Presigned URLs to PUT a file (and its size record) to the cloud's object store."""
        return self._call(ep.UPLOAD_URL, filename=filename, size=size)

    def upload_file(
        self, path: str | os.PathLike[str], filename: str | None = None, project_id: str | None = None
    ) -> UploadResult:
        """Upload a file through presigned URLs and check it arrived intact.

        Asks for the URLs (with the size), PUTs the bytes without a Content-Type (the URL is
        signed for none), checks the returned ETag against the file's MD5, then PUTs the size in
        decimal to the size URL when the cloud gave one.

        With ``project_id``, the uploaded file then becomes the print file of that project's
        plate 1 (:meth:`set_project_file`, with the project's profile and the file's MD5). The
        project is looked up first, so an unknown id raises :class:`CloudError` before anything
        is uploaded. For another plate, call :meth:`set_project_file` yourself.
        """
        source, name, size = _file_info(path, filename)
        profile_id = _profile_of(self.project(project_id)) if project_id is not None else None
        md5 = _md5_file(source)
        target = self.upload_url(name, size)
        if not target.url:
            raise CloudError(f"upload of {name}: the cloud gave no upload URL")
        response = self._session.put(target.url, source, size, "upload")
        _check_etag(response.header("etag"), md5, name)
        if target.size_url:
            self._session.put_bytes(target.size_url, str(size).encode(), "upload size")
        if project_id is not None and profile_id is not None:
            self.set_project_file(project_id, profile_id, target.url, md5=md5, plate=1)
        return UploadResult(target.filename or name, size, md5, target.url, target.size_url is not None)

    # -- slicer presets ----------------------------------------------------------------------

    def slicer_settings(self, version: str = DEFAULT_SLICER_VERSION) -> SlicerSettings:
        """The slicer presets (public and your private ones) for a Bambu Studio ``version``."""
        return self._call(ep.SLICER_SETTINGS, version=version)

    def slicer_setting(self, setting_id: str) -> SlicerSettingDetail:
        """One slicer preset with all its values."""
        return self._call(ep.SLICER_SETTING, setting_id=setting_id)

    def delete_slicer_setting(self, setting_id: str) -> None:
        """Delete one of your private presets (never retried)."""
        self._call(ep.DELETE_SLICER_SETTING, setting_id=setting_id)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client (unless it is yours). Calls after this raise."""
        self._session.close()

    def __enter__(self) -> BambuClient:
        self._session._check_open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BambuClient(api_url={self.api_url!r}, region={self.region!r}, closed={self.closed})"


class AsyncBambuClient(_ClientBase):
    """The async twin of :class:`BambuClient`. ``async with AsyncBambuClient(token) as cloud: ...``."""

    def __init__(
        self,
        token: Token | str,
        *,
        region: str = "global",
        api_url: str | None = None,
        web_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(token)
        self._session = AsyncSession(http_client=http_client, timeout=timeout, ssl_context=ssl_context,
                                     region=region, api_url=api_url, web_url=web_url, retry=retry, headers=headers)

    @property
    def api_url(self) -> str:
        """The HTTP API's base URL (the region's, or ``api_url=``)."""
        return self._session.api_url

    @property
    def web_url(self) -> str:
        """The web site's base URL, where login pages live (the region's, or ``web_url=``)."""
        return self._session.web_url

    @property
    def region(self) -> str:
        """``"global"`` or ``"china"``."""
        return self._session.region

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._session.closed

    async def _call(self, endpoint: ep.Endpoint[T], **args: Any) -> T:
        return await self._session.call(endpoint, self._token, **args)

    # -- account -----------------------------------------------------------------------------

    async def preference(self) -> Preference:
        """The account's preferences (``GET /my/preference``): the uid and the display name among them."""
        return await self._call(ep.PREFERENCE)

    async def uid(self) -> int:
        """The numeric account id (cloud MQTT logs in as ``u_<uid>``); cached."""
        if self._uid is None:
            self._uid = (await self.preference()).uid
        return self._uid

    async def profile(self) -> Profile:
        """The account's profile (``GET /my/profile``): name, avatar, e-mail."""
        return await self._call(ep.PROFILE)

    async def messages(self, *, type: int | None = None, after: int | None = None, limit: int = 20) -> list[Message]:
        """Account messages, newest first (type 6: a print finished or failed)."""
        return await self._call(ep.MESSAGES, type=type, after=after, limit=limit)

    # -- devices -----------------------------------------------------------------------------

    async def devices(self) -> list[Device]:
        """The printers bound to the account (access codes stripped, hidden from ``repr``)."""
        return await self._call(ep.DEVICES)

    async def print_status(self) -> list[PrintStatus]:
        """Live print state per device."""
        return await self._call(ep.PRINT_STATUS, force=True)

    async def firmware(self, dev_id: str) -> FirmwareInfo:
        """Installed firmware of one device and the versions offered."""
        return await self._call(ep.FIRMWARE, dev_id=dev_id)

    async def firmware_versions(self) -> dict[str, FirmwareInfo]:
        """:meth:`firmware` for every bound device, by serial."""
        devices = await self.devices()
        infos = await asyncio.gather(*(self.firmware(d.dev_id) for d in devices))
        return {d.dev_id: info for d, info in zip(devices, infos, strict=True)}

    async def rename_device(self, dev_id: str, name: str) -> None:
        """Change a device's name in the cloud (the printer's own name stays)."""
        await self._call(ep.RENAME_DEVICE, dev_id=dev_id, name=name)

    async def camera_credentials(self, dev_id: str) -> CameraCredentials:
        """Credentials for the cloud (TUTK relay) camera; secrets are hidden from ``repr``."""
        return await self._call(ep.CAMERA_CREDENTIALS, dev_id=dev_id)

    # -- print history -----------------------------------------------------------------------

    async def task_page(self, device_id: str | None = None, *, after: int | None = None, limit: int = 20) -> TaskPage:
        """One page of the print history (tasks with ids below ``after``), newest first."""
        return await self._call(ep.TASKS, device_id=device_id, after=after, limit=limit)

    async def tasks(
        self, device_id: str | None = None, limit: int = 20, *, max_tasks: int | None = None
    ) -> AsyncIterator[Task]:
        """Every task in the history, newest first, fetched ``limit`` (at most 100) per page (``for`` on the
        blocking client, ``async for`` on the async one)."""
        after: int | None = None
        count = 0
        while True:
            page = await self.task_page(device_id, after=after, limit=limit)
            for task in page.tasks:
                yield task
                count += 1
                if max_tasks is not None and count >= max_tasks:
                    return
            if len(page.tasks) < max(1, min(limit, 100)):
                return
            last = page.tasks[-1].id
            if after is not None and last >= after:
                return
            after = last

    async def create_task(
        self,
        device_id: str,
        *,
        title: str,
        project_id: str | None = None,
        model_id: str | None = None,
        profile_id: int | str | None = None,
        plate_index: int = 1,
        mode: str = "cloud_file",
        bed_type: str = "auto",
        use_ams: bool | None = None,
        ams_mapping: list[int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Start a cloud print (``POST /my/task``); returns the new task id. Never retried.

        The project's file for ``plate_index`` must be registered first
        (:meth:`set_project_file`), or the cloud records the task without printing.
        """
        body = _task_body(device_id, title, project_id, model_id, profile_id, plate_index, mode, bed_type,
                          use_ams, ams_mapping, extra)
        return await self._call(ep.CREATE_TASK, **body)

    # -- projects and uploads ----------------------------------------------------------------

    async def projects(self) -> list[Project]:
        """The account's cloud projects (``GET /my/projects``)."""
        return await self._call(ep.PROJECTS)

    async def project(self, project_id: str) -> ProjectDetail:
        """One project with its plates and files."""
        return await self._call(ep.PROJECT, project_id=project_id)

    async def create_project(self, name: str) -> ProjectCreated:
        """Create an empty project named ``name``: its ids, and the URL and ticket to upload its file."""
        return await self._call(ep.CREATE_PROJECT, name=name)

    async def set_project_file(
        self, project_id: str, profile_id: str, url: str, *, md5: str = "", plate: int = 1
    ) -> None:
        """Register an uploaded 3MF (its upload URL) as the print file of a project's plate."""
        await self._call(ep.SET_PROJECT_FILE, project_id=project_id, profile_id=profile_id, url=url, md5=md5,
                         plate=plate)

    async def notification(self, ticket: str, *, action: str = "upload") -> Notification:
        """State of an upload ticket: ``.done`` once the file has arrived."""
        return await self._call(ep.NOTIFICATION, ticket=ticket, action=action)

    async def notify_upload(self, ticket: str) -> None:
        """Tell the cloud an upload for ``ticket`` has finished (poll :meth:`notification` next)."""
        await self._call(ep.NOTIFY_UPLOAD, ticket=ticket)

    async def upload_url(self, filename: str, size: int | None = None) -> UploadTarget:
        """Presigned URLs to PUT a file (and its size record) to the cloud's object store."""
        return await self._call(ep.UPLOAD_URL, filename=filename, size=size)

    async def upload_file(
        self, path: str | os.PathLike[str], filename: str | None = None, project_id: str | None = None
    ) -> UploadResult:
        """Upload a file through presigned URLs and check it arrived intact.

        Asks for the URLs (with the size), PUTs the bytes without a Content-Type (the URL is
        signed for none), checks the returned ETag against the file's MD5, then PUTs the size in
        decimal to the size URL when the cloud gave one.

        With ``project_id``, the uploaded file then becomes the print file of that project's
        plate 1 (:meth:`set_project_file`, with the project's profile and the file's MD5). The
        project is looked up first, so an unknown id raises :class:`CloudError` before anything
        is uploaded. For another plate, call :meth:`set_project_file` yourself.
        """
        source, name, size = await asyncio.to_thread(_file_info, path, filename)
        profile_id = _profile_of(await self.project(project_id)) if project_id is not None else None
        md5 = await asyncio.to_thread(_md5_file, source)
        target = await self.upload_url(name, size)
        if not target.url:
            raise CloudError(f"upload of {name}: the cloud gave no upload URL")
        response = await self._session.put(target.url, source, size, "upload")
        _check_etag(response.header("etag"), md5, name)
        if target.size_url:
            await self._session.put_bytes(target.size_url, str(size).encode(), "upload size")
        if project_id is not None and profile_id is not None:
            await self.set_project_file(project_id, profile_id, target.url, md5=md5, plate=1)
        return UploadResult(target.filename or name, size, md5, target.url, target.size_url is not None)

    # -- slicer presets ----------------------------------------------------------------------

    async def slicer_settings(self, version: str = DEFAULT_SLICER_VERSION) -> SlicerSettings:
        """The slicer presets (public and your private ones) for a Bambu Studio ``version``."""
        return await self._call(ep.SLICER_SETTINGS, version=version)

    async def slicer_setting(self, setting_id: str) -> SlicerSettingDetail:
        """One slicer preset with all its values."""
        return await self._call(ep.SLICER_SETTING, setting_id=setting_id)

    async def delete_slicer_setting(self, setting_id: str) -> None:
        """Delete one of your private presets (never retried)."""
        await self._call(ep.DELETE_SLICER_SETTING, setting_id=setting_id)

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP client (unless it is yours). Calls after this raise."""
        await self._session.aclose()

    async def __aenter__(self) -> AsyncBambuClient:
        self._session._check_open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncBambuClient(api_url={self.api_url!r}, region={self.region!r}, closed={self.closed})"
