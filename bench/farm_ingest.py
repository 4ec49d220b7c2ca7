"""Farm ingest: N printer connections in one process, side by side with bambulabs-api 2.6.6.

For each farm size N (default 10, 100, 1,000) a load generator (``bench/loadgen.py``, its own
process) plays N printers on one TLS port and sends P1-style delta reports at a fixed total rate
(default 5,000/s), spread evenly over the printers. Then, one after the other, each client runs
in its own process and connects N printers:

- **bambulab**: N :class:`bambulab.Printer` objects on one event loop (connect = subscribe,
  get_version, pushall, full report), each report merged into state; every ``StateChanged`` event
  is consumed and its lag measured.
- **bambulabs-api 2.6.6**: N ``PrinterMQTTClient`` objects (one paho thread each), in its own
  virtual environment (``bench/.venvs/``); lag measured in its message callback.

Reported per client: printers connected, reports/s processed during a fixed window, lag p50/p99
(send time in the generator to processing in the client; both read CLOCK_MONOTONIC), CPU of the
client process (percent of one core) and resident memory per connected printer.

    python3 bench/farm_ingest.py [--sizes 10,100,1000] [--rate 5000] [--seconds 15]

Loopback only; every process is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import proc_rss_bytes
from _peers import third_party_python

BENCH_DIR = Path(__file__).resolve().parent
MARKER = "FARM-RESULT "


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------------ our worker


async def run_ours(n: int, port: int, code: str, seconds: float) -> dict[str, Any]:
    from bambulab.events import StateChanged
    from bambulab.printer import Printer

    rss0 = proc_rss_bytes()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    printers = [Printer("127.0.0.1", f"BENCH{i:010d}", code, port=port, ssl_context=ctx, watchdog=120.0)
                for i in range(n)]
    gate = asyncio.Semaphore(100)

    async def connect(p: Printer) -> bool:
        async with gate:
            try:
                await p.connect()
                return True
            except Exception as exc:  # a failed connection is counted, not fatal
                print(f"connect failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return False

    t0 = time.monotonic()
    ok = await asyncio.gather(*(connect(p) for p in printers))
    connect_s = time.monotonic() - t0
    live = [p for p, good in zip(printers, ok, strict=True) if good]
    counter = {"n": 0}
    lags: list[float] = []
    measuring = {"on": False}

    async def consume(p: Printer) -> None:
        async with p.events(maxsize=64) as stream:
            async for event in stream:
                if isinstance(event, StateChanged) and measuring["on"]:
                    counter["n"] += 1
                    sent = p.state.get("print", {}).get("bench_ns")
                    if isinstance(sent, int) and counter["n"] % 7 == 0:  # a sample is enough
                        lags.append((time.monotonic_ns() - sent) / 1e6)

    consumers = [asyncio.create_task(consume(p)) for p in live]
    await asyncio.sleep(2.0)  # settle
    measuring["on"] = True
    c0, n0, w0 = cpu_seconds(), counter["n"], time.monotonic()
    await asyncio.sleep(seconds)
    c1, n1, w1 = cpu_seconds(), counter["n"], time.monotonic()
    measuring["on"] = False
    rss = proc_rss_bytes()
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await asyncio.gather(*(p.close() for p in printers), return_exceptions=True)
    window = w1 - w0
    return {
        "client": "bambulab", "printers": n, "connected": len(live), "connect_s": connect_s,
        "reports_per_s": (n1 - n0) / window, "lag_p50_ms": percentile(lags, 0.5),
        "lag_p99_ms": percentile(lags, 0.99), "cpu_pct": 100 * (c1 - c0) / window,
        "kib_per_printer": (rss - rss0) / 1024 / max(1, len(live)),
    }


# ------------------------------------------------------------------------------------ peer worker

PEER_SCRIPT = r"""
import json, logging, os, sys, threading, time
from pathlib import Path
from bambulabs_api.mqtt_client import PrinterMQTTClient

logging.disable(logging.CRITICAL)
cfg = json.loads(sys.stdin.readline())
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
def cpu():
    t = os.times(); return t.user + t.system
rss0 = rss()
lock = threading.Lock()
state = {"n": 0, "measuring": False, "connected": 0, "phase": "connecting", "connect_s": None,
         "w0": None, "c0": 0.0, "n0": 0}
lags = []

def on_message(client_obj, client, userdata, msg):
    if not state["measuring"]:
        return
    sent = client_obj._data.get("print", {}).get("bench_ns")
    with lock:
        state["n"] += 1
        if isinstance(sent, int) and state["n"] % 7 == 0:
            lags.append((time.monotonic_ns() - sent) / 1e6)

def on_connect(client_obj, client, userdata, flags, rc, props):
    if not rc.is_failure:
        with lock:
            state["connected"] += 1

def report(note):
    w1, c1, n1 = time.monotonic(), cpu(), state["n"]
    window = (w1 - state["w0"]) if state["w0"] else 0.0
    ordered = sorted(lags)
    def pct(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
    print("FARM-RESULT " + json.dumps({
        "client": "bambulabs-api 2.6.6", "printers": cfg["n"], "connected": state["connected"],
        "connect_s": state["connect_s"] if state["connect_s"] is not None else float("nan"),
        "reports_per_s": (n1 - state["n0"]) / window if window else 0.0,
        "lag_p50_ms": pct(0.5), "lag_p99_ms": pct(0.99),
        "cpu_pct": 100 * (c1 - state["c0"]) / window if window else float("nan"),
        "kib_per_printer": (rss() - rss0) / 1024 / max(1, state["connected"]), "note": note,
    }), flush=True)
    os._exit(0)  # paho threads would keep the process alive

def watchdog():
    time.sleep(cfg["limit"])
    report(f"stopped by the watchdog while {state['phase']}")

threading.Thread(target=watchdog, daemon=True).start()
clients = []
t0 = time.monotonic()
failed = 0
for i in range(cfg["n"]):
    c = PrinterMQTTClient("127.0.0.1", cfg["code"], f"BENCH{i:010d}", port=cfg["port"])
    c.on_message_handler = on_message
    c.on_connect_handler = on_connect
    try:
        c.connect()
        c.start()
        clients.append(c)
    except Exception as exc:
        failed += 1
deadline = time.monotonic() + 60
while state["connected"] < len(clients) and time.monotonic() < deadline:
    time.sleep(0.1)
state["connect_s"] = time.monotonic() - t0
state["phase"] = "measuring"
time.sleep(2.0)
state["measuring"] = True
state["c0"], state["n0"], state["w0"] = cpu(), state["n"], time.monotonic()
time.sleep(cfg["seconds"])
report(f"{failed} clients failed to start" if failed else "")
"""


# ------------------------------------------------------------------------------------ orchestration


async def start_loadgen(rate: float) -> tuple[asyncio.subprocess.Process, int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH_DIR / "loadgen.py"), "--rate", str(rate),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
    return proc, int(info["port"]), str(info["access_code"])


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def run_worker(argv: list[str], config: dict[str, Any] | None, timeout: float) -> dict[str, Any] | None:
    try:
        done = subprocess.run(argv, input=json.dumps(config) + "\n" if config else None, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"worker did not finish in {timeout:.0f} s", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        print(f"worker failed ({done.returncode}): {done.stderr[-800:]}", file=sys.stderr)
        return None
    return dict(json.loads(lines[-1][len(MARKER):]))


async def measure(size: int, rate: float, seconds: float, peer: Path | None) -> list[dict[str, Any]]:
    rows = []
    for client in ("bambulab", "bambulabs-api"):
        loadgen, port, code = await start_loadgen(rate)
        try:
            timeout = seconds + 180
            if client == "bambulab":
                argv = [sys.executable, __file__, "--worker", "--n", str(size), "--port", str(port), "--code", code,
                        "--seconds", str(seconds)]
                row = await asyncio.to_thread(run_worker, argv, None, timeout)
            elif peer is None:
                row = None
            else:
                config = {"n": size, "port": port, "code": code, "seconds": seconds, "limit": seconds + 120}
                row = await asyncio.to_thread(run_worker, [str(peer), "-c", PEER_SCRIPT], config, timeout)
        finally:
            await stop(loadgen)
        if row is not None:
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = asyncio.run(run_ours(args.n, args.port, args.code, args.seconds))
        print(MARKER + json.dumps(result), flush=True)
        return
    peer = None if args.no_peer else third_party_python("bambulabs_api.mqtt_client")
    rows: list[dict[str, Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.extend(asyncio.run(measure(size, args.rate, args.seconds, peer)))
    print(f"\nfarm ingest: {args.rate:.0f} delta reports/s offered in total, {args.seconds:.0f} s window, loopback TLS")
    header = (f"{'client':<22}{'printers':>9}{'connected':>10}{'reports/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'cpu %core':>10}{'KiB/printer':>12}{'connect s':>10}")
    print(header)
    for row in rows:
        print(f"{row['client']:<22}{row['printers']:>9}{row['connected']:>10}{row['reports_per_s']:>11.0f}"
              f"{row['lag_p50_ms']:>9.1f}{row['lag_p99_ms']:>9.1f}{row['cpu_pct']:>10.1f}"
              f"{row['kib_per_printer']:>12.0f}{row['connect_s']:>10.1f}  {row.get('note', '')}")
    ours = {r["printers"]: r for r in rows if r["client"] == "bambulab"}
    for row in rows:
        if row["client"] != "bambulab" and row["printers"] in ours:
            mine = ours[row["printers"]]
            if not row["reports_per_s"]:
                print(f"N={row['printers']}: {row['client']} processed nothing ({row['connected']} connected); "
                      f"bambulab {mine['reports_per_s']:.0f} reports/s with {mine['connected']} connected")
                continue
            ratio = mine["reports_per_s"] / row["reports_per_s"]
            print(f"N={row['printers']}: bambulab processes {ratio:.2f}x the reports of {row['client']} "
                  f"at {mine['cpu_pct'] / row['cpu_pct']:.2f}x its CPU and "
                  f"{mine['kib_per_printer'] / max(row['kib_per_printer'], 1):.2f}x its memory per printer")


if __name__ == "__main__":
    main()
