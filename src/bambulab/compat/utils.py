"""The older package's formatting helpers, for scripts that print printer data.

``from bambulab.utils import format_timestamp, format_temperature, format_time_remaining,
parse_device_data``. Unknown values format as ``"N/A"`` instead of raising.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from bambulab.compat.models import Device

__all__ = ["format_temperature", "format_time_remaining", "format_timestamp", "parse_device_data"]

UNKNOWN = "N/A"


def format_timestamp(value: _dt.datetime | float | int | str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A datetime, a Unix time or an ISO 8601 string (the cloud's ``"2024-10-24T10:00:00Z"``) as
    ``fmt``, in UTC for Unix times and strings with a zone; ``"N/A"`` when unreadable."""
    moment: _dt.datetime | None = None
    if isinstance(value, _dt.datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
    elif isinstance(value, str) and value.strip():
        try:
            moment = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
    return moment.strftime(fmt) if moment is not None else UNKNOWN


def format_temperature(value: float | int | str | None, unit: str = "C", *, decimals: int = 1) -> str:
    """``220.0°C``; ``"N/A"`` for ``None`` or text that is not a number."""
    try:
        number = float(value) if value is not None and not isinstance(value, bool) else None
    except ValueError:
        number = None
    return f"{number:.{decimals}f}°{unit}" if number is not None else UNKNOWN


def format_time_remaining(seconds: float | int | None) -> str:
    """``"1h 05m"``, ``"12m 30s"``, ``"45s"``, ``"2d 3h"``; ``"N/A"`` when unknown or negative.

    Takes seconds. The printer's ``mc_remaining_time`` is in minutes: multiply it by 60.
    """
    if seconds is None or isinstance(seconds, bool) or seconds < 0:
        return UNKNOWN
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def parse_device_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """One bind-list device (``GET .../user/bind``) normalized: the older keys, the access code
    stripped of its stray newline, ``online`` a bool, plus ``serial``, ``model`` and ``product``."""
    device = Device.from_dict(data)
    out = device.to_dict(include_secrets=True)
    out.update(serial=device.dev_id, model=device.dev_model_name, product=device.dev_product_name)
    return out
