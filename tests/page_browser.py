"""The public page in real headless Chromium (Debian's chromium + chromium-driver, driven by selenium),
with axe-core from npm (tests/browser/, installed by scripts/setup.sh) injected to check accessibility.

    python -m tests.page_browser DIR OUT   # screenshots of DIR/index.html at 375 and 1280 px into OUT
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

AXE_JS = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> Optional[str]:
    """Why the browser checks cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        return "needs chromium and chromium-driver (SETUP_TEST_BROKERS=1 scripts/setup.sh installs them)"
    if not AXE_JS.is_file():
        return "needs axe-core (SETUP_TEST_BROKERS=1 scripts/setup.sh runs npm ci in tests/browser)"
    return None


class Browser:
    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, page: Path, width: int) -> None:
        # Device emulation: a phone's viewport really is 375 CSS px wide (a headless window has a minimum width).
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        self.driver.get_log("performance")  # drop the requests of earlier pages
        self.driver.get(page.resolve().as_uri())

    def requests(self) -> List[str]:
        """Every URL the page loaded (from Chromium's network log), since :meth:`open`."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def overflow_px(self) -> int:
        """How far the page is wider than the viewport (sideways scrolling); 0 when it fits."""
        return int(self.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        ))

    def axe(self) -> List[Dict[str, Any]]:
        """axe-core's violations for the open page (every rule axe runs by default, WCAG 2.1 A/AA included)."""
        self.driver.execute_script(AXE_JS.read_text(encoding="utf-8"))
        result: Dict[str, Any] = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done({v: r.violations, n: r.passes.length}))"
            ".catch(e => done({error: String(e)}));"
        )
        if "error" in result:
            raise RuntimeError(f"axe-core failed: {result['error']}")
        return list(result["v"])

    def screenshot(self, out: Path, width: int, height: int) -> None:
        """The top ``height`` CSS px of the open page at ``width`` (PNG)."""
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}},
        )
        out.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def chromium() -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,800"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_script_timeout(120)
        driver.set_page_load_timeout(120)
        try:
            yield Browser(driver)
        finally:
            driver.quit()


def main(argv: List[str]) -> int:
    site, out = Path(argv[0]), Path(argv[1])
    with chromium() as browser:
        for width, height in ((375, 1400), (1280, 1000)):
            browser.open(site / "index.html", width)
            browser.screenshot(out / f"page-{width}.png", width, height)
            print(out / f"page-{width}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
