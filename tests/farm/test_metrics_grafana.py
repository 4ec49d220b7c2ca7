"""The Grafana dashboard in the docs queries only metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bambulab.farm.metrics import METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
_NAME = re.compile(r"\bbambu_[a-z0-9_]+")


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            found.append(query["query"])
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def _exported(name: str) -> bool:
    if name in METRICS:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("",))[0] == "histogram":
            return True
    return False


def test_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    assert len(exprs) >= 20
    used: set[str] = set()
    for expr in exprs:
        names = set(_NAME.findall(expr))
        assert names, f"a query without a bambu metric: {expr}"
        unknown = {n for n in names if not _exported(n)}
        assert not unknown, f"{expr}: {unknown} not exported by the gateway"
        used |= names
    # the dashboard shows the figures the issue asks for
    for name in ("bambu_printer_up", "bambu_printer_temperature_celsius", "bambu_printer_progress_ratio",
                 "bambu_ams_tray_remaining_ratio", "bambu_printer_hms_active",
                 "bambu_gateway_request_duration_seconds_bucket", "bambu_gateway_event_loop_lag_seconds"):
        assert name in used, name
    assert dashboard["uid"] and all(p["datasource"]["type"] == "prometheus" for p in dashboard["panels"])
