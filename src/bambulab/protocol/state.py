"""Fold MQTT reports into a printer's state: ``state = merge(state, report)``.

The state is a plain JSON-like dict with two keys, both optional:

* ``"print"``: the merged ``print.push_status`` reports, field names as on the wire;
* ``"info"``: the last ``info.get_version`` reply, kept whole (it is always a complete list).

Rules (PROTOCOL.md §1.5, §2.2, §2.5):

* A ``print`` section merges only when it is a status push: ``command == "push_status"``, or
  no ``command`` and no ``result``. Command acknowledgements (``project_file``, ``gcode_line``,
  ``pause`` …, with or without ``result``) never touch the state; the client correlates them by
  ``sequence_id``. Other sections (``system`` — which may carry the access code —, ``upgrade``,
  ``event``, ``mc_print``, …) are ignored.
* ``"msg": 0`` is a full report: it replaces ``state["print"]`` (so keys the printer stopped
  sending, such as an unplugged AMS, disappear). Any other ``msg`` value, or none (the H2D sends
  none), is a delta merged into the previous state.
* Objects merge recursively; lists and scalars replace the old value, except:

  - ``ams.ams`` (AMS units) merge by ``id``. The delta's unit list says which units exist and in
    which order (PROTOCOL.md §2.2: firmware sends ``ams.ams`` whole), so a unit missing from it
    is dropped; a unit present in it keeps the fields the delta leaves out. An ``ams`` delta
    without the ``ams`` list (``{"tray_now": "3"}``) keeps the units.
  - ``ams.ams[].tray`` merges by ``id`` and keeps trays the delta leaves out (newer firmware
    sends trays partially). A tray delta ``{"id", "state"}`` keeps the tray's other fields. A
    tray that is only ``{"id": …}`` replaces the tray: that is how P1/A1/A2L firmware, which
    sends no ``state``, reports an empty slot.
  - ``vir_slot`` (external spools), ``device.extruder.info`` and ``device.nozzle.info`` merge by
    ``id`` and keep entries the delta leaves out: they are fixed hardware slots.

* A report, or a section, that is not a dict is ignored; ``merge`` never raises.

Copy-on-write: ``merge`` never mutates ``state`` or ``report``. The result is a new dict only
along the changed path and shares every other object with the old state and with ``report``
(a full report becomes the new ``print`` object as is). So treat states and the reports you
pass in as immutable: never change them in place (``copy.deepcopy`` first if you must). When a
report changes nothing that is kept (an ack, garbage), ``merge`` returns ``state`` itself, so
``new is old`` is a cheap "nothing to do" test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

__all__ = ["is_full_msg", "is_full_report", "is_status_report", "merge"]

#: Deeper than this, nested objects are replaced rather than merged (keeps recursion bounded).
_MAX_DEPTH: Final = 32


class _ById:
    """Merge a list of ``{"id": …}`` objects by id."""

    __slots__ = ("item_rules", "keep_missing")

    def __init__(self, *, keep_missing: bool, item_rules: _Rules | None = None) -> None:
        self.keep_missing = keep_missing
        self.item_rules = item_rules


_Rules = Mapping[str, "_Rules | _ById"]

_KEEP_MISSING = _ById(keep_missing=True)

#: Where inside ``print`` lists are merged by id instead of replaced.
_PRINT_RULES: _Rules = {
    "ams": {"ams": _ById(keep_missing=False, item_rules={"tray": _KEEP_MISSING})},
    "vir_slot": _KEEP_MISSING,
    "device": {"extruder": {"info": _KEEP_MISSING}, "nozzle": {"info": _KEEP_MISSING}},
}


def is_status_report(section: object) -> TypeGuard[dict[str, Any]]:
    """True for a ``print`` section that is a status push rather than a command ack."""
    if not isinstance(section, dict):
        return False
    command = section.get("command")
    if command is None:
        return "result" not in section
    return isinstance(command, str) and command == "push_status"


def is_full_msg(msg: object) -> bool:
    """``msg`` 0 marks a full report (an int on the wire; accept "0" too, never ``False``)."""
    return (isinstance(msg, int) and not isinstance(msg, bool) and msg == 0) or msg == "0"


def is_full_report(section: object) -> TypeGuard[dict[str, Any]]:
    """True for a ``print`` section that is a full status report (``msg`` 0), not a delta or an ack."""
    return is_status_report(section) and is_full_msg(section.get("msg"))


def merge(state: Mapping[str, Any] | None, report: object) -> dict[str, Any]:
    """Return the state after ``report``; see the module docstring for the rules."""
    if isinstance(state, dict):
        base: dict[str, Any] = state
    else:
        base = dict(state) if isinstance(state, Mapping) else {}
    if not isinstance(report, dict):
        return base
    new: dict[str, Any] | None = None

    section = report.get("print")
    if is_status_report(section):
        old = base.get("print")
        if is_full_msg(section.get("msg")) or not isinstance(old, dict):
            merged = section
        else:
            merged = _merge_dict(old, section, _PRINT_RULES, 0)
        new = dict(base)
        new["print"] = merged

    info = report.get("info")
    if (
        isinstance(info, dict)
        and info.get("command") == "get_version"
        and isinstance(info.get("module"), list)
    ):
        if new is None:
            new = dict(base)
        new["info"] = info

    return base if new is None else new


def _merge_dict(old: dict[str, Any], delta: dict[str, Any], rules: _Rules | None, depth: int) -> dict[str, Any]:
    out = old.copy()
    out.update(delta)  # scalars and plain lists replace; objects and by-id lists are fixed up below
    for key, value in delta.items():
        if isinstance(value, dict):
            previous = old.get(key)
            if isinstance(previous, dict) and depth < _MAX_DEPTH:
                rule = rules.get(key) if rules is not None else None
                out[key] = _merge_dict(previous, value, rule if isinstance(rule, Mapping) else None, depth + 1)
        elif rules is not None and isinstance(value, list):
            rule = rules.get(key)
            if isinstance(rule, _ById):
                previous = old.get(key)
                if isinstance(previous, list) and depth < _MAX_DEPTH:
                    out[key] = _merge_by_id(previous, value, rule, depth + 1)
    return out


def _id_of(item: object) -> str | None:
    if not isinstance(item, dict):
        return None
    ident = item.get("id")
    if isinstance(ident, str):
        return ident
    if isinstance(ident, int) and not isinstance(ident, bool):
        return str(ident)
    return None


def _merge_item(old: object, new: dict[str, Any], rule: _ById, depth: int) -> dict[str, Any]:
    if not isinstance(old, dict) or (len(new) == 1 and rule.keep_missing):
        # A bare {"id": …} in a keep-missing list (a tray) is an empty slot: replace.
        return new
    return _merge_dict(old, new, rule.item_rules, depth)


def _merge_by_id(old: list[Any], new: list[Any], rule: _ById, depth: int) -> list[Any]:
    old_by_id: dict[str, Any] = {}
    for item in old:
        ident = _id_of(item)
        if ident is not None:
            old_by_id.setdefault(ident, item)

    if not rule.keep_missing:
        result = []
        for item in new:
            ident = _id_of(item)
            if ident is None or ident not in old_by_id:
                result.append(item)
            else:
                result.append(_merge_item(old_by_id[ident], item, rule, depth))
        return result

    # Keep-missing: the old order, updated in place, then entries that are new.
    updates: dict[str, dict[str, Any]] = {}
    extra: list[Any] = []
    for item in new:
        ident = _id_of(item)
        if ident is not None and ident in old_by_id and ident not in updates:
            updates[ident] = item
        else:
            extra.append(item)
    merged: list[Any] = []
    for item in old:
        ident = _id_of(item)
        if ident is not None and ident in updates:
            merged.append(_merge_item(item, updates.pop(ident), rule, depth))
        else:
            merged.append(item)
    merged.extend(extra)
    return merged
