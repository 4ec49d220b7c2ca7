"""Every name a public module lists in ``__all__`` exists, and nothing private leaks into it."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_MODULES = [
    "bambulab",
    "bambulab.exceptions",
    "bambulab.protocol",
    "bambulab.sim",
    "bambulab.sync",
    "bambulab.camera",
    "bambulab.discovery",
    "bambulab.files",
    "bambulab.events",
    "bambulab.cloud",
    "bambulab.link",
    "bambulab.endpoint",
    "bambulab.protocol.ams",
    "bambulab.transports.rtsp",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, name
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    for attr in exported:
        assert not attr.startswith("_") or attr == "__version__", attr
        assert getattr(module, attr) is not None, f"{name}.{attr}"


def test_exceptions_share_one_root() -> None:
    from bambulab import exceptions

    for attr in exceptions.__all__:
        assert issubclass(getattr(exceptions, attr), exceptions.BambuError), attr
