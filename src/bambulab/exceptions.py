"""The exception tree. Every error the library raises derives from :class:`BambuError`.

Messages never contain access codes or tokens.
"""

from __future__ import annotations

__all__ = [
    "BambuError",
    "SimulatorError",
]


class BambuError(Exception):
    """Root of every error raised by bambulab."""


class SimulatorError(BambuError):
    """The virtual printer could not start or was used wrongly."""
