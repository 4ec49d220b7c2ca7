"""`bambu sim --printers 3`: three printers of different models, used by plain third-party clients.

This is the issue's "done when": a plain paho-mqtt script, Python's ftplib (implicit TLS with
session reuse) and a raw ssl socket use the printers started by the command line exactly as they
would use real printers.
"""

from __future__ import annotations

import io
import json
import os
import queue
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from simtools import ImplicitFTPS


@pytest.fixture(scope="module")
def cli_printers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bambulab.cli.main", "sim", "--printers", "3", "--models", "P1S,X1C,A1",
         "--json", "--duration", "60", "--write-ca", str(ca_file), "--time-scale", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    watchdog = threading.Timer(30, proc.kill)  # a hung start-up fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stdout is not None
        printers = []
        while len(printers) < 3:
            line = proc.stdout.readline()
            assert line, "bambu sim exited before printing three printers"
            printers.append(json.loads(line))
        watchdog.cancel()
        yield printers, ca_file
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=15)  # also closes the pipes


def test_three_different_models_with_details(cli_printers: tuple[list[dict[str, Any]], Path]) -> None:
    printers, ca_file = cli_printers
    assert [p["model"] for p in printers] == ["P1S", "X1 Carbon", "A1"]
    assert len({p["serial"] for p in printers}) == 3
    assert len({p["mqtt_port"] for p in printers}) == 3
    for p in printers:
        assert p["host"] == "127.0.0.1"
        assert len(p["serial"]) == 15 and p["serial"].isupper()
        assert p["access_code"].isdigit() and len(p["access_code"]) == 8
        assert p["ca_file"] == str(ca_file.resolve())  # --json names the CA written by --write-ca
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_plain_paho_script(cli_printers: tuple[list[dict[str, Any]], Path]) -> None:
    printers, ca_file = cli_printers
    for p in printers:
        messages: queue.Queue[dict[str, Any]] = queue.Queue()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plain-script", protocol=paho.MQTTv311)
        client.username_pw_set("bblp", p["access_code"])
        client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(True)  # the certificate's CN is the serial, not the address
        client.on_connect = lambda c, u, f, rc, props, s=p["serial"]: c.subscribe(f"device/{s}/report")
        client.on_message = lambda c, u, m, q=messages: q.put(json.loads(m.payload))
        client.connect(p["host"], p["mqtt_port"], keepalive=5)
        client.loop_start()
        try:
            time.sleep(0.3)
            client.publish(f"device/{p['serial']}/request",
                           json.dumps({"pushing": {"sequence_id": "0", "command": "pushall"}}))
            client.publish(f"device/{p['serial']}/request",
                           json.dumps({"info": {"sequence_id": "1", "command": "get_version"}}))
            got_full = got_version = False
            deadline = time.monotonic() + 10
            while not (got_full and got_version) and time.monotonic() < deadline:
                try:
                    msg = messages.get(timeout=0.5)
                except queue.Empty:
                    continue
                got_full = got_full or msg.get("print", {}).get("msg") == 0
                got_version = got_version or msg.get("info", {}).get("command") == "get_version"
            assert got_full and got_version, p["model"]
        finally:
            client.loop_stop()
            client.disconnect()


def test_ftplib_implicit_tls_with_session_reuse(cli_printers: tuple[list[dict[str, Any]], Path]) -> None:
    printers, ca_file = cli_printers
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False
    for p in printers:
        ftp = ImplicitFTPS(ctx)
        ftp.connect(p["host"], p["ftps_port"])
        ftp.login("bblp", p["access_code"])
        ftp.prot_p()
        payload = os.urandom(200_000)
        ftp.storbinary("STOR upload.bin", io.BytesIO(payload))
        assert ftp.size("upload.bin") == len(payload)
        out = io.BytesIO()
        ftp.retrbinary("RETR upload.bin", out.write)
        assert out.getvalue() == payload
        assert all(ftp.data_reused)
        names = ftp.nlst()
        # X1 firmware lists full paths, P1/A1 bare names; both list the SD card's folders.
        assert all(n.startswith("/") for n in names) == (p["model"] == "X1 Carbon")
        assert {"cache", "model", "timelapse", "image"} <= {n.rsplit("/", 1)[-1] for n in names}
        ftp.quit()


def test_raw_ssl_socket_camera(cli_printers: tuple[list[dict[str, Any]], Path]) -> None:
    printers, _ = cli_printers
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    jpeg_printers = [p for p in printers if p["camera"] == "jpeg"]
    assert [p["model"] for p in jpeg_printers] == ["P1S", "A1"]
    for p in jpeg_printers:
        with socket.create_connection((p["host"], p["camera_port"]), timeout=10) as raw, \
                ctx.wrap_socket(raw) as tls:
            auth = struct.pack("<IIII", 0x40, 0x3000, 0, 0) + b"bblp".ljust(32, b"\0") + \
                p["access_code"].encode().ljust(32, b"\0")
            tls.sendall(auth)
            header = _read_exactly(tls, 16)
            size, itrack, flags, _ = struct.unpack("<IIII", header)
            assert (itrack, flags) == (0, 1)
            jpeg = _read_exactly(tls, size)
            assert jpeg[:4] == b"\xff\xd8\xff\xe0"
            assert jpeg[-2:] == b"\xff\xd9"
    rtsp = next(p for p in printers if p["camera"] == "rtsp")
    with socket.create_connection((rtsp["host"], rtsp["camera_port"]), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        tls.sendall(b"OPTIONS rtsps://127.0.0.1/streaming/live/1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        reply = tls.recv(4096)
        assert reply.startswith(b"RTSP/1.0 200")


def _read_exactly(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError("connection closed early")
        data += chunk
    return data


def test_sim_rejects_unknown_model() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bambulab.cli.main", "sim", "--printers", "1", "--models", "Z9", "--json",
         "--duration", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "unknown printer model" in done.stderr
    assert "Traceback" not in done.stderr



@pytest.mark.skipif(os.geteuid() != 0, reason="binding port 990 needs root (CI runs as root)")
def test_standard_ports_one_loopback_address_per_printer() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bambulab.cli.main", "sim", "--printers", "2", "--models", "P1S,X1C",
         "--standard-ports", "--host", "127.0.0.72", "--json", "--duration", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        printers = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [p["host"] for p in printers] == ["127.0.0.72", "127.0.0.73"]
        assert [(p["mqtt_port"], p["ftps_port"]) for p in printers] == [(8883, 990), (8883, 990)]
        assert [p["camera_port"] for p in printers] == [6000, 322]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for p in printers:
            for port in (8883, 990, p["camera_port"]):
                with socket.create_connection((p["host"], port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=15)
