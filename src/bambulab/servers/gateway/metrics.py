"""``GET /metrics``: the Prometheus exposition of :mod:`bambulab.farm.metrics`.

``routes(gateway)`` makes the gateway's :class:`~bambulab.farm.metrics.GatewayMetrics`, hooks its
request-latency histogram into ``gateway.request_observers`` (labelled by the route's path
template, never by the raw path, so the label set stays bounded) and registers the event-loop lag
monitor as a service. ``[metrics] enabled = false`` turns the route off.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from bambulab.config import ConfigError
from bambulab.farm.metrics import GatewayMetrics

if TYPE_CHECKING:
    from bambulab.servers.gateway import Gateway

__all__ = ["metrics_of", "openapi_paths", "routes"]

_metrics: weakref.WeakKeyDictionary[Any, GatewayMetrics] = weakref.WeakKeyDictionary()


def metrics_of(gateway: Gateway) -> GatewayMetrics | None:
    return _metrics.get(gateway)


def _route_label(scope: Scope) -> str:
    endpoint = scope.get("endpoint")
    router = scope.get("router")
    if endpoint is None or router is None:
        return "unmatched"
    for route in getattr(router, "routes", ()):
        if getattr(route, "endpoint", None) is endpoint:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


def routes(gateway: Gateway) -> list[BaseRoute]:
    section = gateway.config.sections.get("metrics", {})
    if (not isinstance(section, dict) or set(section) - {"enabled"}
            or not isinstance(section.get("enabled", True), bool)):
        raise ConfigError("[metrics]: the only setting is enabled = true|false")
    if not section.get("enabled", True):
        return []
    metrics = GatewayMetrics(gateway)
    _metrics[gateway] = metrics
    gateway.add_service(metrics.lag)
    labels: dict[int, str] = {}
    histogram = metrics.requests

    def observe(scope: Scope, status: int, seconds: float) -> None:
        endpoint = scope.get("endpoint")
        key = id(endpoint)
        label = labels.get(key)
        if label is None:
            label = _route_label(scope)
            if endpoint is not None and len(labels) < 1000:
                labels[key] = label
        histogram.labels(route=label, method=str(scope.get("method", ""))).observe(seconds)

    gateway.request_observers.append(observe)

    async def scrape(request: Request) -> Response:
        from bambulab.servers.gateway import history, publish

        metrics.history = history.service_of(gateway)
        metrics.publisher = publish.publisher_of(gateway)
        return Response(await metrics.render_async(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", scrape, methods=["GET"])]


def openapi_paths() -> dict[str, Any]:
    return {"/metrics": {"get": {"tags": ["metrics"], "summary": "Prometheus metrics (text exposition format)",
                                 "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}}}}}
