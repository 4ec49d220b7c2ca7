"""Dict-style reading of :class:`bambulab.cloud.UploadResult`, as the older package returned a dict.

Kept apart from :mod:`bambulab.compat.cloud` (and free of imports) because the modern model class
inherits it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LegacyRawKeys", "LegacyUploadKeys"]


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class LegacyUploadKeys:
    """``result["filename"]``, ``result["file_url"]``, ``result["status_code"]``, ``result["success"]``.

    ``file_url`` is the object's address without the presigned query (the signature is a
    write credential, so it is not handed out under a name people print); the full URL stays
    in ``result.url``. ``status_code`` is 200: an upload that did not succeed raises instead.
    """

    __slots__ = ()

    def _legacy_keys(self) -> dict[str, Any]:
        get = object.__getattribute__
        url = str(get(self, "url"))
        return {
            "success": True,
            "status_code": 200,
            "filename": get(self, "filename"),
            "file_name": get(self, "filename"),
            "file_url": _without_query(url),
            "size": get(self, "size"),
            "file_size": get(self, "size"),
            "md5": get(self, "md5"),
        }

    def __getitem__(self, key: str) -> Any:
        keys = self._legacy_keys()
        if key not in keys:
            raise KeyError(key)
        return keys[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._legacy_keys().get(key, default)

    def keys(self) -> list[str]:
        return list(self._legacy_keys())

    def __contains__(self, key: object) -> bool:
        return key in self._legacy_keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self._legacy_keys())


class LegacyRawKeys:
    """``result["project_id"]``: read the cloud's JSON (``.raw``) by key, as the older package's dicts."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raw = object.__getattribute__(self, "raw")
        return raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return object.__getattribute__(self, "raw").get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in object.__getattribute__(self, "raw")
