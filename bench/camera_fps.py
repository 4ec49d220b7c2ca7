"""Frames per second of three P1-camera readers against one fast virtual camera.

    python3 bench/camera_fps.py [--seconds 5] [--fps 1000] [--width 1280 --height 720] [--no-third-party]

A virtual P1S runs in its own process (``--serve`` mode of this script), streaming its
port-6000-style JPEG camera at ``--fps`` with frames of ``--width`` x ``--height``. One after the
other, for the same window, on 127.0.0.1:

(a) raw     - a minimal blocking stdlib ``socket`` + ``ssl`` reader written here: read the
              16-byte header, then exactly the payload with ``recv_into`` a preallocated buffer;
(b) ours    - ``bambulab.camera.Camera.frames()`` (asyncio, the library's transport);
(c) bambulabs-api 2.6.6 - its ``PrinterCamera`` thread, in a subprocess with its own venv
              (``bench/.venvs/bambulabs-api``, created and filled with pip on first use); frames are
              counted by a subclass that observes each assignment of ``last_frame``.

For each it prints frames/s, MiB/s, CPU milliseconds per frame (the reader's process) and the
ratio of its frame rate to the raw reader's. The access code goes to the children over pipes,
never in process arguments. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import proc_cpu_seconds
from _peers import third_party_python

BENCH_DIR = Path(__file__).resolve().parent
MARKER = "BENCH-RESULT "


class SimCpu:
    """CPU seconds used so far by the simulator process (Linux /proc), to see who is the bottleneck."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self) -> float:
        return proc_cpu_seconds(self.pid)


@dataclass
class Result:
    name: str
    frames: int
    seconds: float
    nbytes: int
    cpu_seconds: float
    note: str = ""
    sim_cpu: float | None = None  # the simulator process's CPU over the window, in cores


    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------- the simulator process


async def serve(fps: float, width: int, height: int) -> None:
    from bambulab.sim import Simulator

    async with Simulator(seed=1) as sim:
        printer = await sim.add_printer(model="P1S", camera_fps=fps)
        camera: Any = printer.camera
        camera.width, camera.height = width, height
        info = {
            "host": printer.host, "port": camera.port, "serial": printer.serial,
            "access_code": printer.access_code, "ca_pem": sim.ca.ca_pem.decode(),
        }
        print(json.dumps(info), flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the parent closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.read)
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------- (a) raw reader


def auth_packet(code: str) -> bytes:
    return struct.pack("<IIII", 0x40, 0x3000, 0, 0) + b"bblp".ljust(32, b"\0") + code.encode().ljust(32, b"\0")


def raw_reader(info: dict[str, Any], seconds: float, sim_cpu: SimCpu) -> Result:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=info["ca_pem"])
    sock = ctx.wrap_socket(socket.create_connection((info["host"], info["port"]), timeout=10))
    header = bytearray(16)
    hview = memoryview(header)
    buf = bytearray(1 << 20)
    view = memoryview(buf)

    def fill(target: memoryview) -> None:
        got = 0
        while got < len(target):
            n = sock.recv_into(target[got:])
            if n == 0:
                raise ConnectionError("camera closed")
            got += n

    def frame() -> int:
        fill(hview)
        size = int.from_bytes(header[:4], "little")
        nonlocal buf, view
        if size > len(buf):
            buf = bytearray(size)
            view = memoryview(buf)
        fill(view[:size])
        data = bytes(view[:size])  # a frame a caller could keep, as the others deliver
        if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
            raise ValueError("not a JPEG")
        return size

    try:
        sock.sendall(auth_packet(info["access_code"]))
        frame()  # warm-up: the first frame
        frames = nbytes = 0
        sim0, cpu0, t0 = sim_cpu(), time.process_time(), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            nbytes += frame()
            frames += 1
        elapsed, cpu, sim = time.perf_counter() - t0, time.process_time() - cpu0, sim_cpu() - sim0
    finally:
        sock.close()
    return Result("raw socket+ssl", frames, elapsed, nbytes, cpu, sim_cpu=sim / elapsed)


# ---------------------------------------------------------------------------- (b) our Camera


async def ours(info: dict[str, Any], seconds: float, sim_cpu: SimCpu) -> Result:
    from contextlib import aclosing

    from bambulab.camera import Camera
    from bambulab.transports.tls import printer_ssl_context

    ctx = printer_ssl_context(cadata=info["ca_pem"])
    frames = nbytes = 0
    async with Camera.connect(
        info["host"], info["access_code"], serial=info["serial"], port=info["port"], ssl_context=ctx
    ) as camera:
        stream = camera.frames(max_queued=64)  # count every frame: drop none
        async with aclosing(stream):
            first = await anext(stream)
            last_index = first.index
            sim0, cpu0, t0 = sim_cpu(), time.process_time(), time.perf_counter()
            end = t0 + seconds
            async for frame in stream:
                frames += 1
                nbytes += frame.size
                last_index = frame.index
                if time.perf_counter() >= end:
                    break
            elapsed, cpu, sim = time.perf_counter() - t0, time.process_time() - cpu0, sim_cpu() - sim0
    dropped = last_index - first.index - frames
    return Result("bambulab Camera.frames()", frames, elapsed, nbytes, cpu,
                  note=f"dropped {dropped}" if dropped else "", sim_cpu=sim / elapsed)


# ----------------------------------------------------------------------- (c) bambulabs-api 2.6.6


THIRD_PARTY_SCRIPT = r"""
import json, logging, os, sys, time

from bambulabs_api.camera_client import PrinterCamera

logging.disable(logging.CRITICAL)
config = json.loads(sys.stdin.readline())


class Counting(PrinterCamera):
    frames = 0
    nbytes = 0
    _frame = None

    @property
    def last_frame(self):
        return self._frame

    @last_frame.setter
    def last_frame(self, value):
        self._frame = value
        if value is not None:
            Counting.frames += 1
            Counting.nbytes += len(value)


camera = Counting(config["host"], config["access_code"], port=config["port"])
camera.start()
deadline = time.monotonic() + 15
while Counting.frames == 0 and time.monotonic() < deadline:
    time.sleep(0.001)
if Counting.frames == 0:
    print("BENCH-RESULT " + json.dumps({"error": "no frame within 15 s"}), flush=True)
    os._exit(0)
f0, b0 = Counting.frames, Counting.nbytes
cpu0, t0 = time.process_time(), time.perf_counter()
time.sleep(config["seconds"])
elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
result = {"frames": Counting.frames - f0, "nbytes": Counting.nbytes - b0, "seconds": elapsed, "cpu": cpu}
print("BENCH-RESULT " + json.dumps(result), flush=True)
os._exit(0)  # its reader thread sleeps 5 s before it notices a stop
"""


def third_party(info: dict[str, Any], seconds: float) -> Result:
    name = "bambulabs-api 2.6.6 PrinterCamera"
    python = third_party_python("bambulabs_api.camera_client")
    if python is None:
        return Result(name, 0, 0.0, 0, 0.0, note="skipped: could not install it")
    config = {"host": info["host"], "port": info["port"], "access_code": info["access_code"], "seconds": seconds}
    proc = subprocess.run(
        [str(python), "-c", THIRD_PARTY_SCRIPT], input=json.dumps(config) + "\n", capture_output=True,
        text=True, timeout=seconds + 40,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        return Result(name, 0, 0.0, 0, 0.0, note=f"failed: {proc.stderr.strip()[-200:]}")
    data = json.loads(lines[-1][len(MARKER):])
    if "error" in data:
        return Result(name, 0, 0.0, 0, 0.0, note=data["error"])
    return Result(name, data["frames"], data["seconds"], data["nbytes"], data["cpu"])


# ----------------------------------------------------------------------------------------- main


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = dict(os.environ)
    src = str(BENCH_DIR.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", "--fps", str(args.fps),
         "--width", str(args.width), "--height", str(args.height)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise SystemExit("the simulator process did not start")
    return proc, json.loads(line)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    raw = results[0].fps
    print(f"\nvirtual P1S camera at {args.fps:g} fps, {args.width}x{args.height}, "
          f"{args.seconds:g} s per reader, simulator in its own process, loopback TLS")
    print(f"{'reader':36} {'frames/s':>9} {'MiB/s':>8} {'CPU ms/frame':>13} {'vs raw':>7} {'sim CPU':>8}  note")
    for r in results:
        if r.frames == 0:
            print(f"{r.name:36} {'-':>9} {'-':>8} {'-':>13} {'-':>7} {'-':>8}  {r.note}")
            continue
        mib = r.nbytes / r.seconds / (1 << 20)
        cpu_ms = r.cpu_seconds / r.frames * 1000
        ratio = r.fps / raw if raw else 0.0
        sim = f"{r.sim_cpu:7.0%}" if r.sim_cpu is not None else "-"
        print(f"{r.name:36} {r.fps:9.1f} {mib:8.1f} {cpu_ms:13.3f} {ratio:7.2f} {sim:>8}  {r.note}")
    print("CPU ms/frame: the reader process's CPU per frame. sim CPU: the simulator process over the window. "
          "The camera sends at most one frame per tick of its clock (about 1,000/s at most), so a reader near "
          "--fps keeps up; beyond that, CPU ms/frame is what tells readers apart.")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per reader")
    parser.add_argument("--fps", type=float, default=1000.0, help="the virtual camera's frame rate")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--no-third-party", action="store_true", help="skip bambulabs-api")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.fps, args.width, args.height))
        return
    if not 0 < args.seconds <= 60:
        raise SystemExit("--seconds must be in (0, 60]")
    proc, info = start_simulator(args)
    try:
        sim_cpu = SimCpu(proc.pid)
        results = [raw_reader(info, args.seconds, sim_cpu), asyncio.run(ours(info, args.seconds, sim_cpu))]
        if not args.no_third_party:
            results.append(third_party(info, args.seconds))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print_table(results, args)


if __name__ == "__main__":
    main()
