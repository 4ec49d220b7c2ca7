"""The proxy's access log: one JSON object per line, secrets redacted, everything else intact.

Redaction is by *name* (query parameters and fields called token, password, access code, code,
secret, ticket, signature ...), never by shape: the older proxy blanked every dotted quad and so
destroyed firmware versions such as ``01.07.00.00``; here a value is only hidden when its key says
it is a secret. Custom tokens are never logged; the entry's name (its label) is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import threading
import time
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["AccessLog", "redact", "redact_query"]

_SECRET = re.compile(r"(token|passw|access_?code|secret|ticket|signature|authoriz|cookie|^code$|credential|"
                     r"api_?key|tfa|^key$)", re.IGNORECASE)
REDACTED = "[redacted]"
#: Lines reach the file at most this long after they are written (one flush per interval, not per line).
FLUSH_INTERVAL = 0.05


@functools.lru_cache(maxsize=1024)
def _secret(name: str) -> bool:
    """Whether a key names a secret (cached: the same dozen keys come with every request)."""
    return _SECRET.search(name) is not None


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like value with the values of secret-named keys replaced."""
    if _depth > 32:
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _secret(k) else redact(v, _depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, _depth + 1) for v in value]
    return value


def redact_query(query: str) -> str:
    """A query string with the values of secret-named parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _secret(k) else v) for k, v in pairs], safe="[]")


class AccessLog:
    """Writes one JSON line per request to a text stream (thread-safe; a failing stream is ignored).

    In an event loop the stream is flushed once per :data:`FLUSH_INTERVAL` rather than after every
    line: a flush is a system call, and one per request was a third of a cached answer's CPU.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._flush_scheduled = False

    def write(self, **fields: Any) -> None:
        if self.stream is None:
            return
        fields.setdefault("ts", round(time.time(), 3))
        line = json.dumps(redact(fields), separators=(",", ":"), default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
            except (OSError, ValueError):
                return
            if self._flush_scheduled:
                return
            try:
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
                self._flush_scheduled = True
                return
            except RuntimeError:  # no event loop in this thread: flush now
                pass
        self.flush()

    def flush(self) -> None:
        """Whatever is written reaches the stream's file now (also when the proxy stops)."""
        with self._lock:
            self._flush_scheduled = False
            if self.stream is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()
