"""The Bambu cloud: HTTP API clients, login and tokens, cloud MQTT, proxy tokens.

```python
from bambulab.cloud import BambuAuthenticator, BambuClient

with BambuAuthenticator() as auth:
    token = auth.get_or_create_token("token.json", "me@example.com", password, code_callback=ask)
with BambuClient(token) as cloud:
    print([d.name for d in cloud.devices()])
```

Names are imported on first use: :class:`TokenManager` works without the HTTP library.
See ``docs/cloud.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bambulab.cloud._base import RetryPolicy
    from bambulab.cloud.auth import AsyncBambuAuthenticator, BambuAuthenticator, CodeRequest, Token
    from bambulab.cloud.client import AsyncBambuClient, BambuClient
    from bambulab.cloud.models import (
        CameraCredentials,
        Device,
        FirmwareInfo,
        Message,
        Notification,
        Preference,
        PrintStatus,
        Profile,
        Project,
        ProjectCreated,
        ProjectDetail,
        SlicerSetting,
        SlicerSettingDetail,
        SlicerSettings,
        Task,
        TaskPage,
        TaskStatus,
        UploadResult,
        UploadTarget,
    )
    from bambulab.cloud.mqtt import CloudConnection, CloudPrinter, uid_from_token
    from bambulab.cloud.tokens import TokenInfo, TokenManager

_LAZY = {
    "RetryPolicy": "bambulab.cloud._base",
    "AsyncBambuAuthenticator": "bambulab.cloud.auth",
    "BambuAuthenticator": "bambulab.cloud.auth",
    "CodeRequest": "bambulab.cloud.auth",
    "Token": "bambulab.cloud.auth",
    "AsyncBambuClient": "bambulab.cloud.client",
    "BambuClient": "bambulab.cloud.client",
    "CloudConnection": "bambulab.cloud.mqtt",
    "CloudPrinter": "bambulab.cloud.mqtt",
    "uid_from_token": "bambulab.cloud.mqtt",
    "TokenInfo": "bambulab.cloud.tokens",
    "TokenManager": "bambulab.cloud.tokens",
    **dict.fromkeys(
        (
            "CameraCredentials", "Device", "FirmwareInfo", "Message", "Notification", "Preference", "PrintStatus",
            "Profile", "Project", "ProjectCreated", "ProjectDetail", "SlicerSetting", "SlicerSettingDetail",
            "SlicerSettings", "Task", "TaskPage", "TaskStatus", "UploadResult", "UploadTarget",
        ),
        "bambulab.cloud.models",
    ),
}

__all__ = [
    "AsyncBambuAuthenticator",
    "AsyncBambuClient",
    "BambuAuthenticator",
    "BambuClient",
    "CameraCredentials",
    "CloudConnection",
    "CloudPrinter",
    "CodeRequest",
    "Device",
    "FirmwareInfo",
    "Message",
    "Notification",
    "Preference",
    "PrintStatus",
    "Profile",
    "Project",
    "ProjectCreated",
    "ProjectDetail",
    "RetryPolicy",
    "SlicerSetting",
    "SlicerSettingDetail",
    "SlicerSettings",
    "Task",
    "TaskPage",
    "TaskStatus",
    "Token",
    "TokenInfo",
    "TokenManager",
    "UploadResult",
    "UploadTarget",
    "uid_from_token",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bambulab.cloud' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
