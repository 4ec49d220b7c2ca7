"""Synthetic camera frames for virtual printers.

:func:`render_frame` draws a "chamber view" (build plate, a part that grows with the job's
progress, the tool head and its nozzle) with an overlay of the printer's name, job state,
progress, layer, temperatures and a clock, and encodes it as a baseline JFIF JPEG, the way a
P1/A1 camera's frames look on the wire (``FF D8 FF E0`` ... ``FF D9``).

Rendering is split in two so a server can keep its event loop free:

* :func:`snapshot` copies the few values a frame shows out of the live :class:`Dynamic` into an
  immutable, hashable :class:`FrameInfo` (cheap; do it on the event loop);
* :func:`render_info` draws and encodes a :class:`FrameInfo` (the costly part; safe to run in a
  worker thread, since it touches no shared mutable state).

The static background (chamber walls, plate, gantry) is drawn once per size and light state
and cached; each frame copies it and draws only what changes. Run ``bench/camera_render.py`` for
the cost per frame on the current machine.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from bambulab.sim.state import Dynamic

__all__ = ["DEFAULT_QUALITY", "FrameInfo", "render_frame", "render_image", "render_info", "snapshot"]

DEFAULT_QUALITY = 75
_MIN_SIZE = (64, 36)
_MAX_SIZE = (3840, 2160)
#: animation steps per second (the tool head moves in steps, so equal frames can be reused)
_ANIM_STEPS_PER_S = 4

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

_STATE_COLOURS: dict[str, RGB] = {
    "IDLE": (170, 170, 170),
    "PREPARE": (90, 170, 255),
    "SLICING": (90, 170, 255),
    "RUNNING": (0, 200, 110),
    "PAUSE": (255, 190, 40),
    "FINISH": (80, 210, 255),
    "FAILED": (255, 80, 70),
}
_DEFAULT_PART: RGB = (0, 174, 66)  # Bambu green when no filament colour is known


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """Everything one frame shows. Immutable and hashable: equal infos give equal frames."""

    name: str
    serial: str
    model_name: str
    gcode_state: str
    percent: int
    layer: int
    total_layers: int
    remaining_minutes: int
    nozzle_temp: float
    nozzle_target: float
    bed_temp: float
    bed_target: float
    light_on: bool
    part_colour: RGB
    clock: str
    phase: int  # animation step
    width: int = 1280
    height: int = 720
    quality: int = DEFAULT_QUALITY


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def _hex_colour(value: str) -> RGB | None:
    text = value.strip().lstrip("#")
    if len(text) < 6:
        return None
    try:
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    except ValueError:
        return None


def _active_colour(dyn: Dynamic) -> RGB:
    """The colour of the filament the printer is using, if it knows one."""
    now = dyn.tray_now
    colour: str | None = None
    if now in (254, 255) or now < 0:
        ext = dyn.external[0] if dyn.external else None
        if now == 254 and ext is not None and ext.loaded:
            colour = ext.color
    else:
        unit_id, slot = (now, 0) if now >= 128 else (now // 4, now % 4)
        for unit in dyn.ams:
            if unit.unit_id == unit_id:
                for tray in unit.trays:
                    if tray.slot == slot and tray.loaded:
                        colour = tray.color
    if colour is None:
        return _DEFAULT_PART
    rgb = _hex_colour(colour)
    if rgb is None:
        return _DEFAULT_PART
    # Keep very dark or very light filaments visible on the dark plate.
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    if lum < 40:
        rgb = (max(rgb[0], 60), max(rgb[1], 60), max(rgb[2], 60))
    return rgb


def snapshot(
    *,
    name: str,
    serial: str,
    model_name: str,
    dyn: Dynamic,
    now: datetime,
    width: int = 1280,
    height: int = 720,
    quality: int = DEFAULT_QUALITY,
) -> FrameInfo:
    """Copy what a frame shows out of ``dyn`` (call it where ``dyn`` is changed: the event loop)."""
    job = dyn.job
    nozzle = dyn.nozzles[dyn.active_extruder] if 0 <= dyn.active_extruder < len(dyn.nozzles) else None
    if nozzle is None and dyn.nozzles:
        nozzle = dyn.nozzles[0]
    return FrameInfo(
        name=name,
        serial=serial,
        model_name=model_name,
        gcode_state=job.gcode_state,
        percent=int(_clamp(job.percent, 0, 100)),
        layer=max(0, job.layer),
        total_layers=max(0, job.total_layers),
        remaining_minutes=max(0, job.remaining_minutes),
        nozzle_temp=round(nozzle.temp, 1) if nozzle else 0.0,
        nozzle_target=round(nozzle.target) if nozzle else 0.0,
        bed_temp=round(dyn.bed.temp, 1),
        bed_target=round(dyn.bed.target),
        light_on=dyn.lights.get("chamber_light", "on") != "off",
        part_colour=_active_colour(dyn),
        clock=now.strftime("%Y-%m-%d %H:%M:%S"),
        phase=int(now.timestamp() * _ANIM_STEPS_PER_S),
        width=width,
        height=height,
        quality=quality,
    )


def render_frame(
    *,
    name: str,
    serial: str,
    model_name: str,
    dyn: Dynamic,
    now: datetime,
    width: int = 1280,
    height: int = 720,
    quality: int = DEFAULT_QUALITY,
) -> bytes:
    """Draw one camera frame and return it as JFIF JPEG bytes (``FF D8 FF E0`` ... ``FF D9``)."""
    return render_info(
        snapshot(
            name=name, serial=serial, model_name=model_name, dyn=dyn, now=now,
            width=width, height=height, quality=quality,
        )
    )


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True, slots=True)
class _Geometry:
    """Pixel positions of the scene's fixed parts for one frame size."""

    w: int
    h: int

    def px(self, fx: float, fy: float) -> tuple[int, int]:
        return (round(fx * self.w), round(fy * self.h))

    @property
    def plate(self) -> list[tuple[int, int]]:
        # back-left, back-right, front-right, front-left
        return [self.px(0.30, 0.55), self.px(0.70, 0.55), self.px(0.88, 0.90), self.px(0.12, 0.90)]

    @property
    def part_base(self) -> tuple[int, int]:
        return self.px(0.50, 0.78)

    @property
    def part_size(self) -> tuple[int, int, int]:
        """Front-face width, top-face depth and the height of a finished part, in pixels."""
        return (round(0.16 * self.w), round(0.05 * self.h), round(0.34 * self.h))

    @property
    def font_size(self) -> int:
        return max(8, round(self.h / 30))


def _shade(rgb: RGB, factor: float) -> RGB:
    return (
        int(_clamp(rgb[0] * factor, 0, 255)),
        int(_clamp(rgb[1] * factor, 0, 255)),
        int(_clamp(rgb[2] * factor, 0, 255)),
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    t = _clamp(t, 0.0, 1.0)
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _lerp_pt(a: tuple[int, int], b: tuple[int, int], t: float) -> tuple[int, int]:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t))


@lru_cache(maxsize=32)
def _background(width: int, height: int, light_on: bool) -> Image.Image:
    """The static chamber: walls, floor, textured plate with its grid, gantry rails and vignette."""
    g = _Geometry(width, height)
    # Vertical gradient, drawn as a one-pixel-wide strip and stretched.
    strip = Image.new("RGB", (1, 256))
    top, bottom = (26, 28, 33), (58, 60, 66)
    strip.putdata([_mix(top, bottom, i / 255) for i in range(256)])
    img = strip.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)

    # Side walls and back wall.
    draw.polygon([g.px(0, 0), g.px(0.22, 0.08), g.px(0.22, 0.60), g.px(0, 1)], fill=(36, 38, 44))
    draw.polygon([g.px(1, 0), g.px(0.78, 0.08), g.px(0.78, 0.60), g.px(1, 1)], fill=(36, 38, 44))
    draw.rectangle([g.px(0.22, 0.08), g.px(0.78, 0.60)], fill=(44, 46, 52))
    for i in range(1, 4):  # back-wall panel seams
        x = round((0.22 + 0.56 * i / 4) * width)
        draw.line([(x, g.px(0, 0.08)[1]), (x, g.px(0, 0.60)[1])], fill=(50, 52, 58), width=1)

    # Build plate: a thick front edge, the textured sheet and its grid in perspective.
    bl, br, fr, fl = g.plate
    edge = max(2, round(0.018 * height))
    draw.polygon([fl, fr, (fr[0], fr[1] + edge), (fl[0], fl[1] + edge)], fill=(24, 24, 26))
    draw.polygon([bl, br, fr, fl], fill=(72, 66, 52))
    grid = (92, 85, 68)
    n = 10
    for i in range(n + 1):
        t = i / n
        draw.line([_lerp_pt(bl, br, t), _lerp_pt(fl, fr, t)], fill=grid, width=1)
    for i in range(n + 1):
        # rows get closer together towards the back
        t = (i / n) ** 1.35
        draw.line([_lerp_pt(bl, fl, t), _lerp_pt(br, fr, t)], fill=grid, width=1)
    draw.line([bl, br, fr, fl, bl], fill=(110, 102, 82), width=max(1, width // 640))

    # Gantry side rails (the cross bar moves with the tool head and is drawn per frame).
    rail = (70, 72, 78)
    rw = max(2, round(0.012 * width))
    draw.rectangle([g.px(0.20, 0.04), (g.px(0.20, 0)[0] + rw, g.px(0, 0.62)[1])], fill=rail)
    draw.rectangle([(g.px(0.80, 0)[0] - rw, g.px(0, 0.04)[1]), g.px(0.80, 0.62)], fill=rail)

    # Vignette: darken the corners a little.
    shade = Image.radial_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    shade = shade.point(lambda v: int(v * 0.55))
    black = Image.new("RGB", (width, height), (0, 0, 0))
    img = Image.composite(black, img, shade)
    if not light_on:
        img = img.point(lambda v: v // 4)
    return img


@lru_cache(maxsize=16)
def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def _panel(img: Image.Image, box: tuple[int, int, int, int], alpha: float = 0.6) -> None:
    """Darken a rectangle of ``img`` so text on it reads well (cheap: touches only the box)."""
    x0, y0, x1, y1 = (max(0, box[0]), max(0, box[1]), min(img.width, box[2]), min(img.height, box[3]))
    if x1 <= x0 or y1 <= y0:
        return
    region = img.crop((x0, y0, x1, y1))
    dark = Image.new("RGB", region.size, (8, 10, 14))
    img.paste(Image.blend(region, dark, alpha), (x0, y0))


# --------------------------------------------------------------------------- drawing


def _progress_fraction(info: FrameInfo) -> float:
    if info.gcode_state in ("IDLE", "PREPARE", "SLICING", ""):
        return 0.0
    if info.gcode_state == "FINISH":
        return 1.0
    if info.total_layers > 0 and info.layer > 0:
        return _clamp(info.layer / info.total_layers, 0.0, 1.0)
    return info.percent / 100


def _draw_scene(img: Image.Image, info: FrameInfo) -> None:
    g = _Geometry(info.width, info.height)
    draw = ImageDraw.Draw(img)
    dim = 1.0 if info.light_on else 0.3
    cx, base_y = g.part_base
    pw, depth, full_h = g.part_size
    frac = _progress_fraction(info)
    part_h = round(full_h * frac)
    top_y = base_y - part_h

    if part_h > 0:
        # shadow on the plate under the part
        draw.ellipse(
            [cx - pw * 0.62, base_y - depth * 0.9, cx + pw * 0.62, base_y + depth * 0.5],
            fill=_shade((50, 45, 36), dim),
        )
        colour = info.part_colour
        front = _shade(colour, 0.78 * dim)
        top = _shade(colour, 1.08 * dim)
        side = _shade(colour, 0.6 * dim)
        half = pw // 2
        back_half = round(half * 0.82)
        # right side face, front face, then the top face
        draw.polygon(
            [(cx + half, top_y), (cx + back_half, top_y - depth), (cx + back_half, base_y - depth),
             (cx + half, base_y)],
            fill=side,
        )
        draw.rectangle([cx - half, top_y, cx + half, base_y], fill=front)
        step = max(3, info.height // 180)  # layer lines on the front face
        line_col = _shade(colour, 0.66 * dim)
        for y in range(base_y - step, top_y, -step):
            draw.line([(cx - half, y), (cx + half, y)], fill=line_col, width=1)
        draw.polygon(
            [(cx - half, top_y), (cx + half, top_y), (cx + back_half, top_y - depth),
             (cx - back_half, top_y - depth)],
            fill=top,
        )
        if info.gcode_state == "FAILED":  # a tangle of loose filament on top
            for k in range(7):
                a = k * 0.9
                pts = [
                    (
                        cx + math.sin(a + j * 1.7) * half * 0.9,
                        top_y - depth * 0.5 - abs(math.cos(a + j)) * depth * 2,
                    )
                    for j in range(6)
                ]
                draw.line(pts, fill=top, width=max(1, info.height // 360))

    # Tool head: over the part while printing, parked at the back right otherwise.
    printing = info.gcode_state in ("RUNNING", "PAUSE") and part_h >= 0
    if printing:
        wobble = math.sin(info.phase * 0.9) if info.gcode_state == "RUNNING" else 0.3
        head_x = cx + round(wobble * pw * 0.42)
        tip_y = top_y - depth // 2
    else:
        head_x, tip_y = g.px(0.70, 0.30)
    hw, hh = round(0.085 * info.width), round(0.12 * info.height)
    nozzle_len = round(0.03 * info.height)
    body_bottom = tip_y - nozzle_len
    body_top = body_bottom - hh
    # gantry cross bar at the head's height
    bar_h = max(3, round(0.02 * info.height))
    bar_y = body_top + hh // 4
    draw.rectangle([g.px(0.20, 0)[0], bar_y, g.px(0.80, 0)[0], bar_y + bar_h], fill=_shade((86, 88, 94), dim))
    draw.rounded_rectangle(
        [head_x - hw // 2, body_top, head_x + hw // 2, body_bottom],
        radius=max(2, hw // 10),
        fill=_shade((214, 216, 220), dim),
        outline=_shade((150, 152, 158), dim),
    )
    window_top = body_top + hh // 6
    draw.rectangle(
        [head_x - hw // 2 + hw // 8, window_top, head_x + hw // 2 - hw // 8, window_top + hh // 8],
        fill=_shade((40, 42, 48), dim),
    )
    heat = _clamp((info.nozzle_temp - 40) / 180, 0.0, 1.0)
    tip_colour = _mix((150, 150, 150), (255, 140, 40), heat)
    nw = max(3, hw // 6)
    draw.polygon(
        [(head_x - nw, body_bottom), (head_x + nw, body_bottom), (head_x, tip_y)],
        fill=_shade(tip_colour, max(dim, heat)),
    )


def _fmt_temp(temp: float, target: float) -> str:
    return f"{temp:.0f}/{target:.0f} °C" if target > 0 else f"{temp:.0f} °C"


def _draw_overlay(img: Image.Image, info: FrameInfo) -> None:
    g = _Geometry(info.width, info.height)
    fs = g.font_size
    big, small = _font(round(fs * 1.2)), _font(fs)
    pad = max(3, fs // 2)
    line = round(fs * 1.3)
    state_colour = _STATE_COLOURS.get(info.gcode_state, (220, 220, 220))

    lines: list[tuple[str, Font, RGB]] = [
        (info.name, big, (255, 255, 255)),
        (f"{info.model_name} · {info.serial}", small, (190, 196, 204)),
        (f"{info.gcode_state or '-'}   {info.percent}%", big, state_colour),
        (f"Layer {info.layer}/{info.total_layers}", small, (230, 230, 230)),
        (f"Nozzle {_fmt_temp(info.nozzle_temp, info.nozzle_target)}", small, (255, 190, 120)),
        (f"Bed {_fmt_temp(info.bed_temp, info.bed_target)}", small, (140, 200, 255)),
    ]
    if info.remaining_minutes and info.gcode_state in ("RUNNING", "PAUSE"):
        h, m = divmod(info.remaining_minutes, 60)
        lines.append((f"Remaining {h}h{m:02d}m" if h else f"Remaining {m}m", small, (230, 230, 230)))

    draw = ImageDraw.Draw(img)
    heights = [round(line * 1.2) if font is big else line for _, font, _ in lines]
    text_w = max(_text_width(draw, text, font) for text, font, _ in lines)
    box = (pad, pad, pad * 3 + text_w, pad * 2 + sum(heights))
    _panel(img, box)
    y = pad * 2
    for (text, font, colour), lh in zip(lines, heights, strict=True):
        draw.text((pad * 2, y), text, font=font, fill=colour)
        y += lh

    # Clock, top right.
    cw = _text_width(draw, info.clock, small)
    clock_box = (info.width - cw - pad * 3, pad, info.width - pad, pad + line + pad)
    _panel(img, clock_box)
    draw.text((clock_box[0] + pad, pad + pad // 2), info.clock, font=small, fill=(255, 255, 255))

    # Progress bar along the bottom.
    bar_h = max(3, info.height // 90)
    y0 = info.height - bar_h - pad
    draw.rectangle([pad, y0, info.width - pad, y0 + bar_h], fill=(30, 32, 36))
    filled = pad + round((info.width - 2 * pad) * info.percent / 100)
    if filled > pad:
        draw.rectangle([pad, y0, filled, y0 + bar_h], fill=state_colour)


_JFIF_APP0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _ensure_jfif(data: bytes) -> bytes:
    """Make sure the JPEG starts with SOI + JFIF APP0, as the printers' frames do."""
    if data[:4] == b"\xff\xd8\xff\xe0":
        return data
    return data[:2] + _JFIF_APP0 + data[2:]


def render_image(info: FrameInfo) -> Image.Image:
    """Draw one frame as an RGB :class:`PIL.Image.Image` (thread-safe)."""
    width = int(_clamp(info.width, *(_MIN_SIZE[0], _MAX_SIZE[0])))
    height = int(_clamp(info.height, *(_MIN_SIZE[1], _MAX_SIZE[1])))
    if (width, height) != (info.width, info.height):
        raise ValueError(f"frame size {info.width}x{info.height} outside {_MIN_SIZE} .. {_MAX_SIZE}")
    img = _background(width, height, info.light_on).copy()
    _draw_scene(img, info)
    _draw_overlay(img, info)
    return img


def render_info(info: FrameInfo) -> bytes:
    """Draw and encode one frame. Thread-safe; the costly part of :func:`render_frame`."""
    img = render_image(info)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=int(_clamp(info.quality, 1, 95)), optimize=False, progressive=False)
    return _ensure_jfif(out.getvalue())
