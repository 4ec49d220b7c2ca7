"""The cloud API proxy under load: ours (cached, uncached), the older package's Flask proxy, and direct.

Every configuration gets the same fake upstream (:class:`~bambulab.sim.cloud.FakeCloud` with two
virtual printers, in its own process) and the same load: ``--clients`` concurrent keep-alive
clients (20) reading the device list (``GET /v1/iot-service/api/user/bind``) for ``--seconds``
each, after a short warm-up. The older proxy is ``bambu-lab-cloud-api==1.0.5`` from PyPI,
installed on first use into ``bench/.venvs/bambu-lab-cloud-api`` (its own virtual environment)
and run with its limiter off and on; its client class is pointed at the fake cloud, nothing else
of it is changed. Ours runs as ``bambu proxy strict`` in its own process.

The configurations take turns, in ``--rounds`` rounds, so that each meets the same mix of the
machine's other load. Reported per configuration: requests/s (all answers, and 200s only),
p50/p99 latency, the upstream calls the fake cloud saw during the measured window, ratios against
the older proxy (limiter off) and direct, and the CPU milliseconds the proxy process and the fake
cloud spent per request (less sensitive to the machine's other load than the rates). A second,
sequential pass (one client) measures the latency a proxy adds when nothing queues, and a paced
pass (the same clients sending ``--paced-rate`` requests/s in all, 500, below what either path
can serve) the latency it adds to concurrent clients when the machine is not saturated. Under the
saturating load the p50 is mostly the queue in front of the slowest process (about ``clients /
rate``), so the added p50 there follows the proxy's CPU per request rather than its hop.

    python3 bench/proxy_load.py                 # about 45 s
    python3 bench/proxy_load.py --seconds 3 --rounds 3 --json

The load generator is a minimal asyncio HTTP/1.1 client in this process, so it shares the
machine's cores with the servers it measures: figures are relative, not absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import proc_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEER_VENV = BENCH_DIR / ".venvs" / "bambu-lab-cloud-api"
PEER_REQUIREMENT = "bambu-lab-cloud-api==1.0.5"
BIND = "/v1/iot-service/api/user/bind"


# ---------------------------------------------------------------------- the fake cloud process


def serve_cloud() -> None:
    """Role ``--serve-cloud``: print {"api_url", "token"}; then answer "count" / "clear" on stdin."""
    sys.path.insert(0, str(ROOT / "src"))
    from bambulab.sim import Simulator
    from bambulab.sim.cloud import FakeCloud

    async def main() -> None:
        async with Simulator(time_scale=1.0, seed=3) as sim, FakeCloud(sim, seed=4) as cloud:
            account = cloud.add_account("bench@example.com", "pw")
            for model in ("P1S", "X1C"):
                cloud.bind(account, await sim.add_printer(model=model))
            token = cloud.issue_token(account)
            print(json.dumps({"api_url": cloud.api_url, "token": token}), flush=True)
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or line.strip() == "quit":
                    return
                if line.strip() == "count":
                    print(len(cloud.request_log()), flush=True)
                elif line.strip() == "clear":
                    cloud.clear_request_log()
                    print("ok", flush=True)

    asyncio.run(main())


def serve_relay(host: str, port: int) -> None:
    """Role ``--serve-relay``: the floor of any proxy process here, bytes copied both ways, no HTTP.

    One upstream connection per client connection, data passed on as it arrives (held until the
    upstream is connected), reading paused while the other side's write buffer is full. Run on
    uvloop when installed, as ours is. Print the port, serve until killed.
    """

    class Side(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.peer: Side | None = None
            self.held: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            peer = self.peer
            if peer is None or peer.transport is None:
                self.held.append(data)
                if self.transport is not None:
                    self.transport.pause_reading()
                return
            peer.transport.write(data)

        def pause_writing(self) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.pause_reading()

        def resume_writing(self) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.resume_reading()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.close()

    class Down(Side):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.opening = asyncio.ensure_future(self.open())

        async def open(self) -> None:
            loop = asyncio.get_running_loop()
            up = Side()
            up.peer = self
            await loop.create_connection(lambda: up, host, port)
            self.peer = up
            assert up.transport is not None
            assert self.transport is not None
            for data in self.held:
                up.transport.write(data)
            self.held.clear()
            self.transport.resume_reading()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Down, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def start_relay(cloud: Cloud) -> Server:
    parts = urlsplit(cloud.api_url)
    proc = subprocess.Popen([sys.executable, __file__, "--serve-relay", parts.hostname or "127.0.0.1",
                             str(parts.port or 80)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return Server("byte relay (floor)", f"http://127.0.0.1:{port}", cloud.token, proc)


class Cloud:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-cloud"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.api_url: str = info["api_url"]
        self.token: str = info["token"]

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.ask("quit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------- the proxies


def peer_python() -> Path | None:
    """The older package's venv python, created on first use; None when it cannot be installed."""
    python = PEER_VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import servers.proxy"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"setting up {PEER_VENV} with {PEER_REQUIREMENT} ...", file=sys.stderr)
    try:
        if not python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        PEER_REQUIREMENT], check=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"cannot install {PEER_REQUIREMENT}: {exc}", file=sys.stderr)
        return None
    return python


#: Runs the older proxy as its own main() would, but on 127.0.0.1 and with its client class
#: pointed at the fake cloud (the only change), its limiter on or off.
_PEER_RUNNER = textwrap.dedent("""
    import sys
    import servers.proxy as proxy
    from bambulab import BambuClient
    upstream, tokens, port, limiter = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on"
    BambuClient.BASE_URL = upstream
    proxy.PROXY_MODE = "strict"
    proxy.TOKEN_FILE = tokens
    proxy.init_token_manager()
    proxy.limiter.enabled = limiter
    proxy.app.run(host="127.0.0.1", port=port, debug=False, threaded=True)
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Server:
    name: str
    url: str
    auth: str
    proc: subprocess.Popen[Any] | None = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_ours(cloud: Cloud, tmp: Path, *, cached: bool) -> Server:
    sys.path.insert(0, str(ROOT / "src"))
    from bambulab.cloud.tokens import TokenManager

    tokens = TokenManager(tmp / f"ours-{cached}.json")
    custom = tokens.add(cloud.token, name="bench", scope="strict")
    args = [sys.executable, "-m", "bambulab", "proxy", "strict", "--port", "0", "--upstream", cloud.api_url,
            "--tokens", str(tokens.path)]
    if not cached:
        args += ["--no-cache", "--no-rate-limit"]  # every request goes upstream: the budget would refuse them
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "BAMBU_CONFIG": str(tmp / "config.toml")}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if " on " not in line:
        proc.kill()
        raise RuntimeError(f"our proxy did not start: {line}")
    url = line.split(" on ", 1)[1].split(" ", 1)[0]
    return Server(f"ours ({'cached' if cached else 'uncached'})", url, custom, proc)


def start_theirs(cloud: Cloud, tmp: Path, python: Path, *, limiter: bool) -> Server:
    custom = "bench-custom-token-for-the-older-proxy"
    path = tmp / f"theirs-{limiter}.json"
    path.write_text(json.dumps({custom: cloud.token}))
    port = _free_port()
    proc = subprocess.Popen([str(python), "-c", _PEER_RUNNER, cloud.api_url, str(path), str(port),
                             "on" if limiter else "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tmp)
    _wait_port(port, proc)
    return Server(f"theirs (limiter {'on' if limiter else 'off'})", f"http://127.0.0.1:{port}", custom, proc)


# ---------------------------------------------------------------------- the load


@dataclass
class Result:
    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)  # ms, every answer
    ok: int = 0
    other: int = 0
    errors: int = 0
    upstream_calls: int = 0
    server_cpu: float = 0.0  # CPU seconds the server process (and, for direct, the cloud) spent
    cloud_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))]


async def _client(url: str, auth: str, until: float, measure_from: float, result: Result,
                  interval: float = 0.0, offset: float = 0.0) -> None:
    """One keep-alive client; with ``interval``, one request every that many seconds (paced, not saturating),
    the first ``offset`` seconds in (the clients spread over the interval)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {BIND} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {auth}\r\n"
               "Accept: */*\r\n\r\n").encode()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    slot = time.monotonic() + offset - interval
    while time.monotonic() < until:
        if interval:
            slot += interval
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            started = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            close = b"connection: close" in lower or head.startswith(b"HTTP/1.0")
            length = None
            for line in lower.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length is not None:
                await reader.readexactly(length)
            else:
                await reader.read()
                close = True
            done = time.monotonic()
            if started >= measure_from:
                result.latencies.append((done - started) * 1000)
                if status == 200:
                    result.ok += 1
                else:
                    result.other += 1
            if close:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def run_load(server: Server, cloud: Cloud, *, clients: int, seconds: float, warmup: float,
             rate: float = 0.0) -> Result:
    """``rate`` > 0: the clients together send that many requests per second (else as fast as answered)."""
    result = Result(server.name, seconds)
    cpu: dict[str, float] = {}

    async def main() -> None:
        start = time.monotonic()
        measure_from = start + warmup
        until = measure_from + seconds
        interval = clients / rate if rate > 0 else 0.0
        tasks = [asyncio.create_task(_client(server.url, server.auth, until, measure_from, result, interval,
                                             interval * i / clients)) for i in range(clients)]
        await asyncio.sleep(warmup)
        cloud.ask("clear")
        cpu["cloud"] = proc_cpu_seconds(cloud.proc.pid)
        cpu["server"] = proc_cpu_seconds(server.proc.pid) if server.proc else 0.0
        await asyncio.gather(*tasks)
        result.cloud_cpu = proc_cpu_seconds(cloud.proc.pid) - cpu["cloud"]
        result.server_cpu = (proc_cpu_seconds(server.proc.pid) - cpu["server"]) if server.proc else 0.0
        result.upstream_calls = int(cloud.ask("count"))

    asyncio.run(main())
    return result


# ---------------------------------------------------------------------- report


def report(results: list[Result], sequential: dict[str, float], clients: int,
           paced: dict[str, float] | None = None, rate: float = 0.0) -> dict[str, Any]:
    by = {r.name: r for r in results}
    theirs = by.get("theirs (limiter off)")
    direct = by["direct"]
    rows = []
    for r in results:
        rows.append({
            "name": r.name, "rps": round(r.rps, 1), "ok_rps": round(r.ok_rps, 1),
            "p50_ms": round(r.pct(0.5), 2), "p99_ms": round(r.pct(0.99), 2), "upstream_calls": r.upstream_calls,
            "refused_pct": round(100 * r.other / max(1, r.ok + r.other), 1), "errors": r.errors,
            "proxy_cpu_ms_per_req": round(1000 * r.server_cpu / max(1, r.ok + r.other), 3),
            "cloud_cpu_ms_per_req": round(1000 * r.cloud_cpu / max(1, r.ok + r.other), 3),
            "x_theirs": round(r.ok_rps / theirs.ok_rps, 1) if theirs and theirs.ok_rps else None,
            "pct_direct": round(100 * r.ok_rps / direct.ok_rps, 1) if direct.ok_rps else None,
        })
    cached, uncached = by.get("ours (cached)"), by.get("ours (uncached)")
    goals: dict[str, Any] = {}
    if cached and theirs and theirs.ok_rps:
        goals["cached_vs_theirs_x"] = round(cached.ok_rps / theirs.ok_rps, 1)
    if cached:
        goals["cached_pct_of_direct"] = round(100 * cached.ok_rps / direct.ok_rps, 1)
    if uncached:
        goals["uncached_added_p50_ms_under_load"] = round(uncached.pct(0.5) - direct.pct(0.5), 2)
    relay = by.get("byte relay (floor)")
    if relay:  # what any proxy process adds here before it does any HTTP
        goals["relay_added_p50_ms_under_load"] = round(relay.pct(0.5) - direct.pct(0.5), 2)
    if "ours (uncached)" in sequential:
        goals["uncached_added_p50_ms_one_client"] = round(sequential["ours (uncached)"] - sequential["direct"], 3)
    if paced and "ours (uncached)" in paced:
        goals["uncached_added_p50_ms_paced"] = round(paced["ours (uncached)"] - paced["direct"], 3)
    try:  # uvicorn's parser (both the proxy and the fake cloud run on uvicorn): it moves every figure
        import httptools  # noqa: F401

        parser = "httptools"
    except ImportError:
        parser = "h11"
    return {"clients": clients, "rows": rows, "sequential_p50_ms": sequential, "goals": goals, "http_parser": parser,
            "paced_rate": rate, "paced_p50_ms": paced or {},
            "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}


def print_table(data: dict[str, Any]) -> None:
    print(f"{data['clients']} concurrent clients, GET {BIND}; {data['cpus']} CPUs, "
          f"load average {data['load_average']:.1f} at the end (shared machine); uvicorn with {data['http_parser']}")
    print(f"{'':22} {'req/s':>8} {'200/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'upstream':>9} {'refused':>8} "
          f"{'x theirs':>9} {'% direct':>9} {'proxy CPU':>10} {'cloud CPU':>10}")
    for row in data["rows"]:
        print(f"{row['name']:22} {row['rps']:8.0f} {row['ok_rps']:8.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['upstream_calls']:9d} {row['refused_pct']:7.1f}% {row['x_theirs'] or 0:9.1f} "
              f"{row['pct_direct'] or 0:8.1f}% {row['proxy_cpu_ms_per_req']:7.3f} ms "
              f"{row['cloud_cpu_ms_per_req']:7.3f} ms")
    print("one client, sequential, p50 ms:", json.dumps(data["sequential_p50_ms"]))
    if data["paced_p50_ms"]:
        print(f"{data['clients']} clients paced to {data['paced_rate']:.0f} req/s in all, p50 ms:",
              json.dumps(data["paced_p50_ms"]))
    goals = data["goals"]
    if "uncached_added_p50_ms_under_load" in goals:
        rows = {row["name"]: row for row in data["rows"]}
        print(f"added p50, ours (uncached) minus direct (goal <= 1 ms): "
              f"{goals['uncached_added_p50_ms_under_load']:.2f} ms at {data['clients']} clients, "
              f"{goals.get('uncached_added_p50_ms_one_client', float('nan')):.3f} ms with one client, "
              f"{goals.get('uncached_added_p50_ms_paced', float('nan')):.3f} ms at {data['paced_rate']:.0f} req/s; "
              f"the proxy spends {rows['ours (uncached)']['proxy_cpu_ms_per_req']:.3f} ms of CPU per request")
    if "relay_added_p50_ms_under_load" in goals:
        print(f"the byte relay (no HTTP at all) adds {goals['relay_added_p50_ms_under_load']:.2f} ms at "
              f"{data['clients']} clients for "
              f"{ {row['name']: row for row in data['rows']}['byte relay (floor)']['proxy_cpu_ms_per_req']:.3f} ms "
              "of CPU per request")
    print("goals:", json.dumps(goals))


def sequential_p50(server: Server, cloud: Cloud, seconds: float) -> float:
    result = run_load(server, cloud, clients=1, seconds=seconds, warmup=0.3)
    return round(result.pct(0.5), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=6.0, help="Measured seconds per configuration.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds the seconds are split into.")
    parser.add_argument("--warmup", type=float, default=0.5, help="Seconds of load before each measurement.")
    parser.add_argument("--skip-theirs", action="store_true", help="Do not install or run the older proxy.")
    parser.add_argument("--paced-rate", type=float, default=500.0,
                        help="Requests/s the clients send in all in the paced pass (0: no paced pass).")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument("--serve-cloud", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-relay", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cloud:
        serve_cloud()
        return
    if args.serve_relay:
        serve_relay(args.serve_relay[0], int(args.serve_relay[1]))
        return
    python = None if args.skip_theirs else peer_python()
    cloud = Cloud()
    results: list[Result] = []
    sequential: dict[str, float] = {}
    paced: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bambu-bench-proxy-") as folder:
        tmp = Path(folder)
        servers: list[Server] = [Server("direct", cloud.api_url, cloud.token)]
        try:
            servers.append(start_relay(cloud))
            servers.append(start_ours(cloud, tmp, cached=True))
            servers.append(start_ours(cloud, tmp, cached=False))
            if python is not None:
                servers.append(start_theirs(cloud, tmp, python, limiter=False))
                servers.append(start_theirs(cloud, tmp, python, limiter=True))
            # Interleaved rounds: the machine's other load changes by the second, and each
            # configuration should meet the same mix of it.
            merged = {server.name: Result(server.name, 0.0) for server in servers}
            for round_no in range(args.rounds):
                for server in servers:
                    part = run_load(server, cloud, clients=args.clients, seconds=args.seconds / args.rounds,
                                    warmup=args.warmup)
                    total = merged[server.name]
                    total.seconds += part.seconds
                    total.latencies += part.latencies
                    total.ok += part.ok
                    total.other += part.other
                    total.errors += part.errors
                    total.server_cpu += part.server_cpu
                    total.cloud_cpu += part.cloud_cpu
                    total.upstream_calls += (part.ok + part.other) if server.name == "direct" else part.upstream_calls
                    print(f"  round {round_no + 1} {server.name}: {part.ok_rps:.0f} ok/s", file=sys.stderr)
            results = list(merged.values())
            for server in servers:
                if server.name in ("direct", "byte relay (floor)", "ours (uncached)", "theirs (limiter off)"):
                    sequential[server.name] = sequential_p50(server, cloud, min(2.0, args.seconds))
            for server in servers:
                if args.paced_rate > 0 and server.name in ("direct", "byte relay (floor)", "ours (uncached)"):
                    part = run_load(server, cloud, clients=args.clients, seconds=min(3.0, args.seconds),
                                    warmup=0.5, rate=args.paced_rate)
                    paced[server.name] = round(part.pct(0.5), 3)
        finally:
            for server in servers:
                server.close()
            cloud.close()
    data = report(results, sequential, args.clients, paced, args.paced_rate)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_table(data)


if __name__ == "__main__":
    main()
