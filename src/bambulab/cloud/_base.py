"""What the sync and async cloud clients share, without I/O: hosts, headers, errors, retries.

* :func:`resolve_urls` picks the API and web hosts for a region (or your overrides).
* :func:`default_headers` is the ``X-BBL-*`` set of PROTOCOL.md §8.1, naming this library.
* :func:`error_for` turns an HTTP error answer into the exception a caller can act on.
* :class:`RetryPolicy` decides whether and how long to wait before trying a call again.

Messages never contain a token, a password, a code or a request body.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import platform
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bambulab._version import __version__
from bambulab.cloud.endpoints import Request
from bambulab.exceptions import (
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    CloudError,
    CloudflareBlockedError,
    RateLimitedError,
    TokenExpiredError,
)
from bambulab.transports.http import HttpResponse

__all__ = [
    "REGIONS",
    "Region",
    "RetryPolicy",
    "check_token",
    "decode_json",
    "default_headers",
    "error_for",
    "resolve_urls",
    "uid_from_jwt",
]

Region = Literal["global", "china"]

#: API host and web host (CSRF, two-factor sign-in) per region.
REGIONS: dict[str, tuple[str, str]] = {
    "global": ("https://api.bambulab.com", "https://bambulab.com"),
    "china": ("https://api.bambulab.cn", "https://bambulab.cn"),
}

CLOUDFLARE_ADVICE = (
    "the request was blocked by Cloudflare, which sits in front of Bambu's API. This is usually "
    "temporary: try again later, or from a different network (some VPN, cloud and data-centre "
    "addresses are blocked)."
)


def resolve_urls(region: str = "global", api_url: str | None = None, web_url: str | None = None) -> tuple[str, str]:
    """The API and web base URLs: the region's hosts, unless overridden (no trailing slash)."""
    try:
        api, web = REGIONS[region]
    except KeyError:
        raise ValueError(f"unknown region {region!r}: use 'global' or 'china'") from None
    return (api_url or api).rstrip("/"), (web_url or web).rstrip("/")


def _os_type() -> str:
    system = platform.system().lower()
    return {"darwin": "macos"}.get(system, system or "linux")


def default_headers() -> dict[str, str]:
    """Headers sent with every API call (PROTOCOL.md §8.1), identifying this library honestly."""
    return {
        "User-Agent": f"bambulab-python/{__version__}",
        "Accept": "application/json",
        "X-BBL-Client-Name": "bambulab-python",
        "X-BBL-Client-Type": "slicer",
        "X-BBL-Client-Version": __version__,
        "X-BBL-Language": "en-US",
        "X-BBL-OS-Type": _os_type(),
        "X-BBL-OS-Version": platform.release() or "unknown",
        "X-BBL-Agent-Version": __version__,
        "X-BBL-Agent-OS-Type": _os_type(),
        "X-BBL-Executable-info": "{}",
    }


_TOKEN = re.compile(r"[\x21-\x7e]+")


def check_token(token: str, source: str = "the access token") -> str:
    """``token`` without surrounding whitespace; :class:`AuthenticationError` when it cannot be one.

    A token travels in an HTTP header and an MQTT password: a line break, a space inside, a control
    or non-ASCII character means the file (or variable) it came from is corrupt. The message names
    ``source`` and never quotes the value.
    """
    stripped = token.strip() if isinstance(token, str) else ""
    if not stripped or not _TOKEN.fullmatch(stripped):
        raise AuthenticationError(
            f"{source} is corrupt (empty, or holding spaces, line breaks, control or non-ASCII characters); "
            "log in again (bambu login)"
        )
    return stripped


def decode_json(response: HttpResponse, endpoint: str) -> Any:
    """The JSON body of a successful answer (None when empty)."""
    if not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise CloudError(f"{endpoint}: the cloud answered with something that is not JSON "
                         f"(HTTP {response.status})", status=response.status) from None


def _json_or_none(response: HttpResponse) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_cloudflare(response: HttpResponse) -> bool:
    return "cloudflare" in response.text.lower()


def error_for(response: HttpResponse, request: Request, *, token_sent: bool) -> BambuError:
    """The exception for an HTTP error answer (status >= 400) to ``request``."""
    status = response.status
    name = request.endpoint
    data = _json_or_none(response) or {}
    message = data.get("message") or data.get("error") or data.get("reason")
    code = data.get("code")
    if code is None and isinstance(data.get("reason"), str):
        code = data["reason"]
    server = f": {_short(str(message))}" if message else ""
    if status == 401:
        if token_sent:
            return TokenExpiredError(
                f"{name}: the Bambu cloud rejected the access token (expired or revoked); log in again "
                "(bambu login)"
            )
        return AuthenticationError(f"{name}: the Bambu cloud refused the credentials (HTTP 401){server}")
    if status == 429:
        retry_after = parse_retry_after(response.header("retry-after"))
        via = " by Cloudflare" if is_cloudflare(response) else ""
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else "; try again later"
        return RateLimitedError(f"{name}: rate limited{via} (HTTP 429){wait}", retry_after=retry_after)
    if status == 403 and is_cloudflare(response) and not data:
        return CloudflareBlockedError(f"{name}: HTTP 403 from Cloudflare: {CLOUDFLARE_ADVICE}", status=403,
                                      code="cloudflare")
    if not server and not data:
        server = f" ({_short(response.text, 80)})" if response.content and len(response.content) < 200 else ""
    return CloudError(f"{name}: the Bambu cloud answered HTTP {status}{server}", status=status,
                      code=code if isinstance(code, int | str) else None)


@dataclass(frozen=True)
class RetryPolicy:
    """When to try an idempotent call again.

    Connection errors, timeouts, 5xx and 429 are retried up to ``retries`` times with jittered
    exponential backoff (``backoff * 2**n``, at most ``max_backoff``, times a random factor in
    [0.5, 1]). A 429's ``Retry-After`` is honoured when it is at most ``max_retry_after`` seconds;
    a longer one raises :class:`~bambulab.exceptions.RateLimitedError` at once (its
    ``retry_after`` says how long to wait). Non-idempotent calls (most POSTs) are never retried.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def delay(
        self, request: Request, retry: int, error: BaseException, *, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up."""
        if not request.idempotent or retry >= self.retries:
            return None
        if isinstance(error, RateLimitedError):
            if error.retry_after is not None:
                return error.retry_after if error.retry_after <= self.max_retry_after else None
        elif isinstance(error, CloudflareBlockedError):
            return None
        elif isinstance(error, CloudError):
            if error.status is None or not 500 <= error.status <= 599:
                return None
        elif not isinstance(error, BambuConnectionError | BambuTimeoutError):
            return None
        base = min(self.max_backoff, self.backoff * (2.0**retry))
        return base * (rng or _RNG).uniform(0.5, 1.0)


_RNG = random.Random()
NO_RETRY = RetryPolicy(retries=0)


def uid_from_jwt(token: str) -> int | None:
    """The numeric uid in a JWT-shaped token's ``username: "u_<uid>"`` claim (signature not checked)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error, RecursionError):
        return None
    username = claims.get("username") if isinstance(claims, Mapping) else None
    if isinstance(username, str) and username.startswith("u_") and username[2:].isdigit():
        return int(username[2:])
    return None
