"""Browser tests of the operator console: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (``make test`` installs both: the Makefile's ``browser`` step), against a
local stack on free 127.0.0.1 ports. Selenium is handed the driver's path, so Selenium Manager
never runs and nothing is downloaded; a test that fails leaves a screenshot and the page's source
in its tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common import selenium_manager

from tests.e2e.test_local_stack import Stack, running_stack

CHROMIUM = Path(os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LEDGER_CHROMEDRIVER", "/usr/bin/chromedriver"))
DESKTOP = (1280, 800)
# Chromium's own background traffic (updates, sync, safe browsing, QUIC probes) stays off: the
# tests reach 127.0.0.1 only.
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--lang=en-US",
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Each phase's report on the test item, so that a fixture can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _no_selenium_manager(*args: object, **kwargs: object) -> dict:
    raise AssertionError("Selenium Manager must not run: the tests use /usr/bin/chromedriver")


def chromium_options(user_data_dir: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module (its tests share the one sign-in: a TOTP code is
    accepted once per 30 s step)."""
    for needed in (CHROMIUM, CHROMEDRIVER):
        if not needed.is_file():
            pytest.fail(
                f"{needed} is missing: `make test` installs Debian's chromium and "
                "chromium-driver (see README.md, Tests); or deselect with -m 'not browser'"
            )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selenium_manager.SeleniumManager, "binary_paths", _no_selenium_manager)
        patch.setenv("SE_OFFLINE", "true")
        service = Service(executable_path=str(CHROMEDRIVER))
        browser = webdriver.Chrome(
            service=service, options=chromium_options(tmp_path_factory.mktemp("chromium"))
        )
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(
    driver: webdriver.Chrome, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[webdriver.Chrome]:
    """The module's browser; when the test fails, its screenshot and page source are saved
    under the test's tmp_path (the paths are printed with the failure)."""
    yield driver
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        screenshot, source = tmp_path / "failure.png", tmp_path / "failure.html"
        driver.save_screenshot(str(screenshot))
        source.write_text(driver.page_source)
        print(f"console at failure: {screenshot} and {source}")
