"""How long the virtual camera takes to draw and encode one frame.

    python3 bench/camera_render.py [--frames N]

Prints milliseconds per frame for ``render_frame`` at 1280x720 (a P1's size) and 640x360 (a
cheaper size for farms), each frame with a different clock and progress so no cache helps
beyond the static background, plus the size of the JPEGs.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta

from bambulab.sim.render import render_frame
from bambulab.sim.state import Dynamic, Heater, Job


def bench(width: int, height: int, frames: int) -> tuple[float, int]:
    dyn = Dynamic()
    dyn.job = Job(gcode_state="RUNNING", percent=0, layer=0, total_layers=200, remaining_minutes=95)
    dyn.nozzles = [Heater(219.5, 220.0)]
    dyn.bed = Heater(55.0, 55.0)
    start = datetime(2025, 1, 1, 12, 0, 0)
    render_frame(name="warm-up", serial="01P00A000000001", model_name="P1S", dyn=dyn, now=start,
                 width=width, height=height)
    total_bytes = 0
    t0 = time.perf_counter()
    for i in range(frames):
        dyn.job.percent = i % 101
        dyn.job.layer = (i * 2) % 201
        data = render_frame(
            name="Virtual P1S 1", serial="01P00A000000001", model_name="P1S", dyn=dyn,
            now=start + timedelta(seconds=i), width=width, height=height,
        )
        total_bytes += len(data)
    elapsed = time.perf_counter() - t0
    return elapsed / frames * 1000, total_bytes // frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    for width, height in ((1280, 720), (640, 360)):
        ms, size = bench(width, height, args.frames)
        print(f"render_frame {width}x{height}: {ms:.2f} ms/frame, {size / 1024:.1f} KiB/frame")


if __name__ == "__main__":
    main()
