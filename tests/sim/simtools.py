"""Helpers for simulator tests.

The simulator runs on its own event loop in a background thread, and tests talk to it with
independent third-party clients (paho-mqtt, ftplib, ssl) exactly as a user's script would.
Nothing here imports bambulab's client code.
"""

from __future__ import annotations

import asyncio
import ftplib
import json
import queue
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import paho.mqtt.client as paho

from bambulab.sim import Simulator, VirtualPrinter

T = TypeVar("T")


class SimThread:
    """A :class:`Simulator` on an event loop in a background thread."""

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim-loop", daemon=True)
        self._thread.start()
        self.sim = Simulator(**kwargs)
        self.call(self.sim.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, **overrides: Any) -> VirtualPrinter:
        return self.call(self.sim.add_printer(**overrides))

    def close(self) -> None:
        try:
            self.call(self.sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()



class Mqtt:
    """A plain paho-mqtt client, as third-party scripts use it against a printer."""

    def __init__(
        self,
        printer: VirtualPrinter,
        *,
        code: str | None = None,
        ca_pem: bytes | None = None,
        tls_max: ssl.TLSVersion | None = None,
        client_id: str | None = None,
        keepalive: int = 30,
    ) -> None:
        self.printer = printer
        self.serial = printer.serial
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw: list[bytes] = []
        self.connect_rc: Any = None
        self.disconnected = threading.Event()
        self._connected = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        self.client.username_pw_set("bblp", printer.access_code if code is None else code)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # CN is the serial, there is no IP SAN
        if ca_pem is None:
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.load_verify_locations(cadata=ca_pem.decode())
        if tls_max is not None:
            ctx.maximum_version = tls_max
        self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._keepalive = keepalive
        self.state: dict[str, Any] = {}
        self._state_lock = threading.Lock()
        self.subacks: list[Any] = []
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.append(rcs)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.raw.append(msg.payload)
        try:
            decoded = json.loads(msg.payload)
        except ValueError:
            self.messages.put({"_unparseable": msg.payload})
            return
        body = print_state(decoded)
        if body:
            with self._state_lock:
                self.state = _merge(self.state, body)
        self.messages.put(decoded)

    def snapshot(self) -> dict[str, Any]:
        with self._state_lock:
            return json.loads(json.dumps(self.state))

    def wait_state(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the merged report state satisfies ``predicate``; return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.snapshot()
            if state and predicate(state):
                return state
            if time.monotonic() > deadline:
                keys = {k: state.get(k) for k in ("gcode_state", "mc_percent", "stg_cur", "print_error")}
                raise AssertionError(f"state never matched in {timeout}s; last: {keys}")
            time.sleep(0.02)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()
        self._connected.set()

    def connect(self, timeout: float = 5.0) -> Any:
        self.client.connect(self.printer.host, self.printer.mqtt.port, keepalive=self._keepalive)
        self.client.loop_start()
        assert self._connected.wait(timeout), "no CONNACK in time"
        return self.connect_rc

    def subscribe_report(self) -> None:
        self.client.subscribe(f"device/{self.serial}/report", qos=0)
        deadline = time.monotonic() + 5
        while not self.subacks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.subacks, "no SUBACK"

    def send(self, payload: dict[str, Any] | bytes, qos: int = 0) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"device/{self.serial}/request", data, qos=qos)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout}s; saw {len(seen)}: {seen[-3:]}")
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(msg)
            if predicate(msg):
                return msg

    def ack(self, section: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
        msg = self.wait_for(
            lambda m: isinstance(m.get(section), dict) and m[section].get("command") == command, timeout
        )
        return dict(msg[section])

    def drain(self, seconds: float) -> list[dict[str, Any]]:
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



def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A deliberately simple merge (objects recursively, everything else replaced) for tests."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def print_state(msg: dict[str, Any]) -> dict[str, Any]:
    body = msg.get("print")
    return body if isinstance(body, dict) and body.get("command") == "push_status" else {}


def raw_connack(host: str, port: int, username: str, password: str, timeout: float = 5.0) -> int:
    """Send a bare MQTT 3.1.1 CONNECT over TLS and return the CONNACK return code byte."""

    def string(s: str) -> bytes:
        data = s.encode()
        return len(data).to_bytes(2, "big") + data

    body = string("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
    body += string(f"raw-{uuid.uuid4().hex[:8]}") + string(username) + string(password)
    packet = bytes([0x10, len(body)]) + body
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(packet)
        data = b""
        while len(data) < 4:
            chunk = tls.recv(4 - len(data))
            if not chunk:
                break
            data += chunk
    assert data[:2] == b"\x20\x02", f"not a CONNACK: {data!r}"
    return data[3]


class ImplicitFTPS(ftplib.FTP_TLS):
    """ftplib with implicit TLS; data connections resume the control session unless told not to."""

    def __init__(self, context: ssl.SSLContext, *, reuse_session: bool = True, timeout: float = 5.0) -> None:
        self._control: socket.socket | None = None
        super().__init__(context=context, timeout=timeout)
        self.reuse_session = reuse_session
        self.data_reused: list[bool] = []

    @property
    def sock(self) -> socket.socket | None:
        return self._control

    @sock.setter
    def sock(self, value: socket.socket | None) -> None:
        # Wrap the socket as soon as ftplib connects: TLS comes before the 220 greeting.
        if value is not None and not isinstance(value, ssl.SSLSocket):
            value = self.context.wrap_socket(value, server_hostname=self.host)
        self._control = value

    @property
    def tls(self) -> ssl.SSLSocket:
        assert isinstance(self._control, ssl.SSLSocket)
        return self._control

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - inside TLS, see below
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.tls.session if self.reuse_session else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            self.data_reused.append(bool(conn.session_reused))
        return conn, size
