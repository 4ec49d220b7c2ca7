"""Read and write Bambu Studio "sliced" 3MF files (``.gcode.3mf``), from and to bytes.

Pure: the archive is handled in memory (``zipfile`` over ``io.BytesIO``); nothing here opens a
file or a socket. The virtual printer and the client read projects with :func:`read_project`;
tests and the virtual printer make realistic projects with :func:`build_project`.

Layout of a sliced project (Bambu Studio and its forks write the same names)::

    [Content_Types].xml, _rels/.rels, 3D/3dmodel.model        the 3MF package itself
    Metadata/slice_info.config      XML: one <plate> per sliced plate (see below)
    Metadata/plate_N.gcode          the plate's G-code; ``project_file`` names it in ``param``
    Metadata/plate_N.gcode.md5      upper-case hex MD5 of plate_N.gcode
    Metadata/plate_N.json           JSON: bbox_all, bbox_objects [{id, name, bbox, ...}], bed_type,
                                    filament_colors, filament_ids, nozzle_diameter, version, ...
    Metadata/project_settings.config  JSON: the full settings; lists such as filament_type and
                                    filament_colour are indexed by filament id - 1
    Metadata/model_settings.config  XML: objects, parts and plates (plater_id, gcode_file, ...)
    Metadata/_rels/model_settings.config.rels  relationships to the plate G-code files

``slice_info.config`` looks like this (attributes and keys as Studio writes them)::

    <config>
      <header><header_item key="X-BBL-Client-Type" value="slicer"/> ...</header>
      <plate>
        <metadata key="index" value="1"/>
        <metadata key="printer_model_id" value="C12"/>
        <metadata key="prediction" value="4192"/>          seconds
        <metadata key="weight" value="15.99"/>             grams
        <object identify_id="58" name="cube.stl" skipped="false"/>
        <filament id="1" tray_info_idx="GFA00" type="PLA" color="#FFFFFF" used_m="5.29" used_g="15.99"/>
        <warning msg="..." level="1" error_code="..."/>
      </plate>
    </config>

Filament ``id`` is 1-based and is the index into ``ams_mapping`` plus one; object ``identify_id``
is the id ``skip_objects`` takes. The plate G-code starts with a header block that states the
layer count (``; total layer number: N``); every layer change carries
``; layer num/total_layer_count: i/N`` and ``M73 L<i>``, and progress is ``M73 P<percent>
R<minutes left>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from xml.etree import ElementTree as ET  # DTDs are refused before parsing: see _parse_xml

from bambulab.exceptions import AmsMappingError, ThreeMFError

__all__ = [
    "GCODE_HEAD_BYTES",
    "AmsMappingError",
    "Filament",
    "GcodeHeader",
    "Plate",
    "PlateObject",
    "PlateSpec",
    "Project",
    "ThreeMFError",
    "TrayInfo",
    "build_project",
    "match_ams_mapping",
    "read_gcode_header",
    "read_project",
]

SLICE_INFO: Final = "Metadata/slice_info.config"
PROJECT_SETTINGS: Final = "Metadata/project_settings.config"
MODEL_SETTINGS: Final = "Metadata/model_settings.config"

#: How much of a plate's G-code :func:`read_project` decompresses to find the layer count. The
#: header block is in the first few hundred bytes; the first layer-change comment follows the
#: config block, which Studio keeps well under this.
GCODE_HEAD_BYTES: Final = 512 * 1024
_MAX_CONFIG_BYTES: Final = 32 * 1024 * 1024
_MAX_MD5_BYTES: Final = 1024
_MAX_FILAMENT_ID: Final = 1024

# What zipfile and its decompressors raise on damaged or hostile archives.
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,  # encrypted members
    NotImplementedError,  # unsupported compression methods
    zlib.error,
    struct.error,
    IndexError,
    KeyError,
    OverflowError,
    MemoryError,
)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filament:
    """A filament a plate uses. ``id`` is 1-based, as in ``slice_info.config``."""

    id: int
    material: str  # "PLA", "PETG", "PLA-S", ...
    color: str  # "#RRGGBB" (upper case) when the file has a parseable colour
    used_g: float | None = None
    used_m: float | None = None


@dataclass(frozen=True, slots=True)
class PlateObject:
    """An object on a plate; ``id`` is the ``identify_id`` that ``skip_objects`` takes."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Plate:
    index: int
    gcode_path: str  # "Metadata/plate_1.gcode"; the ``param`` of project_file
    prediction_s: int | None
    weight_g: float | None
    layers: int | None
    filaments: tuple[Filament, ...]
    objects: tuple[PlateObject, ...]
    gcode_md5: str | None  # upper-case hex from plate_N.gcode.md5, when the file has one


@dataclass(frozen=True, slots=True)
class Project:
    plates: tuple[Plate, ...]
    printer_model: str | None  # slice_info ``printer_model_id``, e.g. "C12"

    def plate(self, index: int) -> Plate:
        """The plate with this (1-based) index. Raises ``KeyError`` naming the plates there are."""
        for plate in self.plates:
            if plate.index == index:
                return plate
        have = ", ".join(str(p.index) for p in self.plates) or "none"
        raise KeyError(f"plate {index!r} is not in this project (plates: {have})")


@dataclass(frozen=True, slots=True)
class GcodeHeader:
    """What the first part of a Bambu G-code file says about the whole print."""

    layers: int | None = None
    estimated_s: int | None = None  # "total estimated time"


# --------------------------------------------------------------------------------------------
# Small parsers
# --------------------------------------------------------------------------------------------

_HEX_COLOR: Final = re.compile(r"#?([0-9A-Fa-f]{6})(?:[0-9A-Fa-f]{2})?\Z")
_MD5: Final = re.compile(r"[0-9A-Fa-f]{32}\Z")


def _color(value: object) -> str | None:
    """``#RRGGBB`` from ``#RRGGBB``, ``RRGGBB`` or ``#RRGGBBAA``; ``None`` if not a colour."""
    if isinstance(value, str):
        match = _HEX_COLOR.match(value.strip())
        if match:
            return "#" + match.group(1).upper()
    return None


def _float(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _int(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def _seconds(value: object) -> int | None:
    """Studio writes ``prediction`` as whole seconds; tolerate "4192.5" and "4192s"."""
    if isinstance(value, str):
        number = _float(value.strip().removesuffix("s"))
        if number is not None:
            return round(number)
    return None


_TOTAL_LAYERS: Final = re.compile(rb"^[ \t]*;[ \t]*total layer number[ \t]*[:=][ \t]*(\d{1,9})(?!\d)", re.M | re.I)
_LAYER_CHANGE: Final = re.compile(
    rb"^[ \t]*;[ \t]*layer num/total_layer_count[ \t]*:[ \t]*\d{1,9}[ \t]*/[ \t]*(\d{1,9})(?!\d)", re.M | re.I
)
_TOTAL_TIME: Final = re.compile(rb"total estimated time[ \t]*[:=][ \t]*([0-9dhms \t]{1,40})", re.I)
_DURATION_PART: Final = re.compile(rb"(?<!\d)(\d{1,9})[ \t]*([dhms])", re.I)
_UNIT_SECONDS: Final = {b"d": 86400, b"h": 3600, b"m": 60, b"s": 1}


def read_gcode_header(head: bytes | str) -> GcodeHeader:
    """Layer count and estimated time from the first part of a Bambu G-code file.

    The layer count comes from the header block (``; total layer number: N``) or, failing that,
    from the first layer-change comment (``; layer num/total_layer_count: 1/N``). The time comes
    from ``total estimated time: 1h 2m 3s``. Pass only the beginning of the file (a few hundred
    KiB is plenty): this is meant to be cheap. Never raises.
    """
    data = head.encode("utf-8", "replace") if isinstance(head, str) else bytes(head)
    layers: int | None = None
    match = _TOTAL_LAYERS.search(data) or _LAYER_CHANGE.search(data)
    if match:
        layers = int(match.group(1))
    estimated: int | None = None
    time_match = _TOTAL_TIME.search(data)
    if time_match:
        parts = _DURATION_PART.findall(time_match.group(1))
        if parts:
            estimated = sum(int(n) * _UNIT_SECONDS[unit.lower()] for n, unit in parts)
    return GcodeHeader(layers=layers, estimated_s=estimated)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class _Archive:
    """Member lookup (exact name first, then case/slash-insensitive) with bounded reads."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._zip = archive
        self._exact: dict[str, zipfile.ZipInfo] = {}
        self._loose: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            self._exact.setdefault(info.filename, info)
            self._loose.setdefault(self._key(info.filename), info)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace("\\", "/").lstrip("/").lower()

    def find(self, name: str) -> zipfile.ZipInfo | None:
        return self._exact.get(name) or self._loose.get(self._key(name))

    def read(self, name: str, limit: int, *, whole: bool = True) -> bytes | None:
        """Up to ``limit`` bytes of a member; ``None`` if absent. With ``whole``, a larger member
        is an error rather than a truncated read."""
        info = self.find(name)
        if info is None:
            return None
        if whole and info.file_size > limit:
            raise ThreeMFError(f"{info.filename} is too large ({info.file_size} bytes; limit {limit})")
        try:
            with self._zip.open(info) as member:
                data = member.read(limit + 1 if whole else limit)
        except _ZIP_ERRORS as exc:
            raise ThreeMFError(f"cannot read {info.filename} from the archive: {exc}") from exc
        if whole and len(data) > limit:
            raise ThreeMFError(f"{info.filename} is too large (more than {limit} bytes)")
        return data


def _parse_xml(data: bytes, name: str) -> ET.Element:
    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise ThreeMFError(f"{name}: DTDs and entity declarations are not allowed")
    try:
        # Safe: no DTD (checked above), so no entity expansion; ElementTree fetches nothing.
        return ET.fromstring(data)  # noqa: S314
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise ThreeMFError(f"{name} is not well-formed XML: {exc}") from exc


def _settings_lists(data: bytes | None) -> tuple[list[str], list[str]]:
    """``filament_type`` and ``filament_colour`` from project_settings.config (best effort)."""
    if data is None:
        return [], []
    try:
        settings = json.loads(data)
    except (ValueError, RecursionError):
        return [], []
    if not isinstance(settings, dict):
        return [], []

    def strings(key: str) -> list[str]:
        value = settings.get(key)
        if isinstance(value, str):  # some writers join lists with ';'
            value = value.split(";")
        if not isinstance(value, list):
            return []
        return [v if isinstance(v, str) else "" for v in value]

    return strings("filament_type"), strings("filament_colour")


def _filament(el: ET.Element, types: list[str], colours: list[str]) -> Filament | None:
    fid = _int(el.get("id"))
    if fid is None or not 1 <= fid <= _MAX_FILAMENT_ID:
        return None
    material = (el.get("type") or "").strip()
    if not material and fid <= len(types):
        material = types[fid - 1].strip()
    raw_color = el.get("color")
    color = _color(raw_color)
    if color is None and fid <= len(colours):
        color = _color(colours[fid - 1])
    if color is None:
        color = (raw_color or "").strip()
    return Filament(
        id=fid,
        material=material,
        color=color,
        used_g=_float(el.get("used_g")),
        used_m=_float(el.get("used_m")),
    )


def _plate(
    el: ET.Element, position: int, archive: _Archive, types: list[str], colours: list[str]
) -> tuple[Plate, str | None]:
    meta: dict[str, str] = {}
    for item in el.findall("metadata"):
        key, value = item.get("key"), item.get("value")
        if key is not None and value is not None:
            meta.setdefault(key, value)
    index = _int(meta.get("index"))
    if index is None or index < 1:
        index = position
    gcode_path = f"Metadata/plate_{index}.gcode"

    filaments: list[Filament] = []
    for fel in el.findall("filament"):
        filament = _filament(fel, types, colours)
        if filament is not None:
            filaments.append(filament)
    objects: list[PlateObject] = []
    for oel in el.findall("object"):
        oid = _int(oel.get("identify_id"))
        if oid is not None:
            objects.append(PlateObject(id=oid, name=oel.get("name") or ""))

    header = GcodeHeader()
    head = archive.read(gcode_path, GCODE_HEAD_BYTES, whole=False)
    if head is not None:
        header = read_gcode_header(head)
    md5: str | None = None
    md5_raw = archive.read(gcode_path + ".md5", _MAX_MD5_BYTES)
    if md5_raw is not None:
        text = md5_raw.decode("ascii", "replace").strip()
        md5 = text.upper() if _MD5.match(text) else None

    prediction = _seconds(meta.get("prediction"))
    if prediction is None:
        prediction = header.estimated_s
    model_id = (meta.get("printer_model_id") or "").strip() or None
    plate = Plate(
        index=index,
        gcode_path=gcode_path,
        prediction_s=prediction,
        weight_g=_float(meta.get("weight")),
        layers=header.layers,
        filaments=tuple(filaments),
        objects=tuple(objects),
        gcode_md5=md5,
    )
    return plate, model_id


def _as_bytes(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"read_project takes bytes, got {type(data).__name__}")
    return bytes(data)


def read_project(data: bytes | bytearray | memoryview) -> Project:
    """Read a sliced project from the bytes of a ``.gcode.3mf``.

    Raises :class:`ThreeMFError` (a ``ValueError``) for anything that is not a readable sliced
    project: not a ZIP, damaged members, no ``Metadata/slice_info.config``, malformed XML, no
    sliced plate. Numbers that do not parse become ``None`` rather than errors. Only the first
    :data:`GCODE_HEAD_BYTES` of each plate's G-code are decompressed.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(_as_bytes(data)))
    except _ZIP_ERRORS as exc:
        raise ThreeMFError(f"not a 3MF file (not a readable ZIP archive): {exc}") from exc
    with archive:
        members = _Archive(archive)
        slice_info = members.read(SLICE_INFO, _MAX_CONFIG_BYTES)
        if slice_info is None:
            raise ThreeMFError(
                f"no {SLICE_INFO} in the archive: not a project sliced by Bambu Studio or a fork"
            )
        root = _parse_xml(slice_info, SLICE_INFO)
        types, colours = _settings_lists(members.read(PROJECT_SETTINGS, _MAX_CONFIG_BYTES))
        elements = root.findall("plate") or root.findall(".//plate")
        plates: list[Plate] = []
        printer_model: str | None = None
        seen: set[int] = set()
        for position, element in enumerate(elements, start=1):
            plate, model_id = _plate(element, position, members, types, colours)
            if plate.index in seen:
                raise ThreeMFError(f"{SLICE_INFO} lists plate {plate.index} twice")
            seen.add(plate.index)
            plates.append(plate)
            printer_model = printer_model or model_id
    if not plates:
        raise ThreeMFError(f"{SLICE_INFO} has no <plate>: the project was saved without slicing")
    plates.sort(key=lambda p: p.index)
    return Project(plates=tuple(plates), printer_model=printer_model)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_DEFAULT_FILAMENTS: Final = (Filament(1, "PLA", "#FFFFFF", used_g=5.0, used_m=1.68),)
_DEFAULT_OBJECTS: Final = (PlateObject(1, "object_1"),)
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
_BAMBU_NS_GCODE_REL: Final = "http://schemas.bambulab.com/package/2021/gcode"
_OPC_RELS_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"


@dataclass(frozen=True, slots=True)
class PlateSpec:
    """One plate for :func:`build_project`. ``weight_g`` defaults to the sum of ``used_g``."""

    index: int = 1
    layers: int = 10
    prediction_s: int = 600
    filaments: tuple[Filament, ...] = _DEFAULT_FILAMENTS
    objects: tuple[PlateObject, ...] = _DEFAULT_OBJECTS
    weight_g: float | None = None
    layer_height: float = 0.2


def _duration(seconds: int) -> str:
    d, rest = divmod(max(0, seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{d}d"] if d else []
    if d or h:
        parts.append(f"{h}h")
    parts += [f"{m}m", f"{s}s"]
    return " ".join(parts)


def _num(value: float) -> str:
    return f"{value:.2f}"


def _check_spec(spec: PlateSpec) -> None:
    if isinstance(spec.index, bool) or not isinstance(spec.index, int) or spec.index < 1:
        raise ValueError(f"plate index must be an int >= 1, got {spec.index!r}")
    if isinstance(spec.layers, bool) or not isinstance(spec.layers, int) or not 1 <= spec.layers <= 100_000:
        raise ValueError(f"plate {spec.index}: layers must be 1..100000, got {spec.layers!r}")
    if isinstance(spec.prediction_s, bool) or not isinstance(spec.prediction_s, int) or spec.prediction_s < 0:
        raise ValueError(f"plate {spec.index}: prediction_s must be an int >= 0, got {spec.prediction_s!r}")
    if not (isinstance(spec.layer_height, int | float) and 0 < spec.layer_height <= 10):
        raise ValueError(f"plate {spec.index}: layer_height must be in (0, 10] mm, got {spec.layer_height!r}")
    if not spec.filaments:
        raise ValueError(f"plate {spec.index}: needs at least one filament")
    ids: set[int] = set()
    for f in spec.filaments:
        if isinstance(f.id, bool) or not isinstance(f.id, int) or f.id < 1 or f.id in ids:
            raise ValueError(f"plate {spec.index}: filament ids must be unique ints >= 1, got {f.id!r}")
        ids.add(f.id)
        if not f.material.strip() or any(c in f.material for c in "\r\n;"):
            raise ValueError(f"plate {spec.index}: filament {f.id} needs a material name, got {f.material!r}")
        if _color(f.color) is None:
            raise ValueError(f"plate {spec.index}: filament {f.id} colour must be #RRGGBB, got {f.color!r}")
        for label, amount in (("used_g", f.used_g), ("used_m", f.used_m)):
            if amount is not None and not (isinstance(amount, int | float) and 0 <= amount < math.inf):
                raise ValueError(f"plate {spec.index}: filament {f.id} {label} must be >= 0, got {amount!r}")
    oids: set[int] = set()
    for o in spec.objects:
        if isinstance(o.id, bool) or not isinstance(o.id, int) or o.id < 0 or o.id in oids:
            raise ValueError(f"plate {spec.index}: object ids must be unique ints >= 0, got {o.id!r}")
        oids.add(o.id)


def _gcode(spec: PlateSpec, filaments: Sequence[Filament], nozzle: float, model_name: str | None) -> bytes:
    total = spec.prediction_s
    layers = spec.layers
    lh = float(spec.layer_height)
    label_ids = ",".join(str(o.id) for o in spec.objects)
    lines = [
        "; HEADER_BLOCK_START",
        "; synthetic project written by bambulab (not a slicer output)",
        f"; model printing time: {_duration(total * 9 // 10)}; total estimated time: {_duration(total)}",
        f"; total layer number: {layers}",
        f"; model label id: {label_ids}",
        "; HEADER_BLOCK_END",
        "",
        "; CONFIG_BLOCK_START",
        f"; filament_type = {';'.join(f.material for f in filaments)}",
        f"; filament_colour = {';'.join(_color(f.color) or '#FFFFFF' for f in filaments)}",
        f"; layer_height = {lh:g}",
        f"; nozzle_diameter = {nozzle:g}",
    ]
    if model_name:
        lines.append(f"; printer_model = {model_name}")
    lines += [
        "; CONFIG_BLOCK_END",
        "",
        "; EXECUTABLE_BLOCK_START",
        f"M73 P0 R{math.ceil(total / 60)}",
        "G28 ; home",
        "M83 ; relative extrusion",
    ]
    objects = spec.objects or (PlateObject(0, ""),)
    for layer in range(1, layers + 1):
        z = lh * layer
        done = (layer - 1) / layers
        lines += [
            "; CHANGE_LAYER",
            f"; Z_HEIGHT: {z:.3g}",
            f"; LAYER_HEIGHT: {lh:g}",
            f"; layer num/total_layer_count: {layer}/{layers}",
            "; update layer progress",
            f"M73 L{layer}",
            "M991 S0 P0 ;notify layer change",
            f"M73 P{int(done * 100)} R{math.ceil(total * (1 - done) / 60)}",
            f"G1 Z{z:.3f} F1200",
        ]
        for k, obj in enumerate(objects):
            x, y = 100 + 30 * (k % 4), 100 + 30 * (k // 4 % 4)
            if spec.objects:
                lines.append(f"; start printing object, unique label id: {obj.id}")
            lines += [
                f"G1 X{x} Y{y} F12000",
                f"G1 X{x + 20} Y{y} E0.8 F3000",
                f"G1 X{x + 20} Y{y + 20} E0.8",
                f"G1 X{x} Y{y + 20} E0.8",
                f"G1 X{x} Y{y} E0.8",
            ]
            if spec.objects:
                lines.append(f"; stop printing object, unique label id: {obj.id}")
    lines += ["M73 P100 R0", "M400", "; EXECUTABLE_BLOCK_END", ""]
    return "\n".join(lines).encode("utf-8")


def _xml(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = bytes(ET.tostring(root, encoding="utf-8", xml_declaration=False))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def _slice_info(specs: Sequence[PlateSpec], printer_model_id: str | None, nozzle: float) -> bytes:
    root = ET.Element("config")
    header = ET.SubElement(root, "header")
    ET.SubElement(header, "header_item", key="X-BBL-Client-Type", value="slicer")
    ET.SubElement(header, "header_item", key="X-BBL-Client-Version", value="")
    for spec in specs:
        plate = ET.SubElement(root, "plate")
        weight = spec.weight_g
        if weight is None:
            weight = sum(f.used_g or 0.0 for f in spec.filaments)
        meta: list[tuple[str, str]] = [("index", str(spec.index))]
        if printer_model_id:
            meta.append(("printer_model_id", printer_model_id))
        meta += [
            ("nozzle_diameters", f"{nozzle:g}"),
            ("timelapse_type", "0"),
            ("prediction", str(spec.prediction_s)),
            ("weight", _num(weight)),
            ("outside", "false"),
            ("support_used", "false"),
            ("label_object_enabled", "true" if spec.objects else "false"),
        ]
        for key, value in meta:
            ET.SubElement(plate, "metadata", key=key, value=value)
        for obj in spec.objects:
            ET.SubElement(plate, "object", identify_id=str(obj.id), name=obj.name, skipped="false")
        for f in spec.filaments:
            attrs = {"id": str(f.id), "type": f.material, "color": _color(f.color) or "#FFFFFF"}
            if f.used_m is not None:
                attrs["used_m"] = _num(f.used_m)
            if f.used_g is not None:
                attrs["used_g"] = _num(f.used_g)
            ET.SubElement(plate, "filament", attrs)
    return _xml(root)


def _model_settings(specs: Sequence[PlateSpec]) -> bytes:
    root = ET.Element("config")
    for spec in specs:
        plate = ET.SubElement(root, "plate")
        for key, value in (
            ("plater_id", str(spec.index)),
            ("plater_name", ""),
            ("locked", "false"),
            ("gcode_file", f"Metadata/plate_{spec.index}.gcode"),
            ("pattern_bbox_file", f"Metadata/plate_{spec.index}.json"),
        ):
            ET.SubElement(plate, "metadata", key=key, value=value)
    return _xml(root)


def _plate_json(spec: PlateSpec, nozzle: float, bed_type: str) -> bytes:
    boxes: list[dict[str, Any]] = []
    corners: list[tuple[int, int]] = []
    for k, obj in enumerate(spec.objects):
        x, y = 100 + 30 * (k % 4), 100 + 30 * (k // 4 % 4)
        corners += [(x, y), (x + 20, y + 20)]
        boxes.append({"id": obj.id, "name": obj.name, "layer_height": spec.layer_height,
                      "area": 400.0, "bbox": [x, y, x + 20, y + 20]})
    if corners:
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        bbox_all = [min(xs), min(ys), max(xs), max(ys)]
    else:
        bbox_all = [0, 0, 0, 0]
    doc = {
        "bbox_all": bbox_all,
        "bbox_objects": boxes,
        "bed_type": bed_type,
        "filament_colors": [_color(f.color) or "#FFFFFF" for f in spec.filaments],
        "filament_ids": [f.id - 1 for f in spec.filaments],
        "first_extruder": 0,
        "is_seq_print": False,
        "nozzle_diameter": nozzle,
        "version": 2,
    }
    return json.dumps(doc, indent=4).encode("utf-8")


def _project_filaments(specs: Sequence[PlateSpec]) -> list[Filament]:
    by_id: dict[int, Filament] = {}
    for spec in specs:
        for f in spec.filaments:
            known = by_id.get(f.id)
            if known is not None and (known.material, _color(known.color)) != (f.material, _color(f.color)):
                raise ValueError(
                    f"filament {f.id} is {known.material} {known.color} on one plate and "
                    f"{f.material} {f.color} on another; a project has one definition per filament id"
                )
            by_id.setdefault(f.id, f)
    count = max(by_id)
    return [by_id.get(i, Filament(i, "PLA", "#FFFFFF")) for i in range(1, count + 1)]


def _model_name(printer_model_id: str | None) -> str | None:
    if not printer_model_id:
        return None
    from bambulab.protocol.models import model_by_code

    try:
        return f"Bambu Lab {model_by_code(printer_model_id).name}"
    except KeyError:
        return None


def build_project(
    plates: Sequence[PlateSpec] | None = None,
    *,
    printer_model_id: str | None = None,
    nozzle_diameter: float = 0.4,
    bed_type: str = "textured_plate",
) -> bytes:
    """Write a small, valid Bambu-style ``.gcode.3mf`` and return its bytes.

    Each plate gets ``Metadata/plate_N.gcode`` (header with the layer count and estimated time, a
    config block, and per layer the layer-change comments, ``M73 L<layer>`` and
    ``M73 P<percent> R<minutes left>``), its ``.md5`` and ``plate_N.json``; the project gets
    ``slice_info.config``, ``project_settings.config``, ``model_settings.config`` and the 3MF
    package files. ``printer_model_id`` is a model code such as ``"C12"``. The output is
    deterministic (fixed timestamps). Raises ``ValueError`` for inconsistent input.
    """
    specs = list(plates) if plates is not None else [PlateSpec()]
    if not specs:
        raise ValueError("build_project needs at least one plate")
    seen: set[int] = set()
    for spec in specs:
        if not isinstance(spec, PlateSpec):
            raise ValueError(f"plates must be PlateSpec values, got {type(spec).__name__}")
        _check_spec(spec)
        if spec.index in seen:
            raise ValueError(f"plate index {spec.index} appears twice")
        seen.add(spec.index)
    if not (isinstance(nozzle_diameter, int | float) and 0 < nozzle_diameter <= 5):
        raise ValueError(f"nozzle_diameter must be in (0, 5] mm, got {nozzle_diameter!r}")
    if printer_model_id is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", printer_model_id):
        raise ValueError(f"printer_model_id must be a model code such as 'C12', got {printer_model_id!r}")
    if not re.fullmatch(r"[a-z_]{1,40}", bed_type):
        raise ValueError(f"bed_type must be a name such as 'textured_plate', got {bed_type!r}")
    nozzle = float(nozzle_diameter)
    model_name = _model_name(printer_model_id)
    project_filaments = _project_filaments(specs)

    members: list[tuple[str, bytes]] = [
        ("[Content_Types].xml", _CONTENT_TYPES),
        ("_rels/.rels", _ROOT_RELS),
        ("3D/3dmodel.model", _MODEL),
    ]
    relations = ET.Element("Relationships", xmlns=_OPC_RELS_NS)
    for n, spec in enumerate(sorted(specs, key=lambda s: s.index), start=1):
        gcode = _gcode(spec, project_filaments, nozzle, model_name)
        path = f"Metadata/plate_{spec.index}.gcode"
        members += [
            (path, gcode),
            (path + ".md5", hashlib.md5(gcode, usedforsecurity=False).hexdigest().upper().encode("ascii")),
            (f"Metadata/plate_{spec.index}.json", _plate_json(spec, nozzle, bed_type)),
        ]
        ET.SubElement(relations, "Relationship", Target=f"/{path}", Id=f"rel-{n}", Type=_BAMBU_NS_GCODE_REL)
    settings: dict[str, Any] = {
        "filament_type": [f.material for f in project_filaments],
        "filament_colour": [_color(f.color) or "#FFFFFF" for f in project_filaments],
        "layer_height": f"{specs[0].layer_height:g}",
        "nozzle_diameter": [f"{nozzle:g}"],
        "curr_bed_type": bed_type,
    }
    if model_name:
        settings["printer_model"] = model_name
        settings["printer_settings_id"] = f"{model_name} {nozzle:g} nozzle"
    members += [
        (SLICE_INFO, _slice_info(sorted(specs, key=lambda s: s.index), printer_model_id, nozzle)),
        (PROJECT_SETTINGS, json.dumps(settings, indent=4).encode("utf-8")),
        (MODEL_SETTINGS, _model_settings(sorted(specs, key=lambda s: s.index))),
        ("Metadata/_rels/model_settings.config.rels", _xml(relations)),
    ]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload)
    return out.getvalue()


_CONTENT_TYPES: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\n'
    b' <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\n'
    b' <Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>\n'
    b' <Default Extension="png" ContentType="image/png"/>\n'
    b' <Default Extension="gcode" ContentType="text/x.gcode"/>\n'
    b"</Types>\n"
)
_ROOT_RELS: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\n'
    b' <Relationship Target="/3D/3dmodel.model" Id="rel-1"'
    b' Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>\n'
    b"</Relationships>\n"
)
_MODEL: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<model unit="millimeter" xml:lang="en-US"'
    b' xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">\n'
    b' <metadata name="Application">bambulab</metadata>\n'
    b" <resources/>\n"
    b" <build/>\n"
    b"</model>\n"
)


# --------------------------------------------------------------------------------------------
# AMS auto-mapping
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrayInfo:
    """A loaded tray as the printer reports it.

    ``global_index`` is ``unit*4 + slot`` for 4-slot units, 128..135 for AMS HT units and 254 (or
    255) for the external spool. ``color`` is ``RRGGBBAA`` as reported (``#RRGGBB`` also works).
    """

    global_index: int
    material: str
    color: str


def _rgb(value: str) -> tuple[int, int, int] | None:
    hex6 = _color(value)
    if hex6 is None:
        return None
    return int(hex6[1:3], 16), int(hex6[3:5], 16), int(hex6[5:7], 16)


def _distance(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> float:
    """Perceptually weighted RGB distance ("redmean"); unknown colours are farthest."""
    if a is None or b is None:
        return math.inf
    rmean = (a[0] + b[0]) / 2
    dr, dg, db = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return math.sqrt((2 + rmean / 256) * dr * dr + 4 * dg * dg + (2 + (255 - rmean) / 256) * db * db)


def _material_key(material: str) -> str:
    return material.strip().upper()


def match_ams_mapping(filaments: Sequence[Filament], trays: Iterable[TrayInfo]) -> list[int]:
    """Map each filament of a plate to a loaded tray, the way "auto" mapping does.

    A filament can only go to a tray of the same material (case-insensitive). Among those the
    nearest colour wins, and distinct trays are preferred: pairs are assigned best-first so two
    filaments share a tray only when there are not enough matching trays. Ties go to the lower
    tray index.

    Returns the ``ams_mapping`` list for ``project_file``: entry ``i`` is the global tray index
    for filament id ``i + 1``, and ids the plate does not use are ``-1``. Raises
    :class:`AmsMappingError` naming the first filament whose material no tray has.
    """
    loaded = [t for t in trays if t.material.strip()]
    if not filaments:
        return []
    for filament in filaments:
        if isinstance(filament.id, bool) or not isinstance(filament.id, int):
            raise AmsMappingError(f"filament id must be an int, got {filament.id!r}")
        if not 1 <= filament.id <= _MAX_FILAMENT_ID:
            raise AmsMappingError(f"filament id must be 1..{_MAX_FILAMENT_ID}, got {filament.id}")
    pairs: list[tuple[float, int, int, int]] = []  # (distance, tray index, filament pos, tray pos)
    for fpos, filament in enumerate(filaments):
        want = _material_key(filament.material)
        candidates = [(tpos, t) for tpos, t in enumerate(loaded) if _material_key(t.material) == want]
        if not candidates:
            have = sorted({t.material.strip() for t in loaded}) or ["none"]
            raise AmsMappingError(
                f"filament {filament.id} ({filament.material} {filament.color}) has no loaded tray of "
                f"that material; loaded: {', '.join(have)}"
            )
        frgb = _rgb(filament.color)
        for tpos, tray in candidates:
            pairs.append((_distance(frgb, _rgb(tray.color)), tray.global_index, fpos, tpos))
    pairs.sort()
    chosen: dict[int, int] = {}
    used: set[int] = set()
    for _dist, _index, fpos, tpos in pairs:
        if fpos not in chosen and tpos not in used:
            chosen[fpos] = tpos
            used.add(tpos)
    for _dist, _index, fpos, tpos in pairs:  # more filaments than matching trays: share the nearest
        chosen.setdefault(fpos, tpos)
    size = max(f.id for f in filaments)
    mapping = [-1] * size
    for fpos, filament in enumerate(filaments):
        mapping[filament.id - 1] = loaded[chosen[fpos]].global_index
    return mapping

