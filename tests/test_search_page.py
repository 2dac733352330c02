"""The search page in headless Chromium (Debian's chromium and chromedriver, via Selenium):
type a query and see thumbnails; upload an image and see itself first; click a result for
more like it. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clipsearch.server.app import RunningServer
from tests.served import ServedCollection

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):  # CI installs them (make browser): their absence is a failure
        raise RuntimeError("chromium and chromedriver are missing: run `make browser`")
    pytest.skip("needs chromium and chromedriver (`make browser`)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def wait_for_thumbnails(driver: WebDriver, status_contains: str) -> list[object]:
    def ready(d: WebDriver) -> list[object] | bool:
        try:
            status = d.find_element(By.ID, "status").text
            images = d.find_elements(By.CSS_SELECTOR, ".hit img")
            loaded = [i for i in images if i.get_attribute("data-loaded") == "yes"]
        except StaleElementReferenceException:  # the grid was re-rendered meanwhile
            return False
        done = status_contains in status and images and len(loaded) == len(images)
        return d.find_elements(By.CSS_SELECTOR, ".hit") if done else False

    return WebDriverWait(driver, 30).until(ready)  # type: ignore[no-any-return]


def test_text_query_upload_and_more_like_this(
    browser: WebDriver,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(served_collection.index, http_port=0)
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    WebDriverWait(browser, 30).until(lambda d: "index v" in d.find_element(By.ID, "info").text)

    box = browser.find_element(By.ID, "query")
    box.send_keys("a photo of a cat")
    box.submit()
    cards = wait_for_thumbnails(browser, "results for “a photo of a cat”")
    assert len(cards) == 24
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('.hit img')].map(i => i.naturalWidth)"
    )
    assert all(width > 0 for width in sizes), "a thumbnail did not render"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page-text.png"))

    photo = served_collection.images / "chelsea.jpg"
    browser.find_element(By.ID, "file").send_keys(str(photo))
    cards = wait_for_thumbnails(browser, "results for chelsea.jpg")
    assert cards[0].get_attribute("data-uri") == str(photo)  # type: ignore[attr-defined]
    browser.save_screenshot(str(ARTIFACTS / "search-page-upload.png"))

    first_id = cards[0].get_attribute("data-id")  # type: ignore[attr-defined]
    cards[0].click()  # type: ignore[attr-defined]
    cards = wait_for_thumbnails(browser, "results for images like")
    assert first_id not in {c.get_attribute("data-id") for c in cards}  # type: ignore[attr-defined]


LAYOUT_PROBLEMS = """
const problems = [];
const page = document.documentElement;
if (page.scrollWidth > window.innerWidth) problems.push(`page ${page.scrollWidth}px wide`);
const boxes = ["query", "drop", "status", "results"].map((id) => document.getElementById(id));
for (const element of [...boxes, ...document.querySelectorAll("#drop > *, form > *, .hit")]) {
  const r = element.getBoundingClientRect();
  const name = element.id || element.className;
  if (r.right > window.innerWidth + 0.5) problems.push(`${name} overflows`);
}
const overlap = (a, b) =>
  a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
const text = document.querySelector("#drop p").getBoundingClientRect();
const choose = document.querySelector("#drop .choose").getBoundingClientRect();
if (overlap(text, choose)) problems.push("the drop zone's text and button overlap");
return problems;
"""


@pytest.mark.parametrize("width", [360, 1280])
def test_layout_holds_from_phone_to_desktop_and_errors_clear_old_results(
    browser: WebDriver,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    width: int,
) -> None:
    server = start_server(served_collection.index, http_port=0)
    browser.set_window_size(width, 800)
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    WebDriverWait(browser, 30).until(lambda d: "index v" in d.find_element(By.ID, "info").text)
    inner = browser.execute_script("return window.innerWidth")
    assert abs(inner - width) < 40, f"the window is {inner}px wide, not {width}"

    box = browser.find_element(By.ID, "query")
    box.send_keys("a photo of a cat")
    box.submit()
    wait_for_thumbnails(browser, "results for")
    assert browser.execute_script(LAYOUT_PROBLEMS) == []
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"search-page-{width}px.png"))

    bad = served_collection.images.parent / "not-an-image.jpg"
    bad.write_bytes(b"just some text, not an image")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error"
    )
    assert "not an image" in browser.find_element(By.ID, "status").text
    assert browser.find_elements(By.CSS_SELECTOR, ".hit") == []  # no stale results under it
    assert browser.execute_script(LAYOUT_PROBLEMS) == []
