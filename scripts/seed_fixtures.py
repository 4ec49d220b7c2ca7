#!/usr/bin/env python3
"""Re-seed tests/fixtures/ from the virtual printer (maintainers only; tests never run this).

1. ``simulator``: one fixture per model, made exactly as a user makes one from hardware: start
   ``bambu sim`` (every model, a demo print on each), then run ``bambu dump`` against each printer.
2. ``hand-made``: printers set up like the situations public captures show (old get_version
   style without ``product_name``, a P1P without AMS, an X1 Carbon with three AMS units, an H2D
   printing on its right nozzle while the left one is cold, an A1 with an HMS error), recorded
   with the same code as ``bambu dump``; every value is the simulator's own.

    PYTHONPATH=src python3 scripts/seed_fixtures.py [--out tests/fixtures]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "bambulab"]
SEED = 2026


def seed_from_cli(out: Path) -> None:
    from bambulab.protocol.models import MODELS

    with tempfile.TemporaryDirectory(prefix="bambu-seed-") as tmp:
        ca = Path(tmp) / "ca.pem"
        env = {**os.environ, "BAMBU_CONFIG": str(Path(tmp) / "config.toml"), "PYTHONUNBUFFERED": "1"}
        sim = subprocess.Popen(  # noqa: S603 - our own CLI
            [*CLI, "sim", "-n", str(len(MODELS)), "--models", ",".join(m.name for m in MODELS), "--json",
             "--seed", str(SEED), "--demo-all", "--time-scale", "20", "--write-ca", str(ca), "--duration", "300",
             "--quirk", "push_interval=0.5"],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        try:
            assert sim.stdout is not None
            printers = [json.loads(sim.stdout.readline()) for _ in MODELS]
            time.sleep(8)  # the demo prints get past preparation
            for p in printers:
                done = subprocess.run(  # noqa: S603 - our own CLI
                    [*CLI, "dump", "--host", p["host"], "--serial", p["serial"], "--port", str(p["mqtt_port"]),
                     "--ca-file", str(ca), "--access-code-stdin", "-o", str(out), "--source", "simulator",
                     "--note", f"bambu sim --seed {SEED} --demo-all", "--force", "--json"],
                    input=p["access_code"] + "\n", capture_output=True, text=True, env=env, timeout=60, check=False,
                )
                print(p["model"], done.stdout.strip() or done.stderr.strip())
        finally:
            sim.terminate()
            sim.wait(15)


async def seed_hand_made(out: Path) -> None:
    from bambulab.cli.dump import build_fixture, fixture_name, record
    from bambulab.protocol.models import AmsKind
    from bambulab.sim import Simulator
    from bambulab.sim.demo import demo_project

    async with Simulator(time_scale=20, seed=SEED + 1) as sim:
        p1p = await sim.add_printer(model="P1P", firmware="01.06.01.00", name="Garage P1P")
        x1c = await sim.add_printer(model="X1C", firmware="01.08.02.00", name="Studio X1C")
        h2d = await sim.add_printer(model="H2D", firmware="01.02.00.00", name="Lab H2D")
        a1 = await sim.add_printer(model="A1", firmware="01.04.00.00", name="Desk A1")
        # Three AMS units on the X1 Carbon, the third an AMS 2 Pro.
        base = x1c.dynamic.ams[0]
        for unit_id, kind in ((1, AmsKind.AMS), (2, AmsKind.AMS_2_PRO)):
            unit = copy.deepcopy(base)
            unit.unit_id, unit.kind, unit.sn = unit_id, kind, f"{unit_id:02d}{base.sn[2:]}"
            x1c.dynamic.ams.append(unit)
        for printer in (p1p, x1c, h2d):
            printer.put_file("demo.gcode.3mf", demo_project())
            await printer.start_print("demo.gcode.3mf")
        await a1.inject_hms(0x07008000, 0x00020001)
        await asyncio.sleep(8)
        # The H2D prints on the right nozzle (extruder 0); the left one is cold.
        h2d.dynamic.active_extruder = 0
        h2d.dynamic.nozzles[0].temp, h2d.dynamic.nozzles[0].target = 264.0, 265.0
        h2d.dynamic.nozzles[1].temp, h2d.dynamic.nozzles[1].target = 40.0, 0.0
        notes = {
            p1p.serial: "P1P without AMS, external PETG spool, old get_version style (project_name), printing",
            x1c.serial: "X1 Carbon with two AMS and an AMS 2 Pro, printing",
            h2d.serial: "H2D printing on extruder 0 (265 C) while extruder 1 is cold",
            a1.serial: "A1 with AMS lite, old get_version style, an HMS error raised",
        }
        for printer in (p1p, x1c, h2d, a1):
            raw: dict[str, Any] = await record(
                printer.host, printer.serial, printer.access_code, port=printer.mqtt.port,
                ca_file=str(_ca_file(sim)), deltas=3, seconds=15,
            )
            doc = build_fixture(raw, serial=printer.serial, access_code=printer.access_code, host=printer.host,
                                source="hand-made", note=notes[printer.serial])
            target = out / fixture_name(doc["model"], doc["firmware"])
            target.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(printer.model.name, target)


_CA: dict[int, Path] = {}


def _ca_file(sim: Any) -> Path:
    if id(sim) not in _CA:
        folder = Path(tempfile.mkdtemp(prefix="bambu-seed-ca-"))
        _CA[id(sim)] = sim.write_ca(folder / "ca.pem")
    return _CA[id(sim)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--only", choices=["simulator", "hand-made"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "simulator"):
        seed_from_cli(args.out)
    if args.only in (None, "hand-made"):
        asyncio.run(seed_hand_made(args.out))
        for path in _CA.values():
            path.unlink(missing_ok=True)
            path.parent.rmdir()


if __name__ == "__main__":
    main()
