"""Decode HMS (health management) entries and ``print_error`` codes into readable messages.

An HMS entry on the wire is ``{"attr": int, "code": int}``:

* ``attr`` bits 31-24 name the module (0x03 motion controller, 0x05 mainboard, 0x07 AMS,
  0x08 toolhead, 0x0C xcam, 0x12 AMS Lite, 0x18 AMS HT), bits 23-16 the module's index (for
  example which AMS unit), bits 15-8 the part, bits 7-0 are reserved.
* ``code`` bits 31-16 are the severity (1 fatal, 2 serious, 3 common, 4 info), bits 15-0 the
  message id.

The printed key is ``HMS_AAAA_AAAA_CCCC_CCCC`` (attr then code, four hex digits a group); Bambu's
own text database keys the same 16 hex digits without separators.

``print_error`` is one 32-bit integer: bits 31-24 module, 23-16 index, 15-0 the error id; it is
shown as ``0300_400C`` and looked up by its 8 hex digits.

The decode functions are pure. The English texts come from ``data/hms_en.json``, short texts
written for this project (not Bambu's database); it is read once, on first use, through
:func:`default_table`. Pass a table of your own (:func:`parse_table` over Bambu's
``query.php`` data reshaped to ``{"device_error": {...}, "device_hms": {...}}``) for full
coverage or other languages.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = [
    "HMS_INDEX_URL",
    "HMS_WIKI_URL",
    "MODULE_NAMES",
    "HmsMessage",
    "HmsSeverity",
    "HmsTable",
    "PrintError",
    "decode_hms",
    "decode_hms_entry",
    "decode_hms_list",
    "decode_print_error",
    "default_table",
    "hms_key",
    "load_table",
    "parse_table",
    "print_error_code",
]

#: The page for one HMS code is this prefix plus ``AAAA_AAAA_CCCC_CCCC``.
HMS_WIKI_URL = "https://wiki.bambulab.com/en/x1/troubleshooting/hmscode/"
#: Bambu's index of HMS and error codes.
HMS_INDEX_URL = "https://wiki.bambulab.com/en/hms/home"

#: Module byte (attr bits 31-24, print_error bits 31-24) to our module name.
MODULE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0x03: "motion_controller",
        0x05: "mainboard",
        0x07: "ams",
        0x08: "toolhead",
        0x0C: "xcam",
        0x12: "ams_lite",  # one source, marked uncertain in PROTOCOL.md
        0x18: "ams_ht",  # one source: AMS HT codes start 18xx
    }
)

_AMS_MODULES = frozenset({0x07, 0x12, 0x18})
_U32 = 0xFFFFFFFF


class HmsSeverity(enum.StrEnum):
    """HMS severity from ``code`` bits 31-16."""

    FATAL = "fatal"  # 1
    SERIOUS = "serious"  # 2
    COMMON = "common"  # 3
    INFO = "info"  # 4
    UNKNOWN = "unknown"


_SEVERITIES = {1: HmsSeverity.FATAL, 2: HmsSeverity.SERIOUS, 3: HmsSeverity.COMMON, 4: HmsSeverity.INFO}


def _u32(value: object) -> int | None:
    """A 32-bit unsigned value from an int (negative = signed 32-bit), an integral float or a
    decimal string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        n = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 12:
            return None
        try:
            n = int(text, 10)
        except ValueError:
            return None
    else:
        return None
    if -(1 << 31) <= n <= _U32:
        return n & _U32
    return None


def _module_name(module_id: int) -> str:
    return MODULE_NAMES.get(module_id, "unknown")


@dataclass(frozen=True, slots=True)
class HmsTable:
    """Texts keyed by upper-case hex: 8 digits for print errors, 16 (attr+code) for HMS."""

    device_error: Mapping[str, str]
    device_hms: Mapping[str, str]

    def error_text(self, value: int) -> str | None:
        """The text for a ``print_error`` value; AMS codes fall back to unit 0 of the AMS."""
        for candidate in _error_candidates(value & _U32):
            text = self.device_error.get(f"{candidate:08X}")
            if text:
                return text
        return None

    def hms_text(self, attr: int, code: int) -> str | None:
        """The text for an HMS entry; AMS codes fall back to unit 0, slot 0 of the AMS."""
        code_part = f"{code & _U32:08X}"
        for candidate in _hms_attr_candidates(attr & _U32):
            text = self.device_hms.get(f"{candidate:08X}{code_part}")
            if text:
                return text
        return None


def _error_candidates(value: int) -> Iterator[int]:
    yield value
    module, index = value >> 24, (value >> 16) & 0xFF
    if module not in _AMS_MODULES:
        return
    low = value & 0xFFFF
    if index != 0xFF:
        index = 0
    for fallback_module in dict.fromkeys((module, 0x07)):
        candidate = (fallback_module << 24) | (index << 16) | low
        if candidate != value:
            yield candidate


def _hms_attr_candidates(attr: int) -> Iterator[int]:
    yield attr
    module, index, part = attr >> 24, (attr >> 16) & 0xFF, (attr >> 8) & 0xFF
    if module not in _AMS_MODULES:
        return
    if index != 0xFF:
        index = 0
    generic_part = part & 0xF0  # the low nibble of the part byte is the slot for slot parts
    for fallback_module in dict.fromkeys((module, 0x07)):
        for p in dict.fromkeys((part, generic_part)):
            candidate = (fallback_module << 24) | (index << 16) | (p << 8) | (attr & 0xFF)
            if candidate != attr:
                yield candidate


@dataclass(frozen=True, slots=True)
class HmsMessage:
    """One decoded HMS entry."""

    attr: int
    code: int
    module_id: int
    module: str
    module_index: int  # e.g. the AMS unit (0 = first); 0xFF addresses all units / the external spool
    part: int
    severity: HmsSeverity
    key: str  # "HMS_0300_0100_0001_0007"
    wiki_url: str
    text: str | None

    @property
    def code_id(self) -> str:
        """The 16 hex digits Bambu's database keys the message by, e.g. ``0300010000010007``."""
        return f"{self.attr:08X}{self.code:08X}"


@dataclass(frozen=True, slots=True)
class PrintError:
    """A decoded non-zero ``print_error``."""

    value: int
    code: str  # "0300400C"
    display: str  # "0300_400C"
    module_id: int
    module: str
    module_index: int
    text: str | None


def hms_key(attr: int, code: int) -> str:
    """``HMS_AAAA_AAAA_CCCC_CCCC`` for an entry (masked to 32 bits)."""
    attr &= _U32
    code &= _U32
    return f"HMS_{attr >> 16:04X}_{attr & 0xFFFF:04X}_{code >> 16:04X}_{code & 0xFFFF:04X}"


def print_error_code(value: int) -> str:
    """``0300_400C`` for a ``print_error`` value."""
    value &= _U32
    return f"{value >> 16:04X}_{value & 0xFFFF:04X}"


def decode_hms(attr: object, code: object, table: HmsTable | None = None) -> HmsMessage | None:
    """Decode one HMS entry. ``None`` when ``attr`` or ``code`` is not a 32-bit integer."""
    a, c = _u32(attr), _u32(code)
    if a is None or c is None:
        return None
    key = hms_key(a, c)
    texts = table if table is not None else default_table()
    return HmsMessage(
        attr=a,
        code=c,
        module_id=a >> 24,
        module=_module_name(a >> 24),
        module_index=(a >> 16) & 0xFF,
        part=(a >> 8) & 0xFF,
        severity=_SEVERITIES.get(c >> 16, HmsSeverity.UNKNOWN),
        key=key,
        wiki_url=HMS_WIKI_URL + key[4:],
        text=texts.hms_text(a, c),
    )


def decode_hms_entry(entry: object, table: HmsTable | None = None) -> HmsMessage | None:
    """Decode ``{"attr": …, "code": …}``; ``None`` for anything that is not such an entry."""
    if not isinstance(entry, Mapping):
        return None
    return decode_hms(entry.get("attr"), entry.get("code"), table)


def decode_hms_list(entries: object, table: HmsTable | None = None) -> tuple[HmsMessage, ...]:
    """Decode a report's ``hms`` list, skipping malformed entries."""
    if not isinstance(entries, list):
        return ()
    decoded = (decode_hms_entry(entry, table) for entry in entries)
    return tuple(message for message in decoded if message is not None)


def decode_print_error(value: object, table: HmsTable | None = None) -> PrintError | None:
    """Decode ``print_error``: ``None`` for 0 (no error) or a value that is not an integer."""
    v = _u32(value)
    if not v:
        return None
    texts = table if table is not None else default_table()
    return PrintError(
        value=v,
        code=f"{v:08X}",
        display=print_error_code(v),
        module_id=v >> 24,
        module=_module_name(v >> 24),
        module_index=(v >> 16) & 0xFF,
        text=texts.error_text(v),
    )


def _text_map(section: object, digits: int) -> Mapping[str, str]:
    if not isinstance(section, Mapping):
        return MappingProxyType({})
    out: dict[str, str] = {}
    for key, text in section.items():
        if isinstance(key, str) and isinstance(text, str) and text:
            normalised = key.replace("_", "").strip().upper()
            if len(normalised) == digits:
                out[normalised] = text
    return MappingProxyType(out)


def parse_table(data: object) -> HmsTable:
    """Build a table from ``{"device_error": {code: text}, "device_hms": {code: text}}``.

    Keys may be upper or lower case and may contain underscores; malformed entries are skipped.
    """
    mapping: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    return HmsTable(
        device_error=_text_map(mapping.get("device_error"), 8),
        device_hms=_text_map(mapping.get("device_hms"), 16),
    )


_EMPTY_TABLE = HmsTable(MappingProxyType({}), MappingProxyType({}))


def load_table(language: str = "en") -> HmsTable:
    """Read the table the package ships for ``language`` (only ``"en"`` today). Raises ``OSError``
    or ``ValueError`` when it is missing or unreadable."""
    resource = resources.files("bambulab.protocol").joinpath(f"data/hms_{language}.json")
    return parse_table(json.loads(resource.read_text(encoding="utf-8")))


@functools.cache
def default_table() -> HmsTable:
    """The shipped English table, read on first use and cached; empty if it cannot be read."""
    try:
        return load_table("en")
    except (OSError, ValueError):
        return _EMPTY_TABLE
