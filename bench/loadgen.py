"""A printer-farm load generator for client benchmarks (a separate process, loopback only).

One TLS listener speaks just enough MQTT 3.1.1 to look like many printers at once: every client
connection that subscribes to ``device/{serial}/report`` becomes one printer. The generator then
sends that printer P1-style delta reports (``msg: 1``) at a fixed total rate spread evenly over all
printers, answers ``pushall`` with a real full report (from the simulator's payload renderer) and
answers PINGREQ. Each delta carries ``bench_ns``, the sender's ``time.monotonic_ns()``, so the
client side can measure end-to-end lag (CLOCK_MONOTONIC is shared by processes on Linux).

The real virtual printer (``bambu sim``) costs about half a core for 1,000 printers at one report
per second, so it cannot produce 5,000 reports/s next to the client under test on a 2-core machine;
this generator can, at a few percent of a core.

    python3 bench/loadgen.py --port 0 --rate 5000      # prints {"port": N, "access_code": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from _common import read_packet, remaining_length
from bambulab.protocol.models import model_by_code
from bambulab.sim import payloads
from bambulab.sim.ca import SimCA

ACCESS_CODE = "12345678"


def publish_frame(topic: bytes, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + payload
    return b"\x30" + remaining_length(len(body)) + body


@dataclass
class Conn:
    writer: asyncio.StreamWriter
    serial: str = ""
    topic: bytes = b""
    seq: int = 2000
    temp: float = 200.0
    percent: int = 0
    sent: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def delta(self) -> bytes:
        self.seq += 1
        self.temp = 199.0 + self.rng.randrange(64) / 32
        if self.seq % 60 == 0:
            self.percent = (self.percent + 1) % 100
        body = {
            "print": {
                "nozzle_temper": self.temp,
                "mc_percent": self.percent,
                "wifi_signal": f"-{40 + self.seq % 7}dBm",
                "command": "push_status",
                "msg": 1,
                "sequence_id": str(self.seq),
                "bench_ns": time.monotonic_ns(),
            }
        }
        return publish_frame(self.topic, json.dumps(body, separators=(",", ":")).encode())


class FarmLoad:
    def __init__(self, rate: float, full_report: dict[str, Any]) -> None:
        self.rate = rate
        self.conns: list[Conn] = []
        self._full = full_report
        self.sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(writer=writer)
        try:
            while True:
                header, body = await read_packet(reader)
                kind = header >> 4
                if kind == 1:  # CONNECT: check the password (last field)
                    ok = ACCESS_CODE.encode() in body[-(len(ACCESS_CODE) + 2):]
                    writer.write(bytes([0x20, 2, 0, 0 if ok else 5]))
                    if not ok:
                        await writer.drain()
                        return
                elif kind == 8:  # SUBSCRIBE
                    packet_id = body[:2]
                    tlen = struct.unpack("!H", body[2:4])[0]
                    topic = body[4:4 + tlen].decode()
                    writer.write(b"\x90\x03" + packet_id + b"\x00")
                    parts = topic.split("/")
                    if len(parts) == 3 and parts[2] == "report" and not conn.serial:
                        conn.serial, conn.topic = parts[1], topic.encode()
                        self.conns.append(conn)
                elif kind == 3:  # PUBLISH from the client: a command
                    qos = (header >> 1) & 3
                    tlen = struct.unpack("!H", body[:2])[0]
                    offset = 2 + tlen
                    if qos:
                        writer.write(b"\x40\x02" + body[offset:offset + 2])
                        offset += 2
                    payload = body[offset:]
                    if b"pushall" in payload and conn.topic:
                        conn.seq += 1
                        full = {"print": {**self._full, "command": "push_status", "msg": 0,
                                          "sequence_id": str(conn.seq)}}
                        writer.write(publish_frame(conn.topic, json.dumps(full).encode()))
                    elif b"get_version" in payload and conn.topic:
                        try:
                            seq = json.loads(payload)["info"].get("sequence_id", "0")
                        except (ValueError, KeyError, TypeError, AttributeError):
                            seq = "0"
                        info = {"info": {"command": "get_version", "sequence_id": seq, "module": [
                            {"name": "ota", "product_name": "Bambu Lab P1S", "sw_ver": "01.08.02.00",
                             "hw_ver": "OTA", "sn": conn.serial, "flag": 3}], "result": "success", "reason": ""}}
                        writer.write(publish_frame(conn.topic, json.dumps(info).encode()))
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            writer.close()

    async def pump(self) -> None:
        """Send ``rate`` deltas per second in total, round-robin over the printers."""
        tick = 0.01
        debt = 0.0
        index = 0
        next_at = time.monotonic()
        while True:
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            conns = self.conns
            if not conns:
                continue
            debt += self.rate * tick
            count = int(debt)
            debt -= count
            for _ in range(count):
                index = (index + 1) % len(conns)
                conn = conns[index]
                if conn.writer.is_closing():
                    continue
                conn.writer.write(conn.delta())
                conn.sent += 1
                self.sent += 1


async def main_async(port: int, rate: float) -> None:
    ca = SimCA()
    leaf = ca.issue("LOADGEN0000000A")
    ctx = leaf.server_context()
    model = model_by_code("P1S")
    dyn = payloads.default_dynamic(model, rng=random.Random(1))
    load = FarmLoad(rate, payloads.build_report(model, dyn, serial="LOADGEN0000000A"))
    server = await asyncio.start_server(load.handle, "127.0.0.1", port, ssl=ctx, backlog=2048)
    actual = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": actual, "access_code": ACCESS_CODE}), flush=True)
    pump = asyncio.create_task(load.pump())
    try:
        # Stop when the parent closes our stdin (or after an hour at most).
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, sys.stdin.read), 3600)
    finally:
        pump.cancel()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=5000.0, help="deltas per second in total")
    args = parser.parse_args()
    asyncio.run(main_async(args.port, args.rate))


if __name__ == "__main__":
    main()
