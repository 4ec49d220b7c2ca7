"""Kept so ``bambulab.sim.cloud_model`` still imports: the code is in :mod:`bambulab.sim.cloud.model`."""

from __future__ import annotations

from bambulab.sim.cloud.model import (
    ACTIVE_STATES,
    Account,
    CloudObject,
    CloudSwitches,
    LoginMode,
    Project,
    TaskRecord,
    TaskStatus,
    iso_time,
    jwt_token,
    opaque_token,
    presign,
    project_time,
    totp,
)

__all__ = [
    "ACTIVE_STATES",
    "Account",
    "CloudObject",
    "CloudSwitches",
    "LoginMode",
    "Project",
    "TaskRecord",
    "TaskStatus",
    "iso_time",
    "jwt_token",
    "opaque_token",
    "presign",
    "project_time",
    "totp",
]
