"""CORS for web pages on other origins: off by default, exact origins, preflights answered here.

The last test is the one that matters to a dashboard author: a real Chromium page on one origin
calls the proxy on another with a custom token, and is let through only when its origin is listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Page, sync_playwright
from proxytools import Stack

from bambulab.cloud.tokens import TokenManager
from bambulab.servers.proxy import ProxyConfig

BIND = "/v1/iot-service/api/user/bind"
CHROMIUM = "/usr/bin/chromium"
DASH = "https://dash.example"


def test_without_origins_nothing_changes_and_the_upstreams_cors_is_dropped(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens("cors-off.json")
    custom = tokens.add(stack.alice_real, name="dash", scope="full")
    _, url = stack.proxy(tokens, mode="full", upstream=stack.echo_url)
    r = http.get(url + "/x", headers={"Authorization": f"Bearer {custom}", "Origin": DASH})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # the echo sent "*"
    stack.clear()
    _, strict_url = stack.proxy(tokens, mode="strict")
    r = http.options(strict_url + BIND, headers={"Origin": DASH, "Access-Control-Request-Method": "GET"})
    assert r.status_code in (401, 403) and "access-control-allow-origin" not in r.headers
    assert stack.requests() == []


def test_listed_origins_get_preflights_and_headers_others_get_none(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens("cors-on.json")
    custom = tokens.add(stack.alice_real, name="dash", scope="strict")
    _, url = stack.proxy(tokens, mode="strict", cors_origins=(DASH + "/",))
    stack.clear()
    pre = http.options(url + BIND, headers={"Origin": DASH, "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == DASH
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert pre.headers["access-control-allow-methods"] == "GET, POST" and "origin" in pre.headers["vary"].lower()
    refused = http.options(url + BIND, headers={"Origin": "https://evil.example",
                                                "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 403 and refused.json()["error"] == "cors_origin"
    assert "access-control-allow-origin" not in refused.headers
    assert stack.requests() == []  # preflights never go upstream
    r = http.get(url + BIND, headers={"Authorization": f"Bearer {custom}", "Origin": DASH})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == DASH
    assert "x-cache" in r.headers["access-control-expose-headers"]
    other = http.get(url + BIND, headers={"Authorization": f"Bearer {custom}", "Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers  # the browser blocks it
    no_token = http.get(url + BIND, headers={"Origin": DASH})
    assert no_token.status_code == 401 and no_token.headers["access-control-allow-origin"] == DASH  # readable error


def test_origins_are_checked_when_configured(tmp_path: Path) -> None:
    tokens = TokenManager(tmp_path / "tokens.json")
    for bad in ("dash.example", "https://dash.example/path", "javascript:alert(1)", "https://a b"):
        with pytest.raises(ValueError, match="CORS origin"):
            ProxyConfig(tokens, cors_origins=(bad,))
    assert ProxyConfig(tokens, cors_origins=("HTTPS://Dash.Example:8443/", "*")).cors_origins == (
        "https://dash.example:8443", "*")


@pytest.fixture(scope="module")
def chromium_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    profile = tmp_path_factory.mktemp("cors-chromium")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        context.set_default_timeout(15_000)
        page = context.new_page()
        yield page
        context.close()


_FETCH = """async ([url, token]) => {
    try {
        const r = await fetch(url, {headers: {Authorization: "Bearer " + token}});
        const body = await r.json();
        return {status: r.status, devices: body.devices.length, cache: r.headers.get("x-cache"),
                codes: JSON.stringify(body).includes("dev_access_code")};
    } catch (e) {
        return {error: String(e)};
    }
}"""


def test_a_page_on_a_listed_origin_reads_through_the_proxy_in_chromium(stack: Stack, chromium_page: Page) -> None:
    page_origin = stack.echo_url  # http://127.0.0.1:<port>: the "dashboard" the page comes from
    tokens = stack.tokens("cors-browser.json")
    custom = tokens.add(stack.alice_real, name="browser", scope="strict")
    _, url = stack.proxy(tokens, mode="strict", cors_origins=(page_origin,))
    chromium_page.goto(page_origin + "/dashboard")
    seen = chromium_page.evaluate(_FETCH, [url + BIND, custom])
    assert seen == {"status": 200, "devices": 2, "cache": seen["cache"], "codes": False}, seen
    assert seen["cache"] in ("hit", "miss", "coalesced")  # an exposed header, readable from the page
    # The same page served from another origin (localhost is not 127.0.0.1 to a browser): refused.
    chromium_page.goto(page_origin.replace("127.0.0.1", "localhost") + "/dashboard")
    refused = chromium_page.evaluate(_FETCH, [url + BIND, custom])
    assert "error" in refused and "fetch" in refused["error"].lower(), refused
