"""Kept for the cloud modules' imports: the private-file writer lives in :mod:`bambulab._files`."""

from __future__ import annotations

from bambulab._files import write_private

__all__ = ["write_private"]
