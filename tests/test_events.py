"""derive_events (pure, over plain dicts) and the bounded EventStream with its resync event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bambulab.events import (
    EventsDropped,
    EventStream,
    HmsCleared,
    HmsRaised,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
    derive_events,
)
from bambulab.protocol.hms import decode_hms
from bambulab.protocol.views import PrinterStatus

SERIAL = "01P00A000000001"


def state(gcode_state: str, hms: list[dict[str, int]] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"command": "push_status", "gcode_state": gcode_state, **fields}
    if hms is not None:
        body["hms"] = hms
    return {"print": body}


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ("IDLE", "PREPARE", PrintStarted),
        ("FINISH", "RUNNING", PrintStarted),
        ("FAILED", "SLICING", PrintStarted),
        ("RUNNING", "PAUSE", PrintPaused),
        ("PAUSE", "RUNNING", PrintResumed),
        ("RUNNING", "FINISH", PrintFinished),
        ("PAUSE", "FAILED", PrintFailed),
    ],
)
def test_print_state_changes_give_one_lifecycle_event(before: str, after: str, kind: type) -> None:
    events = derive_events(state(before), state(after), serial=SERIAL)
    assert [type(e) for e in events] == [kind]
    assert events[0].serial == SERIAL
    assert events[0].status.job.state.value == after


@pytest.mark.parametrize(
    ("before", "after"),
    [("IDLE", "IDLE"), ("IDLE", "FINISH"), ("IDLE", "FAILED"), ("PREPARE", "RUNNING"), ("RUNNING", "IDLE")],
)
def test_other_transitions_give_none(before: str, after: str) -> None:
    assert derive_events(state(before), state(after)) == []


def test_first_report_and_odd_states_give_none() -> None:
    assert derive_events({}, state("RUNNING")) == []  # a snapshot, not a change
    assert derive_events(state("RUNNING"), {}) == []
    assert derive_events({"print": "garbage"}, state("FINISH")) == []
    same = state("RUNNING")
    assert derive_events(same, same) == []


def test_failed_carries_the_decoded_print_error() -> None:
    (event,) = derive_events(state("RUNNING"), state("FAILED", print_error=0x0300400C))
    assert isinstance(event, PrintFailed) and event.error is not None
    assert event.error == event.status.print_error


def test_hms_entries_raised_and_cleared_one_event_each() -> None:
    a, b, c = (
        {"attr": 0x03000100, "code": 0x00010007},
        {"attr": 0x07000200, "code": 0x00020004},
        {"attr": 0x05000500, "code": 0x00010007},
    )
    events = derive_events(state("RUNNING", [a, b]), state("RUNNING", [b, c]), serial=SERIAL)
    assert [type(e) for e in events] == [HmsRaised, HmsCleared]
    raised, cleared = events
    assert isinstance(raised, HmsRaised) and raised.message == decode_hms(c["attr"], c["code"])
    assert isinstance(cleared, HmsCleared) and cleared.message == decode_hms(a["attr"], a["code"])


def test_a_finish_with_a_new_hms_entry_gives_both_in_order() -> None:
    entry = {"attr": 0x03000100, "code": 0x00010007}
    kinds = [type(e) for e in derive_events(state("RUNNING", []), state("FINISH", [entry]))]
    assert kinds == [PrintFinished, HmsRaised]


# ------------------------------------------------------------------------------- the stream


def status_of(n: int) -> PrinterStatus:
    return PrinterStatus({"print": {"mc_percent": n}})


async def test_overflow_is_coalesced_into_one_resync_with_the_current_status() -> None:
    stream = EventStream(maxsize=3)
    message = decode_hms(0x03000100, 0x00010007)
    assert message is not None
    statuses = [status_of(n) for n in range(6)]
    for status in statuses[:5]:
        stream.put(StateChanged(SERIAL, status))
    stream.put(HmsRaised(SERIAL, message))
    stream.put(PrintFinished(SERIAL, statuses[5]))
    assert len(stream) == 3 and stream.dropped == 4
    got = [await stream.get(1.0) for _ in range(4)]
    assert [type(e) for e in got] == [StateChanged, StateChanged, StateChanged, EventsDropped]
    resync = got[3]
    assert isinstance(resync, EventsDropped)
    assert resync.dropped == 4 and resync.status is statuses[5] and resync.serial == SERIAL
    stream.put(StateChanged(SERIAL, statuses[0]))  # room again: events flow as before
    assert isinstance(await stream.get(1.0), StateChanged) and len(stream) == 0


async def test_a_slow_consumer_stays_bounded_and_cheap() -> None:
    """50,000 events at maxsize 256 (lifecycle ones too): the queue never grows past its size,
    and the puts stay O(1) (the old queue grew to 50,000 and scanned itself on every put)."""
    stream = EventStream(maxsize=256)
    status = status_of(1)
    started = time.perf_counter()
    for n in range(50_000):
        stream.put(PrintStarted(SERIAL, status) if n % 2 else StateChanged(SERIAL, status))
        assert len(stream) <= 256
    elapsed = time.perf_counter() - started
    assert stream.dropped == 50_000 - 256
    assert elapsed < 2.0, f"50,000 puts took {elapsed:.2f} s"
    got = [await stream.get(1.0) for _ in range(257)]
    assert isinstance(got[-1], EventsDropped) and got[-1].dropped == 50_000 - 256
    with pytest.raises(TimeoutError):
        await stream.get(0.01)


async def test_a_stream_ended_while_overflowing_still_delivers_the_resync() -> None:
    stream = EventStream(maxsize=1)
    stream.put(StateChanged(SERIAL, status_of(1)))
    stream.put(StateChanged(SERIAL, status_of(2)))
    stream.end(None)
    got = [event async for event in stream]
    assert [type(e) for e in got] == [StateChanged, EventsDropped]
    await asyncio.sleep(0)
