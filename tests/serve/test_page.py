"""The search page in headless Chromium (Debian's chromium + chromedriver; nothing downloads a browser): pick
a collection, search with a filter, see the hits; a bad filter shows the server's message in place; all of it
by keyboard. The screenshot is saved to ``.cache/artifacts/search-page.png``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.serve.test_collections import PAPERS

ARTIFACTS = Path(__file__).resolve().parents[2] / ".cache" / "artifacts"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_search_page_by_keyboard(live_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    httpx.post(f"{live_url}/v1/collections", json={"name": "papers", "dim": 384})
    httpx.post(f"{live_url}/v1/collections/papers/documents", timeout=60, json={
        "ids": [p[0] for p in PAPERS], "texts": [p[1] for p in PAPERS],
        "metadata": [{"year": p[2], "tags": p[3]} for p in PAPERS]})
    wait = WebDriverWait(browser, 30)
    browser.get(live_url + "/")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#collection option"))
    assert "papers (4 documents)" in browser.find_element(By.ID, "collection").text
    for field in ("collection", "query", "filter", "k", "key"):  # every control has a label
        assert browser.find_element(By.CSS_SELECTOR, f"label[for={field}]").text

    query = browser.find_element(By.ID, "query")
    query.click()
    query.send_keys("compressing vectors")
    query.send_keys(Keys.TAB)  # focus moves to the filter field
    assert browser.switch_to.active_element.get_attribute("id") == "filter"
    browser.switch_to.active_element.send_keys("year >= 2024", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#hits li")))
    hits = browser.find_elements(By.CSS_SELECTOR, "#hits li")
    assert "binary and scalar quantization of embeddings" in hits[0].text and "2024" in hits[0].text
    assert len(hits) == 3  # the 2019 paper is filtered out
    assert browser.find_element(By.ID, "error").text == ""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page.png"))

    field = browser.find_element(By.ID, "filter")
    field.clear()
    field.send_keys("year >>= 2024", Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    error = browser.find_element(By.ID, "error")
    assert error.get_attribute("role") == "alert" and "Filter.parse" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#hits li") == []
    browser.save_screenshot(str(ARTIFACTS / "search-page-error.png"))
