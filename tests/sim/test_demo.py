"""The demo print's 3MF looks like a real sliced file: cover image, weight, filament per object, bed type."""

from __future__ import annotations

import io
import json
import zipfile
from xml.etree import ElementTree as ET

from PIL import Image

from bambulab.protocol.threemf import read_project
from bambulab.sim.demo import demo_project


def test_demo_project_has_what_a_slicer_writes() -> None:
    data = demo_project(printer_model_id="C12")
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    assert "Metadata/plate_1.png" in names
    with Image.open(io.BytesIO(archive.read("Metadata/plate_1.png"))) as cover:
        assert cover.format == "PNG" and cover.size == (512, 512)
        colours = cover.convert("RGB").getcolors(maxcolors=4096)
        assert colours is not None and len(colours) > 2  # a picture, not a blank square

    plate = ET.fromstring(archive.read("Metadata/slice_info.config")).find("plate")  # noqa: S314 - our own file
    assert plate is not None
    meta = {m.get("key"): m.get("value") for m in plate.findall("metadata")}
    assert float(meta["weight"] or 0) == 18.4
    assert meta["bed_type"] == "textured_plate"
    assert meta["printer_model_id"] == "C12"
    filaments = plate.findall("filament")
    assert [(f.get("type"), float(f.get("used_g") or 0)) for f in filaments] == [("PLA", 18.4)]

    settings = ET.fromstring(archive.read("Metadata/model_settings.config"))  # noqa: S314 - our own file
    extruders = {}
    for obj in settings.findall("object"):
        obj_meta = {m.get("key"): m.get("value") for m in obj.findall("metadata")}
        extruders[obj_meta["name"]] = obj_meta["extruder"]
    assert extruders == {"Benchy": "1", "Calibration cube": "1"}
    plate_el = settings.find("plate")
    assert plate_el is not None
    plate_meta = {m.get("key"): m.get("value") for m in plate_el.findall("metadata")}
    assert plate_meta["thumbnail_file"] == "Metadata/plate_1.png"
    assert json.loads(archive.read("Metadata/plate_1.json"))["bed_type"] == "textured_plate"

    project = read_project(data)  # and the library still reads it
    assert project.plate(1).weight_g == 18.4
    assert [o.name for o in project.plate(1).objects] == ["Benchy", "Calibration cube"]
