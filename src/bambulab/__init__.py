"""bambulab: talk to Bambu Lab 3D printers safely and fast."""

from bambulab._version import __version__
from bambulab.exceptions import BambuError

__all__ = ["BambuError", "__version__"]
