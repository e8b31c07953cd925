"""Headless Chromium (Debian's package) driven by Selenium, for the rig page's tests.

Selenium's API blocks, so each call runs in a worker thread while the daemon
under test keeps running on the test's Trio loop. The browser never downloads
anything: Selenium is pointed at Debian's chromium and chromedriver, and the
test skips with a clear message where those are not installed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)

T = TypeVar("T")


def skip_without_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]' (make test does)")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed: "
            "`make browser` installs them (as root, with apt)"
        )


class Browser:
    """One page in headless Chromium; every call is bounded."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        with trio.fail_after(30):
            return await trio.to_thread.run_sync(function, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, source, *args)

    async def text(self, css: str) -> str | None:
        """The text of the first element matching ``css`` (None if there is none)."""
        found = await self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css
        )
        return None if found is None else str(found)

    async def click(self, css: str) -> None:
        await self.script("document.querySelector(arguments[0]).click();", css)

    async def wait_for(self, check: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
        """Poll ``await check()`` until it returns something truthy."""
        with trio.move_on_after(timeout_s):
            while True:
                value = await check()
                if value:
                    return value
                await trio.sleep(0.05)
        page = await self.text("body")
        raise AssertionError(f"timed out waiting for {what}; the page says: {page!r}")

    async def screenshot(self, path: Path) -> None:
        await self.call(self.driver.save_screenshot, str(path))
        print(f"screenshot of the rig page: {path}")


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    skip_without_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ephysd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(str(CHROMEDRIVER))

    def start() -> Any:
        return webdriver.Chrome(service=service, options=options)

    with trio.fail_after(60):
        driver = await trio.to_thread.run_sync(start)
    try:
        yield Browser(driver)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await trio.to_thread.run_sync(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)
