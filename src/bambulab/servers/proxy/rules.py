"""The proxy's rules: path normalisation, the strict allowlist, endpoint classes and cache TTLs.

Pure functions, no I/O. :func:`normalise_path` turns the raw request path into the one canonical
form that is matched *and* forwarded, or refuses it; :func:`match` finds the rule for a method and
a canonical path. Nothing is forwarded in strict mode unless :func:`match` returned a rule that is
``strict`` - the path the upstream receives is then exactly one on the list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["RULES", "Rule", "match", "normalise_path"]

MAX_PATH = 512  # bytes of a raw path; real API paths are well under 100
MAX_QUERY = 2048

_ID = r"[A-Za-z0-9_.-]{1,64}"
_IOT = "/v1/iot-service/api"


@dataclass(frozen=True)
class Rule:
    """One endpoint: a method, a full-match path pattern, its class (rate budget) and cache TTL."""

    name: str
    method: str
    pattern: str
    klass: str  # "devices", "user", "slicer", "realtime"
    ttl: float = 0.0  # seconds a response may be served from the cache (0: never cached)
    strict: bool = True  # on the strict allowlist
    local: bool = False  # answered by the proxy itself (real-time data), never forwarded

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self._regex.fullmatch(path) is not None  # type: ignore[attr-defined]


#: Read-only endpoints (PROTOCOL.md's and docs/cloud-api.md's), in matching order. Not on it:
#: TTCode (camera passwords), upload URLs (presigned credentials), profile (e-mail address),
#: and every write.
RULES: tuple[Rule, ...] = (
    Rule("devices", "GET", f"{_IOT}/user/bind", "devices", ttl=10.0),
    Rule("print-status", "GET", f"{_IOT}/user/print", "devices", ttl=5.0),
    Rule("firmware", "GET", f"{_IOT}/user/device/version", "devices", ttl=60.0),
    Rule("task", "GET", f"{_IOT}/user/task/{_ID}", "user", ttl=30.0),
    Rule("tasks", "GET", "/v1/user-service/my/tasks", "user", ttl=30.0),
    Rule("projects", "GET", f"{_IOT}/user/project", "user", ttl=30.0),
    Rule("project", "GET", f"{_IOT}/user/project/{_ID}", "user", ttl=30.0),
    Rule("messages", "GET", "/v1/user-service/my/messages", "user", ttl=30.0),
    Rule("preferences", "GET", "/v1/design-user-service/my/preference", "user", ttl=300.0),
    Rule("notifications", "GET", f"{_IOT}/user/notification", "user", ttl=30.0),
    Rule("slicer-settings", "GET", f"{_IOT}/slicer/setting", "slicer", ttl=300.0),
    Rule("slicer-setting", "GET", f"{_IOT}/slicer/setting/{_ID}", "slicer", ttl=300.0),
    Rule("slicer-resources", "GET", f"{_IOT}/slicer/resource", "slicer", ttl=300.0),
    Rule("realtime-start", "POST", f"{_IOT}/user/device/realtime/start", "realtime", local=True),
    Rule("realtime", "GET", f"{_IOT}/user/device/realtime", "realtime", local=True),
    Rule("realtime-stream", "GET", f"{_IOT}/user/device/realtime/stream", "realtime", local=True),
)


class _PathRefused(ValueError):
    """A path that has no canonical form (the ``rule`` says why)."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


_ALLOWED = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=:@/-]*")
#: Already canonical: no percent, backslash, dot segment, empty segment or trailing slash.
_PLAIN = re.compile(rb"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~!$&'()*+,;=:@-]+)+")


def normalise_path(raw: bytes) -> str:
    """The canonical form of a raw request path (no query), or :class:`_PathRefused`.

    Percent-decoding once (a ``%`` left after it is a double encoding: refused), encoded or
    literal backslashes and encoded slashes refused (they mean different things to different
    servers), control and non-ASCII bytes refused, duplicate slashes collapsed, ``.`` and ``..``
    segments resolved (climbing above the root refused), the trailing slash dropped. Case is kept:
    the allowlist is lower case, so ``/V1/...`` simply matches nothing.
    """
    if len(raw) > MAX_PATH:
        raise _PathRefused("path-too-long", f"the path is longer than {MAX_PATH} bytes")
    if _PLAIN.fullmatch(raw) is not None:  # the common case, checked in one pass
        return raw.decode("ascii")
    if not raw.startswith(b"/"):
        raise _PathRefused("path-not-absolute", "the path must start with /")
    lowered = raw.lower()
    if b"%2f" in lowered or b"%5c" in lowered or b"\\" in raw:
        raise _PathRefused("encoded-separator", "encoded slashes and backslashes are refused")
    decoded = unquote_to_bytes(raw)
    if b"%" in decoded:
        raise _PathRefused("double-encoding", "a percent sign after decoding (double encoding) is refused")
    if _ALLOWED.fullmatch(decoded) is None:
        raise _PathRefused("bad-characters", "control, space or non-ASCII characters in the path are refused")
    segments: list[str] = []
    for segment in decoded.decode("ascii").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise _PathRefused("traversal", "the path climbs above the root")
            segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


_MATCHED: dict[tuple[str, str], Rule | None] = {}


def match(method: str, path: str) -> Rule | None:
    """The rule for ``method`` and a canonical ``path``, or None (remembered for 4,096 pairs)."""
    key = (method, path)
    try:
        return _MATCHED[key]
    except KeyError:
        pass
    found = next((rule for rule in RULES if rule.matches(method, path)), None)
    if len(_MATCHED) >= 4096:
        _MATCHED.clear()
    _MATCHED[key] = found
    return found
