"""The older package's ``BambuClient`` names and result shapes, against the fake cloud."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from compattools import CloudThread

from bambulab import BambuClient
from bambulab.cloud import AsyncBambuClient, Device
from bambulab.compat import LegacyWarning
from bambulab.compat.cloud import AMS_MQTT_ONLY_FIELDS, LegacyClientMixin, ams_filaments
from bambulab.compat.mqtt import MQTTBridge
from bambulab.exceptions import CloudError, UnsupportedError


@pytest.fixture
def client(cloud: CloudThread) -> Iterator[BambuClient]:
    with BambuClient(token=cloud.token(), api_url=cloud.api_url) as c:
        c.set_mqtt_broker(**cloud.broker())
        yield c


def test_get_devices_reads_as_dicts_and_attributes(client: BambuClient, cloud: CloudThread) -> None:
    devices = client.get_devices()
    assert [d["dev_id"] for d in devices] == [p.serial for p in cloud.printers]
    first = devices[0]
    assert first["name"] == "P1S-1" and first.name == "P1S-1"
    assert first["print_status"] == "IDLE" and first["online"] is True
    assert first["dev_product_name"] == "P1S" and first.model_name == "P1S"  # modern attribute too
    assert first["dev_access_code"] == cloud.printers[0].access_code  # newline stripped
    assert cloud.printers[0].access_code not in repr(devices) and "***" in str(first)
    assert isinstance(first.source, Device)
    with pytest.raises(AttributeError):
        _ = first.no_such_field


def test_versions_status_tasks_account(client: BambuClient, cloud: CloudThread) -> None:
    serial = cloud.printers[0].serial
    version = client.get_device_version(serial)
    assert version["dev_id"] == serial and version["current_version"] == version["version"]
    assert version["update_available"] is False and version["firmware"]
    every = client.get_device_versions()
    assert [d["dev_id"] for d in every["devices"]] == [p.serial for p in cloud.printers]
    status = client.get_print_status(force=True)
    assert {d["dev_id"] for d in status["devices"]} == {p.serial for p in cloud.printers}
    one = client.get_print_status(serial)  # the older README passed a device id positionally
    assert one["dev_name"] == "P1S-1" and "progress" in one
    with pytest.raises(CloudError, match="not bound"):
        client.get_print_status("01P00A999999999")
    tasks = client.get_tasks()
    assert tasks["total"] == 0 and tasks["hits"] == []
    assert client.get_user_info()["uid"] == cloud.account.uid
    assert client.get_user_profile()["account"] == cloud.account.email
    assert client.get_messages(limit=5) == {"hits": []}


def test_projects_camera_slicer_and_upload(client: BambuClient, cloud: CloudThread, tmp_path: Path) -> None:
    created = client.create_project("cube")
    assert created["project_id"] == created.project_id  # the modern result reads as a dict too
    assert created["project_id"] in [p["project_id"] for p in client.get_projects()]
    detail = client.get_project(created["project_id"])
    assert detail["name"] == "cube" and detail["profiles"]
    creds = client.get_ttcode(cloud.printers[0].serial)
    assert set(creds) == set(client.get_camera_credentials(cloud.printers[0].serial))  # fresh codes each time
    assert creds["ttcode"] and creds["passwd"] and creds["type"] == "tutk"
    assert creds["ttcode"] not in repr(creds) and creds["passwd"] not in repr(creds)
    settings = client.get_slicer_settings()
    assert settings["print"]["public"] and "private" in settings["filament"]
    setting_id = settings["print"]["public"][0]["setting_id"]
    assert client.get_slicer_settings(setting_id=setting_id)["name"] == settings["print"]["public"][0]["name"]
    target = client.get_upload_url(filename="test.3mf", size=3)
    assert [u["type"] for u in target["urls"]] == ["filename", "size"]
    assert target["urls"][0]["url"] not in repr(target)
    with pytest.raises(ValueError, match="filename"):
        client.get_upload_url()
    model = tmp_path / "model.3mf"
    model.write_bytes(b"PK\x03\x04 a cube")
    result = client.upload_file(str(model))
    assert result["status_code"] in (200, 201, 204) and result["success"] is True
    assert result["filename"] == "model.3mf" and result["size"] == model.stat().st_size
    assert result["file_url"].endswith("model.3mf") and "Signature" not in result["file_url"]
    assert "file_url" in result and dict(result)["md5"] == result.md5


def test_older_upload_file_with_project_id(client: BambuClient, cloud: CloudThread, tmp_path: Path) -> None:
    created = client.create_project("plate")
    model = tmp_path / "model.3mf"
    model.write_bytes(b"PK\x03\x04 a plate")
    result = client.upload_file(str(model), None, created["project_id"])  # the older positional order
    assert result["success"] is True and result["filename"] == "model.3mf"
    plates = client.get_project(created["project_id"])["profiles"][0]["context"]["plates"]
    assert [p["index"] for p in plates] == [1]
    stored = cloud.do(lambda: cloud.cloud.project(cloud.account, created.project_id))
    assert stored is not None and stored.prints == [{"md5": result["md5"], "plate_idx": 1, "url": result.url}]
    with pytest.raises(CloudError):
        client.upload_file(str(model), project_id="999999999")


def test_older_create_project_sends_extra_keywords_with_a_warning(client: BambuClient) -> None:
    with pytest.warns(LegacyWarning, match=r"sent description, tags .*documents only 'name'.*project_id="):
        created = client.create_project("cube", description="a cube", tags=["demo"])
    assert created["project_id"] in [p["project_id"] for p in client.get_projects()]
    assert client.get_project(created["project_id"])["name"] == "cube"
    with pytest.raises(ValueError, match="JSON"):
        client.create_project("cube", when=object())
    assert list(inspect.signature(BambuClient.create_project).parameters)[:2] == ["self", "name"]


def test_create_project_request_bodies() -> None:
    """The modern call sends only the name; the older one adds its keywords (None left out)."""
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"message": "success", "code": None, "error": None, "project_id": "1",
                                          "model_id": "m", "profile_id": "2", "upload_url": "https://u.invalid/x",
                                          "upload_ticket": "t"})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        client = BambuClient("t", api_url="https://api.example.invalid", http_client=http)
        assert client.create_project("plain").project_id == "1"
        with pytest.warns(LegacyWarning, match=r"sent description in .*; left out note \(None"):
            client.create_project("rich", description="d", note=None)
    assert [r.url.path for r in seen] == ["/v1/iot-service/api/user/project"] * 2
    assert [json.loads(r.content) for r in seen] == [{"name": "plain"}, {"name": "rich", "description": "d"}]


def test_methods_without_an_endpoint_name_the_alternative(client: BambuClient) -> None:
    for call, hint in (
        (lambda: client.get_cloud_files(), "get_projects"),
        (lambda: client.get_cloud_video_url("X"), "get_camera_credentials"),
        (lambda: client.start_cloud_print(device_id="X", filename="a.3mf"), "create_task"),
        (lambda: client.start_print_job(device_id="X", file_id="1"), "create_task"),
        (lambda: client.get_device_info("X"), "get_devices"),
        (lambda: client.update_user_profile({"name": "x"}), "Bambu Handy"),
        (lambda: client.bind_device("X", "name", "12345678"), "printer's screen"),
        (lambda: client.get_notifications(), "get_messages"),
        (lambda: client.get_notifications(unread_only=True, ticket="t"), "get_messages"),
    ):
        with pytest.raises(UnsupportedError, match=hint):
            call()


def test_unbind_needs_confirmation(cloud: CloudThread) -> None:
    victim = cloud.call(cloud.sim.add_printer(model="A1", name="spare"))
    cloud.do(lambda: cloud.cloud.bind(cloud.account, victim))
    with BambuClient(cloud.token(), api_url=cloud.api_url) as client:
        with pytest.raises(UnsupportedError, match="confirm=True"):
            client.unbind_device(victim.serial)
        assert victim.serial in [d["dev_id"] for d in client.get_devices()]  # nothing was sent
        assert client.unbind_device(victim.serial, confirm=True)["message"] == "success"
        assert victim.serial not in [d["dev_id"] for d in client.get_devices()]


def test_get_ams_filaments_from_mqtt(client: BambuClient, cloud: CloudThread) -> None:
    x1c = cloud.printers[1]
    ams = client.get_ams_filaments(x1c.serial)
    assert ams["device_id"] == x1c.serial and ams["source"] == "mqtt" and ams["has_ams"] is True
    unit = ams["ams_units"][0]
    assert unit["unit_id"] == 0 and unit["tray_count"] == len(unit["trays"]) == 4
    assert ams["total_trays"] == sum(len(u["trays"]) for u in ams["ams_units"])
    assert unit["software_version"] and unit["hardware_version"] == unit["hw_version"]
    assert {"temperature", "humidity", "humidity_raw"} <= set(unit)
    tray = unit["trays"][0]
    assert isinstance(tray["tray_id"], int) and tray["filament_type"] and len(tray["filament_color"]) == 8
    assert isinstance(tray["nozzle_temp_min"], int) and tray["nozzle_temp_min"] < tray["nozzle_temp_max"]
    assert ams["external_spool"]["tray_id"] in (254, 255)
    with pytest.raises(CloudError, match="not bound"):
        client.get_ams_filaments("01P00A999999999")


def test_get_ams_filaments_reads_an_open_bridge(
    client: BambuClient, cloud: CloudThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    p1s = cloud.printers[0]
    with MQTTBridge.from_client(client, [p1s.serial]) as bridge:
        assert bridge.connected and bridge.devices == [p1s.serial]
        deadline = time.monotonic() + 10
        while "ams" not in bridge.get_last_data(p1s.serial).get("print", {}) and time.monotonic() < deadline:
            time.sleep(0.05)  # the full report that answers the bridge's greeting

        def no_new_connection(serial: str, timeout: float) -> None:
            raise AssertionError("get_ams_filaments should read the open bridge")

        monkeypatch.setattr(client, "_fetch_state", no_new_connection)
        ams = client.get_ams_filaments(p1s.serial)
        wire = bridge.get_last_data(p1s.serial)["print"]["ams"]["ams"][0]["tray"]
        assert [t["filament_type"] for t in ams["ams_units"][0]["trays"]] == [t.get("tray_type") for t in wire]
    assert client.__dict__.get("_legacy_bridges") == []


def test_ams_shape_without_a_report() -> None:
    empty = ams_filaments("01P00A000000001", None)
    assert empty == {"device_id": "01P00A000000001", "source": "bind", "has_ams": None, "total_trays": 0,
                     "ams_units": [], "external_spool": None}
    bare = ams_filaments("S", {"print": {"ams": {"ams": [{"id": "1", "temp": "0.0", "tray": [{"id": "0"}]}]},
                                         "vt_tray": {"id": "254", "tray_type": "PLA"}}, "info": {}})
    assert bare["ams_units"][0]["unit_id"] == 1 and bare["ams_units"][0]["trays"][0]["tray_type"] == "Empty"
    assert bare["external_spool"] == {"tray_id": 254, "filament_type": "PLA"}
    assert "remain" in AMS_MQTT_ONLY_FIELDS


def test_slicer_resources_query_shape() -> None:
    # The fake cloud does not serve /slicer/resource yet: a stand-in for the real cloud's answer,
    # in the shape of the older documentation's cloud HTTP notes.
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"message": "success", "code": None, "error": None,
                                          "software": {"version": "01.03.00.25"},
                                          "resources": [{"type": "slicer/plugins/cloud", "version": "01.01.00.11"}]})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        client = BambuClient("t", api_url="https://api.example.invalid", http_client=http)
        answer = client.get_slicer_resources(type="slicer/plugins/cloud", version="01.01.00.00")
        assert answer["resources"][0]["type"] == "slicer/plugins/cloud"
        assert client.get_slicer_resources()["software"]["version"] == "01.03.00.25"
    assert seen[0].url.path == "/v1/iot-service/api/slicer/resource"
    assert dict(seen[0].url.params) == {"slicer/plugins/cloud": "01.01.00.00"}
    assert not seen[1].url.params


def test_legacy_names_live_only_on_the_blocking_client() -> None:
    legacy = {n for n in vars(LegacyClientMixin) if n.startswith("get_")}
    assert "get_devices" in legacy and not any(hasattr(AsyncBambuClient, n) for n in legacy)
    assert all(getattr(BambuClient, n).__module__ == "bambulab.compat.cloud" for n in legacy)
