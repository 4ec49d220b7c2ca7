"""A small, realistic print job for demos: a sliced 3MF made on the fly, nobody else's file.

It carries what a slicer always writes and clients read: the plate's cover image
(``Metadata/plate_1.png``), the weight and per-filament use in ``slice_info.config``, the
filament each object is printed with, and the bed type.
"""

from __future__ import annotations

import io

from bambulab.protocol.threemf import Filament, PlateObject, PlateSpec, build_project

__all__ = ["demo_project", "plate_thumbnail"]

_ORANGE = "#F2A33A"


def plate_thumbnail(colors: tuple[str, ...] = (_ORANGE, _ORANGE), *, size: int = 512) -> bytes:
    """A PNG cover image: the textured plate seen from above with one block per object."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "#2B2B2B")
    draw = ImageDraw.Draw(image)
    margin = size // 16
    draw.rounded_rectangle((margin, margin, size - margin, size - margin), radius=size // 32, fill="#4A4A4A")
    block = size // 5
    for k, color in enumerate(colors):
        x = size // 2 - block - size // 20 + k * (block + size // 10)
        y = size // 2 - block // 2
        draw.rounded_rectangle((x, y, x + block, y + block), radius=size // 40, fill=color, outline="#1A1A1A",
                               width=max(1, size // 128))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def demo_project(*, minutes: int = 45, layers: int = 120, printer_model_id: str | None = None) -> bytes:
    """A one-plate ``.gcode.3mf`` with two objects in PLA, ``minutes`` long and ``layers`` tall."""
    plate = PlateSpec(
        index=1,
        layers=layers,
        prediction_s=minutes * 60,
        filaments=(Filament(id=1, material="PLA", color=_ORANGE, used_g=18.4, used_m=6.1),),
        objects=(PlateObject(id=101, name="Benchy", filament=1), PlateObject(id=202, name="Calibration cube",
                                                                               filament=1)),
        weight_g=18.4,
        thumbnail=plate_thumbnail(),
    )
    return build_project([plate], printer_model_id=printer_model_id, bed_type="textured_plate")
