"""The fake cloud's HTTP API, seen through the standard library's http.client on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from test_cloud_support import (
    BIND,
    LOGIN,
    MESSAGES,
    PREFERENCE,
    PRINT,
    PROFILE,
    PROJECT,
    REFRESH,
    SEND_CODE,
    SETTINGS,
    STUDIO,
    TASK,
    TASKS,
    TTCODE,
    UPLOAD,
    VERSION,
    CloudEnv,
    login,
    request,
    totp_now,
)

from bambulab.exceptions import SimulatorError
from bambulab.sim import VirtualPrinter
from bambulab.sim.demo import demo_project

T = TypeVar("T")

TFA_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def wait_until(fn: Callable[[], T | None], timeout: float = 10.0, step: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last value {value!r}")
        time.sleep(step)


def start_and_stop(env: CloudEnv, printer: VirtualPrinter, name: str) -> None:
    """A print that is started on the printer and stopped at once: a failed task."""
    printer.put_file(f"{name}.gcode.3mf", demo_project(minutes=5, layers=5))
    ack = env.st.call(printer.start_print(f"{name}.gcode.3mf"))
    assert ack["print"]["result"] == "success"
    env.st.call(printer.handle_cloud_command({"print": {"command": "stop", "sequence_id": "0"}}))
    assert printer.dynamic.job.gcode_state == "FAILED"


# ---------------------------------------------------------------------- login flows


def test_password_login_gives_an_opaque_token_that_identifies_the_account() -> None:
    with CloudEnv() as env:
        alice = env.account()
        reply = env.api("POST", LOGIN, {"account": "Alice@Example.com", "password": "hunter22", "apiError": ""})
        assert reply.status == 200
        body = reply.json()
        assert body["loginType"] == ""
        assert body["expiresIn"] == 7_776_000
        assert body["refreshToken"] == body["accessToken"]
        token = body["accessToken"]
        assert len(token) >= 40 and token.count(".") == 0  # opaque, not a JWT
        pref = env.api("GET", PREFERENCE, token=token)
        assert pref.status == 200
        assert pref.json()["uid"] == alice.uid
        assert isinstance(pref.json()["uid"], int)
        prof = env.api("GET", PROFILE, token=token).json()
        assert prof["uidStr"] == str(alice.uid)
        assert prof["account"] == "alice@example.com"


def test_wrong_password_and_unknown_account_are_the_same_400() -> None:
    with CloudEnv() as env:
        env.account()
        wrong = env.api("POST", LOGIN, {"account": "alice@example.com", "password": "nope"})
        unknown = env.api("POST", LOGIN, {"account": "bob@example.com", "password": "hunter22"})
        assert wrong.status == unknown.status == 400
        assert wrong.json() == unknown.json()
        assert "accessToken" not in wrong.json()
        assert b"hunter22" not in wrong.body and b"nope" not in wrong.body
        assert env.api("POST", LOGIN, {"password": "x"}).status == 400
        assert env.api("POST", LOGIN, raw=b"{not json", headers={"Content-Type": "application/json"}).status == 400


def test_verify_code_login_with_the_emailed_code() -> None:
    with CloudEnv() as env:
        env.account(login_mode="verifyCode")
        first = env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"})
        assert first.status == 200
        assert first.json()["loginType"] == "verifyCode"
        assert not first.json()["accessToken"]
        assert env.do(lambda: env.cloud.last_code("alice@example.com")) is None  # nothing sent yet
        sent = env.api("POST", SEND_CODE, {"email": "alice@example.com", "type": "codeLogin"})
        assert sent.status == 200
        code = env.do(lambda: env.cloud.last_code("alice@example.com"))
        assert code is not None and len(code) == 6 and code.isdigit()
        ok = env.api("POST", LOGIN, {"account": "alice@example.com", "code": code})
        assert ok.status == 200
        assert env.api("GET", BIND, token=ok.json()["accessToken"]).status == 200
        again = env.api("POST", LOGIN, {"account": "alice@example.com", "code": code})
        assert again.status == 400, "a code works once"


def test_code_login_wrong_code_then_expired_code() -> None:
    with CloudEnv() as env:
        env.account(login_mode="verifyCode")
        env.do(lambda: env.cloud.set_switches(code_ttl=60.0))
        assert env.api("POST", SEND_CODE, {"email": "alice@example.com", "type": "codeLogin"}).status == 200
        code = env.do(lambda: env.cloud.last_code("alice@example.com"))
        assert code is not None
        wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
        wrong = env.api("POST", LOGIN, {"account": "alice@example.com", "code": wrong_code})
        assert wrong.status == 400
        assert wrong.json()["code"] == 2
        env.do(lambda: env.cloud.advance(61))
        expired = env.api("POST", LOGIN, {"account": "alice@example.com", "code": code})
        assert expired.status == 400
        assert expired.json()["code"] == 1
        # A new code works again.
        env.api("POST", SEND_CODE, {"email": "alice@example.com", "type": "codeLogin"})
        fresh = env.do(lambda: env.cloud.last_code("alice@example.com"))
        assert fresh is not None
        assert env.api("POST", LOGIN, {"account": "alice@example.com", "code": fresh}).status == 200


def test_auto_send_code_switch_emails_on_password_login() -> None:
    with CloudEnv() as env:
        env.account(login_mode="verifyCode")
        env.do(lambda: env.cloud.set_switches(auto_send_code=True))
        env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"})
        assert env.do(lambda: env.cloud.last_code("alice@example.com")) is not None


def _tfa_key(env: CloudEnv) -> str:
    reply = env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"})
    assert reply.status == 200
    body = reply.json()
    assert body["loginType"] == "tfa"
    assert not body["accessToken"]
    assert body["tfaKey"]
    return str(body["tfaKey"])


def test_tfa_login_with_csrf_cookie_and_totp_returns_the_token_in_a_cookie() -> None:
    with CloudEnv() as env:
        alice = env.account(login_mode="tfa", tfa_secret=TFA_SECRET)
        key = _tfa_key(env)
        csrf = env.web("GET", "/api/csrf")
        assert csrf.status in (200, 204)
        cookie = csrf.cookies()["bbl_csrf_token"]
        assert cookie
        reply = env.web(
            "POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": totp_now(TFA_SECRET)},
            headers={"Cookie": f"bbl_csrf_token={cookie}", "x-bbl-csrf-token": cookie},
        )
        assert reply.status == 200, reply.body
        token = reply.cookies()["token"]
        assert token
        assert "httponly" in (reply.header("set-cookie") or "").lower()
        assert env.api("GET", PREFERENCE, token=token).json()["uid"] == alice.uid
        # The key is used up.
        again = env.web(
            "POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": totp_now(TFA_SECRET)},
            headers={"Cookie": f"bbl_csrf_token={cookie}", "x-bbl-csrf-token": cookie},
        )
        assert again.status == 400


def test_tfa_without_csrf_cookie_or_header_is_403_and_a_wrong_code_is_400() -> None:
    with CloudEnv() as env:
        env.account(login_mode="tfa", fixed_code="424242")
        key = _tfa_key(env)
        bare = env.web("POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": "424242"})
        assert bare.status == 403
        assert bare.json() == {"error": "CSRF error: missing_cookie", "reason": "missing_cookie"}
        cookie = env.web("GET", "/api/csrf").cookies()["bbl_csrf_token"]
        no_header = env.web("POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": "424242"},
                            headers={"Cookie": f"bbl_csrf_token={cookie}"})
        assert no_header.status == 403
        assert no_header.json()["reason"] == "missing_header"
        forged = env.web("POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": "424242"},
                         headers={"Cookie": "bbl_csrf_token=forged", "x-bbl-csrf-token": "forged"})
        assert forged.status == 403
        headers = {"Cookie": f"bbl_csrf_token={cookie}", "x-bbl-csrf-token": cookie}
        wrong = env.web("POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": "000000"}, headers=headers)
        assert wrong.status == 400
        assert "token" not in wrong.cookies()
        right = env.web("POST", "/api/sign-in/tfa", {"tfaKey": key, "tfaCode": "424242"}, headers=headers)
        assert right.status == 200
        assert right.cookies()["token"]


def test_refresh_works_and_can_be_switched_to_401() -> None:
    with CloudEnv() as env:
        alice = env.account()
        token = login(env)
        refreshed = env.api("POST", REFRESH, {"refreshToken": token})
        assert refreshed.status == 200
        body = refreshed.json()
        assert set(body) >= {"accessToken", "refreshToken", "expiresIn", "refreshExpiresIn"}
        assert body["accessToken"] != token
        assert env.api("GET", PREFERENCE, token=body["accessToken"]).json()["uid"] == alice.uid
        assert env.api("POST", REFRESH, {"refreshToken": "not-a-token"}).status == 401
        env.do(lambda: env.cloud.set_switches(refresh_works=False))
        off = env.api("POST", REFRESH, {"refreshToken": body["refreshToken"]})
        assert off.status == 401
        assert off.body == b""


def test_jwt_switch_gives_tokens_with_a_username_claim() -> None:
    with CloudEnv() as env:
        alice = env.account()
        env.do(lambda: env.cloud.set_switches(jwt_tokens=True))
        token = login(env)
        parts = token.split(".")
        assert len(parts) == 3
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        assert payload["username"] == f"u_{alice.uid}"
        assert payload["exp"] > time.time() + 7_000_000
        assert env.api("GET", PREFERENCE, token=token).status == 200


# ---------------------------------------------------------------------- authentication of every endpoint

AUTHED = [
    ("GET", PREFERENCE, None),
    ("GET", PROFILE, None),
    ("GET", BIND, None),
    ("GET", PRINT, None),
    ("GET", PROJECT, None),
    ("GET", f"{PROJECT}/123456789", None),
    ("GET", f"{TASKS}?limit=5", None),
    ("POST", TASK, {"deviceId": "X"}),
    ("GET", MESSAGES, None),
    ("GET", f"{VERSION}?dev_id=X", None),
    ("POST", TTCODE, {"dev_id": "X"}),
    ("GET", f"{SETTINGS}?version=02.00.00.00", None),
    ("GET", f"{SETTINGS}/GP100", None),
    ("GET", f"{UPLOAD}?filename=a.3mf&size=3", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTHED)
def test_every_account_endpoint_needs_a_valid_bearer_token(method: str, path: str, body: Any) -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        assert env.api(method, path, body).status == 401
        assert env.api(method, path, body, token="garbage").status == 401
        assert env.api(method, path, body, headers={"Authorization": f"Token {token}"}).status == 401
        assert env.api(method, path, body, token=token, headers=STUDIO).status != 401


# ---------------------------------------------------------------------- devices from virtual printers


def test_bind_list_follows_the_virtual_printers() -> None:
    with CloudEnv() as env:
        p1s = env.add(model="P1S", name="Workshop")
        p2s = env.add(model="P2S")
        other = env.add(model="A1")
        alice = env.account()
        bob = env.account("bob@example.com", "pw")
        env.bind(alice, p1s)
        env.bind(alice, p2s)
        env.bind(bob, other)
        token = login(env)
        body = env.api("GET", BIND, token=token).json()
        assert (body["message"], body["code"], body["error"]) == ("success", None, None)
        devices = {d["dev_id"]: d for d in body["devices"]}
        assert set(devices) == {p1s.serial, p2s.serial}
        d = devices[p1s.serial]
        assert d["name"] == "Workshop"
        assert d["online"] is True
        assert d["print_status"] == "IDLE"
        assert (d["dev_model_name"], d["dev_product_name"]) == ("C12", "P1S")
        assert d["dev_access_code"] == p1s.access_code
        assert d["dev_structure"] == "CoreXY"
        assert d["nozzle_diameter"] == 0.4
        assert devices[p2s.serial]["dev_model_name"] == devices[p2s.serial]["dev_product_name"] == "P2S"
        env.do(lambda: env.cloud.set_switches(access_code_newline=True))
        env.st.call(p1s.go_offline())
        devices = {d["dev_id"]: d for d in env.api("GET", BIND, token=token).json()["devices"]}
        assert devices[p1s.serial]["dev_access_code"] == p1s.access_code + "\n"
        assert devices[p1s.serial]["online"] is False
        printing = env.api("GET", PRINT, token=token).json()["devices"]
        assert {d["dev_id"]: d["dev_access_code"] for d in printing}[p1s.serial].endswith("\n")


def test_rename_and_unbind_through_the_api() -> None:
    with CloudEnv() as env:
        printer = env.add(model="X1C")
        env.bind(env.account(), printer)
        bob = env.account("bob@example.com", "pw")
        token = login(env)
        bob_token = env.token(bob)
        info = "/v1/iot-service/api/user/device/info"
        assert env.api("PATCH", info, {"dev_id": printer.serial, "name": "Bob's now"}, token=bob_token).status == 403
        assert env.api("PATCH", info, {"dev_id": printer.serial, "name": "Farm 7"}, token=token).status == 200
        assert env.api("GET", BIND, token=token).json()["devices"][0]["name"] == "Farm 7"
        assert env.api("DELETE", BIND, {"dev_id": printer.serial, "force": True}, token=bob_token).status == 403
        assert env.api("DELETE", BIND, {"dev_id": printer.serial, "force": True}, token=token).status == 200
        assert env.api("GET", BIND, token=token).json()["devices"] == []


def test_version_and_ttcode_only_for_own_devices() -> None:
    with CloudEnv() as env:
        mine = env.add(model="X1C")
        theirs = env.add(model="P1S")
        env.bind(env.account(), mine)
        env.bind(env.account("bob@example.com", "pw"), theirs)
        token = login(env)
        version = env.api("GET", f"{VERSION}?dev_id={mine.serial}", token=token)
        assert version.status == 200
        device = version.json()["devices"][0]
        assert device["dev_id"] == mine.serial
        assert device["version"] == mine.dynamic.firmware
        assert set(device["firmware"][0]) == {"version", "force_update", "url", "description"}
        assert device["ams"] == []
        assert env.api("GET", f"{VERSION}?dev_id={theirs.serial}", token=token).status == 403
        tt = env.api("POST", TTCODE, {"dev_id": mine.serial}, token=token)
        assert tt.status == 200
        assert {"ttcode", "passwd", "authkey"} <= set(tt.json())
        assert tt.json()["message"] == "success"
        assert env.api("POST", TTCODE, {"dev_id": theirs.serial}, token=token).status == 403


def test_print_status_and_history_follow_a_real_print() -> None:
    with CloudEnv(time_scale=200.0) as env:
        printer = env.add(model="X1C", quirks={"push_interval": 0.1})
        env.bind(env.account(), printer)
        token = login(env)
        printer.put_file("benchy.gcode.3mf", demo_project(minutes=2, layers=10))
        ack = env.st.call(printer.start_print("benchy.gcode.3mf"))
        assert ack["print"]["result"] == "success"

        def running() -> dict[str, Any] | None:
            device = env.api("GET", PRINT, token=token).json()["devices"][0]
            return device if device["task_status"] in ("PREPARE", "RUNNING") else None

        live = wait_until(running)
        assert live["task_name"] == "benchy"
        assert isinstance(live["progress"], int)
        assert live["start_time"].endswith("Z")
        tasks = env.api("GET", TASKS, token=token).json()
        assert tasks["total"] == 1
        assert tasks["hits"][0]["status"] == 1
        assert tasks["hits"][0]["startTime"] == tasks["hits"][0]["endTime"]
        assert env.api("GET", BIND, token=token).json()["devices"][0]["print_status"] == "RUNNING"

        def finished() -> dict[str, Any] | None:
            hits = env.api("GET", f"{TASKS}?deviceId={printer.serial}", token=token).json()["hits"]
            return hits[0] if hits and hits[0]["status"] == 2 else None

        hit = wait_until(finished, timeout=15)
        assert hit["title"] == "benchy"
        assert hit["deviceId"] == printer.serial
        assert hit["deviceModel"] == "X1 Carbon"
        assert hit["costTime"] >= 120
        assert hit["endTime"] > hit["startTime"]
        assert hit["mode"] == "local"
        assert env.api("GET", BIND, token=token).json()["devices"][0]["print_status"] == "SUCCESS"
        assert env.api("GET", PRINT, token=token).json()["devices"][0]["task_id"] is None
        messages = env.api("GET", MESSAGES, token=token).json()["hits"]
        assert messages[0]["taskMessage"]["id"] == hit["id"]
        assert messages[0]["taskMessage"]["status"] == 2


def test_tasks_are_paged_newest_first() -> None:
    with CloudEnv() as env:
        printer = env.add(model="P1S")
        spare = env.add(model="A1")
        alice = env.account()
        env.bind(alice, printer)
        env.bind(alice, spare)
        token = login(env)
        for i in range(5):
            start_and_stop(env, printer, f"job{i}")
        first = env.api("GET", f"{TASKS}?deviceId={printer.serial}&limit=2", token=token).json()
        assert first["total"] == 5
        assert [h["title"] for h in first["hits"]] == ["job4", "job3"]
        assert all(h["status"] == 3 for h in first["hits"])
        second = env.api("GET", f"{TASKS}?deviceId={printer.serial}&limit=2&after={first['hits'][-1]['id']}",
                         token=token).json()
        assert second["total"] == 5
        assert [h["title"] for h in second["hits"]] == ["job2", "job1"]
        third = env.api("GET", f"{TASKS}?deviceId={printer.serial}&limit=2&after={second['hits'][-1]['id']}",
                        token=token).json()
        assert [h["title"] for h in third["hits"]] == ["job0"]
        ids = [h["id"] for page in (first, second, third) for h in page["hits"]]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
        assert env.api("GET", f"{TASKS}?deviceId={spare.serial}", token=token).json() == {"total": 0, "hits": []}
        assert env.api("GET", f"{TASKS}?limit=abc", token=token).status == 400


def test_local_prints_can_stay_out_of_the_history() -> None:
    with CloudEnv() as env:
        printer = env.add(model="P1S")
        env.bind(env.account(), printer)
        env.do(lambda: env.cloud.set_switches(record_local_prints=False))
        token = login(env)
        start_and_stop(env, printer, "quiet")
        assert env.api("GET", TASKS, token=token).json()["total"] == 0


# ---------------------------------------------------------------------- uploads, projects, tasks


def _put(url: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return request("PUT", url, raw=data, headers=headers or {})


def test_presigned_upload_stores_the_file_and_its_size() -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        data = demo_project(minutes=1, layers=2)
        reply = env.api("GET", f"{UPLOAD}?filename=cube.gcode.3mf&size={len(data)}", token=token)
        assert reply.status == 200
        urls = {u["type"]: u for u in reply.json()["urls"]}
        assert set(urls) == {"filename", "size"}
        file_url = urls["filename"]["url"]
        query = dict(p.split("=", 1) for p in urlsplit(file_url).query.split("&"))
        assert {"AWSAccessKeyId", "Expires", "Signature"} <= set(query)
        # A Content-Type the URL was not signed with is refused, as by S3.
        typed = _put(file_url, data, {"Content-Type": "application/octet-stream"})
        assert typed.status == 403
        assert b"SignatureDoesNotMatch" in typed.body
        tampered = _put(file_url.replace("Signature=", "Signature=x"), data)
        assert tampered.status == 403
        assert _put(file_url, data).status == 200
        assert _put(urls["size"]["url"], str(len(data)).encode(), {"Content-Type": "text/plain"}).status == 200
        stored = env.do(lambda: env.cloud.uploads())
        assert len(stored) == 1
        assert stored[0].filename == "cube.gcode.3mf"
        assert stored[0].path.read_bytes() == data
        assert stored[0].size == stored[0].declared_size == stored[0].size_record == len(data)
        # The URLs expire.
        late = env.api("GET", f"{UPLOAD}?filename=late.3mf&size=1", token=token).json()["urls"][0]["url"]
        env.do(lambda: env.cloud.advance(3601))
        expired = _put(late, b"x")
        assert expired.status == 403
        assert b"AccessDenied" in expired.body


def test_task_creation_requires_the_studio_client_name() -> None:
    with CloudEnv() as env:
        printer = env.add(model="P1S")
        env.bind(env.account(), printer)
        token = login(env)
        body = {"deviceId": printer.serial, "title": "From the fake slicer", "modelId": "US0", "profileId": 1,
                "plateIndex": 1, "mode": "cloud_file"}
        assert env.api("POST", TASK, body, token=token).status == 403
        orca = {"X-BBL-Client-Name": "OrcaSlicer", "X-BBL-OS-Type": "linux"}
        assert env.api("POST", TASK, body, token=token, headers=orca).status == 403
        assert env.api("POST", TASK, body, token=token, headers={"X-BBL-Client-Name": "BambuStudio"}).status == 403
        created = env.api("POST", TASK, body, token=token, headers=STUDIO)
        assert created.status == 200
        task_id = created.json()["id"]
        assert isinstance(task_id, int)
        hits = env.api("GET", TASKS, token=token).json()["hits"]
        assert [h["id"] for h in hits] == [task_id]
        assert hits[0]["title"] == "From the fake slicer"
        assert hits[0]["mode"] == "cloud_file"
        unknown = {**body, "deviceId": "00M000000000000"}
        assert env.api("POST", TASK, unknown, token=token, headers=STUDIO).status == 403


def _cloud_project(env: CloudEnv, token: str, data: bytes) -> dict[str, Any]:
    """Studio's steps before /my/task: project, config upload, model upload, PATCH with the model's URL."""
    project = env.api("POST", PROJECT, {"name": "widget"}, token=token, headers=STUDIO).json()
    assert {"project_id", "model_id", "profile_id", "upload_url", "upload_ticket"} <= set(project)
    notification = f"/v1/iot-service/api/user/notification?action=upload&ticket={project['upload_ticket']}"
    assert env.api("GET", notification, token=token).json()["message"] != "success"
    assert _put(project["upload_url"], b"config-only 3mf").status == 200
    assert env.api("PUT", "/v1/iot-service/api/user/notification",
                   {"action": "upload", "ticket": project["upload_ticket"]}, token=token).status == 200
    assert env.api("GET", notification, token=token).json()["message"] == "success"
    name = f"{project['model_id']}_{project['profile_id']}_1.3mf"
    urls = env.api("GET", f"{UPLOAD}?models={name}", token=token, headers=STUDIO).json()["urls"]
    model_url = urls[0]["url"]
    assert _put(model_url, data).status == 200
    patch = {"profile_id": project["profile_id"],
             "profile_print_3mf": [{"md5": "", "plate_idx": 1, "url": model_url}]}
    assert env.api("PATCH", f"{PROJECT}/{project['project_id']}", patch, token=token).status == 200
    return dict(project)


def test_cloud_print_end_to_end_project_upload_patch_task() -> None:
    """Studio's cloud print: project, uploads, PATCH, /my/task -> the cloud dispatches, the printer prints."""
    with CloudEnv(time_scale=200.0) as env:
        printer = env.add(model="P1S", quirks={"push_interval": 0.1})
        env.bind(env.account(), printer)
        token = login(env)
        project = _cloud_project(env, token, demo_project(minutes=1, layers=4))
        detail = env.api("GET", f"{PROJECT}/{project['project_id']}", token=token).json()
        assert detail["name"] == "widget"
        assert detail["profiles"][0]["context"]["plates"][0]["index"] == 1
        listing = env.api("GET", PROJECT, token=token).json()["projects"]
        assert [p["project_id"] for p in listing] == [project["project_id"]]
        task = env.api("POST", TASK, {
            "deviceId": printer.serial, "modelId": project["model_id"], "profileId": int(project["profile_id"]),
            "plateIndex": 1, "title": "widget", "mode": "cloud_file",
        }, token=token, headers={**STUDIO, "X-BBL-OS-Type": "LINUX"})
        assert task.status == 200
        task_id = task.json()["id"]
        job = printer.dynamic.job
        assert job.gcode_state in ("PREPARE", "RUNNING")
        assert job.task_id == str(task_id)
        assert job.print_type == "cloud"
        assert job.total_layers == 4

        def finished() -> dict[str, Any] | None:
            hits = env.api("GET", TASKS, token=token).json()["hits"]
            return hits[0] if hits and hits[0]["status"] == 2 else None

        hit = wait_until(finished, timeout=15)
        assert hit["id"] == task_id
        assert hit["modelId"] == project["model_id"]
        assert env.api("GET", TASKS, token=token).json()["total"] == 1


def test_cloud_print_to_a_busy_printer_fails_the_task() -> None:
    with CloudEnv() as env:
        printer = env.add(model="X1C", quirks={"auth_mode": "enforced"})
        env.bind(env.account(), printer)
        token = login(env)
        project = _cloud_project(env, token, demo_project(minutes=30, layers=4))
        body = {"deviceId": printer.serial, "modelId": project["model_id"], "plateIndex": 1, "title": "first"}
        first = env.api("POST", TASK, body, token=token, headers=STUDIO)
        assert first.status == 200
        # Cloud-dispatched prints are trusted even where LAN commands must be signed.
        assert printer.dynamic.job.task_id == str(first.json()["id"])
        second = env.api("POST", TASK, {**body, "title": "second"}, token=token, headers=STUDIO)
        assert second.status == 200
        hits = {h["title"]: h for h in env.api("GET", TASKS, token=token).json()["hits"]}
        assert hits["second"]["status"] == 3
        assert hits["first"]["status"] == 1


def test_task_from_another_os_than_the_uploader_is_refused() -> None:
    with CloudEnv() as env:
        printer = env.add(model="P1S")
        env.bind(env.account(), printer)
        token = login(env)
        project = env.api("POST", PROJECT, {"name": "p"}, token=token, headers=STUDIO).json()
        url = env.api("GET", f"{UPLOAD}?filename=p.3mf", token=token, headers=STUDIO).json()["urls"][0]["url"]
        assert _put(url, demo_project(minutes=1, layers=2)).status == 200
        env.api("PATCH", f"{PROJECT}/{project['project_id']}",
                {"profile_print_3mf": [{"plate_idx": 1, "url": url}]}, token=token)
        body = {"deviceId": printer.serial, "modelId": project["model_id"], "plateIndex": 1}
        windows = {"X-BBL-Client-Name": "BambuStudio", "X-BBL-OS-Type": "windows"}
        assert env.api("POST", TASK, body, token=token, headers=windows).status == 403
        assert printer.dynamic.job.gcode_state == "IDLE"


# ---------------------------------------------------------------------- other shapes


def test_slicer_settings_public_and_private_per_account() -> None:
    with CloudEnv() as env:
        alice = env.account()
        bob = env.account("bob@example.com", "pw")
        setting_id = env.do(lambda: env.cloud.add_setting(
            alice, "filament", "My PLA", {"filament_type": "PLA", "nozzle_temperature": [200, 220]},
            filament_id="P1234"))
        token = login(env)
        listing = env.api("GET", f"{SETTINGS}?version=02.00.00.00", token=token).json()
        assert set(listing) >= {"print", "printer", "filament", "message"}
        assert listing["print"]["public"] and listing["print"]["private"] == []
        assert {"setting_id", "version", "name", "nickname", "filament_id"} <= set(listing["print"]["public"][0])
        private = listing["filament"]["private"]
        assert [s["setting_id"] for s in private] == [setting_id]
        assert private[0]["nozzle_temperature"] == [200, 220]
        detail = env.api("GET", f"{SETTINGS}/{setting_id}", token=token).json()
        assert (detail["type"], detail["public"], detail["setting"]["name"]) == ("filament", False, "My PLA")
        public_id = listing["print"]["public"][0]["setting_id"]
        assert env.api("GET", f"{SETTINGS}/{public_id}", token=token).json()["public"] is True
        bob_token = env.token(bob)
        assert env.api("GET", f"{SETTINGS}/{setting_id}", token=bob_token).status == 404
        assert env.api("GET", f"{SETTINGS}?version=1", token=bob_token).json()["filament"]["private"] == []
        assert env.api("DELETE", f"{SETTINGS}/{setting_id}", token=token).status == 200
        assert env.api("GET", f"{SETTINGS}/{setting_id}", token=token).status == 404


def test_china_clients_use_the_same_server() -> None:
    with CloudEnv() as env:
        alice = env.account()
        token = login(env)
        reply = env.api("GET", PREFERENCE, token=token, headers={"Host": "api.bambulab.cn"})
        assert reply.json()["uid"] == alice.uid


def test_https_with_a_certificate_for_api_bambulab_com() -> None:
    with CloudEnv(tls=True) as env:
        alice = env.account()
        assert env.cloud.api_url.startswith("https://")
        ctx = ssl.create_default_context(cadata=env.cloud.ca_pem.decode())
        ctx.check_hostname = False
        port = urlsplit(env.cloud.api_url).port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.bambulab.com"
        reply = request("POST", env.cloud.api_url + LOGIN, {"account": "alice@example.com", "password": "hunter22"},
                        context=ctx)
        token = reply.json()["accessToken"]
        pref = request("GET", env.cloud.api_url + PREFERENCE, token=token, context=ctx)
        assert pref.json()["uid"] == alice.uid
        csrf = request("GET", env.cloud.web_url + "/api/csrf", context=ctx)
        assert "secure" in (csrf.header("set-cookie") or "").lower()


# ---------------------------------------------------------------------- switches


def test_cloudflare_block_is_a_403_html_page() -> None:
    with CloudEnv() as env:
        env.account()
        env.do(lambda: env.cloud.set_switches(cloudflare_block=True))
        reply = env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"})
        assert reply.status == 403
        assert "text/html" in (reply.header("content-type") or "")
        assert b"cloudflare" in reply.body.lower()
        assert reply.header("cf-ray")
        assert env.web("GET", "/api/csrf").status == 403
        env.do(lambda: env.cloud.set_switches(cloudflare_block=False))
        assert env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"}).status == 200


def test_rate_limit_is_a_429_with_retry_after() -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        env.do(lambda: env.cloud.set_switches(rate_limit=True, retry_after=17))
        reply = env.api("GET", BIND, token=token)
        assert reply.status == 429
        assert reply.header("retry-after") == "17"
        assert reply.json()["error"] == "Too Many Requests"
        env.do(lambda: env.cloud.set_switches(rate_limit_cloudflare=True))
        html = env.api("GET", BIND, token=token)
        assert html.status == 429
        assert b"cloudflare" in html.body.lower()
        assert html.header("retry-after") == "17"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_switch(status: int) -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        env.do(lambda: env.cloud.set_switches(server_error=status))
        reply = env.api("GET", BIND, token=token)
        assert reply.status == status
        assert reply.json()["message"] != "success"


def test_fault_budget_fails_a_few_requests_then_recovers() -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        env.do(lambda: env.cloud.set_switches(server_error=503, fault_budget=2))
        assert [env.api("GET", BIND, token=token).status for _ in range(4)] == [503, 503, 200, 200]
        switches = env.do(lambda: env.cloud.switches.to_dict())
        assert switches["server_error"] == 0 and switches["fault_budget"] is None


def test_delay_switch_slows_every_response() -> None:
    with CloudEnv() as env:
        env.account()
        token = login(env)
        quick = env.api("GET", BIND, token=token)
        env.do(lambda: env.cloud.set_switches(delay=0.4))
        slow = env.api("GET", BIND, token=token)
        assert slow.status == 200
        assert slow.elapsed >= 0.4 > quick.elapsed


def test_tokens_expire_by_lifetime_and_all_at_once() -> None:
    with CloudEnv() as env:
        env.account()
        env.do(lambda: env.cloud.set_switches(token_lifetime=3600))
        short = env.api("POST", LOGIN, {"account": "alice@example.com", "password": "hunter22"}).json()
        assert short["expiresIn"] == 3600
        assert env.api("GET", BIND, token=short["accessToken"]).status == 200
        env.do(lambda: env.cloud.advance(3601))
        assert env.api("GET", BIND, token=short["accessToken"]).status == 401
        assert env.api("POST", REFRESH, {"refreshToken": short["refreshToken"]}).status == 401
        a, b = login(env), login(env)
        assert env.do(lambda: env.cloud.expire_tokens()) == 2
        assert env.api("GET", BIND, token=a).status == 401
        assert env.api("GET", BIND, token=b).status == 401
        assert env.api("GET", BIND, token=login(env)).status == 200  # new logins still work


def test_switches_reject_unknown_names_and_bad_values() -> None:
    with CloudEnv() as env:
        with pytest.raises(SimulatorError):
            env.do(lambda: env.cloud.set_switches(no_such_switch=True))
        with pytest.raises(SimulatorError):
            env.do(lambda: env.cloud.set_switches(server_error=404))
        with pytest.raises(SimulatorError):
            env.do(lambda: env.cloud.set_switches(rate_limit="yes"))


# ---------------------------------------------------------------------- admin endpoint


def test_admin_endpoint_is_off_by_default() -> None:
    with CloudEnv() as env:
        with pytest.raises(SimulatorError):
            _ = env.cloud.admin_url
        assert env.cloud.info(include_secrets=True)["admin_url"] is None
        assert "admin_token" not in env.cloud.info(include_secrets=True)
        for base in (env.cloud.api_url, env.cloud.web_url):
            reply = request("GET", base + "/admin/switches", token=env.cloud.admin_token)
            assert reply.status == 404


def test_admin_endpoint_needs_its_token_and_drives_the_switches() -> None:
    with CloudEnv(admin=True) as env:
        env.account(login_mode="verifyCode")
        admin = env.cloud.admin_url
        assert urlsplit(admin).hostname == "127.0.0.1"
        assert request("GET", admin + "/admin/switches").status == 401
        assert request("GET", admin + "/admin/switches", token="wrong").status == 401
        token = env.cloud.admin_token
        assert request("GET", admin + "/admin/switches", token=token).json()["cloudflare_block"] is False
        patched = request("PATCH", admin + "/admin/switches", {"cloudflare_block": True}, token=token)
        assert patched.status == 200 and patched.json()["cloudflare_block"] is True
        blocked = env.api("POST", SEND_CODE, {"email": "alice@example.com", "type": "codeLogin"})
        assert blocked.status == 403 and b"cloudflare" in blocked.body.lower()
        assert request("PATCH", admin + "/admin/switches", {"bogus": 1}, token=token).status == 400
        request("PATCH", admin + "/admin/switches", {"cloudflare_block": False}, token=token)
        env.api("POST", SEND_CODE, {"email": "alice@example.com", "type": "codeLogin"})
        code = request("GET", admin + "/admin/last-code?email=alice@example.com", token=token)
        assert code.json()["code"] == env.do(lambda: env.cloud.last_code("alice@example.com"))
        user_token = env.api("POST", LOGIN, {"account": "alice@example.com", "code": code.json()["code"]}).json()
        assert env.api("GET", BIND, token=user_token["accessToken"]).status == 200
        expired = request("POST", admin + "/admin/expire-tokens", {}, token=token)
        assert expired.json()["expired"] >= 1
        assert env.api("GET", BIND, token=user_token["accessToken"]).status == 401
        assert request("POST", admin + "/admin/advance", {"seconds": 10}, token=token).status == 200
        assert request("POST", admin + "/admin/advance", {"seconds": -1}, token=token).status == 400
