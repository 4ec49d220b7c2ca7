"""Helpers for the fake-cloud tests (no tests here).

The simulator and the fake cloud run on one event loop in a background thread; tests talk to
them with independent clients only: the standard library's ``http.client`` for HTTP and
paho-mqtt for MQTT, over real sockets on 127.0.0.1. Nothing here imports bambulab's client code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import queue
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from simtools import SimThread

from bambulab.sim import VirtualPrinter
from bambulab.sim.cloud import FakeCloud

T = TypeVar("T")

LOGIN = "/v1/user-service/user/login"
SEND_CODE = "/v1/user-service/user/sendemail/code"
REFRESH = "/v1/user-service/user/refreshtoken"
PREFERENCE = "/v1/design-user-service/my/preference"
PROFILE = "/v1/user-service/my/profile"
BIND = "/v1/iot-service/api/user/bind"
PRINT = "/v1/iot-service/api/user/print?force=true"
TASKS = "/v1/user-service/my/tasks"
TASK = "/v1/user-service/my/task"
MESSAGES = "/v1/user-service/my/messages"
PROJECT = "/v1/iot-service/api/user/project"
UPLOAD = "/v1/iot-service/api/user/upload"
VERSION = "/v1/iot-service/api/user/device/version"
TTCODE = "/v1/iot-service/api/user/ttcode"
SETTINGS = "/v1/iot-service/api/slicer/setting"
STUDIO = {"X-BBL-Client-Name": "BambuStudio", "X-BBL-OS-Type": "linux"}


class CloudEnv:
    """A simulator and a :class:`FakeCloud` on a background event loop."""

    def __init__(self, *, time_scale: float = 1.0, **cloud_kwargs: Any) -> None:
        self.st = SimThread(time_scale=time_scale, seed=4321)
        try:
            self.cloud: FakeCloud = self.st.call(self._start(cloud_kwargs))
        except BaseException:
            self.st.close()
            raise

    async def _start(self, kwargs: dict[str, Any]) -> FakeCloud:
        cloud = FakeCloud(self.st.sim, seed=99, **kwargs)
        await cloud.start()
        return cloud

    def do(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread (the cloud is not thread-safe)."""

        async def run() -> T:
            return fn()

        return self.st.call(run())

    def add(self, **overrides: Any) -> VirtualPrinter:
        return self.st.add(**overrides)

    def account(self, email: str = "alice@example.com", password: str = "hunter22", **kw: Any) -> Any:  # noqa: S107
        return self.do(lambda: self.cloud.add_account(email, password, **kw))

    def bind(self, account: Any, printer: VirtualPrinter) -> None:
        self.do(lambda: self.cloud.bind(account, printer))

    def token(self, account: Any) -> str:
        return self.do(lambda: self.cloud.issue_token(account))

    def api(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        return request(method, self.cloud.api_url + path, body, **kw)

    def web(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        return request(method, self.cloud.web_url + path, body, **kw)

    def close(self) -> None:
        try:
            self.st.call(self.cloud.stop())
        finally:
            self.st.close()

    def __enter__(self) -> CloudEnv:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookies(self) -> dict[str, str]:
        out = {}
        for value in self.headers.get_all("set-cookie") or []:
            pair = value.split(";", 1)[0]
            name, _, val = pair.partition("=")
            out[name.strip()] = val.strip()
        return out


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One HTTP request with the standard library; JSON ``body`` or ``raw`` bytes (no Content-Type added)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", "tests stay on loopback"
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    all_headers = dict(headers or {})
    data: bytes | None = raw
    if body is not None:
        data = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        payload = response.read()
        return Reply(response.status, response.headers, payload, time.monotonic() - started)
    finally:
        conn.close()


def login(env: CloudEnv, email: str = "alice@example.com", password: str = "hunter22") -> str:  # noqa: S107
    reply = env.api("POST", LOGIN, {"account": email, "password": password, "apiError": ""})
    assert reply.status == 200, reply.body
    token = reply.json()["accessToken"]
    assert token
    return str(token)


def totp_now(secret_b32: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), written here independently of the simulator's own."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[19] & 0xF
    number = int.from_bytes(digest[start : start + 4], "big") & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


class CloudMqtt:
    """A paho-mqtt client logging in to the fake cloud broker as ``u_{uid}`` with a token."""

    def __init__(self, env: CloudEnv, username: str, password: str, *, verify: bool = True) -> None:
        self.env = env
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.connect_rc: Any = None
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"cloud-test-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311, clean_session=True,
        )
        self.client.username_pw_set(username, password)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # we connect to 127.0.0.1; the certificate names us.mqtt.bambulab.com
        if verify:
            ctx.load_verify_locations(cadata=env.cloud.ca_pem.decode())
        else:
            ctx.verify_mode = ssl.CERT_NONE
        self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, rcs: Any, props: Any) -> None:
        self.subacks.put([int(getattr(rc, "value", rc)) for rc in rcs])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.messages.put((msg.topic, json.loads(msg.payload)))
        except ValueError:
            self.messages.put((msg.topic, {"_raw": msg.payload}))

    def connect(self, timeout: float = 5.0) -> int:
        self.client.connect("127.0.0.1", self.env.cloud.mqtt_port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(timeout), "no CONNACK in time"
        return int(getattr(self.connect_rc, "value", self.connect_rc))

    def subscribe(self, topic: str, timeout: float = 5.0) -> list[int]:
        self.client.subscribe(topic, qos=0)
        return self.subacks.get(timeout=timeout)

    def publish(self, serial: str, payload: dict[str, Any]) -> None:
        self.client.publish(f"device/{serial}/request", json.dumps(payload).encode(), qos=0)

    def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float = 5.0
    ) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout}s (saw {seen})")
            try:
                topic, msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            seen += 1
            if predicate(topic, msg):
                return topic, msg

    def drain(self, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
