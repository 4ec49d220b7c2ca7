"""The dashboard in a real headless Chromium, against a real gateway over virtual printers.

One gateway (with control enabled) and one Chromium serve the whole module. The gateway runs on
its own event loop in a thread; the tests drive the browser with Playwright's sync API and poke
the virtual printers through that loop. Every page fails its test on any console error.

Screenshots go to ``tmp_path``, or to ``$BAMBU_SCREENSHOTS_DIR`` when set (the README's come
from ``BAMBU_SCREENSHOTS_DIR=docs/screenshots``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashtools import GatewayThread
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect, sync_playwright

TOKEN = "dashboard-test-token-0123456789"  # a test token, for a loopback gateway
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    history = tmp_path_factory.mktemp("history") / "history.sqlite3"
    with GatewayThread(count=4, time_scale=30.0, token=TOKEN, history=str(history)) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1440, "height": 900}, timezone_id="UTC", locale="en-GB",
        )
        context.set_default_timeout(15_000)
        yield context
        context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    wanted = os.environ.get("BAMBU_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Console:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_error(self, error: Any) -> None:
        self.errors.append(f"page error: {error}")


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    console = Console()
    tab = browser.new_page()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_error)
    yield tab
    tab.close()
    assert console.errors == [], "console errors on the page"


def card(page: Page, serial: str) -> Any:
    return page.locator(f'article.card[data-serial="{serial}"]')


def progress_of(page: Page, serial: str) -> int:
    text = card(page, serial).locator(".pct").inner_text()
    return int(text.rstrip("%")) if text.rstrip("%").isdigit() else -1


def test_overview_loads_and_progress_moves_without_reload(gateway: GatewayThread, page: Page, shots: Path) -> None:
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("article.card")).to_have_count(4)
    printing = gateway.printing_serial()
    target = card(page, printing)
    expect(target.locator(".pill")).to_have_text(re.compile("Printing|Preparing", re.I))
    expect(page.locator("#conn")).to_have_text("Live")
    # every name is there, with a model and temperatures
    for serial, name in gateway.names().items():
        expect(card(page, serial).locator(".name")).to_have_text(name)
    page.evaluate("window.__marker = 1")  # gone if the page reloads
    first = progress_of(page, printing)
    page.wait_for_function(
        f"""() => {{
            const t = document.querySelector('article.card[data-serial="{printing}"] .pct').textContent;
            return parseInt(t) > {first};
        }}""",
        timeout=20_000,
    )
    assert page.evaluate("window.__marker") == 1
    assert progress_of(page, printing) > first
    expect(page.locator("#count-printing b")).not_to_have_text("0")
    # the camera thumbnails are real pictures
    page.wait_for_function(
        f"""() => {{
            const img = document.querySelector('article.card[data-serial="{printing}"] .thumb img');
            return img && img.complete && img.naturalWidth > 0;
        }}""",
        timeout=20_000,
    )
    width = page.evaluate(
        f"document.querySelector('article.card[data-serial=\"{printing}\"] .thumb img').naturalWidth"
    )
    assert width >= 320
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumb img')].filter(i => !i.hidden)"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=20_000,
    )
    page.screenshot(path=str(shots / "overview.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "phone.png"))
    page.set_viewport_size({"width": 1440, "height": 900})


def test_the_page_reconnects_by_itself(gateway: GatewayThread, page: Page) -> None:
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#conn")).to_have_text("Live")
    assert page.evaluate("window.bambuDashboard.store.snapshots") == 1
    gateway.end_event_streams()
    # EventSource comes back by itself (the gateway asks for a 2 s retry) and gets a new snapshot.
    page.wait_for_function("() => window.bambuDashboard.store.snapshots === 2", timeout=15_000)
    expect(page.locator("#conn")).to_have_text("Live")
    printing = gateway.printing_serial()
    first = progress_of(page, printing)
    page.wait_for_function(
        f"""() => parseInt(document.querySelector('article.card[data-serial="{printing}"] .pct').textContent)
            > {first}""",
        timeout=20_000,
    )
    assert page.evaluate("window.bambuDashboard.store.snapshots") == 2


def test_search_filter_and_dark_mode(gateway: GatewayThread, page: Page, shots: Path) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 22)"  # the dark palette
    names = gateway.names()
    serial, name = next(iter(names.items()))
    page.fill("#search", name)
    expect(page.locator("article.card:visible")).to_have_count(1)
    expect(card(page, serial)).to_be_visible()
    page.fill("#search", "")
    page.click("#count-printing")
    assert page.locator("article.card:visible").count() == int(page.inner_text("#count-printing b"))
    page.click("#count-printing")
    expect(page.locator("article.card:visible")).to_have_count(4)
    page.keyboard.press("w")  # wall mode from the keyboard
    expect(page.locator("body")).to_have_class(re.compile("wall"))
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumb img')].filter(i => !i.hidden)"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=20_000,
    )
    page.screenshot(path=str(shots / "overview-dark.png"))
    page.emulate_media(color_scheme="light")


def test_hms_alert_appears_and_clears(gateway: GatewayThread, page: Page) -> None:
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    serial = gateway.printing_serial()
    alerts = card(page, serial).locator(".alert")
    expect(alerts).to_have_count(0)
    text = gateway.inject_hms(serial, 0x0300_0100, 0x0001_0007)
    assert text  # the library knows this code's text
    expect(alerts).to_have_count(1, timeout=15_000)
    expect(alerts.first).to_contain_text(text[:30])
    expect(alerts.first).to_contain_text("0300_0100_0001_0007")
    gateway.clear_hms(serial)
    expect(alerts).to_have_count(0, timeout=15_000)


def test_printer_taken_offline_shows_offline(gateway: GatewayThread, page: Page) -> None:
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    serial = gateway.idle_serial()
    target = card(page, serial)
    expect(target).not_to_have_attribute("data-cat", "offline")
    gateway.go_offline(serial)
    try:
        expect(target).to_have_attribute("data-cat", "offline", timeout=20_000)
        expect(target.locator(".pill")).to_have_text("Offline")
        expect(target.locator(".seen")).to_contain_text("last seen")
        expect(page.locator("#count-offline b")).to_have_text("1")
    finally:
        gateway.come_online(serial)
    expect(target).not_to_have_attribute("data-cat", "offline", timeout=30_000)


def test_a_cancelled_print_reads_cancelled_not_failed(gateway: GatewayThread, page: Page) -> None:
    """The printer says FAILED for a stop too; the summary's ``ended`` decides the card (in this browser)."""
    page.goto(gateway.url + "/")
    page.wait_for_selector("body[data-ready]")
    seen = page.evaluate("""async () => {
        const m = await import("/static/js/common.js");
        const base = {online: true, state: "FAILED", print_error: {code: "0300-400C", text: "cancelled"}};
        return [m.stateLabel({...base, ended: "cancelled"}), m.category({...base, ended: "cancelled"}),
                m.stateLabel({...base, ended: "failed"}), m.category({...base, ended: "failed"})];
    }""")
    assert seen == ["Cancelled", "idle", "Failed", "error"]


def test_detail_view_pause_with_token(gateway: GatewayThread, page: Page, shots: Path) -> None:
    serial = gateway.printing_serial()
    page.goto(f"{gateway.url}/printers/{serial}")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#d-name")).to_have_text(gateway.names()[serial])
    expect(page.locator("#d-status")).to_contain_text("Nozzle")
    page.wait_for_function(
        "() => { const i = document.querySelector('#d-live img'); return i && i.naturalWidth > 0; }",
        timeout=20_000,
    )
    # From the history store: the running job and the temperature chart.
    expect(page.locator("#jobs tbody .result")).to_have_text("running")
    page.wait_for_selector("#chart path.nozzle", state="attached")
    # Control: hidden buttons until a token is given; then pause pauses the virtual printer.
    expect(page.locator("#d-controls")).to_be_visible()
    expect(page.locator("#control-buttons")).to_be_hidden()
    page.fill("#token", TOKEN)
    page.click("#token-save")
    expect(page.locator("#control-buttons")).to_be_visible()
    page.screenshot(path=str(shots / "detail.png"))
    page.click("button[data-action=pause]")
    expect(page.locator("#control-msg")).to_have_text("pause: done")
    gateway.wait_state(serial, "PAUSE")
    expect(page.locator("#d-pill")).to_have_text("Paused", timeout=15_000)
    # Stop asks first; "Keep printing" does nothing.
    page.click("button[data-action=stop]")
    expect(page.locator("#confirm-stop")).to_be_visible()
    page.click("#confirm-stop button[value=cancel]")
    expect(page.locator("#confirm-stop")).to_be_hidden()
    assert gateway.state(serial) == "PAUSE"
    page.click("button[data-action=resume]")
    gateway.wait_state(serial, "RUNNING")


def test_camera_wall_and_history_pages(gateway: GatewayThread, page: Page) -> None:
    page.goto(gateway.url + "/cameras")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator(".cam")).to_have_count(4)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cam img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=25_000,
    )
    page.goto(gateway.url + "/history")
    page.wait_for_selector("body[data-ready]")
    # the prints in progress are jobs already (result "running"), across the farm
    printing = sum(1 for s in gateway._summaries() if s["state"] in ("RUNNING", "PAUSE", "PREPARE"))
    expect(page.locator("#h-jobs tbody tr")).to_have_count(printing)
    expect(page.locator("#h-jobs tbody .result").first).to_have_text("running")
    expect(page.locator("#h-stats tbody tr")).to_have_count(printing)
    expect(page.locator("#h-stats tfoot")).to_contain_text("Farm")
    href = page.get_attribute("#csv", "href")
    assert href is not None and href.startswith("/api/v1/history/jobs.csv")
    # filter by printer
    serial = gateway.printing_serial()
    page.select_option("#f-printer", serial)
    page.click("#filters button[type=submit]")
    expect(page.locator("#h-jobs tbody tr")).to_have_count(1)
    assert serial in (page.get_attribute("#csv", "href") or "")
