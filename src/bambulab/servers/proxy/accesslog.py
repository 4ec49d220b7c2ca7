"""The proxy's access log: one JSON object per line, secrets redacted, everything else intact.

Redaction is by *name* (query parameters and fields called token, password, access code, code,
secret, ticket, signature ...), never by shape: the older proxy blanked every dotted quad and so
destroyed firmware versions such as ``01.07.00.00``; here a value is only hidden when its key says
it is a secret. Custom tokens are never logged; the entry's name (its label) is.
"""

from __future__ import annotations

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


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like value with the values of secret-named keys replaced."""
    if _depth > 32:
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET.search(k) else redact(v, _depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, _depth + 1) for v in value]
    return value


def redact_query(query: str) -> str:
    """A query string with the values of secret-named parameters replaced."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if _SECRET.search(k) else v) for k, v in pairs], safe="[]")


class AccessLog:
    """Writes one JSON line per request to a text stream (thread-safe; a failing stream is ignored)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        if self.stream is None:
            return
        fields.setdefault("ts", round(time.time(), 3))
        line = json.dumps(redact(fields), separators=(",", ":"), default=str)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
