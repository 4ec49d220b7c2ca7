"""FTPS upload throughput to a virtual printer: raw ftplib vs PrinterFiles vs bambulabs-api 2.6.6.

    python3 bench/ftps_throughput.py [--mib 64] [--small-kib 64 --small-count 100] [--rounds 3]
                                     [--tls12] [--no-third-party]

A virtual P1S runs in its own process (``--serve`` mode of this script), so its FTPS server
(pyftpdlib on the simulator's hub thread) does not share a GIL with the clients. On 127.0.0.1,
one after the other, each round:

(a) raw      - stdlib ``ftplib.FTP_TLS`` made implicit (TLS before the 220) with TLS session
               reuse on the data connection, written here: ``storbinary`` with 256 KiB blocks
               (the baseline the ratios use), with ftplib's default 8 KiB blocks, and with
               TCP_NODELAY on the data socket (``storbinary`` ends with ``unwrap()``, whose tiny
               close_notify Nagle's algorithm holds for a delayed ACK: ~40 ms per file);
(b) ours     - ``bambulab.files.PrinterFiles.upload`` (one connection for the whole case; with
               the default ``verify=True`` it also asks ``SIZE`` after each upload, and without);
(c) bambulabs-api 2.6.6 - ``PrinterFTPClient.upload_file`` in a subprocess with its own venv
               (``bench/.venvs/bambulabs-api``, created and filled with pip on first use). Its API
               connects and logs in for every upload; that is part of what it costs.

Two cases: one large file (``--mib``) and many small ones (``--small-count`` x ``--small-kib``).
Each figure is the median over ``--rounds`` rounds (in a shuffled order each round; the
min-max column shows the spread); MB/s is 10^6 bytes per second of upload
(payload bytes over wall time, connection set-up excluded for (a) and (b), included for (c)).
Every upload is checked on the server afterwards (not timed). The access code goes to the
children over pipes, never in process arguments. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import functools
import io
import json
import os
import random
import select
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import proc_cpu_seconds
from _peers import third_party_python

BENCH_DIR = Path(__file__).resolve().parent
MARKER = "BENCH-RESULT "
BIG_BLOCK = 256 * 1024


sim_cpu = proc_cpu_seconds  # the simulator process's CPU seconds, to see who is the bottleneck


@dataclass
class Case:
    name: str
    sizes: list[int]

    @property
    def total(self) -> int:
        return sum(self.sizes)


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    note: str = ""

    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


# ----------------------------------------------------------------------- the simulator process


async def serve() -> None:
    import logging

    from bambulab.sim import Simulator

    logging.getLogger("bambulab.sim").setLevel(logging.ERROR)  # the 426 warnings would flood the table

    async with Simulator() as sim:
        printer = await sim.add_printer(model="P1S")
        assert printer.ftps is not None
        info = {
            "host": printer.host,
            "port": printer.ftps.port,
            "access_code": printer.access_code,
            "storage": str(printer.storage),
            "ca_pem": sim.ca.ca_pem.decode(),
        }
        print(json.dumps(info), flush=True)
        # Until the parent closes our stdin (or 15 minutes, whatever comes first).
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), timeout=900)


def start_simulator() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = dict(os.environ)
    src = str(BENCH_DIR.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise SystemExit("the simulator process did not start")
    return proc, json.loads(line)


def stop_simulator(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def stored_size(info: dict[str, Any], name: str) -> int:
    path = Path(info["storage"]) / name.lstrip("/")
    return path.stat().st_size if path.exists() else -1


def check_stored(info: dict[str, Any], name: str, size: int) -> None:
    got = stored_size(info, name)
    if got != size:
        raise SystemExit(f"{name}: the printer has {got} bytes, {size} were uploaded")


# ----------------------------------------------------------------------- (a) raw stdlib ftplib


class RawImplicitFTPS(ftplib.FTP_TLS):
    """The minimal stdlib recipe: TLS before the greeting, data connections resume the session."""

    def connect_implicit(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        raw = socket.create_connection((host, port), timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()

    nodelay = False

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - inside TLS, next line
        assert isinstance(self.sock, ssl.SSLSocket)
        if self.nodelay:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


class RawNoDelay(RawImplicitFTPS):
    """The same with TCP_NODELAY on data connections: storbinary's final ``unwrap()`` sends a tiny
    close_notify that Nagle's algorithm otherwise holds back for a delayed ACK (~40 ms a file)."""

    nodelay = True


def run_raw(
    info: dict[str, Any], ctx: ssl.SSLContext, payloads: list[bytes], blocksize: int, nodelay: bool = False
) -> float:
    ftp = (RawNoDelay if nodelay else RawImplicitFTPS)(context=ctx, timeout=30)
    ftp.connect_implicit(info["host"], info["port"], 30)
    try:
        ftp.login("bblp", info["access_code"])
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        started = time.perf_counter()
        for i, data in enumerate(payloads):
            ftp.storbinary(f"STOR /cache/raw{i}.bin", io.BytesIO(data), blocksize=blocksize)
        elapsed = time.perf_counter() - started
    finally:
        ftp.close()
    for i, data in enumerate(payloads):
        check_stored(info, f"/cache/raw{i}.bin", len(data))
    return elapsed


# ----------------------------------------------------------------------- (b) ours


async def run_ours_async(info: dict[str, Any], ctx: ssl.SSLContext, payloads: list[bytes], verify: bool) -> float:
    from bambulab.files import PrinterFiles

    async with PrinterFiles.connect(info["host"], info["access_code"], ssl_context=ctx, port=info["port"],
                                    timeout=30) as files:
        started = time.perf_counter()
        for i, data in enumerate(payloads):
            await files.upload(data, f"/cache/ours{i}.bin", verify=verify)
        return time.perf_counter() - started


def run_ours(info: dict[str, Any], ctx: ssl.SSLContext, payloads: list[bytes], verify: bool) -> float:
    elapsed = asyncio.run(run_ours_async(info, ctx, payloads, verify))
    for i, data in enumerate(payloads):
        check_stored(info, f"/cache/ours{i}.bin", len(data))
    return elapsed


# ----------------------------------------------------------------------- (c) bambulabs-api 2.6.6


THIRD_PARTY_SCRIPT = r"""
import io, json, logging, os, sys, time

from bambulabs_api.ftp_client import PrinterFTPClient

logging.disable(logging.CRITICAL)
config = json.loads(sys.stdin.readline())
client = PrinterFTPClient(config["host"], config["access_code"], port=config["port"])
results, failed = [], []
for round_sizes in config["rounds"]:
    payloads = [os.urandom(n) for n in round_sizes]
    bad = 0
    started = time.perf_counter()
    for i, data in enumerate(payloads):
        # upload_file logs and swallows errors (returns None), e.g. a 426 after the upload
        reply = client.upload_file(io.BytesIO(data), f"/cache/bla{i}.bin")
        if not (isinstance(reply, str) and reply.startswith("226")):
            bad += 1
    results.append(time.perf_counter() - started)
    failed.append(bad)
    print("ROUND-DONE", flush=True)
    sys.stdin.readline()  # the parent checks the files, then lets the next round go
print("BENCH-RESULT " + json.dumps({"seconds": results, "failed": failed}), flush=True)
"""


def run_third_party(info: dict[str, Any], case: Case, rounds: int, sim_pid: int, result: Result) -> None:
    python = third_party_python("bambulabs_api.ftp_client")
    if python is None:
        result.note = "skipped: could not install it"
        return
    config = {"host": info["host"], "port": info["port"], "access_code": info["access_code"],
              "rounds": [case.sizes] * rounds}
    proc = subprocess.Popen([str(python), "-c", THIRD_PARTY_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    short = 0
    try:
        proc.stdin.write(json.dumps(config) + "\n")
        proc.stdin.flush()
        for _ in range(rounds):
            cpu0 = sim_cpu(sim_pid)
            ready, _, _ = select.select([proc.stdout], [], [], 600)
            line = proc.stdout.readline() if ready else ""
            if not line.startswith("ROUND-DONE"):
                result.note = f"failed: {line.strip() or 'no answer'}"
                return
            result.server_cpu.append(sim_cpu(sim_pid) - cpu0)
            short += sum(stored_size(info, f"/cache/bla{i}.bin") != size for i, size in enumerate(case.sizes))
            proc.stdin.write("\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    lines = [x for x in out.splitlines() if x.startswith(MARKER)]
    if not lines:
        result.note = f"failed: {err.strip()[-200:]}"
        return
    data = json.loads(lines[-1][len(MARKER):])
    if "error" in data:
        result.note = data["error"]
        return
    result.seconds = list(data["seconds"])
    failed, uploads = sum(data["failed"]), rounds * len(case.sizes)
    if failed:
        result.note = f"{failed} of {uploads} uploads not answered 226 (426 after the STOR)"
    if short:
        result.note += f"; {short} of {uploads} files incomplete on the printer"
    elif failed:
        result.note += ", though every file arrived whole"


# ----------------------------------------------------------------------------------------- main


def measure(result: Result, sim_pid: int, run: Callable[[], float]) -> None:
    cpu0 = sim_cpu(sim_pid)
    result.seconds.append(run())
    result.server_cpu.append(sim_cpu(sim_pid) - cpu0)


def run_case(info: dict[str, Any], ctx: ssl.SSLContext, case: Case, args: argparse.Namespace,
             sim_pid: int) -> list[Result]:
    raw8 = Result("raw ftplib, 8 KiB blocks (its default)")
    raw = Result(f"raw ftplib, {BIG_BLOCK // 1024} KiB blocks  [baseline]")
    raw_nd = Result(f"raw ftplib, {BIG_BLOCK // 1024} KiB blocks + TCP_NODELAY")
    ours = Result("ours: PrinterFiles.upload (verify=True)")
    ours_nv = Result("ours: PrinterFiles.upload (verify=False)")
    order = random.Random(len(case.sizes))  # a different but reproducible order in each round
    for _ in range(args.rounds):
        payloads = [os.urandom(n) for n in case.sizes]
        runs = [
            (raw8, functools.partial(run_raw, info, ctx, payloads, 8192)),
            (raw, functools.partial(run_raw, info, ctx, payloads, BIG_BLOCK)),
            (raw_nd, functools.partial(run_raw, info, ctx, payloads, BIG_BLOCK, True)),
            (ours, functools.partial(run_ours, info, ctx, payloads, True)),
            (ours_nv, functools.partial(run_ours, info, ctx, payloads, False)),
        ]
        order.shuffle(runs)
        for result, run in runs:
            measure(result, sim_pid, run)
    results = [raw, raw8, raw_nd, ours, ours_nv]
    if not args.no_third_party:
        third = Result("bambulabs-api 2.6.6 upload_file")
        run_third_party(info, case, args.rounds, sim_pid, third)
        results.append(third)
    return results


def print_table(case: Case, results: list[Result]) -> None:
    baseline = results[0].median()
    count = len(case.sizes)
    each = case.sizes[0]
    label = f"{count} x {each / 1024:g} KiB" if count > 1 else f"1 x {each / (1 << 20):g} MiB"
    print(f"\n{case.name}: {label} ({case.total / 1e6:.1f} MB per round), median of {len(results[0].seconds)} rounds")
    print(f"{'client':44} {'MB/s':>8} {'(min-max)':>13} {'files/s':>8} {'vs raw':>7} {'server CPU':>11}  note")
    for r in results:
        if not r.seconds:
            print(f"{r.name:44} {'-':>8} {'':>13} {'-':>8} {'-':>7} {'-':>11}  {r.note}")
            continue
        seconds = r.median()
        spread = f"{case.total / max(r.seconds) / 1e6:.0f}-{case.total / min(r.seconds) / 1e6:.0f}"
        server = statistics.median(r.server_cpu) / seconds if r.server_cpu else float("nan")
        print(f"{r.name:44} {case.total / seconds / 1e6:8.1f} {spread:>13} {count / seconds:8.1f} "
              f"{baseline / seconds:7.2f} {server:10.0%}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="size of the large file (MiB)")
    parser.add_argument("--small-kib", type=int, default=64, help="size of each small file (KiB)")
    parser.add_argument("--small-count", type=int, default=100, help="number of small files")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tls12", action="store_true", help="cap TLS at 1.2 for (a) and (b)")
    parser.add_argument("--no-third-party", action="store_true", help="skip bambulabs-api")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    if args.rounds < 1 or args.mib < 1 or args.small_kib < 1 or args.small_count < 1:
        parser.error("sizes, counts and rounds must be positive")
    if not args.no_third_party:
        third_party_python("bambulabs_api.ftp_client")  # set the venv up before anything is timed
    proc, info = start_simulator()
    try:
        ctx = ssl.create_default_context(cadata=info["ca_pem"])
        ctx.check_hostname = False  # the certificate names the serial
        if args.tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        cases = [
            Case("large file", [args.mib << 20]),
            Case("small files", [args.small_kib << 10] * args.small_count),
        ]
        print(f"virtual P1S FTPS in its own process, loopback, TLS {'1.2' if args.tls12 else '1.3'} for (a) and (b); "
              f"the server CPU column is the simulator process's share of one core")
        for case in cases:
            print_table(case, run_case(info, ctx, case, args, proc.pid))
    finally:
        stop_simulator(proc)


if __name__ == "__main__":
    main()
