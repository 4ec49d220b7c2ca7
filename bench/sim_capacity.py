"""How many virtual printers one process hosts, and what each costs.

For each farm size N this starts ``bambu sim --printers N`` in its own process (one report per
second per printer, every printer printing), connects one TLS MQTT subscriber to every printer from this process (a
minimal asyncio MQTT 3.1.1 reader, so the load generator is not the bottleneck), and measures
over a fixed window:

- printers up and subscribers connected,
- reports received per second (expected: about N),
- the simulator process's CPU (percent of one core) and resident memory, per printer.

Run:  python3 bench/sim_capacity.py [--sizes 50,100,200,400] [--window 15]
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from _common import mqtt_string as _string
from _common import proc_cpu_seconds, proc_rss_bytes, read_packet
from _common import remaining_length as _remaining_length


def connect_packet(client_id: str, user: str, password: str, keepalive: int = 60) -> bytes:
    var = _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", keepalive)
    payload = _string(client_id) + _string(user) + _string(password)
    body = var + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + _string(topic) + bytes([0])
    return bytes([0x82]) + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    body = _string(topic) + payload
    return bytes([0x30]) + _remaining_length(len(body)) + body


@dataclass
class Counter:
    connected: int = 0
    reports: int = 0
    failed: int = 0


async def subscriber(printer: dict[str, object], ctx: ssl.SSLContext, counter: Counter, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(str(printer["host"]), int(printer["mqtt_port"]), ssl=ctx),  # type: ignore[call-overload]
            timeout=30,
        )
        serial = str(printer["serial"])
        writer.write(connect_packet(f"bench-{serial}", "bblp", str(printer["access_code"])))
        await writer.drain()
        kind, body = await asyncio.wait_for(read_packet(reader), 30)
        if kind >> 4 != 2 or body[1] != 0:
            counter.failed += 1
            writer.close()
            return
        writer.write(subscribe_packet(f"device/{serial}/report"))
        pushall = json.dumps({"pushing": {"sequence_id": "0", "command": "pushall"}}).encode()
        writer.write(publish_packet(f"device/{serial}/request", pushall))
        await writer.drain()
        counter.connected += 1
        while not stop.is_set():
            try:
                kind, body = await asyncio.wait_for(read_packet(reader), 1.0)
            except TimeoutError:
                continue
            if kind >> 4 == 3:
                counter.reports += 1
        writer.close()
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        counter.failed += 1


async def measure(size: int, window: float, models: str) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bambulab.cli.main", "sim", "--printers", str(size), "--models", models,
        "--json", "--duration", str(window + 120), "--seed", "7", "--demo-all",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        t0 = time.monotonic()
        printers = []
        while len(printers) < size:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=300)
            if not line:
                raise RuntimeError("simulator exited early")
            printers.append(json.loads(line))
        startup = time.monotonic() - t0
        rss_idle = proc_rss_bytes(proc.pid)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        counter, stop = Counter(), asyncio.Event()
        tasks = [asyncio.create_task(subscriber(p, ctx, counter, stop)) for p in printers]
        deadline = time.monotonic() + 60
        while counter.connected + counter.failed < size and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # polling a counter that many tasks update
        await asyncio.sleep(2.0)  # settle: pushall answers and first deltas
        cpu0, reports0, w0 = proc_cpu_seconds(proc.pid), counter.reports, time.monotonic()
        await asyncio.sleep(window)
        cpu1, reports1, w1 = proc_cpu_seconds(proc.pid), counter.reports, time.monotonic()
        rss = proc_rss_bytes(proc.pid)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = w1 - w0
        return {
            "printers": size,
            "startup_s": startup,
            "connected": counter.connected,
            "failed": counter.failed,
            "reports_per_s": (reports1 - reports0) / elapsed,
            "cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
            "rss_mib": rss / 2**20,
            "rss_idle_mib": rss_idle / 2**20,
        }
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,100,200,400")
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--models", default="P1S,X1C,A1,P1P,A1 mini,H2D")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        row = asyncio.run(measure(size, args.window, args.models))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    base = rows[0]
    print(f"\nvirtual printers in one process (models {args.models}; 1 push/s each; 1 TLS subscriber each)")
    print(f"{'printers':>8} {'up':>5} {'reports/s':>10} {'cpu %core':>10} {'cpu/printer':>12} "
          f"{'RSS MiB':>8} {'KiB/printer':>12} {'start s':>8}")
    for row in rows:
        n = row["printers"]
        marginal = (row["rss_mib"] - base["rss_mib"]) * 1024 / (n - base["printers"]) if n != base["printers"] else 0
        per = row["rss_mib"] * 1024 / n
        print(f"{n:>8} {row['connected']:>5.0f} {row['reports_per_s']:>10.1f} {row['cpu_pct']:>10.1f} "
              f"{row['cpu_pct'] / n:>11.3f}% {row['rss_mib']:>8.1f} {per:>7.0f} ({marginal:>4.0f} marginal)"
              f" {row['startup_s']:>8.1f}")


if __name__ == "__main__":
    main()
