"""The public surface, guarded in the style of httpx's test_exported_members.

* ``bambulab.__all__`` is exactly what the package provides: its eager imports plus ``_LAZY``.
* Every exception class anywhere in ``bambulab`` derives from :class:`BambuError`, and every
  public one is exported at the top level (private ones never leave their module).
* The sync and async cloud twins have the same public methods, signatures and docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from typing import Any

import pytest

import bambulab
from bambulab.exceptions import BambuError

_EAGER_PRIVATE = {"annotations", "importlib", "TYPE_CHECKING", "Any"}


def test_all_is_the_lazy_names_plus_the_eager_ones() -> None:
    eager = {
        name
        for name, value in vars(bambulab).items()
        if not name.startswith("_") and name not in _EAGER_PRIVATE and not isinstance(value, types.ModuleType)
    }
    eager.add("__version__")
    lazy = set(bambulab._LAZY)
    assert not eager & lazy, "a name is both imported and lazy"
    assert set(bambulab.__all__) == eager | lazy
    assert len(bambulab.__all__) == len(set(bambulab.__all__))
    for name in lazy:
        assert getattr(bambulab, name) is not None, name


def _all_modules() -> list[types.ModuleType]:
    modules = [bambulab]
    for info in pkgutil.walk_packages(bambulab.__path__, prefix="bambulab."):
        if info.name.endswith("__main__"):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as exc:  # an optional extra that is not installed
            if "bambulab" in str(exc):
                raise
    return modules


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _all_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and not issubclass(value, Warning)  # warnings are categories for filters, not errors
                and value.__module__.startswith("bambulab")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_is_in_the_tree_and_exported() -> None:
    classes = _exception_classes()
    assert len(classes) > 15
    public = {key: cls for key, cls in classes.items() if not cls.__name__.startswith("_")}
    for key, cls in classes.items():
        if cls.__name__.startswith("_"):
            continue  # private to one module and caught there
        assert issubclass(cls, BambuError), f"{key} is outside the BambuError tree"
    for key, cls in public.items():
        if cls.__module__.startswith("bambulab.compat"):
            continue  # the compatibility layer exports its own names
        assert getattr(bambulab, cls.__name__, None) is cls, f"{key} is not exported by bambulab"
        assert cls.__name__ in bambulab.__all__, key


# ------------------------------------------------------------------------------------ the twins

_ASYNC_SPELLING = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}


def _public_members(cls: type) -> dict[str, Any]:
    """Public attributes (and __init__), skipping those the compat layer adds to a twin."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__.startswith("bambulab.compat"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") and name not in ("__init__", *_ASYNC_SPELLING, *_ASYNC_SPELLING.values()):
                continue
            members[_ASYNC_SPELLING.get(name, name)] = value
    modern = {name for klass in cls.__mro__ if not klass.__module__.startswith("bambulab.compat")
              for name in vars(klass)}
    for klass in cls.__mro__:  # a name only a compat mixin defines is the compat layer's, not the twin's;
        if klass.__module__.startswith("bambulab.compat"):  # one it widens is compared in its modern form
            for name in vars(klass):
                if name not in modern:
                    members.pop(name, None)
    return members


def _shape(value: Any) -> str:
    func = value.fget if isinstance(value, property) else value
    if not callable(func):
        return type(value).__name__
    text = str(inspect.signature(func))
    # the twins differ only in the sync/async flavour of the same types
    return re.sub(r"\bAsync(?=[A-Z])", "", text)


def _twins() -> list[tuple[type, type]]:
    from bambulab.cloud import AsyncBambuAuthenticator, AsyncBambuClient, BambuAuthenticator, BambuClient

    return [(BambuClient, AsyncBambuClient), (BambuAuthenticator, AsyncBambuAuthenticator)]


@pytest.mark.parametrize(("sync", "async_"), _twins(), ids=lambda cls: cls.__name__)
def test_cloud_twins_have_the_same_methods_signatures_and_docstrings(sync: type, async_: type) -> None:
    sync_members, async_members = _public_members(sync), _public_members(async_)
    assert set(sync_members) == set(async_members)
    for name in sorted(sync_members):
        if name in ("__enter__", "__exit__"):
            continue
        s, a = sync_members[name], async_members[name]
        assert _shape(s) == _shape(a), f"{sync.__name__}.{name}"
        if s is a or name == "__init__":
            continue  # shared by both twins (their common base)
        assert inspect.getdoc(s), f"{sync.__name__}.{name} has no docstring"
        assert inspect.getdoc(s) == inspect.getdoc(a), f"{async_.__name__}.{name}: docstring differs"
        if inspect.isfunction(a):
            assert inspect.iscoroutinefunction(a) or inspect.isasyncgenfunction(a), f"{async_.__name__}.{name}"
