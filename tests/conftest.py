"""Shared fixtures: the app launched on a free loopback port, and a headless Chromium page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's; DDPM_EXPLORER_CHROMIUM names another binary
REQUIRE_BROWSER = "DDPM_EXPLORER_REQUIRE_BROWSER"  # set to 1 (as .ci/run does): missing Chromium fails the run
NO_CHROMIUM = "browser tests need Chromium: apt-get install -y chromium (or set DDPM_EXPLORER_CHROMIUM to its path)"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """The real app, launched in this process on 127.0.0.1 and a free port, with app.py's launch options."""
    from explorer.app import launch_locally

    demo, url = launch_locally()
    try:
        yield url
    finally:
        demo.close()


def chromium_path() -> str | None:
    """The Chromium binary the browser tests drive: $DDPM_EXPLORER_CHROMIUM if set, else Debian's, else `chromium`
    on the PATH; None when there is none."""
    named = os.environ.get("DDPM_EXPLORER_CHROMIUM")
    if named:
        return named if os.path.exists(named) else None
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without Chromium a browser test skips before its fixtures start (no app launched for nothing), unless
    $DDPM_EXPLORER_REQUIRE_BROWSER is 1: then it fails (CI installs Chromium). The skip is raised here, not in the
    fixture, so that every browser test skips at this one place with one reason, which `pytest -ra` folds into one
    summary line (a fixture's skip is reported at each test's own line)."""
    if "browser" in item.fixturenames and chromium_path() is None:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{NO_CHROMIUM}; {REQUIRE_BROWSER}=1 requires them", pytrace=False)
        pytest.skip(NO_CHROMIUM)


@pytest.fixture(scope="session")
def browser():
    """Chromium driven by Playwright (pytest_runtest_setup above has checked that there is one)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where browser tests save screenshots (ignored by git) for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One CPU thread for small models, restored afterwards (a Trainer sets the process-wide count). Small models
    gain nothing from more, and on a 2-core machine whose other core is busy two OpenMP threads can make each step
    a hundred times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
