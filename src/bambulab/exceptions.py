"""The exception tree. Every error the library raises derives from :class:`BambuError`.

Branches are what a caller can act on: reconnect (:class:`BambuConnectionError`), fix the
credentials (:class:`AuthenticationError`), wait (:class:`RateLimitedError`), turn on Developer
Mode (:class:`SignatureRequiredError`). Messages never contain access codes or tokens.
"""

from __future__ import annotations

__all__ = [
    "AmsMappingError",
    "AuthenticationError",
    "BambuConnectionError",
    "BambuError",
    "BambuTimeoutError",
    "CloudError",
    "CloudflareBlockedError",
    "CommandFailedError",
    "FileTransferError",
    "NotConnectedError",
    "PrintSetupError",
    "PrinterBusyError",
    "PrinterCertificateError",
    "RateLimitedError",
    "SessionReuseError",
    "SignatureRequiredError",
    "SimulatorError",
    "SubscriptionRefusedError",
    "ThreeMFError",
    "TokenExpiredError",
    "UnsupportedError",
]


class BambuError(Exception):
    """Root of every error raised by bambulab."""


class BambuConnectionError(BambuError, ConnectionError):
    """The printer or the cloud could not be reached, or the connection was lost."""


class NotConnectedError(BambuConnectionError):
    """The client is not connected (never connected, closed, or waiting to reconnect)."""


class BambuTimeoutError(BambuError, TimeoutError):
    """No answer in time: a command without acknowledgement, a stalled connection."""


class AuthenticationError(BambuError):
    """Wrong access code, user name, password or token. Retrying with the same values won't help."""


#: The older package's name for :class:`AuthenticationError` (``from bambulab import BambuAuthError``).
BambuAuthError = AuthenticationError


class TokenExpiredError(AuthenticationError):
    """The cloud access token has expired or was revoked: log in again."""


class PrinterCertificateError(AuthenticationError):
    """The printer's TLS certificate did not verify, or names another serial.

    Retrying will not help: either the address now belongs to another device (check the IP and the
    serial), or the printer's CA is not the one expected (pass ``ca_file=``, or ``insecure=True`` at
    your own risk).
    """


class SubscriptionRefusedError(BambuConnectionError):
    """The broker answered a SUBSCRIBE with 0x80 (refused); the connection stays open."""

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


class CommandFailedError(BambuError):
    """The printer acknowledged a command with a failure.

    ``reason`` is the printer's text, ``code`` its ``err_code``/``errno`` when it sent one.
    """

    def __init__(self, message: str, *, command: str = "", reason: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.command = command
        self.reason = reason
        self.code = code


class SignatureRequiredError(CommandFailedError):
    """The printer requires signed commands (authorization-control firmware, Developer Mode off)."""

    ADVICE = (
        "The printer's firmware only accepts signed control commands while Developer Mode is off. "
        "On the printer's screen enable LAN Only Mode, then Developer Mode, and try again. "
        "Reading status, lights and camera settings keep working without it."
    )


class PrinterBusyError(CommandFailedError):
    """The printer is preparing, printing or paused, and cannot start another job."""


class ThreeMFError(BambuError, ValueError):
    """The bytes are not a readable sliced Bambu 3MF project."""


class PrintSetupError(BambuError, ValueError):
    """The file cannot be printed as asked (no such plate, not a sliced project ...). Nothing was sent."""


class AmsMappingError(PrintSetupError):
    """A filament of the plate has no loaded tray of the same material (``ams_mapping="auto"``), or
    the AMS cannot be used as asked. Nothing was sent."""


class FileTransferError(BambuError):
    """An FTPS transfer failed (missing file, full storage, verification mismatch)."""


class SessionReuseError(FileTransferError):
    """The printer refused a data connection that did not resume the TLS session (FTP 522)."""


class CloudError(BambuError):
    """The Bambu cloud answered with an error. ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None, code: int | str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimitedError(CloudError):
    """Too many requests (HTTP 429). ``retry_after`` is in seconds when the server said."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class CloudflareBlockedError(CloudError):
    """Cloudflare, in front of the Bambu cloud, blocked the request (a 403 challenge page)."""


class UnsupportedError(BambuError):
    """The printer model or firmware does not support this operation."""


class SimulatorError(BambuError):
    """The virtual printer could not start or was used wrongly."""


class HistoryError(BambuError):
    """Bad history input (a filter, a time), or a history store that cannot be used."""


class StoreUnavailableError(HistoryError):
    """The history database cannot be reached, or a query or write failed there (retrying may help)."""


class ControlError(BambuError):
    """A gateway control call that did not happen or failed: HTTP ``status``, a stable ``code``, the
    printer's own code when it sent one. ``str()`` is the human text (no secrets)."""

    def __init__(self, status: int, code: str, message: str, printer_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.printer_code = printer_code


class UnknownCameraError(BambuError, KeyError):
    """No printer with that serial in the gateway's fleet (camera lookup)."""
