"""Kept so ``bambulab.sim.cloud_http`` still imports: the code is in :mod:`bambulab.sim.cloud.http`."""

from __future__ import annotations

from bambulab.sim.cloud.http import (
    HttpServer,
    build_admin_app,
    build_api_app,
    build_web_app,
)

__all__ = [
    "HttpServer",
    "build_admin_app",
    "build_api_app",
    "build_web_app",
]
