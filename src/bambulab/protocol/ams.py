"""Which AMS trays a print uses: the decision :func:`bambulab.printing.print_file` sends.

Pure: a plate's filaments, the printer's status and the caller's wishes in; the tray per filament
and whether the AMS is on out. No I/O.

* ``use_ams=False`` prints from the external spool: an explicit list is still sent (some firmware
  reads it for the external spool), ``"auto"`` sends none.
* ``"auto"`` on a printer with an AMS (reported units, or a model that has one while nothing is
  reported yet) matches each filament to a loaded tray of the same material, nearest colour first
  (:func:`~bambulab.protocol.threemf.match_ams_mapping`); without an AMS no mapping is sent, and
  ``use_ams=True`` is an error.
* An explicit list is sent as is; ``None`` sends none (``use_ams=True`` then is an error).
* The AMS is on when a mapping is sent, unless ``use_ams`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bambulab.protocol import threemf
from bambulab.protocol.models import AmsKind, PrinterModel
from bambulab.protocol.views import PrinterStatus

__all__ = ["AmsPlan", "loaded_trays", "plan_ams_mapping"]


@dataclass(frozen=True, slots=True)
class AmsPlan:
    """The tray per filament (entry ``i`` for filament ``i+1``, ``-1`` unused), or ``None``; and
    whether the AMS is used."""

    mapping: tuple[int, ...] | None
    use_ams: bool


def loaded_trays(status: PrinterStatus) -> list[threemf.TrayInfo]:
    """The AMS trays that hold a known material, as :func:`~bambulab.protocol.threemf.match_ams_mapping` reads them."""
    trays: list[threemf.TrayInfo] = []
    for unit in status.ams.units:
        for tray in unit.trays:
            if tray.is_empty or not tray.material or tray.tray_index is None:
                continue
            trays.append(threemf.TrayInfo(global_index=tray.tray_index, material=tray.material, color=tray.color or ""))
    return trays


def has_ams(status: PrinterStatus, model: PrinterModel | None) -> bool:
    """Whether the printer has an AMS: units reported, else (before any report) the model's kind."""
    if status.ams.units:
        return True
    return False if status.raw else bool(model is not None and model.ams is not AmsKind.NONE)


def plan_ams_mapping(
    plate: threemf.Plate,
    status: PrinterStatus,
    model: PrinterModel | None,
    *,
    ams_mapping: Literal["auto"] | Sequence[int] | None = "auto",
    use_ams: bool | None = None,
) -> AmsPlan:
    """Decide the mapping (see the module docstring).

    Raises :class:`~bambulab.protocol.threemf.AmsMappingError` when ``"auto"`` finds no tray for a
    filament (or the plate lists none), or ``use_ams=True`` cannot be honoured; ``ValueError``
    when ``use_ams=True`` comes with ``ams_mapping=None``.
    """
    mapping: list[int] | None = None
    explicit = None if ams_mapping == "auto" or ams_mapping is None else [int(x) for x in ams_mapping]
    if use_ams is False:
        mapping = explicit
    elif ams_mapping == "auto":
        if has_ams(status, model):
            mapping = _auto(plate, status)
        elif use_ams:
            raise threemf.AmsMappingError("use_ams=True, but the printer reports no AMS")
    elif explicit is not None:
        mapping = explicit
    elif use_ams:
        raise ValueError('use_ams=True needs an ams_mapping (a list, or "auto")')
    on = mapping is not None if use_ams is None else use_ams
    return AmsPlan(tuple(mapping) if mapping is not None else None, on)


def _auto(plate: threemf.Plate, status: PrinterStatus) -> list[int]:
    if not plate.filaments:
        raise threemf.AmsMappingError(
            f"plate {plate.index} lists no filaments, so they cannot be matched to AMS trays: "
            "pass ams_mapping=[tray, ...] or use_ams=False"
        )
    try:
        return threemf.match_ams_mapping(plate.filaments, loaded_trays(status))
    except threemf.AmsMappingError as exc:
        raise threemf.AmsMappingError(
            f"{exc}. Load a matching spool, pass ams_mapping=[tray, ...] or print from the external "
            "spool with use_ams=False"
        ) from None
