"""Take the README's picture: the Schedules tab at 1280x800 in headless Chromium (Debian's, /usr/bin/chromium).

python assets/make_screenshot.py        # writes assets/screenshot.png
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from explorer.app import launch_locally

TARGET = Path(__file__).resolve().parent / "screenshot.png"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    demo, url = launch_locally()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(TARGET))
            browser.close()
    finally:
        demo.close()
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
