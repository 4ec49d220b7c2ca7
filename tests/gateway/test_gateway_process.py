"""`bambu gateway` as a real process: --demo starts fast, SIGTERM ends it within 5 s, SIGHUP reloads."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bambulab.sim import Simulator

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}
    env.pop("BAMBU_DEBUG", None)
    return env


async def _start(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bambulab", "gateway", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert line.startswith("bambu gateway: http://127.0.0.1:"), line
    return proc, line.split()[2]


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def _until(client: httpx2.AsyncClient, path: str, predicate: Any, limit: float = 20.0) -> Any:
    async with asyncio.timeout(limit):
        while True:
            body = (await client.get(path)).json()
            if predicate(body):
                return body
            await asyncio.sleep(0.1)


async def test_demo_starts_fast_and_sigterm_stops_it_within_5_s() -> None:
    started = time.monotonic()
    proc, url = await _start(["--demo", "--port", "0", "--demo-printers", "5"], _env())
    try:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            body = await _until(client, "/api/v1/printers",
                                lambda b: len(b["printers"]) == 5 and all(p["online"] for p in b["printers"]))
            startup = time.monotonic() - started
            assert startup < 15, f"the demo took {startup:.1f} s to serve five online printers"
            assert len({p["model"] for p in body["printers"]}) == 5
            async with client.stream("GET", "/api/v1/events") as stream:
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(6):
                    async for _ in lines:  # the event stream ends: the gateway closed it
                        pass
            async with asyncio.timeout(6):
                rc = await proc.wait()
            took = time.monotonic() - t0
        assert rc == 0 and took < 5.0, (rc, took)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert "Traceback" not in err, err
    finally:
        await _stop(proc)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(time_scale=10.0, seed=8) as simulator:
        yield simulator


def _printer_toml(serial: str, port: int, env_name: str) -> str:
    return (f'[[printers]]\nserial = "{serial}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'access_code_env = "{env_name}"\nca_file = "CA"\n')


async def test_sighup_reloads_only_what_changed(sim: Simulator, tmp_path: Path) -> None:
    a, b, c = [await sim.add_printer(model=m) for m in ("P1S", "X1C", "A1")]
    ca = sim.write_ca(tmp_path / "ca.pem")
    env = _env(CODE_A=a.access_code, CODE_B=b.access_code, CODE_C=c.access_code)
    config = tmp_path / "farm.toml"

    def write(*printers: tuple[Any, str]) -> None:
        text = "[gateway]\nport = 0\n" + "".join(_printer_toml(vp.serial, vp.mqtt.port, name) for vp, name in printers)
        config.write_text(text.replace('"CA"', f'"{ca}"'))

    write((a, "CODE_A"), (b, "CODE_B"))
    proc, url = await _start(["--config", str(config)], env)
    try:
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            await _until(client, "/api/v1/printers",
                         lambda body: sorted(p["serial"] for p in body["printers"] if p["online"])
                         == sorted([a.serial, b.serial]))
            before = (await client.get(f"/api/v1/printers/{b.serial}")).json()
            write((b, "CODE_B"), (c, "CODE_C"))
            proc.send_signal(signal.SIGHUP)
            await _until(client, "/api/v1/printers",
                         lambda body: sorted(p["serial"] for p in body["printers"] if p["online"])
                         == sorted([b.serial, c.serial]))
            after = (await client.get(f"/api/v1/printers/{b.serial}")).json()
            assert after["reconnects"] == 0 and after["messages"] >= before["messages"]  # B was not touched
            config.write_text("[[printers]]\nbroken")
            proc.send_signal(signal.SIGHUP)  # a bad file is refused; the gateway keeps running as it was
            await asyncio.sleep(0.5)
            body = (await client.get("/api/v1/printers")).json()
            assert sorted(p["serial"] for p in body["printers"]) == sorted([b.serial, c.serial])
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(6):
            assert await proc.wait() == 0
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert "not applied" in err
        for code in (a.access_code, b.access_code, c.access_code):
            assert code not in err
    finally:
        await _stop(proc)
