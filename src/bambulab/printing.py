"""Upload a sliced file and start printing it: :func:`print_file` (``printer.print_file(...)``).

```python
async with Printer(host, serial, access_code) as p:
    job = await p.print_file("benchy.gcode.3mf", plate=1, progress=lambda sent, total: ...)
    print(job.remote_path, job.ams_mapping)
```

What happens, in order, so that most mistakes fail before anything is sent:

1. The printer must be idle (not preparing, printing or paused): else :class:`PrinterBusyError`.
2. A ``.gcode.3mf``/``.3mf`` is read (:func:`bambulab.protocol.threemf.read_project`); the plate
   must exist (:class:`PrintSetupError` lists the plates there are). With
   ``ams_mapping="auto"`` each filament of the plate goes to a loaded AMS tray of the same
   material, nearest colour first (:func:`~bambulab.protocol.threemf.match_ams_mapping`); a
   filament no tray can take raises :class:`AmsMappingError` naming it. A printer without an
   AMS, or ``use_ams=False``, prints from the external spool (no mapping is sent).
3. The file is uploaded over FTPS (:class:`bambulab.files.PrinterFiles`) and its size checked.
4. ``project_file`` (or ``gcode_file`` for a plain ``.gcode``) is sent and its acknowledgement
   awaited; the URL form follows the model (``file:///sdcard/<name>`` on X1/P1/A1,
   ``ftp:///<name>`` on newer families).
5. The printer must then report ``PREPARE`` or ``RUNNING`` within ``start_timeout`` seconds. A
   ``FAILED`` state or a new ``print_error`` raises :class:`~bambulab.exceptions.CommandFailedError`
   with the decoded error text (:mod:`bambulab.protocol.hms`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

from bambulab.exceptions import (
    AmsMappingError,
    BambuTimeoutError,
    CommandFailedError,
    PrinterBusyError,
    PrintSetupError,
    SignatureRequiredError,
)
from bambulab.files import remote_path
from bambulab.protocol import commands, threemf
from bambulab.protocol.ams import plan_ams_mapping
from bambulab.protocol.hms import decode_print_error
from bambulab.protocol.views import GcodeState, PrinterStatus
from bambulab.transports.ftps import Progress

if TYPE_CHECKING:
    from bambulab.printer import Printer

__all__ = [
    "ERR_PRINTER_BUSY",
    "AmsMappingError",
    "PrintJob",
    "PrintSetupError",
    "PrinterBusyError",
    "print_file",
]

#: ``print_error`` / ``err_code`` of "the printer is busy with another task".
ERR_PRINTER_BUSY: Final = commands.PrinterErrorCode.PRINTER_BUSY
_STARTED: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING})
_ACTIVE: Final = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE, GcodeState.SLICING})
_PROJECT_SUFFIXES: Final = (".3mf",)
_GCODE_SUFFIXES: Final = (".gcode", ".gco", ".g")
_ZIP_MAGIC: Final = b"PK\x03\x04"


@dataclass(frozen=True, slots=True)
class PrintJob:
    """A print the printer accepted and started.

    ``remote_path`` is where the file went on the printer's storage; ``url`` the ``project_file``
    URL (``None`` for a plain G-code file, started with ``gcode_file``); ``plate`` the plate
    number (``None`` for G-code); ``ams_mapping`` the tray per filament id (entry ``i`` for
    filament ``i+1``, ``-1`` unused), ``None`` when printing from the external spool;
    ``status`` the printer's status that showed the job starting.
    """

    remote_path: str
    url: str | None
    plate: int | None
    subtask_name: str
    use_ams: bool
    ams_mapping: tuple[int, ...] | None
    ack: Mapping[str, Any] = field(repr=False)
    status: PrinterStatus = field(repr=False)


# --------------------------------------------------------------------------- helpers


def _is_gcode(name: str, data: bytes | None) -> bool:
    lower = name.lower()
    if lower.endswith(_PROJECT_SUFFIXES):
        return False
    if lower.endswith(_GCODE_SUFFIXES):
        return True
    if data is not None:
        return not data.startswith(_ZIP_MAGIC)
    raise PrintSetupError(f"cannot tell whether {name!r} is a .gcode.3mf project or plain G-code: name it so")


def _stem(name: str) -> str:
    for suffix in (".gcode.3mf", ".3mf", ".gcode"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _explicit_mapping(value: str | Sequence[int]) -> list[int]:
    if isinstance(value, str | bytes):
        raise ValueError('ams_mapping must be "auto", a list of tray indexes, or None')
    mapping = list(value)
    for entry in mapping:
        if isinstance(entry, bool) or not isinstance(entry, int) or not (entry == -1 or 0 <= entry <= 255):
            raise ValueError(f"ams_mapping entries must be -1 (unused) or a tray index 0..255, got {entry!r}")
    return mapping


def _error_text(code: int | None) -> tuple[str | None, str | None]:
    """(text, display code) for an ``err_code``/``print_error`` value, when it decodes."""
    if code is None:
        return None, None
    decoded = decode_print_error(code)
    if decoded is None:
        return None, None
    return decoded.text, decoded.display


def _command_failed(exc: CommandFailedError, name: str) -> CommandFailedError:
    """A clearer error for a refused start: busy, or the decoded error code."""
    text, display = _error_text(exc.code)
    if exc.code == ERR_PRINTER_BUSY:
        return PrinterBusyError(
            f"the printer refused to start {name}: it is busy with another job ({display})",
            command=exc.command,
            reason=exc.reason,
            code=exc.code,
        )
    if text is None:
        return exc
    return CommandFailedError(
        f"the printer refused to start {name}: {text} ({display})", command=exc.command, reason=text, code=exc.code
    )


def _busy_error(status: PrinterStatus) -> PrinterBusyError:
    job = status.job
    what = job.name or job.file or "a job"
    progress = f", {job.progress}%" if job.progress is not None else ""
    return PrinterBusyError(
        f"the printer is busy ({job.state.value}: {what}{progress}); wait for it to finish or stop it first",
        command="print",
        reason="printer is busy",
        code=ERR_PRINTER_BUSY,
    )


def _read_local(path: Path) -> bytes:
    return path.read_bytes()


# --------------------------------------------------------------------------- the entry point


async def print_file(
    printer: Printer,
    path: str | os.PathLike[str] | bytes,
    *,
    plate: int = 1,
    ams_mapping: str | Sequence[int] | None = "auto",
    remote_name: str | None = None,
    bed_type: commands.BedType | str = "auto",
    timelapse: bool = False,
    bed_leveling: bool = True,
    flow_cali: bool = False,
    vibration_cali: bool = False,
    use_ams: bool | None = None,
    progress: Progress | None = None,
    start_timeout: float = 60.0,
) -> PrintJob:
    """Upload ``path`` (a local file, or the file's bytes with ``remote_name``) and print it.

    ``remote_name`` is the name (or path, e.g. ``"cache/x.gcode.3mf"``) on the printer's
    storage, default the local file name. ``ams_mapping``: ``"auto"`` (see the module
    docstring), an explicit list (entry ``i`` = global tray for filament ``i+1``, ``-1`` unused),
    or ``None`` for none. ``use_ams`` forces the AMS on or off; by default it is on when a mapping
    is sent. ``progress(sent, total)`` reports the upload. See the module docstring for the
    errors; the timeout on the start raises :class:`~bambulab.exceptions.BambuTimeoutError`.
    """
    if isinstance(plate, bool) or not isinstance(plate, int) or plate < 1:
        raise ValueError(f"plate must be an int >= 1, got {plate!r}")
    if start_timeout <= 0:
        raise ValueError("start_timeout must be positive")
    explicit = _explicit_mapping(ams_mapping) if ams_mapping != "auto" and ams_mapping is not None else None

    # -- what to upload, and under which name
    data: bytes | None
    local: Path | None
    if isinstance(path, bytes | bytearray | memoryview):
        if not remote_name:
            raise ValueError("remote_name is required when printing bytes")
        data, local = bytes(path), None
    else:
        local = Path(path)
        data = None
    name = remote_name or (local.name if local is not None else "")
    target = remote_path(name, folder_ok=False)
    rel = target.lstrip("/")
    file_name = PurePosixPath(target).name
    gcode = _is_gcode(file_name, data)

    # -- 1. an idle printer
    status = printer.status
    if status.job.state in _ACTIVE:
        raise _busy_error(status)

    # -- 2. the project, the plate and the trays
    chosen: threemf.Plate | None = None
    mapping: list[int] | None = None
    ams_on = False
    if not gcode:
        if data is None:
            assert local is not None
            data = await asyncio.to_thread(_read_local, local)
        try:
            project = await asyncio.to_thread(threemf.read_project, data)
        except threemf.ThreeMFError as exc:
            raise PrintSetupError(f"{file_name} cannot be printed: {exc}") from None
        try:
            chosen = project.plate(plate)
        except KeyError:
            have = ", ".join(str(p.index) for p in project.plates)
            raise PrintSetupError(f"{file_name} has no plate {plate}; its plates: {have}") from None
        wanted: Literal["auto"] | list[int] | None = "auto" if ams_mapping == "auto" else explicit
        plan = plan_ams_mapping(chosen, status, printer.model or status.model, ams_mapping=wanted, use_ams=use_ams)
        mapping = list(plan.mapping) if plan.mapping is not None else None
        ams_on = plan.use_ams

    # -- 3. upload (and verify the size); a connection opened here is closed again
    uploader = printer.files
    opened_here = not uploader.client.connected
    try:
        if data is not None:
            await uploader.upload(data, target, progress=progress, verify=True)
        else:
            assert local is not None
            await uploader.upload(local, target, progress=progress, verify=True)
    finally:
        if opened_here:
            await uploader.close()

    # -- 4. the start command
    seq = printer.sequence
    model = printer.model or printer.status.model
    subtask = _stem(file_name)
    url: str | None = None
    if gcode:
        request = commands.gcode_file(seq, commands.start_url(rel, model, gcode=True))
    else:
        assert chosen is not None
        url = commands.start_url(rel, model)
        mapping2 = None
        if mapping is not None and model is not None and not model.is_legacy_protocol:
            mapping2 = commands.ams_mapping2_from(mapping)
        request = commands.project_file(
            seq,
            rel,
            url=url,
            plate=chosen.index,
            subtask_name=subtask,
            bed_type=bed_type,
            timelapse=timelapse,
            bed_leveling=bed_leveling,
            flow_cali=flow_cali,
            vibration_cali=vibration_cali,
            use_ams=ams_on,
            ams_mapping=mapping,
            ams_mapping2=mapping2,
        )

    before = printer.status
    before_error = before.print_error.value if before.print_error is not None else 0
    before_state = before.job.state
    try:
        ack = await printer.command(request)
    except SignatureRequiredError:
        raise
    except CommandFailedError as exc:
        raise _command_failed(exc, file_name) from exc

    # -- 5. wait for the printer to start (or to say why not)
    def started(current: PrinterStatus) -> bool:
        job = current.job
        error = current.print_error
        new_error = error is not None and error.value != before_error
        failed = job.state is GcodeState.FAILED and (new_error or before_state is not GcodeState.FAILED)
        if failed or (new_error and job.state not in _STARTED):
            text = error.text if error is not None else None
            code = f" ({error.display})" if error is not None else ""
            raise CommandFailedError(
                f"the printer failed to start {file_name}: {text or 'no reason given'}{code}",
                command="gcode_file" if gcode else "project_file",
                reason=text or "",
                code=error.value if error is not None else None,
            )
        return job.state in _STARTED

    try:
        final = await printer.wait_for(started, timeout=start_timeout)
    except BambuTimeoutError:
        state = printer.status.job.state.value
        raise BambuTimeoutError(
            f"the printer acknowledged {file_name} but did not start it within {start_timeout:g} s (state {state})"
        ) from None
    return PrintJob(
        remote_path=target,
        url=url,
        plate=chosen.index if chosen is not None else None,
        subtask_name=subtask,
        use_ams=ams_on,
        ams_mapping=tuple(mapping) if mapping is not None else None,
        ack=ack,
        status=final,
    )
