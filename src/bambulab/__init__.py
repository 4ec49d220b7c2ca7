"""bambulab: talk to Bambu Lab 3D printers safely and fast.

```python
from bambulab import Printer

async with Printer("192.168.1.50", "01P00A123456789", access_code) as printer:
    print(printer.status.job.state)
```

Names are imported on first use, so ``import bambulab`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bambulab._version import __version__
from bambulab.exceptions import (
    AmsMappingError,
    AuthenticationError,
    BambuConnectionError,
    BambuError,
    BambuTimeoutError,
    CloudError,
    CloudflareBlockedError,
    CommandFailedError,
    ControlError,
    FileTransferError,
    HistoryError,
    NotConnectedError,
    PrinterBusyError,
    PrinterCertificateError,
    PrintSetupError,
    RateLimitedError,
    SessionReuseError,
    SignatureRequiredError,
    SimulatorError,
    StoreUnavailableError,
    SubscriptionRefusedError,
    ThreeMFError,
    TokenExpiredError,
    UnknownCameraError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from bambulab.camera import Camera
    from bambulab.cloud import AsyncBambuClient, BambuClient, TokenManager
    from bambulab.compat.auth import BambuAuthenticator
    from bambulab.compat.lan import LocalPrintClient
    from bambulab.compat.mqtt import MQTTBridge, MQTTClient
    from bambulab.config import ConfigError
    from bambulab.discovery import discover
    from bambulab.exceptions import BambuAuthError
    from bambulab.files import PrinterFiles
    from bambulab.printer import Printer
    from bambulab.protocol.views import PrinterStatus
    from bambulab.sync import (
        JPEGFrameStream,
        LocalFTPClient,
        RTSPStream,
        get_video_stream,
        upload_and_print,
    )

_LAZY = {
    "Printer": "bambulab.printer",
    "BambuClient": "bambulab.cloud",
    "AsyncBambuClient": "bambulab.cloud",
    "BambuAuthenticator": "bambulab.compat.auth",  # the older calls; bambulab.cloud has the modern one
    "BambuAuthError": "bambulab.exceptions",
    "MQTTBridge": "bambulab.compat.mqtt",
    "TokenManager": "bambulab.cloud",
    "PrinterStatus": "bambulab.protocol.views",
    "PrinterFiles": "bambulab.files",
    "Camera": "bambulab.camera",
    "discover": "bambulab.discovery",
    "MQTTClient": "bambulab.compat.mqtt",  # bambulab.sync.MQTTClient plus two older spellings
    "LocalFTPClient": "bambulab.sync",
    "LocalPrintClient": "bambulab.compat.lan",  # bambulab.sync.LocalPrintClient plus the older calls
    "upload_and_print": "bambulab.sync",
    "JPEGFrameStream": "bambulab.sync",
    "RTSPStream": "bambulab.sync",
    "get_video_stream": "bambulab.sync",
    "ConfigError": "bambulab.config",
}

__all__ = [
    "AmsMappingError",
    "AsyncBambuClient",
    "AuthenticationError",
    "BambuAuthError",
    "BambuAuthenticator",
    "BambuClient",
    "BambuConnectionError",
    "BambuError",
    "BambuTimeoutError",
    "Camera",
    "CloudError",
    "CloudflareBlockedError",
    "CommandFailedError",
    "ConfigError",
    "ControlError",
    "FileTransferError",
    "HistoryError",
    "JPEGFrameStream",
    "LocalFTPClient",
    "LocalPrintClient",
    "MQTTBridge",
    "MQTTClient",
    "NotConnectedError",
    "PrintSetupError",
    "Printer",
    "PrinterBusyError",
    "PrinterCertificateError",
    "PrinterFiles",
    "PrinterStatus",
    "RTSPStream",
    "RateLimitedError",
    "SessionReuseError",
    "SignatureRequiredError",
    "SimulatorError",
    "StoreUnavailableError",
    "SubscriptionRefusedError",
    "ThreeMFError",
    "TokenExpiredError",
    "TokenManager",
    "UnknownCameraError",
    "UnsupportedError",
    "__version__",
    "discover",
    "get_video_stream",
    "upload_and_print",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bambulab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
