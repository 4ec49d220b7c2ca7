"""`bambu sim`'s live table on an 80-column terminal: redrawn in place, nothing stale, nothing wrapped.

The Live display writes to a rich Console of 80 columns; a small terminal emulator (carriage
return, erase line, cursor up, auto-wrap at the margin) replays what a real terminal would show.
"""

from __future__ import annotations

import asyncio
import io
import re
from types import SimpleNamespace

from rich.console import Console

from bambulab.cli.sim import _wait, status_table
from bambulab.protocol.models import model_by_code
from bambulab.protocol.views import STAGE_NAMES
from bambulab.sim.state import Dynamic, Heater

WIDTH = 80
_CSI = re.compile(r"\x1b\[(\??)(\d*)([A-Za-z])")


class Terminal:
    """Enough of a VT100 for rich's Live: text, CR, LF, ESC[2K, ESC[nA and SGR/cursor modes."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wrapped = 0  # times text ran past the right margin

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def feed(self, data: str) -> None:
        i = 0
        while i < len(data):
            match = _CSI.match(data, i)
            if match:
                private, number, command = match.groups()
                if not private and command == "K":
                    self._line().clear()
                elif not private and command == "A":
                    self.row = max(0, self.row - int(number or 1))
                i = match.end()
                continue
            ch = data[i]
            i += 1
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self.col = 0
            else:
                if self.col >= self.width:
                    self.wrapped += 1
                    self.row += 1
                    self.col = 0
                line = self._line()
                line.extend(" " * (self.col - len(line)))
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                self.col += 1

    def screen(self) -> str:
        return "\n".join("".join(r).rstrip() for r in self.rows).strip("\n")


class FakePrinter:
    """What the table reads of a virtual printer (its state is set by hand, no engine runs)."""

    def __init__(self, name: str, model: str) -> None:
        self.name = name
        self.model = model_by_code(model)
        self.dynamic = Dynamic()
        self.dynamic.nozzles = [Heater() for _ in range(2 if model == "H2D" else 1)]
        self.mqtt = SimpleNamespace(client_count=12)


async def test_live_table_redraws_in_place_on_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=24, force_terminal=True, color_system=None,
                      legacy_windows=False)
    longest_stage = max(STAGE_NAMES, key=lambda k: len(STAGE_NAMES[k]))
    printers = [FakePrinter(f"Virtual {m} {i}", m) for i, m in enumerate(("H2D", "X1 Carbon", "P1S"), 1)]
    for p in printers:  # the longest rows there are: a preparing printer with the longest stage name
        job = p.dynamic.job
        job.gcode_state, job.stage, job.prepare_percent = "PREPARE", longest_stage, 100
        job.layer, job.total_layers = 0, 1200
        p.dynamic.bed.temp = 110.0
        for n in p.dynamic.nozzles:
            n.temp = 300.0

    async def then_running() -> None:
        await asyncio.sleep(1.3)
        for p in printers:
            job = p.dynamic.job
            job.gcode_state, job.stage, job.percent, job.remaining_minutes = "RUNNING", 0, 7, 3

    flip = asyncio.create_task(then_running())
    await _wait(asyncio.Event(), printers, duration=2.6, watch=True, console=console)
    await flip

    final = Console(file=io.StringIO(), width=WIDTH, color_system=None, force_terminal=False)
    final.print(status_table(printers))
    expected = final.file.getvalue()  # type: ignore[attr-defined]

    raw = out.getvalue()
    lines = _CSI.sub("", raw).replace("\r", "\n").split("\n")
    assert max(len(line) for line in lines) <= WIDTH  # no line is wider than the terminal
    assert "PREPARE" in raw and "100% " + STAGE_NAMES[longest_stage][:5] in raw  # the long rows were drawn
    terminal = Terminal(WIDTH)
    terminal.feed(raw)
    assert terminal.wrapped == 0
    screen = terminal.screen()
    assert "PREPARE" not in screen and "100% " + STAGE_NAMES[longest_stage][:5] not in screen  # nothing stale
    assert [s.rstrip() for s in screen.splitlines()] == [s.rstrip() for s in expected.strip("\n").splitlines()]
    assert screen.count("RUNNING") == 3


def test_table_of_a_farm_shows_the_first_printers_and_counts_the_rest() -> None:
    console = Console(file=io.StringIO(), width=WIDTH, color_system=None)
    console.print(status_table([FakePrinter(f"Virtual P1S {i}", "P1S") for i in range(1, 21)], limit=8))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Virtual P1S 8" in text and "Virtual P1S 9" not in text
    assert "and 12 more" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH
