"""The older ``bambulab`` package's names, as a thin layer over the modern API.

Scripts written for the older community package (``bambu-lab-cloud-api``, imported as
``bambulab``) keep working: ``BambuClient.get_devices()``, ``BambuAuthenticator(token_file=...)``,
``MQTTBridge``, ``bambulab.models``, ``bambulab.utils`` and the ``bambu-query`` /
``bambu-monitor`` / ``bambu-camera`` / ``bambu-login`` commands. Everything here calls the modern
API underneath; nothing in the modern API calls back into it. Where the older package offered a
call that has no real endpoint, the method raises :class:`~bambulab.exceptions.UnsupportedError`
naming what works instead. ``docs/migrating.md`` lists every older name and what it maps to.

This package is imported lazily: ``import bambulab`` does not load it.
"""

from __future__ import annotations

__all__ = ["LegacyWarning"]


class LegacyWarning(UserWarning):
    """An older call works, but part of it has no effect (an ignored argument, a guessed field)."""
