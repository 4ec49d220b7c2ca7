"""Reading and writing Bambu sliced 3MF projects, and AMS auto-mapping."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bambulab.protocol.threemf import (
    GCODE_HEAD_BYTES,
    AmsMappingError,
    Filament,
    GcodeHeader,
    PlateObject,
    PlateSpec,
    Project,
    ThreeMFError,
    TrayInfo,
    build_project,
    match_ams_mapping,
    read_gcode_header,
    read_project,
)


def make_zip(members: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --------------------------------------------------------------------------------------------
# A hand-written sample in the layout Bambu Studio writes (our own content, not a copied file).
# --------------------------------------------------------------------------------------------

REAL_SLICE_INFO = """<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value="02.02.01.60"/>
  </header>
  <plate>
    <metadata key="index" value="1"/>
    <metadata key="extruder_type" value="0"/>
    <metadata key="nozzle_volume_type" value="0"/>
    <metadata key="printer_model_id" value="C12"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="timelapse_type" value="0"/>
    <metadata key="prediction" value="5025"/>
    <metadata key="weight" value="21.37"/>
    <metadata key="first_layer_time" value="97.5"/>
    <metadata key="outside" value="false"/>
    <metadata key="support_used" value="false"/>
    <metadata key="label_object_enabled" value="true"/>
    <metadata key="filament_maps" value="1 1 1"/>
    <object identify_id="143" name="gear_left.stl" skipped="false" />
    <object identify_id="187" name="gear_right.stl" skipped="false" />
    <filament id="1" tray_info_idx="GFA00" type="PLA" color="#F2F2F0" used_m="4.12" used_g="12.29"/>
    <filament id="3" tray_info_idx="GFL99" type="" color="#1a1a1aff" used_m="3.05" used_g="9.08"/>
    <warning msg="bed_temperature_too_high_than_filament" level="1" error_code ="1000C001"  />
  </plate>
  <plate>
    <metadata key="index" value="3"/>
    <metadata key="printer_model_id" value="C12"/>
    <metadata key="prediction" value="not-a-number"/>
    <metadata key="weight" value="-4"/>
    <object identify_id="305" name="lid &amp; hinge" skipped="false" />
    <filament id="2" tray_info_idx="GFG00" type="PETG" color="#3366CC" used_m="0.80" used_g="2.50"/>
  </plate>
</config>
"""

REAL_PROJECT_SETTINGS = json.dumps(
    {
        "filament_type": ["PLA", "PETG", "PLA"],
        "filament_colour": ["#F2F2F0", "#3366CC", "#1A1A1A"],
        "printer_model": "Bambu Lab P1S",
        "layer_height": "0.2",
        "nozzle_diameter": ["0.4"],
    },
    indent=4,
)

REAL_PLATE_1_GCODE = """; HEADER_BLOCK_START
; BambuStudio 02.02.01.60
; model printing time: 1h 15m 2s; total estimated time: 1h 23m 45s
; total layer number: 187
; total filament length [mm] : 4120.33,0.00,3050.10
; model label id: 143,187
; HEADER_BLOCK_END

; CONFIG_BLOCK_START
; filament_type = PLA;PETG;PLA
; layer_change_gcode = ; layer num/total_layer_count: {layer_num+1}/[total_layer_count]
; CONFIG_BLOCK_END

; EXECUTABLE_BLOCK_START
M73 P0 R83
; CHANGE_LAYER
; Z_HEIGHT: 0.2
; LAYER_HEIGHT: 0.2
; layer num/total_layer_count: 1/187
; update layer progress
M73 L1
M991 S0 P0 ;notify layer change
"""

# Plate 3 was sliced by something that wrote no header block: only layer-change comments.
REAL_PLATE_3_GCODE = "M73 P0 R1\r\n; CHANGE_LAYER\r\n; layer num/total_layer_count: 1/42\r\nM73 L1\r\n"


def real_layout(**overrides: bytes | str | None) -> bytes:
    members: dict[str, bytes | str | None] = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?>\n<Types/>',
        "_rels/.rels": "<Relationships/>",
        "3D/3dmodel.model": "<model/>",
        "Metadata/slice_info.config": REAL_SLICE_INFO,
        "Metadata/project_settings.config": REAL_PROJECT_SETTINGS,
        "Metadata/model_settings.config": "<config><plate><metadata key=\"plater_id\" value=\"1\"/></plate></config>",
        "Metadata/plate_1.gcode": REAL_PLATE_1_GCODE,
        # Lower case here, to check the reader normalises it.
        "Metadata/plate_1.gcode.md5": hashlib.md5(REAL_PLATE_1_GCODE.encode(), usedforsecurity=False).hexdigest(),
        "Metadata/plate_1.json": json.dumps({"bbox_all": [90.1, 88.0, 165.9, 170.2], "bed_type": "textured_plate",
                                             "filament_ids": [0, 2], "version": 2}),
        "Metadata/plate_1.png": b"\x89PNG\r\n\x1a\n",
        "Metadata/plate_3.gcode": REAL_PLATE_3_GCODE,
        "Metadata/plate_3.gcode.md5": "not an md5",
    }
    members.update(overrides)
    return make_zip({k: v for k, v in members.items() if v is not None})


def test_reads_the_real_layout() -> None:
    project = read_project(real_layout())
    assert project.printer_model == "C12"
    assert [p.index for p in project.plates] == [1, 3]

    first = project.plate(1)
    assert first.gcode_path == "Metadata/plate_1.gcode"
    assert first.prediction_s == 5025
    assert first.weight_g == pytest.approx(21.37)
    assert first.layers == 187
    assert first.gcode_md5 == hashlib.md5(REAL_PLATE_1_GCODE.encode(), usedforsecurity=False).hexdigest().upper()
    assert first.objects == (PlateObject(143, "gear_left.stl"), PlateObject(187, "gear_right.stl"))
    assert first.filaments == (
        Filament(1, "PLA", "#F2F2F0", used_g=12.29, used_m=4.12),
        # empty type attribute: material from project_settings; 8-digit colour trimmed to #RRGGBB
        Filament(3, "PLA", "#1A1A1A", used_g=9.08, used_m=3.05),
    )

    third = project.plate(3)
    assert third.gcode_path == "Metadata/plate_3.gcode"
    assert third.prediction_s is None  # unparseable numbers become None, not errors
    assert third.weight_g is None
    assert third.layers == 42  # from the layer-change comment, CRLF line ends
    assert third.gcode_md5 is None
    assert third.objects == (PlateObject(305, "lid & hinge"),)
    assert third.filaments == (Filament(2, "PETG", "#3366CC", used_g=2.5, used_m=0.8),)


def test_plate_lookup_error_names_the_plates() -> None:
    project = read_project(real_layout())
    with pytest.raises(KeyError, match=r"plate 2 is not in this project \(plates: 1, 3\)"):
        project.plate(2)


def test_plate_without_gcode_member_has_no_layers_and_falls_back() -> None:
    project = read_project(real_layout(**{"Metadata/plate_1.gcode": None, "Metadata/plate_1.gcode.md5": None}))
    plate = project.plate(1)
    assert plate.layers is None
    assert plate.gcode_md5 is None
    assert plate.prediction_s == 5025


def test_prediction_falls_back_to_the_gcode_header() -> None:
    info = REAL_SLICE_INFO.replace('<metadata key="prediction" value="5025"/>', "")
    assert read_project(real_layout(**{"Metadata/slice_info.config": info})).plate(1).prediction_s == 5025


def test_missing_or_broken_project_settings_is_tolerated() -> None:
    for settings_doc in (None, "{not json", "[1, 2]", json.dumps({"filament_type": "PLA;PLA;PETG"})):
        project = read_project(real_layout(**{"Metadata/project_settings.config": settings_doc}))
        third = project.plate(1).filaments[1]
        assert third.id == 3
        assert third.color == "#1A1A1A"
    joined = read_project(real_layout(**{"Metadata/project_settings.config": json.dumps(
        {"filament_type": "PLA;PLA;PETG"})}))
    assert joined.plate(1).filaments[1].material == "PETG"


def test_no_printer_model_and_plates_without_index() -> None:
    info = """<config><plate><filament id="1" type="ABS" color="#FF0000"/></plate>
              <plate><metadata key="index" value="x"/></plate></config>"""
    project = read_project(make_zip({"Metadata/slice_info.config": info}))
    assert project.printer_model is None
    assert [p.index for p in project.plates] == [1, 2]  # position when the index is missing or bad
    assert project.plate(1).filaments == (Filament(1, "ABS", "#FF0000"),)
    assert project.plate(2).filaments == ()


def test_member_names_are_matched_leniently() -> None:
    data = make_zip({"metadata\\SLICE_INFO.config": REAL_SLICE_INFO, "Metadata/plate_1.gcode": REAL_PLATE_1_GCODE})
    assert read_project(data).plate(1).layers == 187


def test_accepts_bytearray_and_memoryview() -> None:
    data = real_layout()
    assert read_project(bytearray(data)) == read_project(memoryview(data)) == read_project(data)
    with pytest.raises(TypeError):
        read_project("not bytes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a 3MF"),
        (b"hello, world", "not a 3MF"),
        (b"PK\x03\x04" + b"\x00" * 40, "not a 3MF"),
        (make_zip({"3D/3dmodel.model": "<model/>"}), "no Metadata/slice_info.config"),
        (make_zip({"Metadata/slice_info.config": "<config><plate>"}), "not well-formed XML"),
        (make_zip({"Metadata/slice_info.config": b"\xff\xfe\x00garbage"}), "not well-formed XML"),
        (make_zip({"Metadata/slice_info.config": '<?xml version="1.0"?><config><header/></config>'}), "no <plate>"),
        (make_zip({"Metadata/slice_info.config": "<config><plate><metadata key='index' value='1'/></plate>"
                                                 "<plate><metadata key='index' value='1'/></plate></config>"}),
         "plate 1 twice"),
        (make_zip({"Metadata/slice_info.config": '<!DOCTYPE x [<!ENTITY a "aaaa">]><config>&a;</config>'}), "DTD"),
    ],
)
def test_unreadable_inputs_raise_threemf_error(data: bytes, match: str) -> None:
    with pytest.raises(ThreeMFError, match=match):
        read_project(data)
    assert issubclass(ThreeMFError, ValueError)


def test_truncated_and_corrupted_archives() -> None:
    data = build_project([PlateSpec(layers=50)])
    with pytest.raises(ThreeMFError):
        read_project(data[: len(data) // 2])
    # Flip bytes inside the compressed slice_info.config: the member no longer inflates or its CRC fails.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("Metadata/slice_info.config")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    broken = bytearray(data)
    for i in range(start, start + min(info.compress_size, 40)):
        broken[i] ^= 0x5A
    with pytest.raises(ThreeMFError, match=r"slice_info\.config"):
        read_project(bytes(broken))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_threemf_error(data: bytes) -> None:
    try:
        project = read_project(data)
    except ThreeMFError:
        return
    assert isinstance(project, Project)  # pragma: no cover - random bytes are never a project


_VALID = build_project(
    [PlateSpec(1, layers=3, objects=(PlateObject(5, "a"),)), PlateSpec(2, layers=2)],
    printer_model_id="N2S",
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(_VALID) - 1), st.integers(1, 255)),
                min_size=1, max_size=8))
def test_mutated_projects_raise_only_threemf_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_VALID)
    for position, mask in flips:
        data[position] ^= mask
    try:
        project = read_project(bytes(data))
    except ThreeMFError:
        return
    assert isinstance(project, Project)


@given(st.text(max_size=300))
def test_arbitrary_slice_info_text_raises_only_threemf_error(text: str) -> None:
    with contextlib.suppress(ThreeMFError):
        read_project(make_zip({"Metadata/slice_info.config": "<config><plate>" + text + "</plate></config>"}))


# --------------------------------------------------------------------------------------------
# G-code header
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (REAL_PLATE_1_GCODE, GcodeHeader(layers=187, estimated_s=5025)),
        (REAL_PLATE_3_GCODE, GcodeHeader(layers=42, estimated_s=None)),
        ("; total estimated time: 1d 2h 3m 4s\n", GcodeHeader(layers=None, estimated_s=93784)),
        ("; total estimated time: 45s\n;TOTAL LAYER NUMBER: 3\n", GcodeHeader(layers=3, estimated_s=45)),
        ("G28\nG1 X0\n", GcodeHeader()),
        ("", GcodeHeader()),
        ("; total layer number: 99999999999999999999\n", GcodeHeader()),
    ],
)
def test_read_gcode_header(head: str, expected: GcodeHeader) -> None:
    assert read_gcode_header(head) == expected
    assert read_gcode_header(head.encode()) == expected


def test_header_block_wins_over_layer_comments() -> None:
    text = "; total layer number: 10\n; layer num/total_layer_count: 1/11\n"
    assert read_gcode_header(text).layers == 10


@given(st.binary(max_size=1024))
def test_read_gcode_header_never_raises(data: bytes) -> None:
    assert isinstance(read_gcode_header(data), GcodeHeader)


def test_only_the_head_of_the_gcode_is_read() -> None:
    late = "G1 X0\n" * (GCODE_HEAD_BYTES // 6 + 10) + "; layer num/total_layer_count: 1/77\n"
    info = '<config><plate><metadata key="index" value="1"/></plate></config>'
    project = read_project(make_zip({"Metadata/slice_info.config": info, "Metadata/plate_1.gcode": late}))
    assert project.plate(1).layers is None
    early = "; layer num/total_layer_count: 1/77\n" + late
    project = read_project(make_zip({"Metadata/slice_info.config": info, "Metadata/plate_1.gcode": early}))
    assert project.plate(1).layers == 77


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def test_round_trip_multiple_plates() -> None:
    specs = [
        PlateSpec(
            index=1, layers=25, prediction_s=1234,
            filaments=(Filament(1, "PLA", "#FFFFFF", used_g=10.5, used_m=3.52),
                       Filament(2, "PETG", "#00AE42", used_g=2.25, used_m=0.75)),
            objects=(PlateObject(58, "cube <1> & co"), PlateObject(77, "benchy")),
        ),
        PlateSpec(index=4, layers=3, prediction_s=90, filaments=(Filament(3, "ABS", "#112233"),), objects=(),
                  weight_g=7.0),
    ]
    data = build_project(specs, printer_model_id="BL-P001")
    project = read_project(data)
    assert project.printer_model == "BL-P001"
    assert [p.index for p in project.plates] == [1, 4]
    for spec, plate in zip(specs, project.plates, strict=True):
        assert plate.gcode_path == f"Metadata/plate_{spec.index}.gcode"
        assert plate.layers == spec.layers
        assert plate.prediction_s == spec.prediction_s
        assert plate.filaments == spec.filaments
        assert plate.objects == spec.objects
    assert project.plate(1).weight_g == pytest.approx(12.75)  # default: sum of used_g
    assert project.plate(4).weight_g == pytest.approx(7.0)
    files = members_of(data)
    for plate in project.plates:
        gcode = files[plate.gcode_path]
        assert plate.gcode_md5 == hashlib.md5(gcode, usedforsecurity=False).hexdigest().upper()
        assert files[plate.gcode_path + ".md5"] == plate.gcode_md5.encode()


def test_default_project_is_readable() -> None:
    project = read_project(build_project())
    assert project.printer_model is None
    (plate,) = project.plates
    assert (plate.index, plate.layers, plate.prediction_s) == (1, 10, 600)
    assert plate.filaments[0].material == "PLA"


def test_writer_output_layout_and_gcode() -> None:
    data = build_project([PlateSpec(2, layers=4, prediction_s=3600, objects=(PlateObject(9, "x"),))],
                         printer_model_id="C12")
    files = members_of(data)
    assert set(files) == {
        "[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model", "Metadata/plate_2.gcode",
        "Metadata/plate_2.gcode.md5", "Metadata/plate_2.json", "Metadata/slice_info.config",
        "Metadata/project_settings.config", "Metadata/model_settings.config",
        "Metadata/_rels/model_settings.config.rels",
    }
    gcode = files["Metadata/plate_2.gcode"].decode()
    assert gcode.startswith("; HEADER_BLOCK_START\n")
    assert "; total layer number: 4\n" in gcode
    assert "; total estimated time: 1h 0m 0s" in gcode
    assert re.findall(r"^M73 L(\d+)$", gcode, re.M) == ["1", "2", "3", "4"]
    assert re.findall(r"^; layer num/total_layer_count: (\d+)/4$", gcode, re.M) == ["1", "2", "3", "4"]
    progress = [(int(p), int(r)) for p, r in re.findall(r"^M73 P(\d+) R(\d+)$", gcode, re.M)]
    assert progress[0] == (0, 60)
    assert progress[-1] == (100, 0)
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert "; start printing object, unique label id: 9" in gcode
    assert "; printer_model = Bambu Lab P1S" in gcode
    plate_json = json.loads(files["Metadata/plate_2.json"])
    assert plate_json["bbox_objects"][0]["id"] == 9
    assert plate_json["filament_ids"] == [0]
    settings_doc = json.loads(files["Metadata/project_settings.config"])
    assert settings_doc["filament_type"] == ["PLA"]
    assert settings_doc["printer_model"] == "Bambu Lab P1S"
    rels = files["Metadata/_rels/model_settings.config.rels"].decode()
    assert 'Target="/Metadata/plate_2.gcode"' in rels
    assert "http://schemas.bambulab.com/package/2021/gcode" in rels


def test_writer_is_deterministic() -> None:
    specs = [PlateSpec(1), PlateSpec(2, layers=5)]
    assert build_project(specs, printer_model_id="N1") == build_project(specs, printer_model_id="N1")


def test_project_filaments_fill_gaps() -> None:
    data = build_project([PlateSpec(1, filaments=(Filament(3, "TPU", "#FF00FF"),))])
    settings_doc = json.loads(members_of(data)["Metadata/project_settings.config"])
    assert settings_doc["filament_type"] == ["PLA", "PLA", "TPU"]
    assert settings_doc["filament_colour"] == ["#FFFFFF", "#FFFFFF", "#FF00FF"]


@pytest.mark.parametrize(
    ("plates", "kwargs", "match"),
    [
        ([], {}, "at least one plate"),
        ([PlateSpec(0)], {}, "index"),
        ([PlateSpec(1), PlateSpec(1)], {}, "twice"),
        ([PlateSpec(layers=0)], {}, "layers"),
        ([PlateSpec(prediction_s=-1)], {}, "prediction_s"),
        ([PlateSpec(layer_height=0)], {}, "layer_height"),
        ([PlateSpec(filaments=())], {}, "filament"),
        ([PlateSpec(filaments=(Filament(1, "PLA", "#FFF"),))], {}, "colour"),
        ([PlateSpec(filaments=(Filament(1, "", "#FFFFFF"),))], {}, "material"),
        ([PlateSpec(filaments=(Filament(1, "PLA", "#FFFFFF"), Filament(1, "PLA", "#FFFFFF")))], {}, "unique"),
        ([PlateSpec(filaments=(Filament(1, "PLA", "#FFFFFF", used_g=-1),))], {}, "used_g"),
        ([PlateSpec(objects=(PlateObject(1, "a"), PlateObject(1, "b")))], {}, "object ids"),
        ([PlateSpec(1), PlateSpec(2, filaments=(Filament(1, "PETG", "#FFFFFF"),))], {}, "one definition"),
        ([PlateSpec()], {"printer_model_id": "C 12"}, "printer_model_id"),
        ([PlateSpec()], {"nozzle_diameter": 0}, "nozzle_diameter"),
        ([PlateSpec()], {"bed_type": "Textured PEI"}, "bed_type"),
    ],
)
def test_writer_validation(plates: list[PlateSpec], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_project(plates, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# AMS auto-mapping
# --------------------------------------------------------------------------------------------

TRAYS = [
    TrayInfo(0, "PLA", "FFFFFFFF"),
    TrayInfo(1, "PLA", "101010FF"),
    TrayInfo(2, "PETG", "00AE42FF"),
    TrayInfo(3, "", ""),  # empty slot
    TrayInfo(5, "PLA", "D02020FF"),
    TrayInfo(254, "TPU", "#FF8800"),
]


def test_maps_by_material_then_nearest_colour() -> None:
    filaments = [Filament(1, "PLA", "#000000"), Filament(2, "petg", "#FFFFFF"), Filament(3, "PLA", "#FF0000")]
    assert match_ams_mapping(filaments, TRAYS) == [1, 2, 5]


def test_unused_filament_ids_are_unmapped_and_external_spool_works() -> None:
    assert match_ams_mapping([Filament(2, "PLA", "#FAFAFA"), Filament(4, "TPU", "#000000")], TRAYS) == [
        -1, 0, -1, 254]


def test_distinct_trays_are_preferred_over_a_shared_nearest_one() -> None:
    # Both are nearest to white; the closer one keeps it and the other takes the next PLA tray.
    filaments = [Filament(1, "PLA", "#EEEEEE"), Filament(2, "PLA", "#FFFFFF")]
    mapping = match_ams_mapping(filaments, TRAYS)
    assert mapping[1] == 0
    assert mapping[0] != 0


def test_filaments_share_a_tray_when_there_are_not_enough() -> None:
    filaments = [Filament(1, "PETG", "#00FF00"), Filament(2, "PETG", "#008800")]
    assert match_ams_mapping(filaments, TRAYS) == [2, 2]


def test_ties_go_to_the_lower_tray_and_unknown_colours_still_map() -> None:
    trays = [TrayInfo(7, "ABS", "000000FF"), TrayInfo(6, "ABS", "000000FF")]
    assert match_ams_mapping([Filament(1, "ABS", "#000000")], trays) == [6]
    assert match_ams_mapping([Filament(1, "ABS", "not a colour")], [TrayInfo(9, "ABS", "??")]) == [9]


def test_missing_material_names_the_filament() -> None:
    with pytest.raises(AmsMappingError, match=r"filament 2 \(ASA #123456\).*loaded: PETG, PLA, TPU"):
        match_ams_mapping([Filament(1, "PLA", "#FFFFFF"), Filament(2, "ASA", "#123456")], TRAYS)
    with pytest.raises(AmsMappingError, match="loaded: none"):
        match_ams_mapping([Filament(1, "PLA", "#FFFFFF")], [])
    assert issubclass(AmsMappingError, ValueError)


def test_mapping_edge_cases() -> None:
    assert match_ams_mapping([], TRAYS) == []
    with pytest.raises(AmsMappingError, match="filament id"):
        match_ams_mapping([Filament(0, "PLA", "#FFFFFF")], TRAYS)
    with pytest.raises(AmsMappingError, match="filament id"):
        match_ams_mapping([Filament(10**9, "PLA", "#FFFFFF")], TRAYS)


def test_mapping_from_a_read_project() -> None:
    project = read_project(real_layout())
    assert match_ams_mapping(project.plate(1).filaments, TRAYS) == [0, -1, 1]


def test_build_project_thumbnail_and_object_filament_are_checked() -> None:
    from bambulab.protocol.threemf import Filament, PlateObject, PlateSpec, build_project

    with pytest.raises(ValueError, match="thumbnail must be PNG"):
        build_project([PlateSpec(thumbnail=b"GIF89a")])
    with pytest.raises(ValueError, match="uses filament 2"):
        build_project([PlateSpec(filaments=(Filament(1, "PLA", "#FFFFFF"),), objects=(PlateObject(1, "a", 2),))])
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    data = build_project([PlateSpec(thumbnail=png)])
    assert zipfile.ZipFile(io.BytesIO(data)).read("Metadata/plate_1.png") == png
