"""The older package's ``BambuClient`` methods, on the modern blocking :class:`bambulab.cloud.BambuClient`.

:class:`LegacyClientMixin` is inherited by :class:`bambulab.cloud.BambuClient` only (the async
client is modern-only). Each method calls a modern one and returns what the older package
returned: plain dicts (:class:`~bambulab.compat._records.Record`, also readable as attributes) in
the shape of the cloud's JSON. Methods the older package offered without a real endpoint behind
them raise :class:`~bambulab.exceptions.UnsupportedError` naming what works instead.

```python
from bambulab import BambuClient

client = BambuClient(token="...")
for device in client.get_devices():
    print(device["name"], device["print_status"], device.dev_id)
```
"""

from __future__ import annotations

import json
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from bambulab.cloud.endpoints import CREATE_PROJECT, IOT, Endpoint
from bambulab.compat import LegacyWarning
from bambulab.compat._records import Record
from bambulab.exceptions import BambuTimeoutError, CloudError, UnsupportedError

if TYPE_CHECKING:
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
    from bambulab.compat.mqtt import MQTTBridge

__all__ = ["AMS_MQTT_ONLY_FIELDS", "LegacyClientMixin", "ams_filaments"]

T = TypeVar("T")


def _object(body: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    return body if isinstance(body, dict) else {}


#: ``GET /v1/iot-service/api/slicer/resource``: downloads for the slicer (plug-ins), with optional
#: ``type=version`` query pairs (the cloud HTTP notes of the older package's documentation).
SLICER_RESOURCES: Endpoint[dict[str, Any]] = Endpoint(
    "slicer_resources", "GET", f"{IOT}/slicer/resource", _object, idempotent=True,
    query=lambda **pairs: pairs,
)
#: ``POST .../user/project`` with extra body fields beside ``name``, as the older package's
#: ``create_project(name, **kwargs)`` sent them. Only ``name`` is documented.
LEGACY_CREATE_PROJECT: Endpoint[ProjectCreated] = replace(
    CREATE_PROJECT, body=lambda name, fields: {**fields, "name": name},
)
#: ``DELETE /v1/iot-service/api/user/bind`` with ``{dev_id, force}`` (PROTOCOL.md §8.3). Destructive.
UNBIND_DEVICE: Endpoint[dict[str, Any]] = Endpoint(
    "unbind_device", "DELETE", f"{IOT}/user/bind", _object, idempotent=False,
    body=lambda dev_id, force=False: {"dev_id": dev_id, "force": bool(force)},
)

#: Fields of :meth:`LegacyClientMixin.get_ams_filaments` that only the printer's MQTT report
#: carries (the bind list has no AMS data, whatever the older documentation said).
AMS_MQTT_ONLY_FIELDS = (
    "has_ams", "total_trays", "ams_units", "external_spool", "unit_id", "software_version", "hardware_version",
    "tray_count", "temperature", "humidity", "humidity_raw", "dry_time", "info", "trays", "tray_id", "state",
    "filament_type", "filament_color", "nozzle_temp_min", "nozzle_temp_max", "remain", "k", "n", "cali_idx",
)

_UNSUPPORTED = {
    "get_cloud_files": "the cloud has no documented file listing: use get_projects() (or projects()) for the "
                       "files registered with projects, and get_tasks() for the files that were printed",
    "get_cloud_video_url": "the cloud offers no video URL: get_camera_credentials(device_id) gives the TUTK "
                           "relay credentials, and on the LAN bambulab.Camera / JPEGFrameStream / RTSPStream "
                           "read the printer's camera",
    "start_cloud_print": "POST .../user/print does not exist (it answers 405): upload_file(), create_project(), "
                         "set_project_file() then create_task(device_id, title=..., project_id=..., "
                         "profile_id=...); on the LAN, Printer.print_file() or upload_and_print()",
    "start_print_job": "POST .../user/print does not exist (it answers 405): use create_task() after "
                       "set_project_file(), or on the LAN Printer.print_file() / upload_and_print()",
    "get_device_info": "GET .../user/device/info is not a documented endpoint: get_devices() (or devices()) "
                       "carries the same information, get_device_version(device_id) the firmware",
    "update_user_profile": "PUT /v1/user-service/my/profile is not documented; change the profile in the "
                           "Bambu Handy app or on bambulab.com",
    "bind_device": "binding is done on the printer's screen and in the Bambu Handy app (by PIN); POST "
                   ".../user/bind is not a documented endpoint",
}


def _unsupported(name: str) -> UnsupportedError:
    return UnsupportedError(f"{name}() has no real endpoint behind it: {_UNSUPPORTED[name]}")


# ---------------------------------------------------------------------- AMS from the MQTT report

_UNIT_RENAMES = {"id": "unit_id", "temp": "temperature", "tray": "trays"}
_TRAY_RENAMES = {"id": "tray_id", "tray_type": "filament_type", "tray_color": "filament_color"}
_INT_TRAY_KEYS = ("tray_id", "nozzle_temp_min", "nozzle_temp_max", "state", "remain", "cali_idx", "ctype", "n")


def _as_int(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _tray(wire: Mapping[str, Any]) -> dict[str, Any]:
    tray = {_TRAY_RENAMES.get(str(k), str(k)): v for k, v in wire.items()}
    for key in _INT_TRAY_KEYS:
        if key in tray:
            tray[key] = _as_int(tray[key])
    if "filament_type" not in tray:  # P1/A1 send an empty slot as a bare id
        tray.setdefault("tray_type", "Empty")
        tray.setdefault("state", 0)
    return tray


def _module_versions(info: Mapping[str, Any]) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    for module in info.get("module") or []:
        if not isinstance(module, Mapping):
            continue
        name = str(module.get("name", ""))
        for prefix in ("ams/", "n3f/", "n3s/", "ams_f1/"):
            number = name[len(prefix):]
            if name.startswith(prefix) and number.isdigit():
                out[int(number)] = (str(module.get("sw_ver", "")), str(module.get("hw_ver", "")))
    return out


def ams_filaments(device_id: str, state: Mapping[str, Any] | None) -> dict[str, Any]:
    """The older ``get_ams_filaments`` answer, built from a printer's merged MQTT state.

    ``state`` is ``{"print": {...}, "info": {...}}`` (a :class:`~bambulab.printer.BasePrinter`'s
    ``state``); ``None`` (the printer did not report) gives ``has_ams: None`` and no units, with
    ``source: "bind"``. Wire names become the older ones (``tray_type`` → ``filament_type``,
    ``tray_color`` → ``filament_color``, ``temp`` → ``temperature``); every other wire key of a
    unit or tray is passed through unchanged. ``remain`` is what the printer sends: a percentage
    (-1 when unknown), not millimetres as the older documentation said.
    """
    if state is None:
        return {"device_id": device_id, "source": "bind", "has_ams": None, "total_trays": 0, "ams_units": [],
                "external_spool": None}
    report = state.get("print") if isinstance(state.get("print"), Mapping) else {}
    assert isinstance(report, Mapping)
    info = state.get("info") if isinstance(state.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    ams = report.get("ams") if isinstance(report.get("ams"), Mapping) else {}
    assert isinstance(ams, Mapping)
    versions = _module_versions(info)
    units: list[dict[str, Any]] = []
    for wire in ams.get("ams") or []:
        if not isinstance(wire, Mapping):
            continue
        unit: dict[str, Any] = {_UNIT_RENAMES.get(str(k), str(k)): v for k, v in wire.items() if k != "tray"}
        unit["unit_id"] = _as_int(unit.get("unit_id"))
        trays = [_tray(t) for t in wire.get("tray") or [] if isinstance(t, Mapping)]
        unit["trays"] = trays
        unit["tray_count"] = len(trays)
        for key in ("temperature", "humidity", "humidity_raw", "dry_time", "info"):
            unit.setdefault(key, None)  # documented keys are always there; None when the unit does not send them
        sw, hw = versions.get(unit["unit_id"], ("", "")) if isinstance(unit["unit_id"], int) else ("", "")
        unit["software_version"] = unit["sw_version"] = sw
        unit["hardware_version"] = unit["hw_version"] = hw
        units.append(unit)
    external: dict[str, Any] | None = None
    spools = [s for s in report.get("vir_slot") or [] if isinstance(s, Mapping)]
    vt = report.get("vt_tray")
    if not spools and isinstance(vt, Mapping):
        spools = [vt]
    if spools:  # the main extruder's spool (254) on two-extruder printers, whose vir_slot lists 254 and 255
        external = _tray(next((s for s in spools if str(s.get("id")) == "254"), spools[0]))
    return {
        "device_id": device_id,
        "source": "mqtt",
        "has_ams": bool(units),
        "total_trays": sum(len(u["trays"]) for u in units),
        "ams_units": units,
        "external_spool": external,
    }


class LegacyClientMixin:
    """The older ``BambuClient`` methods (``get_devices()``, ``get_print_status()``, ...).

    Inherited by :class:`bambulab.cloud.BambuClient`; see ``docs/migrating.md`` for the table of
    names. Results are :class:`~bambulab.compat._records.Record` dicts in the cloud's JSON shape.
    """

    if TYPE_CHECKING:  # provided by BambuClient

        def _call(self, endpoint: Endpoint[T], **args: Any) -> T: ...
        @property
        def token(self) -> str: ...
        @property
        def region(self) -> str: ...
        def uid(self) -> int: ...
        def devices(self) -> list[Device]: ...
        def print_status(self) -> list[PrintStatus]: ...
        def firmware(self, dev_id: str) -> FirmwareInfo: ...
        def preference(self) -> Preference: ...
        def profile(self) -> Profile: ...
        def messages(self, *, type: int | None = None, after: int | None = None, limit: int = 20) -> list[Message]: ...
        def task_page(self, device_id: str | None = None, *, after: int | None = None, limit: int = 20) -> TaskPage: ...
        def projects(self) -> list[Project]: ...
        def project(self, project_id: str) -> ProjectDetail: ...
        def camera_credentials(self, dev_id: str) -> CameraCredentials: ...
        def notification(self, ticket: str, *, action: str = "upload") -> Notification: ...
        def upload_url(self, filename: str, size: int | None = None) -> UploadTarget: ...
        def slicer_settings(self, version: str = ...) -> SlicerSettings: ...
        def slicer_setting(self, setting_id: str) -> SlicerSettingDetail: ...

    # -- devices -----------------------------------------------------------------------------

    def get_devices(self) -> list[Record]:
        """The bound printers as the bind list's dicts: ``device["dev_id"]``, ``["name"]``,
        ``["online"]``, ``["print_status"]``, ``["dev_model_name"]``, ``["dev_product_name"]``,
        ``["dev_access_code"]`` (trailing newline stripped; masked in ``repr``). Attributes work
        too, including the modern ones (``device.model_name``, ``device.serial``)."""
        out = []
        for device in self.devices():
            data = dict(device.raw)
            if "dev_access_code" in data:
                data["dev_access_code"] = device.access_code
            out.append(Record(data, source=device))
        return out

    def get_device_version(self, device_id: str) -> Record:
        """Firmware of one printer: the cloud's entry (``dev_id``, ``version``, ``firmware``, ``ams``)
        plus ``current_version``, ``latest_version`` and ``update_available`` for older scripts."""
        info = self.firmware(device_id)
        data = dict(info.raw)
        latest = info.latest or info.version
        data.update(current_version=info.version, latest_version=latest,
                    update_available=bool(info.latest and info.latest != info.version))
        return Record(data, source=info)

    def get_device_versions(self) -> Record:
        """:meth:`get_device_version` for every bound printer: ``{"devices": [entry, ...]}``, the shape
        of the cloud's answer (asked per device: the endpoint takes a ``dev_id``)."""
        return Record({"devices": [self.get_device_version(d.dev_id) for d in self.devices()]})

    def get_device_info(self, device_id: str) -> Record:
        """Not available: raises :class:`UnsupportedError` (use :meth:`get_devices`)."""
        raise _unsupported("get_device_info")

    def bind_device(self, device_id: str, name: str = "", code: str = "") -> Record:
        """Not available: raises :class:`UnsupportedError` (bind on the printer's screen / in the app)."""
        raise _unsupported("bind_device")

    def unbind_device(self, device_id: str, *, confirm: bool = False, force: bool = False) -> Record:
        """Remove a printer from the account (``DELETE .../user/bind``). Needs ``confirm=True``.

        Destructive: the printer stays off the account until it is bound again from its screen
        or the Bambu Handy app. Without ``confirm=True`` nothing is sent and
        :class:`UnsupportedError` says so.
        """
        if confirm is not True:
            raise UnsupportedError(
                f"unbind_device({device_id!r}) removes the printer from the account until it is bound again on its "
                "screen; nothing was sent. Call unbind_device(device_id, confirm=True) if that is what you want"
            )
        return Record(self._call(UNBIND_DEVICE, dev_id=device_id, force=force))

    # -- print status and history ------------------------------------------------------------

    def get_print_status(self, force: bool | str = False) -> Record:
        """The cloud's print status: ``{"devices": [{"dev_id", "dev_name", "task_name", "progress", ...}]}``.

        ``force`` is accepted for the older signature; the request always sends ``force=true``, as
        the slicer does. Older examples passed a device id here (``get_print_status(dev_id)``):
        then that device's entry is returned (:class:`CloudError` if it is not bound).
        """
        statuses = self.print_status()
        if isinstance(force, str) and force:
            wanted = force.upper()
            for status in statuses:
                if status.dev_id.upper() == wanted:
                    return self._status_record(status)
            raise CloudError(f"device {force} is not bound to this account")
        return Record({"devices": [self._status_record(s) for s in statuses]})

    @staticmethod
    def _status_record(status: PrintStatus) -> Record:
        data = dict(status.raw)
        if "dev_access_code" in data:
            data["dev_access_code"] = status.access_code
        return Record(data, source=status)

    def get_tasks(self, device_id: str | None = None, limit: int = 20, after: int | None = None) -> Record:
        """One page of the print history as the cloud sends it: ``{"total": n, "hits": [task, ...]}``."""
        page = self.task_page(device_id, after=after, limit=limit)
        return Record({"total": page.total, "hits": [Record(t.raw, source=t) for t in page.tasks]})

    # -- account -----------------------------------------------------------------------------

    def get_user_profile(self) -> Record:
        """``GET /v1/user-service/my/profile`` as a dict."""
        profile = self.profile()
        return Record(profile.raw, source=profile)

    def get_user_info(self) -> Record:
        """``GET /v1/design-user-service/my/preference`` as a dict; ``["uid"]`` is the MQTT user id."""
        preference = self.preference()
        return Record(preference.raw, source=preference)

    def update_user_profile(self, data: Mapping[str, Any]) -> Record:
        """Not available: raises :class:`UnsupportedError`."""
        raise _unsupported("update_user_profile")

    def get_messages(self, type: int | None = None, after: int | None = None, limit: int = 20) -> Record:
        """Account messages as the cloud sends them: ``{"hits": [message, ...]}``."""
        return Record({"hits": [Record(m.raw, source=m) for m in self.messages(type=type, after=after, limit=limit)]})

    def get_notifications(
        self, action: str | None = None, unread_only: bool = False, *, ticket: str | None = None
    ) -> Record:
        """The state of an upload ticket (``GET .../user/notification?action=&ticket=``).

        The cloud's notification endpoint answers per ticket; there is no documented list of
        notifications and no unread filter, so without ``ticket`` (or with ``unread_only``) this
        raises :class:`UnsupportedError` naming :meth:`get_messages`.
        """
        if ticket is None or unread_only:
            raise UnsupportedError(
                "get_notifications() without a ticket has no real endpoint: the cloud's notification endpoint "
                "answers per upload ticket (get_notifications(ticket=...)); account messages, such as a "
                "finished print, are get_messages()"
            )
        note = self.notification(ticket, action=action or "upload")
        return Record({**note.raw, "done": note.done}, source=note)

    # -- projects ----------------------------------------------------------------------------

    def get_projects(self) -> list[Record]:
        """The account's projects, each the cloud's dict (``project_id``, ``name``, ``status`` ...)."""
        return [Record(p.raw, source=p) for p in self.projects()]

    def get_project(self, project_id: str) -> Record:
        """One project with its profiles and plates, as the cloud sends it."""
        detail = self.project(project_id)
        return Record(detail.raw, source=detail)

    def create_project(self, name: str, **kwargs: Any) -> ProjectCreated:
        """Create a project, as :meth:`BambuClient.create_project`; the older extra keywords are sent.

        The older package put ``**kwargs`` into the request body beside ``name``; so does this,
        with a :class:`~bambulab.compat.LegacyWarning` naming them, because the cloud documents
        no field but ``name`` when a project is created (look at :meth:`get_project` for their
        effect). ``None`` values are left out, as in every request. To attach a file, use
        ``upload_file(path, project_id=...)`` or ``set_project_file()``.
        """
        if not kwargs:
            created: ProjectCreated = super().create_project(name)  # type: ignore[misc]  # the modern one
            return created
        try:
            json.dumps(kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"create_project(): extra fields must be JSON values ({exc})") from None
        sent = sorted(k for k, v in kwargs.items() if v is not None)
        unset = sorted(k for k, v in kwargs.items() if v is None)
        what = f"sent {', '.join(sent)} in the request body as given, as the older package did" if sent else ""
        if unset:
            what += ("; " if what else "") + f"left out {', '.join(unset)} (None values are not sent)"
        warnings.warn(
            f"create_project(): {what}. The cloud documents only 'name' when creating a project, so extra "
            "fields may have no effect (check get_project()). Use create_project(name), then "
            "upload_file(path, project_id=...) or set_project_file() to attach the print file",
            LegacyWarning,
            stacklevel=2,
        )
        return self._call(LEGACY_CREATE_PROJECT, name=name, fields=kwargs)

    # -- camera ------------------------------------------------------------------------------

    def get_camera_credentials(self, device_id: str) -> Record:
        """``POST .../user/ttcode``: ``["ttcode"]``, ``["passwd"]``, ``["authkey"]`` (masked in ``repr``),
        ``["region"]``, ``["type"]``. These are for the TUTK relay that Bambu's apps use."""
        creds = self.camera_credentials(device_id)
        data = {"dev_id": device_id, **creds.raw}
        return Record(data, source=creds)

    def get_ttcode(self, device_id: str) -> Record:
        """Same as :meth:`get_camera_credentials`."""
        return self.get_camera_credentials(device_id)

    # -- slicer ------------------------------------------------------------------------------

    def get_slicer_settings(self, version: str | None = None, setting_id: str | None = None) -> Record:
        """The preset list (``print``/``printer``/``filament``, each ``public``/``private``), or with
        ``setting_id`` one preset in full."""
        if setting_id:
            detail = self.slicer_setting(setting_id)
            return Record(detail.raw, source=detail)
        settings = self.slicer_settings(version) if version else self.slicer_settings()
        data: dict[str, Any] = {}
        for kind in ("print", "printer", "filament"):
            presets = getattr(settings, kind)
            data[kind] = {"public": [s.raw for s in presets if s.public],
                          "private": [s.raw for s in presets if not s.public]}
        return Record(data, source=settings)

    def get_slicer_resources(self, type: str | None = None, version: str | None = None) -> Record:
        """``GET .../slicer/resource``: the slicer's downloads (``software``, ``resources``); with
        ``type`` (``"slicer/plugins/cloud"``) and ``version``, asks for that type at that version."""
        pairs = {type: version or ""} if type else {}
        return Record(self._call(SLICER_RESOURCES, **pairs))

    # -- uploads -----------------------------------------------------------------------------

    def get_upload_url(self, filename: str | None = None, size: int | None = None) -> Record:
        """``GET .../user/upload``: ``{"urls": [{"type": "filename", "url": ...}, {"type": "size", ...}]}``.

        The URLs are presigned write credentials (masked in ``repr``). ``filename`` is required by
        the cloud.
        """
        if not filename:
            raise ValueError("get_upload_url needs filename= (the cloud signs the URL for one file name)")
        target = self.upload_url(filename, size)
        return Record(target.raw, source=target, secret_keys=("url",))

    # -- AMS ---------------------------------------------------------------------------------

    def set_mqtt_broker(
        self,
        host: str | None = None,
        port: int = 8883,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """Where :meth:`get_ams_filaments` and :class:`~bambulab.compat.mqtt.MQTTBridge` reach the
        cloud broker (default: the region's, ``us.mqtt.bambulab.com``). Tests point it at a fake cloud."""
        self.__dict__["_legacy_broker"] = {"host": host, "port": port, "ssl_context": ssl_context,
                                           "server_hostname": server_hostname}

    def _broker(self) -> dict[str, Any]:
        options = self.__dict__.get("_legacy_broker")
        return {k: v for k, v in (options or {}).items() if v is not None}

    def _register_bridge(self, bridge: MQTTBridge) -> None:
        self.__dict__.setdefault("_legacy_bridges", []).append(bridge)

    def _forget_bridge(self, bridge: MQTTBridge) -> None:
        bridges = self.__dict__.get("_legacy_bridges") or []
        if bridge in bridges:
            bridges.remove(bridge)

    def get_ams_filaments(self, device_id: str, *, timeout: float = 10.0) -> Record:
        """AMS units, trays and the external spool of one printer, in the older package's shape.

        ``device_id`` must be in the bind list (else :class:`CloudError`). Everything else comes
        from the printer's MQTT report (the bind list carries no AMS data; see
        :data:`AMS_MQTT_ONLY_FIELDS`): from an open :class:`~bambulab.compat.mqtt.MQTTBridge` of
        this client when there is one, else from a cloud MQTT connection opened for this call
        (one full report, then closed). A printer that does not report within ``timeout``
        seconds gives ``has_ams: None`` and ``source: "bind"``.
        """
        serial = device_id.upper()
        if not any(d.dev_id.upper() == serial for d in self.devices()):
            raise CloudError(f"device {device_id} is not bound to this account")
        for bridge in self.__dict__.get("_legacy_bridges") or []:
            state = bridge._state_of(serial)
            if state is not None:
                return Record(ams_filaments(serial, state))
        return Record(ams_filaments(serial, self._fetch_state(serial, timeout)))

    def _fetch_state(self, serial: str, timeout: float) -> dict[str, Any] | None:
        from bambulab.cloud.mqtt import CloudConnection
        from bambulab.sync import _run

        async def snapshot() -> dict[str, Any] | None:
            connection = CloudConnection(self.token, uid=self.uid(), devices=[serial], region=self.region,
                                         command_timeout=timeout, reconnect=False, **self._broker())
            async with connection:
                printer = connection.printer(serial)
                try:  # connecting greets the printer with a pushall; its full report marks it online
                    await printer.wait_for(lambda _: printer.connected and "print" in printer.state, timeout)
                except BambuTimeoutError:
                    return None
                return {k: dict(v) if isinstance(v, dict) else v for k, v in printer.state.items()}

        return _run(snapshot(), timeout * 3 + 10)

    # -- methods without an endpoint ---------------------------------------------------------

    def get_cloud_files(self, *args: Any, **kwargs: Any) -> list[Record]:
        """Not available: raises :class:`UnsupportedError` (use :meth:`get_projects`)."""
        raise _unsupported("get_cloud_files")

    def get_cloud_video_url(self, *args: Any, **kwargs: Any) -> Record:
        """Not available: raises :class:`UnsupportedError` (use :meth:`get_camera_credentials`)."""
        raise _unsupported("get_cloud_video_url")

    def start_cloud_print(self, *args: Any, **kwargs: Any) -> Record:
        """Not available: raises :class:`UnsupportedError` (use ``create_task``)."""
        raise _unsupported("start_cloud_print")

    def start_print_job(self, *args: Any, **kwargs: Any) -> Record:
        """Not available: raises :class:`UnsupportedError` (use ``create_task``)."""
        raise _unsupported("start_print_job")
