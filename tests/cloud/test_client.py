"""BambuClient and AsyncBambuClient against the fake cloud over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2
import pytest

from bambulab.cloud import AsyncBambuClient, BambuClient, RetryPolicy, TaskStatus, Token
from bambulab.exceptions import (
    BambuConnectionError,
    BambuTimeoutError,
    CloudError,
    CloudflareBlockedError,
    NotConnectedError,
    RateLimitedError,
    TokenExpiredError,
)
from bambulab.sim import VirtualPrinter
from bambulab.sim.demo import demo_project

if TYPE_CHECKING:
    from conftest import CloudEnv

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05)


def client_for(env: CloudEnv, **kwargs: Any) -> BambuClient:
    kwargs.setdefault("retry", FAST)
    return BambuClient(env.token(), api_url=env.api_url, web_url=env.web_url, **kwargs)


def counting_client(seen: list[httpx2.Request]) -> httpx2.Client:
    return httpx2.Client(event_hooks={"request": [seen.append]})


def fail_a_print(env: CloudEnv, printer: VirtualPrinter, name: str) -> None:
    """Start a print on the printer and stop it at once: a failed task in the history."""
    env.do(lambda: printer.put_file(f"{name}.gcode.3mf", demo_project(minutes=5, layers=5)))
    ack = env.call(printer.start_print(f"{name}.gcode.3mf"))
    assert ack["print"]["result"] == "success"
    env.call(printer.handle_cloud_command({"print": {"command": "stop", "sequence_id": "0"}}))
    assert printer.dynamic.job.gcode_state == "FAILED"


# ---------------------------------------------------------------------- devices and account


def test_devices_match_the_bound_printers(cloud_env: CloudEnv) -> None:
    p1s, x1c = cloud_env.printers
    with client_for(cloud_env) as cloud:
        devices = {d.dev_id: d for d in cloud.devices()}
    assert set(devices) == {p1s.serial, x1c.serial}
    one, two = devices[p1s.serial], devices[x1c.serial]
    assert (one.name, one.model_code, one.model_name, one.online, one.print_status) == (
        "Workshop", "C12", "P1S", True, "IDLE")
    assert (two.name, two.model_code, two.model_name) == ("Studio", "BL-P001", "X1 Carbon")
    assert one.access_code == p1s.access_code and two.access_code == x1c.access_code
    assert one.nozzle_diameter == pytest.approx(0.4)
    assert one.structure == "CoreXY"
    assert one.raw["dev_id"] == p1s.serial
    assert p1s.access_code not in repr(one)
    assert "access_code" not in one.to_dict() and one.to_dict(include_secrets=True)["access_code"] == p1s.access_code


def test_access_code_trailing_newline_is_stripped(cloud_env: CloudEnv) -> None:
    cloud_env.switches(access_code_newline=True)
    p1s = cloud_env.printers[0]
    with client_for(cloud_env) as cloud:
        device = next(d for d in cloud.devices() if d.dev_id == p1s.serial)
        status = next(s for s in cloud.print_status() if s.dev_id == p1s.serial)
    assert device.raw["dev_access_code"] == p1s.access_code + "\n"  # what the cloud sent
    assert device.access_code == p1s.access_code
    assert status.access_code == p1s.access_code


def test_print_status_of_a_running_print(cloud_env: CloudEnv) -> None:
    p1s, x1c = cloud_env.printers
    cloud_env.do(lambda: p1s.put_file("cube.gcode.3mf", demo_project(minutes=30, layers=10)))
    assert cloud_env.call(p1s.start_print("cube.gcode.3mf"))["print"]["result"] == "success"
    with client_for(cloud_env) as cloud:
        status = {s.dev_id: s for s in cloud.print_status()}
        devices = {d.dev_id: d for d in cloud.devices()}
    running, idle = status[p1s.serial], status[x1c.serial]
    assert running.printing and not idle.printing
    assert running.task_status in ("PREPARE", "RUNNING")
    assert running.task_name == "cube"
    assert running.prediction == 30 * 60
    assert running.start_time is not None and abs(running.start_time.timestamp() - time.time()) < 60
    assert devices[p1s.serial].print_status == "RUNNING"
    assert devices[p1s.serial].print_job == int(running.task_id or 0)
    assert idle.task_id is None and idle.progress is None


def test_firmware_of_one_and_of_every_device(cloud_env: CloudEnv) -> None:
    p1s, x1c = cloud_env.printers
    with client_for(cloud_env) as cloud:
        one = cloud.firmware(p1s.serial)
        every = cloud.firmware_versions()
        with pytest.raises(CloudError) as info:
            cloud.firmware("01P00A000000000")  # not ours
    assert one.dev_id == p1s.serial and one.version == p1s.dynamic.firmware
    assert one.latest == p1s.dynamic.firmware and one.firmware[0].url.endswith(".json.sig")
    assert set(every) == {p1s.serial, x1c.serial}
    assert every[x1c.serial].version == x1c.dynamic.firmware
    assert info.value.status == 403 and info.value.code == 8
    assert "permission denied" in str(info.value)


def test_account_profile_preference_uid_and_rename(cloud_env: CloudEnv) -> None:
    with client_for(cloud_env) as cloud:
        assert cloud.uid() == cloud_env.account.uid
        profile = cloud.profile()
        assert (profile.uid, profile.account, profile.name) == (cloud_env.account.uid, "alice@example.com", "Alice")
        assert cloud.preference().mqtt_username == f"u_{cloud_env.account.uid}"
        cloud.rename_device(cloud_env.printers[0].serial, "Garage")
        assert {d.name for d in cloud.devices()} == {"Garage", "Studio"}


def test_camera_credentials_are_hidden(cloud_env: CloudEnv) -> None:
    serial = cloud_env.printers[0].serial
    with client_for(cloud_env) as cloud:
        creds = cloud.camera_credentials(serial)
    assert creds.dev_id == serial and creds.type == "tutk"
    assert creds.ttcode and creds.passwd and creds.authkey
    for secret in (creds.ttcode, creds.passwd, creds.authkey):
        assert secret not in repr(creds)
        assert secret not in str(creds.to_dict())


def test_slicer_settings_list_detail_and_delete(cloud_env: CloudEnv) -> None:
    setting_id = cloud_env.do(lambda: cloud_env.cloud.add_setting(
        cloud_env.account, "filament", "My PETG", {"filament_type": "PETG", "nozzle_temperature": [230, 250]},
        filament_id="GFG99"))
    with client_for(cloud_env) as cloud:
        settings = cloud.slicer_settings()
        assert [s.setting_id for s in settings.private] == [setting_id]
        mine = settings.private[0]
        assert (mine.kind, mine.name, mine.filament_type, mine.nozzle_temperature) == (
            "filament", "My PETG", "PETG", [230, 250])
        assert any(s.kind == "printer" and s.public for s in settings.all)
        detail = cloud.slicer_setting(setting_id)
        assert detail.setting["filament_type"] == "PETG" and detail.kind == "filament" and not detail.public
        cloud.delete_slicer_setting(setting_id)
        with pytest.raises(CloudError) as info:
            cloud.slicer_setting(setting_id)
    assert info.value.status == 404 and info.value.code == 2


# ---------------------------------------------------------------------- history and messages


def test_tasks_are_paged_with_after(cloud_env: CloudEnv) -> None:
    p1s, x1c = cloud_env.printers
    for i in range(3):
        fail_a_print(cloud_env, p1s, f"a{i}")
    for i in range(2):
        fail_a_print(cloud_env, x1c, f"b{i}")
    expected = cloud_env.do(lambda: [t.id for t in cloud_env.cloud.tasks(cloud_env.account)])
    assert len(expected) == 5
    seen: list[httpx2.Request] = []
    http = counting_client(seen)
    try:
        with client_for(cloud_env, http_client=http) as cloud:
            tasks = list(cloud.tasks(limit=2))
            pages = [r for r in seen if r.url.path == "/v1/user-service/my/tasks"]
            assert [t.id for t in tasks] == expected  # newest first, nothing lost or repeated
            assert len(pages) == 3
            assert [r.url.params.get("after") for r in pages] == [None, str(expected[1]), str(expected[3])]
            only_p1s = list(cloud.tasks(p1s.serial, limit=2))
            assert len(only_p1s) == 3 and {t.device_id for t in only_p1s} == {p1s.serial}
            assert len(list(cloud.tasks(limit=2, max_tasks=3))) == 3
            page = cloud.task_page(limit=100)
            assert page.total == 5
    finally:
        http.close()
    first = tasks[0]
    assert first.status is TaskStatus.FAILED and first.title == "b1" and first.device_id == x1c.serial
    assert first.device_model == "X1 Carbon" and first.mode == "local" and first.start_time is not None


def test_messages_report_finished_tasks(cloud_env: CloudEnv) -> None:
    p1s = cloud_env.printers[0]
    fail_a_print(cloud_env, p1s, "m")
    with client_for(cloud_env) as cloud:
        messages = cloud.messages()
        task = next(iter(cloud.tasks()))
    assert len(messages) == 1
    message = messages[0]
    assert message.type == 6 and message.task_id == task.id and message.device_id == p1s.serial
    assert message.task_status is TaskStatus.FAILED and message.title == "m"


# ---------------------------------------------------------------------- uploads, projects, cloud prints


def test_upload_file_stores_the_bytes_and_the_size_record(cloud_env: CloudEnv, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1500 + b"tail"  # larger than one upload chunk
    source = tmp_path / "part.3mf"
    source.write_bytes(data)
    seen: list[httpx2.Request] = []
    http = counting_client(seen)
    try:
        with client_for(cloud_env, http_client=http) as cloud:
            result = cloud.upload_file(source)
    finally:
        http.close()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert (result.filename, result.size, result.md5) == ("part.3mf", len(data), md5)
    assert result.size_recorded and result.url not in repr(result)
    stored = cloud_env.do(lambda: cloud_env.cloud.uploads(cloud_env.account))
    assert len(stored) == 1
    obj = stored[0]
    assert obj.path.read_bytes() == data
    assert (obj.size, obj.declared_size, obj.size_record) == (len(data), len(data), len(data))
    puts = [r for r in seen if r.method == "PUT"]
    assert len(puts) == 2
    for put in puts:  # presigned: no bearer token to the object store; the file PUT has no Content-Type
        assert "authorization" not in put.headers
    assert "content-type" not in puts[0].headers
    assert puts[0].headers["content-length"] == str(len(data))
    api_calls = [r for r in seen if r.method == "GET"]
    assert api_calls and api_calls[0].headers["authorization"].startswith("Bearer ")


def test_upload_to_a_tampered_url_is_a_cloud_error(cloud_env: CloudEnv, tmp_path: Path) -> None:
    source = tmp_path / "x.3mf"
    source.write_bytes(b"12345")
    with client_for(cloud_env) as cloud:
        target = cloud.upload_url("x.3mf", 5)
        assert target.size_url and target.url not in repr(target)
        with pytest.raises(CloudError) as info:
            cloud._session.put(target.url.replace("Signature=", "Signature=AA"), str(source), 5, "upload")
    assert info.value.status == 403 and info.value.code == "SignatureDoesNotMatch"
    # The query (and its signature) stays out of messages.
    assert "Signature=" not in str(info.value) and "Expires=" not in str(info.value)


def test_project_upload_and_cloud_print(cloud_env: CloudEnv, tmp_path: Path) -> None:
    """Studio's cloud-print flow: project, uploaded 3MF registered for plate 1, task -> the printer prints."""
    x1c = cloud_env.printers[1]
    source = tmp_path / "benchy.gcode.3mf"
    source.write_bytes(demo_project(minutes=20, layers=10))
    with client_for(cloud_env) as cloud:
        created = cloud.create_project("Benchy")
        assert created.upload_url not in repr(created)
        ticket = cloud.notification(created.upload_ticket)
        assert not ticket.done and ticket.message == "running"
        config = tmp_path / "config.3mf"
        config.write_bytes(b"config")
        parts = urlsplit(created.upload_url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            conn.request("PUT", f"{parts.path}?{parts.query}", body=b"config")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        cloud.notify_upload(created.upload_ticket)
        assert cloud.notification(created.upload_ticket).done
        uploaded = cloud.upload_file(source)
        cloud.set_project_file(created.project_id, created.profile_id, uploaded.url, md5=uploaded.md5, plate=1)
        projects = cloud.projects()
        assert [p.name for p in projects] == ["Benchy"] and projects[0].project_id == created.project_id
        detail = cloud.project(created.project_id)
        assert detail.name == "Benchy" and [p["index"] for p in detail.plates] == [1]
        task_id = cloud.create_task(x1c.serial, title="Benchy", project_id=created.project_id,
                                    profile_id=created.profile_id, plate_index=1)
        assert task_id > 0
        assert x1c.dynamic.job.task_id == str(task_id)
        assert x1c.dynamic.job.gcode_state in ("PREPARE", "RUNNING")
        status = next(s for s in cloud.print_status() if s.dev_id == x1c.serial)
        assert status.task_id == str(task_id) and status.project_id == created.project_id
        with pytest.raises(CloudError) as info:
            cloud.create_task("01P00A000000000", title="nope", project_id=created.project_id)
    assert info.value.status == 403


def test_upload_file_with_project_id_registers_plate_1(cloud_env: CloudEnv, tmp_path: Path) -> None:
    """``upload_file(path, project_id=...)`` = upload, then ``set_project_file`` for plate 1: the task prints."""
    x1c = cloud_env.printers[1]
    source = tmp_path / "cube.gcode.3mf"
    source.write_bytes(demo_project(minutes=20, layers=10))
    with client_for(cloud_env) as cloud:
        created = cloud.create_project("Cube")
        uploaded = cloud.upload_file(source, project_id=created.project_id)
        assert uploaded.md5 == hashlib.md5(source.read_bytes(), usedforsecurity=False).hexdigest()
        assert [p["index"] for p in cloud.project(created.project_id).plates] == [1]
        stored = cloud_env.do(lambda: cloud_env.cloud.project(cloud_env.account, created.project_id))
        assert stored is not None
        assert stored.prints == [{"md5": uploaded.md5, "plate_idx": 1, "url": uploaded.url}]
        task_id = cloud.create_task(x1c.serial, title="Cube", project_id=created.project_id,
                                    profile_id=created.profile_id, plate_index=1)
        assert x1c.dynamic.job.task_id == str(task_id)
        # An unknown project fails before anything is uploaded.
        before = len(cloud_env.do(lambda: cloud_env.cloud.uploads(cloud_env.account)))
        cloud_env.do(cloud_env.cloud.clear_request_log)
        with pytest.raises(CloudError):
            cloud.upload_file(source, project_id="999999999")
        paths = [r.path for r in cloud_env.do(cloud_env.cloud.request_log)]
        assert paths == ["/v1/iot-service/api/user/project/999999999"]
        assert len(cloud_env.do(lambda: cloud_env.cloud.uploads(cloud_env.account))) == before
        # Without project_id nothing is registered (the modern call is unchanged).
        cloud.upload_file(source)
        assert len(stored.prints) == 1


async def test_async_upload_file_with_project_id(cloud_env: CloudEnv, tmp_path: Path) -> None:
    source = tmp_path / "cube.gcode.3mf"
    source.write_bytes(b"async cube" * 100)
    async with AsyncBambuClient(cloud_env.token(), api_url=cloud_env.api_url, retry=FAST) as cloud:
        created = await cloud.create_project("Async cube")
        uploaded = await cloud.upload_file(source, "renamed.3mf", created.project_id)
        assert uploaded.filename == "renamed.3mf"
        assert [p["index"] for p in (await cloud.project(created.project_id)).plates] == [1]
    stored = cloud_env.do(lambda: cloud_env.cloud.project(cloud_env.account, created.project_id))
    assert stored is not None and [p["url"] for p in stored.prints] == [uploaded.url]


# ---------------------------------------------------------------------- errors and retries


def test_cloudflare_block_is_not_retried_and_explains_itself(cloud_env: CloudEnv) -> None:
    cloud_env.switches(cloudflare_block=True, fault_budget=5)
    with client_for(cloud_env) as cloud, pytest.raises(CloudflareBlockedError) as info:
        cloud.devices()
    message = str(info.value)
    assert "Cloudflare" in message and "try again later" in message and "different network" in message
    assert info.value.status == 403
    assert cloud_env.do(lambda: cloud_env.cloud.switches.fault_budget) == 4  # exactly one request


def test_429_with_retry_after_is_honoured_then_succeeds(cloud_env: CloudEnv) -> None:
    cloud_env.switches(rate_limit=True, retry_after=1, fault_budget=1)
    started = time.monotonic()
    with client_for(cloud_env) as cloud:
        assert len(cloud.devices()) == 2
    assert time.monotonic() - started >= 0.95  # waited for Retry-After, not the short backoff


def test_429_until_the_retries_are_spent_raises_rate_limited(cloud_env: CloudEnv) -> None:
    cloud_env.switches(rate_limit=True, retry_after=0, fault_budget=10)
    with client_for(cloud_env, retry=RetryPolicy(retries=2, backoff=0.01)) as cloud:
        with pytest.raises(RateLimitedError) as info:
            cloud.devices()
    assert info.value.retry_after == 0 and info.value.status == 429
    assert cloud_env.do(lambda: cloud_env.cloud.switches.fault_budget) == 7  # 1 try + 2 retries


def test_429_with_a_long_retry_after_raises_at_once(cloud_env: CloudEnv) -> None:
    cloud_env.switches(rate_limit=True, rate_limit_cloudflare=True, retry_after=120, fault_budget=10)
    started = time.monotonic()
    with client_for(cloud_env) as cloud, pytest.raises(RateLimitedError) as info:
        cloud.devices()
    assert info.value.retry_after == 120 and "Cloudflare" in str(info.value)
    assert time.monotonic() - started < 5
    assert cloud_env.do(lambda: cloud_env.cloud.switches.fault_budget) == 9


def test_5xx_is_retried_on_get_but_never_on_post(cloud_env: CloudEnv) -> None:
    serial = cloud_env.printers[0].serial
    with client_for(cloud_env) as cloud:
        cloud_env.switches(server_error=503, fault_budget=2)
        assert len(cloud.devices()) == 2  # two 503s, then the answer
        cloud_env.switches(server_error=502, fault_budget=2)
        with pytest.raises(CloudError) as info:
            cloud.camera_credentials(serial)  # a POST: not idempotent
        assert info.value.status == 502 and not isinstance(info.value, RateLimitedError)
        assert cloud_env.do(lambda: cloud_env.cloud.switches.fault_budget) == 1
        cloud_env.switches(server_error=500, fault_budget=None)
        with pytest.raises(CloudError) as info:
            cloud.devices()
        assert info.value.status == 500 and "Internal Server Error" in str(info.value)


def test_a_slow_cloud_is_a_timeout(cloud_env: CloudEnv) -> None:
    cloud_env.switches(delay=1.0)
    started = time.monotonic()
    with client_for(cloud_env, timeout=0.2, retry=RetryPolicy(retries=1, backoff=0.01)) as cloud:
        with pytest.raises(BambuTimeoutError) as info:
            cloud.devices()
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 1.5  # two tries of 0.2 s, not the full delay
    assert isinstance(info.value.__cause__, httpx2.TimeoutException)


def test_an_expired_token_raises_token_expired(cloud_env: CloudEnv) -> None:
    with client_for(cloud_env) as cloud:
        assert cloud.devices()
        cloud_env.do(lambda: cloud_env.cloud.advance(7_776_001))
        with pytest.raises(TokenExpiredError) as info:
            cloud.devices()
        assert cloud.token not in str(info.value) and "log in again" in str(info.value)


def test_nothing_listening_is_a_connection_error(unused_tcp_port: int) -> None:
    with BambuClient("t" * 30, api_url=f"http://127.0.0.1:{unused_tcp_port}", retry=FAST) as cloud:
        with pytest.raises(BambuConnectionError) as info:
            cloud.devices()
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    assert "127.0.0.1" in str(info.value)


def test_default_headers_and_base_url_with_a_trailing_slash(cloud_env: CloudEnv) -> None:
    seen: list[httpx2.Request] = []
    http = counting_client(seen)
    try:
        with BambuClient(Token(cloud_env.token()), api_url=cloud_env.api_url + "/", http_client=http) as cloud:
            assert cloud.api_url == cloud_env.api_url
            assert len(cloud.devices()) == 2
        assert not http.is_closed  # the caller's client stays open after close()
    finally:
        http.close()
    headers = seen[0].headers
    assert seen[0].url.path == "/v1/iot-service/api/user/bind"
    assert headers["user-agent"].startswith("bambulab-python/")
    for name in ("x-bbl-client-name", "x-bbl-client-type", "x-bbl-client-version", "x-bbl-language",
                 "x-bbl-os-type", "x-bbl-agent-version"):
        assert headers.get(name), name


def test_use_after_close_raises(cloud_env: CloudEnv) -> None:
    cloud = client_for(cloud_env)
    with cloud:
        cloud.devices()
    assert cloud.closed and "closed=True" in repr(cloud) and cloud.token not in repr(cloud)
    with pytest.raises(NotConnectedError):
        cloud.devices()
    with pytest.raises(NotConnectedError), cloud:
        pass


# ---------------------------------------------------------------------- the async twin


async def test_async_client_reads_devices_tasks_and_uploads(cloud_env: CloudEnv, tmp_path: Path) -> None:
    p1s, x1c = cloud_env.printers
    for i in range(3):
        fail_a_print(cloud_env, p1s, f"t{i}")
    source = tmp_path / "async.3mf"
    source.write_bytes(b"async bytes" * 1000)
    async with AsyncBambuClient(cloud_env.token(), api_url=cloud_env.api_url, retry=FAST) as cloud:
        devices = await cloud.devices()
        assert {d.dev_id for d in devices} == {p1s.serial, x1c.serial}
        assert {d.access_code for d in devices} == {p1s.access_code, x1c.access_code}
        tasks = [t async for t in cloud.tasks(limit=2)]
        assert [t.title for t in tasks] == ["t2", "t1", "t0"]
        versions = await cloud.firmware_versions()
        assert set(versions) == {p1s.serial, x1c.serial}
        assert await cloud.uid() == cloud_env.account.uid
        result = await cloud.upload_file(source)
        assert result.size == len(source.read_bytes()) and result.size_recorded
        cloud_env.switches(server_error=503, fault_budget=1)
        assert len(await cloud.print_status()) == 2  # retried
        cloud_env.switches(cloudflare_block=True)
        with pytest.raises(CloudflareBlockedError):
            await cloud.projects()
        cloud_env.switches(cloudflare_block=False)
    stored = cloud_env.do(lambda: cloud_env.cloud.uploads(cloud_env.account))
    assert stored[0].path.read_bytes() == source.read_bytes() and stored[0].size_record == result.size
    with pytest.raises(NotConnectedError):
        await cloud.devices()


async def test_async_client_timeout_and_expired_token(cloud_env: CloudEnv) -> None:
    async with AsyncBambuClient(cloud_env.token(), api_url=cloud_env.api_url, timeout=0.2,
                                retry=RetryPolicy(retries=0)) as cloud:
        cloud_env.switches(delay=0.6)
        with pytest.raises(BambuTimeoutError):
            await cloud.devices()
        cloud_env.switches(delay=0.0)
        cloud_env.do(cloud_env.cloud.expire_tokens)
        with pytest.raises(TokenExpiredError):
            await cloud.devices()
