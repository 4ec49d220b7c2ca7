"""The dashboard's pages and assets over real HTTP, from the gateway's app (no browser)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest
from dashtools import Served, get, serve

from bambulab.servers.gateway import Gateway
from bambulab.servers.gateway.app import create_app
from bambulab.servers.gateway.dashboard import STATIC_DIR


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    gw = Gateway()
    app = create_app(gw)
    await gw.start()
    try:
        async with serve(app) as s:
            yield s
    finally:
        await gw.stop(timeout=3.0)


async def test_browsers_get_the_page_and_scripts_get_json(served: Served) -> None:
    status, headers, body = await get(served.port, "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]  # no inline script, no CDN
    page = body.decode()
    assert '<script type="module" src="/static/js/overview.js?v=' in page
    assert "http://" not in page and "https://" not in page  # everything is served locally
    status, headers, body = await get(served.port, "/")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["name"] == "bambulab gateway"


@pytest.mark.parametrize("path", ["/history", "/cameras"])
async def test_other_pages(served: Served, path: str) -> None:
    status, _, body = await get(served.port, path)
    assert status == 200 and b'<main id="main">' in body


async def test_unknown_printer_page_is_a_404_page(served: Served) -> None:
    status, headers, body = await get(served.port, "/printers/NOPE123")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert b'data-serial="NOPE123"' in body
    status, _, body = await get(served.port, "/printers/%3Cscript%3E")
    assert status == 404 and b"<SCRIPT>" not in body and b"&lt;SCRIPT&gt;" in body


async def test_every_asset_is_served_with_its_type(served: Served) -> None:
    files = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"app.css", "favicon.svg", "overview.js", "feed-worker.js", "camera-unavailable.jpg"} <= names
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
    for path in files:
        status, headers, body = await get(served.port, "/static/" + path.relative_to(STATIC_DIR).as_posix())
        assert status == 200, path
        assert headers["content-type"].startswith(types[path.suffix]), path
        assert body == path.read_bytes()
        assert "etag" in headers
    for name in (p for p in files if p.suffix in (".js", ".css")):
        # no CDN, works offline (the SVG namespace is a name, not a download)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", name.read_text()), name
