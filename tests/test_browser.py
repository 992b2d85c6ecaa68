"""End to end in headless Chromium: type a review, submit, read the verdict off the page.

Uses Debian's `chromium` + `chromedriver` (apt-get install -y chromium chromium-driver) through
selenium, which downloads nothing when given both paths. A screenshot is kept under
tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

try:
    import selenium  # noqa: F401
except ImportError:
    selenium = None

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="Chromium or chromedriver not installed "
                              "(apt-get install -y chromium chromium-driver)"),
    pytest.mark.skipif(selenium is None,
                       reason="selenium not installed (pip install -r requirements-train.txt)"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never fetch a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_type_submit_and_read_the_label(app_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    review = '배우들 연기가 정말 좋았어요 <img src=x onerror="document.title=\'pwned\'"> 😍'
    url = app_server[0]
    browser.get(url)
    wait = WebDriverWait(browser, 30)
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#review textarea"))
    title = browser.title
    box.send_keys(review)
    browser.find_element(By.CSS_SELECTOR, "#analyze").click()

    verdict = wait.until(lambda d: next((t for t in ["긍정 (positive)", "부정 (negative)"]
                                         if t in d.find_element(By.ID, "sentiment").text), None))
    why = wait.until(lambda d: d.find_element(By.ID, "why").text.strip() or None)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-single-review.png"
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}")

    label_text = browser.find_element(By.ID, "sentiment").text
    assert verdict in label_text
    # both bars
    assert "긍정 (positive)" in label_text and "부정 (negative)" in label_text and "%" in label_text
    # The markup in the review is shown as text, never run or rendered.
    assert "<img" in why and browser.title == title != "pwned"
    assert not browser.find_elements(By.CSS_SELECTOR, "#why img")
    assert shot.stat().st_size > 10_000
