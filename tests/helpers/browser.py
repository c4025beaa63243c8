"""Debian's headless Chromium driven by Selenium through Debian's chromedriver: the browser the console and
the agent desktop tests use (the ``browser`` fixture in conftest.py starts it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def start_chromium(downloads: Path) -> Any:
    """A headless Chromium in Chinese, 1280×1400, downloading into ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "chromium and chromium-driver come from ./setup.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--window-size=1280,1400",
        "--lang=zh-CN",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.implicitly_wait(0)
    driver.downloads = downloads
    return driver


def wait_for(driver, condition, timeout: float = 15):
    """Wait until ``condition(driver)`` is truthy; return it. A page that re-renders a list replaces its
    elements, so an element found a moment ago may be gone: that only means "look again"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)
