"""A real headless Chromium for the page tests, driven by Playwright.

Debian's `chromium` (installed by bin/test) is launched directly, so no
browser is downloaded. Test packages that drive pages import the fixtures:

    from tests.browser import browser, page  # noqa: F401  (pytest fixtures)

Screenshots a person should look at are saved through `screenshot(page, name)`:
to var/screenshots/ on every run (ignored by git), or to the directory
STAMPEDE_SCREENSHOTS_DIR names. `bin/screenshots` points it at docs/screenshots/,
the copies the README links, so an ordinary test run leaves the tree clean.
"""

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("STAMPEDE_SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator["object"]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (bin/test installs it as root)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser):  # type: ignore[no-untyped-def]
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    tab = await context.new_page()
    yield tab
    await context.close()


async def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page PNG as <SCREENSHOTS>/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
