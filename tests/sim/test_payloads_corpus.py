"""The simulator's reports and get_version replies against every recording in ``tests/fixtures/``.

For each recorded printer the simulator renders the same model, on the same firmware, with the
same AMS units attached, and must send the same key paths with the same JSON types (the only
state-dependent key, ``fun``, is left out: see test_payloads.py). A recording from real hardware
that differs shows exactly where the simulator has to follow.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from test_payloads import flatten

from bambulab.protocol.models import AmsKind, model_by_code
from bambulab.sim.payloads import build_report, default_dynamic, version_modules
from bambulab.sim.state import HmsEntry
from corpus import FIXTURES, IDS, Recorded, load

ENVELOPE = {"command", "msg", "sequence_id"}
#: get_version module name prefix -> the AMS kind (``ams/0``, ``n3f/2``, ...)
_KINDS = {"ams": AmsKind.AMS, "ams_f1": AmsKind.AMS_LITE, "n3f": AmsKind.AMS_2_PRO, "n3s": AmsKind.AMS_HT}


@pytest.fixture(params=FIXTURES, ids=IDS)
def recorded(request: pytest.FixtureRequest) -> Recorded:
    path: Path = request.param
    return load(path)


def _rendered(rec: Recorded) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    model = model_by_code(rec.model)
    dyn = default_dynamic(model, rng=random.Random(11))
    dyn.firmware = rec.firmware
    # the same AMS units (their kinds from the get_version modules) and the same HMS list shape
    kinds = [_KINDS[m["name"].split("/")[0]] for m in rec.get_version["info"]["module"]
             if "/" in m["name"] and m["name"].split("/")[0] in _KINDS]
    units = rec.pushall["print"].get("ams", {}).get("ams", [])
    template = dyn.ams[0] if dyn.ams else None
    dyn.ams = []
    for index, unit in enumerate(units):
        assert template is not None, "the simulator gives this model no AMS to copy"
        kind = kinds[index] if index < len(kinds) else template.kind
        dyn.ams.append(dataclasses.replace(copy.deepcopy(template), unit_id=int(unit["id"]), kind=kind))
    dyn.hms = [HmsEntry(attr=h["attr"], code=h["code"]) for h in rec.pushall["print"].get("hms", [])]
    return build_report(model, dyn, serial="0ZZTESTSERIAL01"), version_modules(model, dyn, serial="0ZZTESTSERIAL01")


def _keys(table: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in table.items() if k.split(".")[0] not in ENVELOPE | {"fun"}}


def test_report_matches_the_recording(recorded: Recorded) -> None:
    report, _ = _rendered(recorded)
    got = _keys(flatten(report))
    expected = _keys(flatten(recorded.pushall["print"]))
    assert sorted(set(expected) - set(got)) == [], "keys the recorded printer sends are missing"
    assert sorted(set(got) - set(expected)) == [], "keys the recorded printer does not send"
    wrong = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert wrong == {}, "(recorded, simulated) types differ"


def test_get_version_matches_the_recording(recorded: Recorded) -> None:
    _, modules = _rendered(recorded)
    recorded_modules = recorded.get_version["info"]["module"]
    assert [m["name"] for m in modules] == [m["name"] for m in recorded_modules]
    for sim_module, real in zip(modules, recorded_modules, strict=True):
        assert set(sim_module) == set(real), real["name"]
        assert sim_module.get("product_name") == real.get("product_name"), real["name"]
