"""The farm dashboard under load, in a real headless Chromium, and the camera hub's fan-out cost.

    python3 bench/dashboard_load.py [--printers 200] [--rate 1000] [--seconds 60]
                                    [--viewers 20] [--camera-seconds 15] [--skip-camera] [--json]
    python3 bench/dashboard_load.py --screenshots docs/screenshots    # the README's pictures

Page load (``--printers`` cards, ``--rate`` events per second for ``--seconds``): the dashboard's
own pages and assets are served by the gateway's real dashboard routes; the event stream is a
synthetic gateway feed (the contract's SSE: one snapshot, then deltas of progress, time left,
layer and temperatures of random printers, and now and then an HMS alert), so the figures are
the browser's, not the simulator's. Reported from the page and from Chromium itself (CDP
``Performance.getMetrics``): time to first render (navigation start to the first card grid),
animation frames and dropped frames (frame gaps over 1.5 intervals, counted in missed
intervals), long tasks, deltas applied and DOM passes, JS heap and DOM node counts at the start
and the end of the run, layout and style recalculations, script and task time.

Camera fan-out (``--viewers``): one virtual P1S (``bambu sim`` in a child process) behind the
gateway's camera hub in this process; a child process opens 1, then ``--viewers`` MJPEG streams;
the CPU of this process (the hub and its HTTP server) is measured over each window, and the
difference gives the CPU per added viewer. The camera sends about one frame a second, as a P1
does.

Screenshots (``--screenshots DIR``): a real gateway over a small demo farm of virtual printers
brought into varied states (printing at several stages, paused on a filament runout with its
HMS alert, a failed print, finished, idle, one offline), then overview (light, dark, phone
width, wall mode), a printer's detail page and the camera wall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import proc_cpu_seconds, proc_rss_bytes

CHROMIUM = "/usr/bin/chromium"
_HERE = Path(__file__).resolve()
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Runs in the page before any of its scripts: frame gaps and long tasks.
_PROBE = """
(() => {
  const probe = { frames: 0, dropped: 0, worst: 0, longTasks: 0, longTaskMs: 0, start: 0, running: false };
  window.__probe = probe;
  let last = 0;
  const tick = (t) => {
    if (probe.running) {
      if (last) {
        const dt = t - last;
        probe.frames += 1;
        probe.worst = Math.max(probe.worst, dt);
        if (dt > 1.5 * (1000 / 60)) probe.dropped += Math.round(dt / (1000 / 60)) - 1;
      }
      last = t;
    } else {
      last = 0;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => {
    if (!probe.running) return;
    for (const e of list.getEntries()) { probe.longTasks += 1; probe.longTaskMs += e.duration; }
  }).observe({ type: "longtask", buffered: false });
})();
"""


# ------------------------------------------------------------------ the synthetic gateway feed

_MODELS = ("P1S", "X1 Carbon", "A1", "A1 mini", "H2D", "P1P", "X1E", "P2S")
_COLORS = ("#F2A33A", "#1E88E5", "#F5F3EE", "#1C1C1E", "#E53935", "#43A047", "#8E24AA", "#FDD835")
_MATERIALS = ("PLA", "PETG", "PLA", "ABS", "PLA-CF", "TPU", "ASA", "PLA")


def _summary(i: int, rng: random.Random) -> dict[str, Any]:
    model = _MODELS[i % len(_MODELS)]
    printing = rng.random() < 0.7
    progress = rng.randint(0, 99) if printing else 0
    remaining = rng.randint(5, 600) if printing else None
    return {
        "serial": f"01S00C{i:09d}", "name": f"{model.split()[0]}-{i + 1:03d}", "model": model, "source": "lan",
        "online": rng.random() > 0.03, "last_seen": None, "age_seconds": 0.5,
        "state": "RUNNING" if printing else rng.choice(("IDLE", "FINISH", "IDLE")),
        "stage": 0, "stage_name": "Printing" if printing else None, "progress": progress,
        "remaining_minutes": remaining, "finish_at": None, "layer": progress * 2 if printing else None,
        "total_layers": 200 if printing else None, "file": "plate_1.gcode.3mf" if printing else None, "plate": 1,
        "speed_level": 2,
        "temperatures": {"nozzle": 220.0 if printing else 26.0, "nozzle_target": 220.0 if printing else 0.0,
                         "bed": 60.0 if printing else 25.0, "bed_target": 60.0 if printing else 0.0,
                         "chamber": 32.0 if model.startswith(("X1", "H2")) else None, "chamber_target": None},
        "fans": {"part": 100, "aux": 0, "chamber": 0},
        "ams": {"units": [{"id": 0, "humidity": rng.randint(1, 5), "temperature": 25.0,
                           "trays": [{"id": t, "material": _MATERIALS[(i + t) % 8], "color": _COLORS[(i + 3 * t) % 8],
                                      "remaining": rng.randint(0, 100)} for t in range(4)]}],
                "external": None},
        "hms": [], "print_error": None, "firmware": "01.08.00.00", "camera": "jpeg",
    }


def _delta(p: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """What a real gateway sends for a printing printer: a few top-level keys changed."""
    changes: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.02:  # an HMS alert comes or goes
        p["hms"] = [] if p["hms"] else [{"code": "0700_2000_0002_0001", "severity": "common",
                                          "text": "AMS A Slot 1 filament has run out.", "url": None}]
        changes["hms"] = p["hms"]
    elif roll < 0.3 and p["state"] == "RUNNING":
        p["progress"] = (p["progress"] + 1) % 100
        p["layer"] = p["progress"] * 2
        p["remaining_minutes"] = max(0, (p["remaining_minutes"] or 100) - 1)
        changes.update(progress=p["progress"], layer=p["layer"], remaining_minutes=p["remaining_minutes"])
    else:
        t = dict(p["temperatures"])
        t["nozzle"] = round((t["nozzle_target"] or 25.0) + rng.uniform(-1.5, 1.5), 1)
        t["bed"] = round((t["bed_target"] or 25.0) + rng.uniform(-0.5, 0.5), 1)
        p["temperatures"] = t
        changes["temperatures"] = t
    return changes


class _FakeFleet:
    def __init__(self, serials: list[str]) -> None:
        self.members: dict[str, Any] = dict.fromkeys(serials)


class _FakeGateway:
    """Just what the dashboard's routes() touch."""

    def __init__(self, serials: list[str]) -> None:
        self.fleet = _FakeFleet(serials)
        self.html_index: Any = None
        self.services: list[Any] = []

    def add_service(self, service: Any) -> None:
        self.services.append(service)


def feed_app(printers: int, rate: float, seed: int = 1) -> tuple[Any, dict[str, int]]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from bambulab.servers.gateway import camera, dashboard

    rng = random.Random(seed)
    summaries = [_summary(i, rng) for i in range(printers)]
    sent = {"events": 0}
    gw = _FakeGateway([s["serial"] for s in summaries])
    routes = [*camera.routes(gw), *dashboard.routes(gw)]  # thumbnails: the "unavailable" picture

    async def index(request: Request) -> Response:
        response: Response = await gw.html_index(request)
        return response

    async def info(request: Request) -> Response:
        return JSONResponse({"version": "bench", "control_enabled": False, "printers": printers, "history": False})

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            yield f"event: snapshot\ndata: {json.dumps({'printers': summaries})}\n\n".encode()
            seq = 0
            loop = asyncio.get_running_loop()
            due = loop.time()
            carry = 0.0
            while True:
                due += 0.01
                await asyncio.sleep(max(0.0, due - loop.time()))
                carry += rate * 0.01
                burst, carry = int(carry), carry - int(carry)
                chunks = []
                for _ in range(burst):
                    p = rng.choice(summaries)
                    seq += 1
                    body = json.dumps({"serial": p["serial"], "changes": _delta(p, rng), "revision": seq})
                    chunks.append(f"id: {seq}\nevent: delta\ndata: {body}\n\n")
                sent["events"] += burst
                if chunks:
                    yield "".join(chunks).encode()

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    pages = [Route("/", index), Route("/api/v1/gateway", info), Route("/api/v1/events", events)]
    app = Starlette(routes=[*pages, *routes])
    return app, sent


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


async def launch(pw: Any, profile: str) -> Any:
    return await pw.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=ARGS, headless=True, viewport={"width": 1920, "height": 1080},
    )


def _metrics(raw: dict[str, Any]) -> dict[str, float]:
    return {m["name"]: m["value"] for m in raw["metrics"]}


async def bench_page(printers: int, rate: float, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    app, sent = feed_app(printers, rate)
    async with serve(app) as url, async_playwright() as pw:
        with tempfile.TemporaryDirectory(prefix="bambu-bench-chromium-") as profile:
            context = await launch(pw, profile)
            try:
                page = await context.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
                await page.add_init_script(_PROBE)
                cdp = await context.new_cdp_session(page)
                await cdp.send("Performance.enable")
                await page.goto(url + "/")
                await page.wait_for_function(f"() => document.querySelectorAll('article.card').length === {printers}",
                                             timeout=60_000)
                first_render = await page.evaluate(
                    "() => performance.getEntriesByName('bambu:first-render')[0]?.startTime ?? null")
                await page.wait_for_timeout(1000)
                start = _metrics(await cdp.send("Performance.getMetrics"))
                await page.evaluate("""() => { const p = window.__probe; Object.assign(p, {frames: 0, dropped: 0,
                    worst: 0, longTasks: 0, longTaskMs: 0, running: true});
                    window.__d0 = window.bambuDashboard.store.deltas;
                    window.__f0 = window.bambuDashboard.store.flushes; }""")
                sent0 = sent["events"]
                began = time.monotonic()
                samples = []
                while (elapsed := time.monotonic() - began) < seconds:
                    await asyncio.sleep(min(10.0, seconds - elapsed))
                    m = _metrics(await cdp.send("Performance.getMetrics"))
                    samples.append({"t": round(time.monotonic() - began, 1),
                                    "js_heap_mib": round(m["JSHeapUsedSize"] / 2**20, 2), "nodes": int(m["Nodes"])})
                took = time.monotonic() - began
                probe = await page.evaluate("""() => { const p = window.__probe; p.running = false;
                    return {...p, deltas: window.bambuDashboard.store.deltas - window.__d0,
                            flushes: window.bambuDashboard.store.flushes - window.__f0}; }""")
                end = _metrics(await cdp.send("Performance.getMetrics"))
                await page.close()
            finally:
                await context.close()
    expected = took * 60
    return {
        "printers": printers, "rate_target": rate, "seconds": round(took, 1),
        "events_sent_per_s": round((sent["events"] - sent0) / took, 1),
        "deltas_applied_per_s": round(probe["deltas"] / took, 1),
        "dom_passes_per_s": round(probe["flushes"] / took, 1),
        "time_to_first_render_ms": None if first_render is None else round(first_render, 1),
        "frames": probe["frames"], "frames_per_s": round(probe["frames"] / took, 1),
        "frames_dropped": probe["dropped"],
        "frames_dropped_pct": round(100 * probe["dropped"] / max(1.0, expected), 2),
        "worst_frame_ms": round(probe["worst"], 1),
        "long_tasks": probe["longTasks"], "long_task_ms": round(probe["longTaskMs"], 1),
        "js_heap_used_mib_start": round(start["JSHeapUsedSize"] / 2**20, 2),
        "js_heap_used_mib_end": round(end["JSHeapUsedSize"] / 2**20, 2),
        "js_heap_total_mib_end": round(end["JSHeapTotalSize"] / 2**20, 2),
        "dom_nodes_start": int(start["Nodes"]), "dom_nodes_end": int(end["Nodes"]),
        "layouts_per_s": round((end["LayoutCount"] - start["LayoutCount"]) / took, 1),
        "style_recalcs_per_s": round((end["RecalcStyleCount"] - start["RecalcStyleCount"]) / took, 1),
        "script_ms_per_s": round(1000 * (end["ScriptDuration"] - start["ScriptDuration"]) / took, 1),
        "task_ms_per_s": round(1000 * (end["TaskDuration"] - start["TaskDuration"]) / took, 1),
        "heap_samples": samples,
        "console_errors": errors[:5],
    }


# ------------------------------------------------------------------ camera fan-out


async def _viewers_child(url: str, count: int, seconds: float) -> None:
    """Child mode: ``count`` MJPEG readers for ``seconds``; prints frames read as JSON."""
    from urllib.parse import urlsplit

    split = urlsplit(url)
    frames = [0] * count

    async def view(i: int) -> None:
        reader, writer = await asyncio.open_connection(split.hostname, split.port)
        writer.write(f"GET {split.path} HTTP/1.1\r\nHost: {split.netloc}\r\n\r\n".encode())
        await writer.drain()
        boundary = b"--bambuframe"
        with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
            async with asyncio.timeout(seconds):
                while chunk := await reader.read(65536):
                    frames[i] += chunk.count(boundary)
        writer.close()

    await asyncio.gather(*(view(i) for i in range(count)))
    print(json.dumps({"frames": sum(frames), "per_viewer_min": min(frames)}), flush=True)


async def bench_camera(viewers: int, seconds: float) -> dict[str, Any]:
    from starlette.applications import Starlette

    from bambulab.camera import Camera
    from bambulab.servers.gateway.camera import CameraHub, routes_for
    from bambulab.transports.tls import printer_ssl_context

    here = _HERE
    with tempfile.TemporaryDirectory(prefix="bambu-bench-cam-") as tmp:
        ca = Path(tmp) / "ca.pem"
        sim = subprocess.Popen(  # noqa: ASYNC220 - started once, read line by line below
            [sys.executable, "-m", "bambulab", "sim", "-n", "1", "--models", "P1S", "--json", "--no-watch",
             "--write-ca", str(ca), "--seed", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            assert sim.stdout is not None
            info = json.loads(await asyncio.to_thread(sim.stdout.readline))
            camera = Camera.connect(
                info["host"], info["access_code"], model="P1S", serial=info["serial"], port=info["camera_port"],
                ssl_context=printer_ssl_context(ca_file=str(ca)),
            )
            hub = CameraHub(lambda serial: camera, linger=2.0)
            app = Starlette(routes=routes_for(hub))
            results: dict[str, Any] = {"viewers": viewers, "seconds": seconds, "camera_fps": "about 1 (as a P1)"}
            async with serve(app) as url:
                stream = f"{url}/api/v1/printers/{info['serial']}/camera/stream.mjpeg"
                for n in (1, viewers):
                    opened = hub.stats_for(info["serial"]).connections_opened
                    child = await asyncio.create_subprocess_exec(
                        sys.executable, str(here), "--_viewers", stream, str(n), str(seconds),
                        stdout=asyncio.subprocess.PIPE,
                    )
                    await asyncio.sleep(1.5)  # connected and past the first frame
                    cpu0, t0 = proc_cpu_seconds(), time.monotonic()
                    out, _ = await child.communicate()
                    cpu1, t1 = proc_cpu_seconds(), time.monotonic()
                    read = json.loads(out)
                    results[f"cpu_pct_{n}_viewers"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 2)
                    results[f"frames_read_{n}_viewers"] = read["frames"]
                    now_opened = hub.stats_for(info["serial"]).connections_opened
                    results[f"upstream_connections_{n}_viewers"] = now_opened - opened
                    await asyncio.sleep(2.5)  # linger passes: the upstream closes
                added = results[f"cpu_pct_{viewers}_viewers"] - results["cpu_pct_1_viewers"]
                results["cpu_pct_per_added_viewer"] = round(added / max(1, viewers - 1), 3)
                sends = results[f"frames_read_{viewers}_viewers"] - results["frames_read_1_viewers"]
                window = seconds - 1.5
                results["cpu_ms_per_frame_sent"] = (
                    round(1000 * added / 100 * window / sends, 3) if sends > 0 else None
                )
                results["hub_rss_mib"] = round(proc_rss_bytes() / 2**20, 1)
                await hub.stop()
            await camera.close()
        finally:
            sim.terminate()
            sim.wait(10)
    return results


# ------------------------------------------------------------------ screenshots


async def screenshots(folder: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    from bambulab.farm.config import ApiToken, GatewayConfig, hash_token
    from bambulab.farm.demo import DemoFarm
    from bambulab.servers.gateway import Gateway
    from bambulab.servers.gateway.app import create_app, start_server

    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    farm = DemoFarm(12, time_scale=1.0, seed=21, director=False, print_minutes=180)
    configs = await farm.start()
    sim = farm.sim
    vps = sim.printers
    # Varied states: printers at several stages, a runout, a failure, done, idle, offline.
    for i, vp in enumerate(vps):
        if vp.engine.dyn.job.gcode_state in ("RUNNING", "PREPARE"):
            vp.engine.advance(900)  # past the preparation
            vp.engine.advance(60 * (10 + (41 * i) % 160))
    running = [vp for vp in vps if vp.engine.dyn.job.gcode_state == "RUNNING"]
    await running[1].filament_runout()
    await running[3].inject_hms(0x0300_0100, 0x0001_0007)
    for vp in vps:
        await vp.push_now()
    # Control on (with a throwaway token), so the printer page shows its control panel.
    token = ApiToken("screenshots", hash_token(secrets.token_urlsafe(24)))
    config = GatewayConfig(printers=configs, control=True, tokens=[token])
    history = tempfile.TemporaryDirectory(prefix="bambu-shots-history-")
    config.sections["history"] = {"path": str(Path(history.name) / "history.sqlite3"), "sample_interval": 1}
    gw = Gateway(config)
    app = create_app(gw)
    await gw.start()
    server = await start_server(gw, "127.0.0.1", 0, app=app)
    out: list[Path] = []
    try:
        async with asyncio.timeout(30):
            while not all(m.summary()["state"] for m in gw.fleet.members.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # a few telemetry samples; the history sees the prints running
        running[5].engine.advance(4 * 3600)  # this one finishes (a job in the history)
        await running[5].push_now()
        running[4].engine.handle_local("print", {"command": "stop", "sequence_id": "0"})  # cancelled
        await running[4].push_now()
        await asyncio.sleep(2)
        await [vp for vp in vps if vp.engine.dyn.job.gcode_state == "IDLE"][-1].go_offline()
        detail = running[1].serial  # the paused one, with its HMS alert
        async with async_playwright() as pw:
            with tempfile.TemporaryDirectory(prefix="bambu-shots-") as profile:
                context = await launch(pw, profile)
                try:
                    shots = [
                        ("overview.png", "/", 1440, 1000, "light"),
                        ("overview-dark.png", "/", 1440, 1000, "dark"),
                        ("phone.png", "/", 390, 844, "light"),
                        ("wall.png", "/?wall=1", 1920, 1080, "dark"),
                        ("detail.png", f"/printers/{detail}", 1440, 1000, "light"),
                        ("cameras.png", "/cameras", 1440, 900, "dark"),
                        ("history.png", "/history", 1440, 900, "light"),
                    ]
                    for name, path, width, height, scheme in shots:
                        page = await context.new_page()
                        await page.set_viewport_size({"width": width, "height": height})
                        await page.emulate_media(color_scheme=scheme)
                        await page.goto(server.url + path)
                        await page.wait_for_selector("body[data-ready]")
                        await page.wait_for_function(
                            "() => [...document.querySelectorAll('img')].filter(i => i.offsetParent && i.src"
                            " && i.getBoundingClientRect().top < innerHeight)"
                            ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
                        await page.wait_for_timeout(800)
                        target = folder / name
                        await page.screenshot(path=str(target))
                        out.append(target)
                        await page.close()
                finally:
                    await context.close()
    finally:
        gw.fleet.end_subscriptions()
        await server.stop(timeout=1.0)
        await gw.stop(timeout=3.0)
        await farm.stop()
        history.cleanup()
    return out


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the page run")
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--camera-seconds", type=float, default=15.0)
    parser.add_argument("--skip-camera", action="store_true")
    parser.add_argument("--skip-page", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--screenshots", type=Path, help="write the README's screenshots to this folder")
    parser.add_argument("--_viewers", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._viewers:
        url, count, seconds = args._viewers
        asyncio.run(_viewers_child(url, int(count), float(seconds)))
        return
    if args.screenshots:
        for path in asyncio.run(screenshots(args.screenshots)):
            print(path)
        return
    result: dict[str, Any] = {}
    if not args.skip_page:
        result["page"] = asyncio.run(bench_page(args.printers, args.rate, args.seconds))
    if not args.skip_camera:
        result["camera"] = asyncio.run(bench_camera(args.viewers, args.camera_seconds))
    if args.json:
        print(json.dumps(result))
        return
    for section, values in result.items():
        print(f"[{section}]")
        for key, value in values.items():
            if key != "heap_samples":
                print(f"  {key:32} {value}")
        if "heap_samples" in values:
            print("  heap over time: " + ", ".join(f"{s['t']}s {s['js_heap_mib']} MiB" for s in values["heap_samples"]))


if __name__ == "__main__":
    main()
