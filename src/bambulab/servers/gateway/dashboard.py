"""The farm dashboard: HTML pages and their static assets, served by the gateway.

There is no build step: the pages are small HTML shells and the behaviour is plain ES modules and
CSS under ``static/`` (shipped in the package, no CDN, works offline). Every page reads the
gateway's JSON API and its event stream (``/api/v1/events``); nothing here holds state.

Routes: ``/`` (for browsers: the gateway's ``/`` hands ``Accept: text/html`` requests to
``gateway.html_index``), ``/printers/{serial}``, ``/history``, ``/cameras``, ``/static/...``. The
camera hub (:mod:`bambulab.servers.gateway.camera`) registers its routes itself.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bambulab._version import __version__

__all__ = ["STATIC_DIR", "page", "routes"]

STATIC_DIR = Path(__file__).with_name("static")

#: Pages: path name -> (title, script, body template). ``{serial}`` is filled for the detail page.
_NAV = (("farm", "/", "Farm"), ("cameras", "/cameras", "Cameras"), ("history", "/history", "History"))

_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

_LOGO = (
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="3" width="18" height="18" rx="3"/>'
    '<path d="M7 8h10M9 8v4h6V8M12 12v5M8 17h8"/></svg>'
)

_OVERVIEW = """
<div class="toolbar">
  <div class="counts" id="counts" role="group" aria-label="Printers by state (click to filter)"></div>
  <div class="tools">
    <label class="sr-only" for="search">Search printers</label>
    <input type="search" id="search" placeholder="Search name, serial, model  ( / )" autocomplete="off">
    <label class="sr-only" for="sort">Sort</label>
    <select id="sort">
      <option value="state">Sort: state</option>
      <option value="name">Sort: name</option>
      <option value="left">Sort: time left</option>
    </select>
    <button type="button" id="cams" class="icon-btn" aria-pressed="true" title="Camera thumbnails">Cameras</button>
    <span id="total" class="muted num"></span>
  </div>
</div>
<section id="grid" class="grid" aria-label="Printers"></section>
<p id="empty" class="empty-state" hidden>No printers yet. Add some to the gateway's configuration.</p>
<p id="nomatch" class="empty-state" hidden>No printer matches the filter.</p>
"""

_DETAIL = """
<div class="detail" data-serial="{serial}">
  <div class="stack">
    <div class="panel">
      <h1><span id="d-name">{serial}</span> <span id="d-model" class="model"></span>
        <span id="d-pill" class="pill" role="status"></span></h1>
      <p id="d-sub" class="muted"></p>
      <div class="progress"><div class="bar" id="d-bar" role="progressbar" aria-valuemin="0"
        aria-valuemax="100"><i></i></div><span class="pct num" id="d-pct"></span></div>
    </div>
    <div class="live" id="d-live"><span>Camera</span></div>
    <div class="panel">
      <h2>Temperatures</h2>
      <div class="legend"><span><i class="lg-nozzle"></i>Nozzle</span>
        <span><i class="lg-bed"></i>Bed</span><span><i class="lg-chamber"></i>Chamber</span>
        <span id="chart-range" class="muted"></span></div>
      <svg id="chart" class="chart" role="img" aria-label="Temperature chart" viewBox="0 0 600 220"
        preserveAspectRatio="xMidYMid meet"></svg>
      <p id="chart-note" class="muted" hidden></p>
    </div>
    <div class="panel">
      <h2>Job history</h2>
      <div class="table-wrap"><table id="jobs"><thead><tr><th>Started</th><th>File</th><th>Result</th>
        <th class="num">Duration</th></tr></thead><tbody></tbody></table></div>
      <p id="jobs-note" class="muted" hidden></p>
    </div>
  </div>
  <div class="stack">
    <div class="panel" id="d-controls" hidden>
      <h2>Control</h2>
      <form id="token-form" class="controls" autocomplete="off">
        <input type="text" name="username" value="gateway" autocomplete="username" hidden>
        <label class="sr-only" for="token">API token</label>
        <input type="password" id="token" placeholder="API token" autocomplete="off">
        <button type="submit" id="token-save">Use token</button>
      </form>
      <div id="control-buttons" class="controls" hidden>
        <button type="button" data-action="pause">Pause</button>
        <button type="button" data-action="resume">Resume</button>
        <button type="button" data-action="stop" class="danger">Stop…</button>
        <button type="button" data-action="light" data-on="true">Light on</button>
        <button type="button" data-action="light" data-on="false">Light off</button>
        <label class="sr-only" for="speed">Speed</label>
        <select id="speed"><option value="">Speed…</option><option value="1">Silent</option>
          <option value="2">Standard</option>
          <option value="3">Sport</option><option value="4">Ludicrous</option></select>
        <button type="button" data-action="clear_hms">Clear alerts</button>
        <button type="button" id="token-forget" class="icon-btn" title="Forget the token">Forget token</button>
      </div>
      <p id="control-msg" class="muted" role="status"></p>
    </div>
    <div class="panel"><h2>Status</h2><dl class="kv" id="d-status"></dl></div>
    <div class="panel"><h2>Alerts</h2><ul class="alerts" id="d-alerts"></ul>
      <p id="d-noalerts" class="muted">No active alerts.</p></div>
    <div class="panel"><h2>AMS</h2><div id="d-ams" class="ams"></div></div>
    <div class="panel"><h2>Alert history</h2>
      <div class="table-wrap"><table id="hms-history"><thead><tr><th>Since</th><th>Code</th><th>Text</th>
        <th>Cleared</th></tr></thead><tbody></tbody></table></div>
      <p id="hms-note" class="muted" hidden></p>
    </div>
  </div>
</div>
<dialog id="confirm-stop">
  <form method="dialog">
    <p><b>Stop this print?</b></p>
    <p class="muted">The job is cancelled and cannot be resumed.</p>
    <menu><button value="cancel" type="submit">Keep printing</button>
      <button value="stop" type="submit" class="danger" id="confirm-stop-yes">Stop print</button></menu>
  </form>
</dialog>
"""

_HISTORY = """
<div class="stack">
  <div class="panel">
    <h2>Jobs</h2>
    <form class="filters" id="filters">
      <label>Printer <select name="printer" id="f-printer"><option value="">All printers</option></select></label>
      <label>Result <select name="result" id="f-result"><option value="">Any</option>
        <option value="finished">Finished</option><option value="failed">Failed</option>
        <option value="cancelled">Cancelled</option><option value="interrupted">Interrupted</option>
        <option value="running">Running</option></select></label>
      <label>From <input type="date" name="since" id="f-since"></label>
      <label>To <input type="date" name="until" id="f-until"></label>
      <button type="submit" class="primary">Apply</button>
      <a class="btn" id="csv" href="/api/v1/history/jobs.csv" download>Download CSV</a>
    </form>
    <div class="table-wrap"><table id="h-jobs"><thead><tr><th>Started</th><th>Printer</th><th>File</th>
      <th>Result</th><th class="num">Duration</th><th>Filament</th></tr></thead>
      <tbody></tbody></table></div>
    <div class="pager"><span id="h-total" class="muted num"></span>
      <button type="button" id="prev">Previous</button><button type="button" id="next">Next</button></div>
    <p id="h-note" class="notice" hidden></p>
  </div>
  <div class="panel">
    <h2>Per printer</h2>
    <div class="table-wrap"><table id="h-stats"><thead><tr><th>Printer</th><th class="num">Jobs</th>
      <th class="num">Succeeded</th><th class="num">Failed</th><th class="num">Success rate</th>
      <th class="num">Print hours</th></tr></thead><tbody></tbody><tfoot></tfoot></table></div>
  </div>
</div>
"""

_CAMERAS = """
<div class="toolbar"><span class="muted" id="cam-count"></span>
  <div class="tools"><label class="sr-only" for="cam-search">Search cameras</label>
    <input type="search" id="cam-search" placeholder="Search" autocomplete="off"></div></div>
<section id="camwall" class="camwall" aria-label="Cameras"></section>
<p id="cam-empty" class="empty-state" hidden>No printer with a camera.</p>
"""

_PAGES: dict[str, tuple[str, str, str]] = {
    "farm": ("Farm", "overview.js", _OVERVIEW),
    "detail": ("Printer", "detail.js", _DETAIL),
    "history": ("History", "history.js", _HISTORY),
    "cameras": ("Cameras", "cameras.js", _CAMERAS),
}


def _render(name: str, *, serial: str | None = None) -> str:
    title, script, body = _PAGES[name]
    if serial is not None:
        body = body.replace("{serial}", html.escape(serial))
        title = serial
    v = html.escape(__version__)
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if key == name else ""}>{label}</a>' for key, href, label in _NAV
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{html.escape(title)} · Bambu farm</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css?v={v}">
<script type="module" src="/static/js/{script}?v={v}"></script>
</head>
<body data-page="{name}">
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
  <a class="brand" href="/">{_LOGO}<span>Bambu farm</span></a>
  <nav class="nav" aria-label="Pages">{nav}</nav>
  <span class="spacer"></span>
  <span id="conn" class="conn" data-state="connecting" role="status" aria-live="polite">Connecting…</span>
  <button type="button" id="wall" class="icon-btn" aria-pressed="false" title="Wall mode (w)">Wall</button>
  <button type="button" id="theme" class="icon-btn" title="Theme">◐</button>
</header>
<main id="main">{body}</main>
</body>
</html>
"""


_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def page(name: str, *, serial: str | None = None, status: int = 200) -> Response:
    """One of the dashboard's pages (``farm``, ``detail``, ``history``, ``cameras``)."""
    return HTMLResponse(_render(name, serial=serial), status_code=status, headers=_HEADERS)


class _Static(StaticFiles):
    """Static assets, revalidated by ETag (the pages ask for them with ``?v=<version>``)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def routes(gateway: Any) -> list[BaseRoute]:
    """The dashboard's pages and its static files (the camera hub has its own ``routes()``)."""

    async def index(request: Request) -> Response:
        return page("farm")

    async def detail(request: Request) -> Response:
        serial = request.path_params["serial"].strip().upper()
        if serial not in gateway.fleet.members:
            return page("detail", serial=serial, status=404)
        return page("detail", serial=serial)

    async def history(request: Request) -> Response:
        return page("history")

    async def cameras(request: Request) -> Response:
        return page("cameras")

    gateway.html_index = index
    return [
        Route("/printers/{serial}", detail, methods=["GET"]),
        Route("/history", history, methods=["GET"]),
        Route("/cameras", cameras, methods=["GET"]),
        Route("/dashboard", index, methods=["GET"]),
        Mount("/static", app=_Static(directory=STATIC_DIR), name="static"),
    ]
