"""The older package's ``bambulab.utils`` import path: see :mod:`bambulab.compat.utils`."""

from bambulab.compat.utils import format_temperature, format_time_remaining, format_timestamp, parse_device_data

__all__ = ["format_temperature", "format_time_remaining", "format_timestamp", "parse_device_data"]
