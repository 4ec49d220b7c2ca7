"""The fake cloud and the camera are packages (state, use cases, handlers apart); old import paths still work."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import bambulab.sim.cloud as package

PACKAGE = Path(package.__file__).parent


@pytest.mark.parametrize(("old", "new", "names"), [
    ("bambulab.sim.cloud", "bambulab.sim.cloud.service", ["FakeCloud"]),
    ("bambulab.sim.cloud", "bambulab.sim.cloud.model", ["Account", "CloudSwitches", "LoginMode", "TaskStatus"]),
    ("bambulab.sim.cloud_model", "bambulab.sim.cloud.model",
     ["Account", "CloudObject", "Project", "TaskRecord", "iso_time", "jwt_token", "opaque_token", "presign", "totp"]),
    ("bambulab.sim.cloud_http", "bambulab.sim.cloud.http",
     ["HttpServer", "build_admin_app", "build_api_app", "build_web_app"]),
    ("bambulab.sim.cloud_mqtt", "bambulab.sim.cloud.mqtt", ["CloudMqttService"]),
])
def test_old_import_paths_name_the_same_objects(old: str, new: str, names: list[str]) -> None:
    before, after = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(before, name) is getattr(after, name), name


def test_no_module_of_the_package_imports_another_modules_private_names() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bambulab"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_fake_cloud_is_composed_of_the_use_cases() -> None:
    from bambulab.sim.cloud.accounts import AccountUseCases
    from bambulab.sim.cloud.base import CloudBase
    from bambulab.sim.cloud.devices import DeviceUseCases
    from bambulab.sim.cloud.files import FileUseCases
    from bambulab.sim.cloud.history import HistoryUseCases

    mro = package.FakeCloud.__mro__
    for part in (CloudBase, AccountUseCases, FileUseCases, HistoryUseCases, DeviceUseCases):
        assert part in mro
    assert max(len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")) < 400  # no 1,000-line module


def test_camera_is_split_into_jpeg_h264_and_rtsp() -> None:
    import bambulab.sim.camera as camera
    from bambulab.sim.camera import h264, jpeg, rtsp, server

    assert camera.JpegCameraService is jpeg.JpegCameraService
    assert camera.RtspService is rtsp.RtspService
    assert camera.h264_parameter_sets is h264.h264_parameter_sets
    assert issubclass(camera.JpegCameraService, server.TlsCameraServer)
    assert issubclass(camera.RtspService, server.TlsCameraServer)
    folder = Path(camera.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bambulab"):
                assert not [a.name for a in node.names if a.name.startswith("_")], path.name
    assert max(len(p.read_text().splitlines()) for p in folder.glob("*.py")) < 500


def test_api_requests_are_logged_without_headers_or_bodies() -> None:
    from test_cloud_support import PREFERENCE, CloudEnv

    with CloudEnv() as env:
        alice = env.account()
        token = env.token(alice)
        assert env.api("GET", PREFERENCE + "?x=1", token=token).status == 200
        assert env.api("GET", PREFERENCE, token="not-a-token").status == 401
        log = env.do(env.cloud.request_log)
        assert [(r.method, r.path, r.query, r.account) for r in log] == [
            ("GET", PREFERENCE, "x=1", alice.email), ("GET", PREFERENCE, "", None)]
        assert token not in repr(log)
        env.do(env.cloud.clear_request_log)
        assert env.do(env.cloud.request_log) == []
