"""Gateway load: N printers behind one `bambu gateway`, M SSE viewers and M REST pollers.

Two scenarios, each with the gateway in its own process (its CPU and memory are measured alone):

1. **Virtual printers** (default N=200, M=50): a simulator process hosts N P1S printers, all
   printing (one report per second each, real MQTT over TLS, one connection per printer). Every
   50 ms it also sends one *marker* report to one printer (a distinctive ``nozzle_target_temper``)
   and writes the send time; M SSE viewers (raw HTTP/1.1 streams) look for the marker in the
   ``delta`` events: **event lag = report sent -> SSE event received** (both ends read
   CLOCK_MONOTONIC). M pollers each send 5 requests/s over keep-alive connections, cycling
   through ``/api/v1/printers/{serial}/job``, ``/api/v1/print?device_id=`` (the Home Assistant
   route), ``/api/v1/printers/{serial}`` and, one request in ten, the whole ``/api/v1/printers``.
2. **Load generator** (default N=1,000 at 5,000 reports/s): ``bench/loadgen.py`` plays N printers
   on one TLS port, sending P1-style deltas (every one changes a temperature) at a fixed total
   rate; 10 SSE viewers and 10 pollers run meanwhile.

Reported: gateway CPU (percent of one core) and RSS, reports/s the gateway processed, REST
p50/p99, SSE event lag p50/p99, deltas/s fanned out, history writes/s (when the history service
is in the build: read from ``/metrics``), and this driver's own CPU.

    python3 bench/gateway_load.py [--printers 200] [--viewers 50] [--seconds 20]
                                  [--big 1000] [--rate 5000] [--skip-small] [--skip-big]

Loopback only; every process stops by itself.

Measured on the project's 2-core machine, shared with other work (load average 0.8-1.5), 30 s windows:
200 virtual printers + 50 viewers + 50 pollers: gateway 33 % of a core, 72 MiB, REST p50 1.1 ms /
p99 19 ms, event lag p50 70 ms / p99 129 ms, 10,900 SSE events/s, 20 history writes/s.
1,000 loadgen printers at 5,000 reports/s + 10 + 10 clients: 74 % of a core, 148 MiB, 5,130
reports/s processed, REST p50 23 ms / p99 650 ms, 23,900 SSE events/s, 100 history writes/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import proc_cpu_seconds, proc_rss_bytes

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MARK_BASE = 300.0  # marker targets are 300.000-300.999 degrees: nothing else reports that


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


# --------------------------------------------------------------------------- the simulator process


async def sim_main(count: int, folder: Path, mark_interval: float) -> None:
    from bambulab.sim import Simulator
    from bambulab.sim.demo import demo_project

    async with Simulator(time_scale=1.0, seed=1) as sim:
        project = demo_project(minutes=600, layers=500)
        printers = []
        for _ in range(count):
            vp = await sim.add_printer(model="P1S")
            vp.put_file("job.gcode.3mf", project)
            await vp.start_print("job.gcode.3mf")
            printers.append(vp)
        ca = sim.write_ca(folder / "ca.pem")
        # History on (the SQLite store), sampling telemetry every 10 s per printer.
        toml = ["[gateway]", "port = 0", "", "[history]", f'path = "{folder / "history.sqlite3"}"',
                "sample_interval = 10.0", ""]
        for vp in printers:
            toml += ["[[printers]]", f'serial = "{vp.serial}"', 'host = "127.0.0.1"', f"port = {vp.mqtt.port}",
                     f'access_code = "{vp.access_code}"', f'ca_file = "{ca}"', ""]
        write_private(folder / "farm.toml", "\n".join(toml))
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.run_in_executor(None, sys.stdin.read)
        k = 0
        while not stdin_closed.done():
            await asyncio.sleep(mark_interval)
            k += 1
            vp = printers[k % len(printers)]
            marker = round(MARK_BASE + (k % 1000) / 1000, 3)
            sent = time.monotonic_ns()
            await vp.publish({"print": {"command": "push_status", "msg": 1, "nozzle_target_temper": marker}})
            print(json.dumps({"s": vp.serial, "m": marker, "t": sent}), flush=True)


# --------------------------------------------------------------------------------- the clients


class Http:
    """A minimal keep-alive HTTP/1.1 GET client (so the driver is not the bottleneck)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?i)content-length: *(\d+)", head)
        body = await self.reader.readexactly(int(match.group(1))) if match else b""
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def poller(host: str, port: int, serials: list[str], rate: float, stop: asyncio.Event,
                 latencies: list[float], errors: list[int], by_kind: dict[str, list[float]]) -> None:
    http = Http(host, port)
    rng = random.Random()
    n = rng.randrange(10)
    next_at = time.monotonic() + rng.uniform(0, 1 / rate)
    try:
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1 / rate
            n += 1
            serial = rng.choice(serials)
            path = ("/api/v1/printers" if n % 10 == 0 else
                    (f"/api/v1/printers/{serial}/job", f"/api/v1/print?device_id={serial}",
                     f"/api/v1/printers/{serial}")[n % 3])
            t0 = time.perf_counter()
            try:
                status, _ = await http.get(path)
            except (OSError, asyncio.IncompleteReadError):
                errors.append(0)
                http.close()
                http = Http(host, port)
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            latencies.append(elapsed)
            by_kind.setdefault(path.split("?")[0].rsplit("/", 1)[-1] if n % 10 else "list", []).append(elapsed)
            if status != 200:
                errors.append(status)
    finally:
        http.close()


async def viewer(host: str, port: int, stop: asyncio.Event, counts: list[int]) -> None:
    """One SSE client: counts data lines and notes when each marker first arrived (later deltas
    repeat it: only the first arrival counts; lag = arrival - send, computed at the end)."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    marker = b'"nozzle_target":300.'
    seen: set[tuple[str, float]] = set()
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            if not line.startswith(b"data: "):
                continue
            counts[0] += 1
            if marker not in line or b'"changes"' not in line:
                continue
            now = time.monotonic_ns()
            data = json.loads(line[6:])
            key = (data["serial"], data["changes"]["temperatures"]["nozzle_target"])
            if key not in seen:
                seen.add(key)
                per_viewer.append((key, now))
    finally:
        writer.close()


per_viewer: list[tuple[tuple[str, float], int]] = []


def lags_ms(sent: dict[tuple[str, float], int], start_ns: int, end_ns: int) -> list[float]:
    """Report sent -> event received, for every viewer and every marker sent in the window (up to
    2 s before its end, so late events are still counted)."""
    return [(arrived - sent[key]) / 1e6 for key, arrived in per_viewer
            if key in sent and start_ns <= sent[key] <= end_ns - 2_000_000_000]


async def viewers_main(host: str, port: int, count: int, seconds: float) -> None:
    """The SSE viewers in their own process (so their parsing does not delay the pollers' clock):
    marker send times come on stdin, lags go to stdout as one JSON line at the end."""
    sent: dict[tuple[str, float], int] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def marks() -> None:
        while line := await reader.readline():
            with contextlib.suppress(ValueError, KeyError):
                mark = json.loads(line)
                sent[(mark["s"], mark["m"])] = mark["t"]

    stop = asyncio.Event()
    counts = [0]
    feeder = asyncio.create_task(marks())
    tasks = [asyncio.create_task(viewer(host, port, stop, counts)) for _ in range(count)]
    await asyncio.sleep(3.0)
    counts[0] = 0
    start_ns = time.monotonic_ns()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    window = time.monotonic() - t0
    end_ns = time.monotonic_ns()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.5)  # the last marks
    feeder.cancel()
    expected = count * sum(1 for t in sent.values() if start_ns <= t <= end_ns - 2_000_000_000)
    lags = lags_ms(sent, start_ns, end_ns)
    print(json.dumps({"lags": lags, "missing": expected - len(lags), "events": counts[0], "window": window}),
          flush=True)


async def metric_total(host: str, port: int, pattern: str) -> float | None:
    http = Http(host, port)
    try:
        status, body = await http.get("/metrics")
    except (OSError, asyncio.IncompleteReadError):
        return None
    finally:
        http.close()
    if status != 200:
        return None
    total, found = 0.0, False
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        if re.match(pattern, line):
            found = True
            total += float(line.rsplit(" ", 1)[1])
    return total if found else None


async def gateway_info(host: str, port: int) -> dict[str, Any]:
    http = Http(host, port)
    try:
        _, body = await http.get("/api/v1/gateway")
        return dict(json.loads(body))
    finally:
        http.close()


async def start_gateway(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurement)
        [sys.executable, "-m", "bambulab", "gateway", "--config", str(config), "--port", "0"],
        env=env(), stdout=subprocess.PIPE, stderr=log.open("wb"),
    )
    assert proc.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    match = re.search(rb"http://([\d.]+):(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the gateway did not start: {line!r}; see {log}")
    return proc, match.group(1).decode(), int(match.group(2))


async def wait_online(host: str, port: int, count: int, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        with contextlib.suppress(OSError, ValueError, asyncio.IncompleteReadError):
            info = await gateway_info(host, port)
            if info["online"] >= count:
                return time.monotonic() - t0
        await asyncio.sleep(0.5)
    raise SystemExit(f"only some of {count} printers came online within {limit:.0f} s")


async def _forward_marks(sent: dict[tuple[str, float], int], proc: asyncio.subprocess.Process) -> None:
    """Pass the marker send times on to the viewers' process as they come."""
    assert proc.stdin is not None
    done = 0
    while True:
        items = list(sent.items())
        if len(items) > done:
            proc.stdin.write(b"".join(json.dumps({"s": s, "m": m, "t": t}).encode() + b"\n"
                                      for (s, m), t in items[done:]))
            done = len(items)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
        await asyncio.sleep(0.05)


async def measure(host: str, port: int, pid: int, serials: list[str], viewers: int, pollers: int,
                  seconds: float, sent: dict[tuple[str, float], int] | None, peer: int) -> dict[str, Any]:
    stop = asyncio.Event()
    latencies: list[float] = []
    errors: list[int] = []
    lags: list[float] = []
    counts = [0]
    viewers_proc = None
    missing = None
    if sent is not None and viewers:
        viewers_proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__)), "_viewers", host, str(port), str(viewers), str(seconds),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env(), limit=1 << 26)
        tasks = [asyncio.create_task(_forward_marks(sent, viewers_proc))]
    else:
        tasks = [asyncio.create_task(viewer(host, port, stop, counts)) for _ in range(viewers)]
    by_kind: dict[str, list[float]] = {}
    tasks += [asyncio.create_task(poller(host, port, serials, 5.0, stop, latencies, errors, by_kind))
              for _ in range(pollers)]
    await asyncio.sleep(3.0)  # warm-up: streams open, snapshots read
    latencies.clear()
    by_kind.clear()
    lags.clear()
    counts[0] = 0
    info0 = await gateway_info(host, port)
    hist0 = await metric_total(host, port, r"bambu_history_writes_total")
    cpu0, me0, peer0, t0 = proc_cpu_seconds(pid), proc_cpu_seconds(), proc_cpu_seconds(peer), time.monotonic()
    wait0 = runqueue_wait_seconds(pid)
    await asyncio.sleep(seconds)
    cpu1, me1, peer1, t1 = proc_cpu_seconds(pid), proc_cpu_seconds(), proc_cpu_seconds(peer), time.monotonic()
    wait1 = runqueue_wait_seconds(pid)
    info1 = await gateway_info(host, port)
    scrape0 = time.perf_counter()
    hist1 = await metric_total(host, port, r"bambu_history_writes_total")
    scrape_ms = (time.perf_counter() - scrape0) * 1000
    rss = proc_rss_bytes(pid)
    stop.set()
    window = t1 - t0
    if viewers_proc is not None:
        assert viewers_proc.stdout is not None
        out = json.loads(await viewers_proc.stdout.readline())
        lags[:] = out["lags"]
        missing = out["missing"]
        counts[0] = int(out["events"] * window / out["window"])
        await viewers_proc.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "printers": len(serials),
        "online": info1["online"],
        "viewers": viewers,
        "pollers": pollers,
        "gateway_cpu_percent": round(100 * (cpu1 - cpu0) / window, 1),
        "gateway_rss_mib": round(rss / 2**20, 1),
        # Runnable but not running (the machine is shared): how much CPU the gateway waited for.
        "gateway_cpu_wait_percent": round(100 * (wait1 - wait0) / window, 1),
        "reports_per_s": round((info1["messages"] - info0["messages"]) / window),
        "rest_requests": len(latencies),
        "rest_p50_ms": round(percentile(latencies, 0.5), 2),
        "rest_p99_ms": round(percentile(latencies, 0.99), 2),
        "rest_errors": len(errors),
        "rest_p99_ms_by_route": {("printers/{serial}" if k.isalnum() and len(k) > 10 else k):
                                 round(percentile(v, 0.99), 1) for k, v in sorted(by_kind.items())},
        "sse_events_per_s": round(counts[0] / window),
        "sse_lag_samples": len(lags),
        "sse_markers_never_seen": missing,
        "sse_lag_p50_ms": round(percentile(lags, 0.5), 1) if sent is not None else None,
        "sse_lag_p99_ms": round(percentile(lags, 0.99), 1) if sent is not None else None,
        "history_writes_per_s": round((hist1 - hist0) / window, 1) if hist0 is not None and hist1 is not None
        else None,
        "metrics_scrape_ms": round(scrape_ms, 1),  # one GET /metrics (outside the window: it blocks the loop)
        "driver_cpu_percent": round(100 * (me1 - me0) / window, 1),  # the pollers (+ viewers when in-process)
        "machine_load_average_1m": round(os.getloadavg()[0], 2),
        "printers_process_cpu_percent": round(100 * (peer1 - peer0) / window, 1),
    }


async def small(n: int, viewers: int, seconds: float, folder: Path) -> dict[str, Any]:
    sim = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, str(Path(__file__)), "_sim", "--printers", str(n), "--dir", str(folder)],
        env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(folder / "sim.log").open("wb"))
    assert sim.stdout is not None
    assert sim.stdin is not None
    loop = asyncio.get_running_loop()
    sent: dict[tuple[str, float], int] = {}
    gateway = None
    try:
        line = await loop.run_in_executor(None, sim.stdout.readline)
        if line.strip() != b"READY":
            raise SystemExit(f"the simulator did not start: {line!r}; see {folder / 'sim.log'}")

        def read_marks() -> None:
            assert sim.stdout is not None
            for raw in sim.stdout:
                with contextlib.suppress(ValueError, KeyError):
                    mark = json.loads(raw)
                    sent[(mark["s"], mark["m"])] = mark["t"]

        loop.run_in_executor(None, read_marks)
        gateway, host, port = await start_gateway(folder / "farm.toml", folder / "gateway.log")
        took = await wait_online(host, port, n, 180)
        print(f"  {n} virtual printers online through the gateway in {took:.1f} s", file=sys.stderr)
        serials = re.findall(r'serial = "(\w+)"', (folder / "farm.toml").read_text())
        result = await measure(host, port, gateway.pid, serials, viewers, viewers, seconds, sent, sim.pid)
        result["scenario"] = "virtual printers (bambu sim, 1 report/s each + markers)"
        return result
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(10)
            if gateway.poll() is None:
                gateway.kill()
        with contextlib.suppress(OSError):
            sim.stdin.close()
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()


async def big(n: int, rate: float, seconds: float, folder: Path, history: bool = True) -> dict[str, Any]:
    gen = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, str(BENCH / "loadgen.py"), "--port", "0", "--rate", str(rate)],
        env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert gen.stdout is not None
    assert gen.stdin is not None
    gateway = None
    try:
        info = json.loads(await asyncio.get_running_loop().run_in_executor(None, gen.stdout.readline))
        serials = [f"BENCH{i:010d}" for i in range(n)]
        toml = ["[gateway]", "port = 0", ""]
        if history:
            toml += ["[history]", f'path = "{folder / "history-big.sqlite3"}"', "sample_interval = 10.0", ""]
        for serial in serials:
            toml += ["[[printers]]", f'serial = "{serial}"', 'host = "127.0.0.1"', f"port = {info['port']}",
                     f'access_code = "{info["access_code"]}"', "insecure = true", "model = \"P1S\"", ""]
        write_private(folder / "big.toml", "\n".join(toml))
        gateway, host, port = await start_gateway(folder / "big.toml", folder / "gateway-big.log")
        took = await wait_online(host, port, n, 300)
        print(f"  {n} load-generator printers online through the gateway in {took:.1f} s", file=sys.stderr)
        result = await measure(host, port, gateway.pid, serials, 10, 10, seconds, None, gen.pid)
        result["scenario"] = f"bench/loadgen.py, {rate:.0f} reports/s offered"
        return result
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(10)
            if gateway.poll() is None:
                gateway.kill()
        with contextlib.suppress(OSError):
            gen.stdin.close()
        try:
            gen.wait(10)
        except subprocess.TimeoutExpired:
            gen.kill()


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['scenario']}: {result['printers']} printers ({result['online']} online), "
          f"{result['viewers']} SSE viewers, {result['pollers']} pollers x 5 req/s")
    for key, value in result.items():
        if key not in ("scenario",):
            print(f"  {key:24} {value}")


async def main_async(args: argparse.Namespace) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp:
        folder = Path(tmp)
        if not args.skip_small:
            results.append(await small(args.printers, args.viewers, args.seconds, folder))
            show(results[-1])
        if not args.skip_big:
            results.append(await big(args.big, args.rate, args.seconds, folder, not args.no_history))
            show(results[-1])
    print("\nGATEWAY-LOAD " + json.dumps(results))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_viewers":
        host, port, count, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        asyncio.run(viewers_main(host, port, count, seconds))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_sim":
        parser = argparse.ArgumentParser()
        parser.add_argument("_sim")
        parser.add_argument("--printers", type=int, required=True)
        parser.add_argument("--dir", type=Path, required=True)
        parser.add_argument("--mark-interval", type=float, default=0.05)
        a = parser.parse_args()
        asyncio.run(sim_main(a.printers, a.dir, a.mark_interval))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=50, help="SSE viewers, and as many REST pollers")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--no-history", action="store_true", help="the big scenario without the history service")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
