"""The HTML reports in a real browser: headless Chromium driven through chromedriver.

chromedriver speaks the W3C WebDriver protocol, which is plain JSON over HTTP, so a few
lines of urllib drive it: no selenium, no websocket client, nothing to install from
PyPI, and nothing that reaches the network. Needs Debian's chromium and
chromium-driver (`apt-get install -y chromium chromium-driver`); skipped without them.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_report import sample_class, write_all

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver); CI installs them",
        allow_module_level=True,
    )


class Browser:
    """A headless Chromium session through chromedriver's WebDriver HTTP API."""

    def __init__(self, profile: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1280,900",
        ]  # fmt: skip
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},  # console messages and script errors
        }
        session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"/session/{session['sessionId']}"

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read().decode()[:500]}") from None

    def open(self, path: Path) -> None:
        self.call("POST", f"{self.session}/url", {"url": path.resolve().as_uri()})

    def run(self, script: str, *args):
        return self.call("POST", f"{self.session}/execute/sync", {"script": script, "args": list(args)})

    def click(self, css: str) -> None:
        element = self.call("POST", f"{self.session}/element", {"using": "css selector", "value": css})
        self.call("POST", f"{self.session}/element/{element[ELEMENT]}/click", {})

    def severe_logs(self) -> list[dict]:
        logs = self.call("POST", f"{self.session}/se/log", {"type": "browser"})
        return [entry for entry in logs if entry["level"] == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        """The whole page: the window is made as tall as the page first (measured in a
        small window, since a page is never shorter than its window)."""
        self.call("POST", f"{self.session}/window/rect", {"width": 1280, "height": 900})
        height, chrome = self.run(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
        )
        self.call("POST", f"{self.session}/window/rect", {"width": 1280, "height": min(height + chrome, 8000)})
        self.run("window.scrollTo(0, 0)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("GET", f"{self.session}/screenshot")))

    def close(self) -> None:
        try:
            self.call("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def column(browser: Browser, index: int) -> list[str]:
    """The students table's cells of one column, top to bottom, by their sort values."""
    return browser.run(
        "return Array.from(document.querySelectorAll('#students tbody tr'))"
        ".map(row => row.cells[arguments[0]].dataset.sort)",
        index,
    )


def test_summary_and_report_in_chromium(browser, tmp_path):
    results, folders = sample_class()
    write_all(results, folders, tmp_path / "out")

    browser.open(tmp_path / "out" / "index.html")
    assert browser.run("return document.title").startswith("Class summary")
    assert browser.severe_logs() == []

    assert column(browser, 0) == folders  # the batch's order to begin with
    before = [float(v) for v in column(browser, 2)]
    assert before != sorted(before)
    browser.click("#students thead th:nth-child(3) button")  # Total
    totals = [float(v) for v in column(browser, 2)]
    assert totals == sorted(before)
    assert column(browser, 0)[-1] == "carol"  # the best total last when ascending
    browser.click("#students thead th:nth-child(3) button")  # again: descending
    totals = [float(v) for v in column(browser, 2)]
    assert totals == sorted(totals, reverse=True)
    assert column(browser, 0)[0] == "carol"
    browser.click("#students thead th:nth-child(1) button")  # Student, by name
    assert column(browser, 0) == sorted(folders)
    assert browser.run("return document.querySelector('#students thead th').getAttribute('aria-sort')") == "ascending"
    assert browser.severe_logs() == []
    browser.click("#students thead th:nth-child(3) button")  # leave it sorted by total for the picture
    browser.screenshot(SCREENSHOTS / "summary.png")

    # The link from the table opens the student's report.
    browser.click('#students a[href="alice/report.html"]')
    assert browser.run("return location.pathname").endswith("/alice/report.html")
    assert browser.run("return document.querySelectorAll('svg.chart').length") == 3  # CIs, loss, accuracy
    assert browser.severe_logs() == []
    browser.screenshot(SCREENSHOTS / "report.png")

    browser.open(tmp_path / "out" / "alice" / "report-student.html")
    assert browser.severe_logs() == []
    browser.screenshot(SCREENSHOTS / "report-student.png")

    for name in ("summary.png", "report.png", "report-student.png"):
        png = (SCREENSHOTS / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
