"""Results shaped like the older package's dicts, readable as ``r["key"]`` and as ``r.key``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["SECRET_KEYS", "Record", "mask"]

#: Keys whose values are secrets (access codes, tokens, camera passwords, presigned URLs).
SECRET_KEYS = frozenset({
    "dev_access_code", "access_code", "accessToken", "refreshToken", "token", "access_token", "refresh_token",
    "ttcode", "passwd", "authkey", "password",
})


def mask(value: Any, secret: frozenset[str]) -> Any:
    """A copy of ``value`` with the values of ``secret`` keys replaced by ``'***'`` (for reprs)."""
    if isinstance(value, Mapping):
        return {k: ("***" if k in secret and v not in (None, "") else mask(v, secret)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, secret) for v in value]
    return value


class Record(dict[str, Any]):
    """A plain ``dict`` (what the older package returned) that also reads keys as attributes.

    ``source`` is the modern object the record was made from: attributes the dict lacks are read
    from it, so ``device.model_name`` works next to ``device["dev_product_name"]``. The ``repr``
    (and so ``print(record)``) masks secrets; ``record["dev_access_code"]`` still returns them.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        *,
        source: object | None = None,
        secret_keys: Iterable[str] = (),
    ) -> None:
        super().__init__(data)
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_secret", SECRET_KEYS | frozenset(secret_keys))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self:
            return self[name]
        source = self.__dict__.get("_source")
        if source is not None and not name.startswith("_"):
            return getattr(source, name)
        raise AttributeError(f"{type(self).__name__} has no key or attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @property
    def source(self) -> object | None:
        """The modern object behind this record (a :class:`bambulab.cloud.Device`, ...), if any."""
        return self.__dict__.get("_source")

    def __repr__(self) -> str:
        return repr(mask(dict(self), self.__dict__.get("_secret", SECRET_KEYS)))

    __str__ = __repr__
