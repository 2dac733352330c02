"""The search page in headless Chromium (Debian's chromium and chromedriver, via Selenium):
type a query and see thumbnails; upload an image and see itself first; click a result for
more like it; refine with a filter, a minimum score and near-duplicates hidden; scroll for
more pages. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest
from PIL import Image

from clipsearch.client import SearchClient, TextQuery
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.models import ModelSpec
from clipsearch.server.app import RunningServer
from tests.conftest import TINY
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
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


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


def wait_for_thumbnails(driver: WebDriver, status_contains: str) -> list[WebElement]:
    def ready(d: WebDriver) -> list[WebElement] | Literal[False]:
        try:
            status = d.find_element(By.ID, "status").text
            images = d.find_elements(By.CSS_SELECTOR, ".hit img")
            loaded = [i for i in images if i.get_attribute("data-loaded") == "yes"]
        except StaleElementReferenceException:  # the grid was re-rendered meanwhile
            return False
        done = status_contains in status and images and len(loaded) == len(images)
        return d.find_elements(By.CSS_SELECTOR, ".hit") if done else False

    return WebDriverWait(driver, 30).until(ready)


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
    assert cards[0].get_attribute("data-uri") == str(photo)
    browser.save_screenshot(str(ARTIFACTS / "search-page-upload.png"))

    first_id = cards[0].get_attribute("data-id")
    cards[0].click()
    cards = wait_for_thumbnails(browser, "results for images like")
    assert first_id not in {c.get_attribute("data-id") for c in cards}


LAYOUT_PROBLEMS = """
const problems = [];
const page = document.documentElement;
if (page.scrollWidth > window.innerWidth) problems.push(`page ${page.scrollWidth}px wide`);
const boxes = ["query", "drop", "refine", "status", "results", "more"]
  .map((id) => document.getElementById(id));
const parts = document.querySelectorAll(
  "#drop > *, form > *, .hit, #refine .row > *, .condition > *, .condition .values > *");
for (const element of [...boxes, ...parts]) {
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
    browser.find_element(By.ID, "add-condition").click()  # a filter row, at its widest
    Select(browser.find_element(By.CSS_SELECTOR, ".condition .field")).select_by_value("width")
    Select(browser.find_element(By.CSS_SELECTOR, ".condition .op")).select_by_value("range")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".condition .values input")) == 2
    assert browser.execute_script(LAYOUT_PROBLEMS) == []
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"search-page-{width}px.png"))
    browser.find_element(By.CSS_SELECTOR, ".condition .remove").click()

    bad = served_collection.images.parent / "not-an-image.jpg"
    bad.write_bytes(b"just some text, not an image")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error"
    )
    assert "not an image" in browser.find_element(By.ID, "status").text
    assert browser.find_elements(By.CSS_SELECTOR, ".hit") == []  # no stale results under it
    assert browser.execute_script(LAYOUT_PROBLEMS) == []


# --- refining and paging, on a collection with metadata and planted near-duplicates ------

VARIED = ("astronaut", "chelsea", "rocket")  # photos with near-duplicates planted


@pytest.fixture(scope="module")
def refinable(
    tmp_path_factory: pytest.TempPathFactory,
    textile_paths: list[Path],
    photos: dict[str, Image.Image],
    tiny_checkpoint: Path,
) -> Path:
    """59 textiles and 11 photos with JSON sidecars ({"kind", "year", "tags"}): the five
    photos, and of three of them a copy at JPEG quality 35 and a slightly cropped copy,
    with the metadata of their original. Returns the index folder."""
    root = tmp_path_factory.mktemp("refinable")
    images = root / "images"
    (images / "textiles").mkdir(parents=True)
    (images / "photos").mkdir()

    def add(path: Path, kind: str, year: int, tags: list[str]) -> None:
        path.with_suffix(".json").write_text(json.dumps({"kind": kind, "year": year, "tags": tags}))

    for i, textile in enumerate(textile_paths[::34]):
        target = images / "textiles" / f"{textile.parent.name}-{textile.name}"
        shutil.copyfile(textile, target)
        add(target, "textile", 2019 + i % 5, [textile.parent.name])
    for name, photo in photos.items():
        variants = {name: photo}
        if name in VARIED:
            w, h = photo.size
            variants[f"{name}-cropped"] = photo.crop((w // 25, h // 25, w - w // 25, h - h // 25))
        for stem, image in variants.items():
            image.save(images / "photos" / f"{stem}.jpg", quality=92)
        if name in VARIED:
            photo.save(images / "photos" / f"{name}-q35.jpg", quality=35)
        for path in (images / "photos").glob(f"{name}*.jpg"):
            add(path, "photo", 2023, ["photo", name])
    model = ModelSpec(TINY, str(tiny_checkpoint), device="cpu")
    run_embed(EmbedConfig(SourceSpec(str(images)), root / "shards", model, quiet=True))
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=10))
    return root / "index"


PHOTOS = 11
ITEMS = 59 + PHOTOS

CARDS = """
return [...document.querySelectorAll(".hit")].map((card) => ({
  id: card.dataset.id, uri: card.dataset.uri, score: Number(card.dataset.score),
  metadata: card.dataset.metadata ? JSON.parse(card.dataset.metadata) : null,
  duplicates: Number(card.dataset.duplicates),
  similar: (card.querySelector(".similar") || {}).textContent || "",
}));
"""


class Card(TypedDict):
    """A result card's data, as the page keeps it."""

    id: str
    uri: str
    score: float
    metadata: dict[str, Any] | None  # the hit's metadata_json, parsed
    duplicates: int
    similar: str  # the "+N similar" badge's text


def _meta(card: Card) -> dict[str, Any]:
    assert card["metadata"] is not None, f"{card['uri']} has no metadata"
    return card["metadata"]


def cards(driver: WebDriver) -> list[Card]:
    return driver.execute_script(CARDS)  # type: ignore[no-any-return]


def wait_for_cards(driver: WebDriver, done: Callable[[list[Card]], bool]) -> list[Card]:
    """The cards once `done` holds for them and no page is loading."""

    def ready(d: WebDriver) -> list[Card] | Literal[False]:
        shown = cards(d)
        loading = d.find_element(By.ID, "more").get_attribute("data-state") == "loading"
        return shown if shown and not loading and done(shown) else False

    return WebDriverWait(driver, 30).until(ready)


def open_page(driver: WebDriver, server: RunningServer) -> None:
    driver.get(f"http://127.0.0.1:{server.http_port}/")
    WebDriverWait(driver, 30).until(lambda d: "index v" in d.find_element(By.ID, "info").text)


def search_text(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text)
    box.submit()


def add_filter(driver: WebDriver, field: str, op: str, *values: str) -> None:
    """Adds a filter row and fills it in; the page re-runs the search."""
    driver.find_element(By.ID, "add-condition").click()
    row = driver.find_elements(By.CSS_SELECTOR, ".condition")[-1]
    Select(row.find_element(By.CSS_SELECTOR, ".field")).select_by_value(field)
    Select(row.find_element(By.CSS_SELECTOR, ".op")).select_by_value(op)
    for box, value in zip(
        row.find_elements(By.CSS_SELECTOR, ".values input"), values, strict=False
    ):
        box.send_keys(value, Keys.TAB)  # leaving the box commits the value


def test_a_filter_picked_from_the_listed_fields_keeps_only_matching_hits(
    browser: WebDriver, refinable: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(refinable, http_port=0)
    photos = refinable.parent / "images" / "photos"
    open_page(browser, server)
    search_text(browser, "a striped textile")
    wait_for_cards(browser, lambda shown: len(shown) == 24)

    browser.find_element(By.ID, "add-condition").click()
    row = browser.find_element(By.CSS_SELECTOR, ".condition")
    listed = [
        o.get_attribute("value")
        for o in Select(row.find_element(By.CSS_SELECTOR, ".field")).options
    ]
    wanted = {"uri", "width", "embedded_at", "metadata.kind", "metadata.tags", "metadata.year"}
    assert wanted <= set(listed)

    def ops(field: str) -> dict[str, str]:
        Select(row.find_element(By.CSS_SELECTOR, ".field")).select_by_value(field)
        options = Select(row.find_element(By.CSS_SELECTOR, ".op")).options
        return {str(o.get_attribute("value")): o.text for o in options}

    assert set(ops("metadata.year")) == {"equals", "any_of", "range", "exists", "missing"}
    assert "prefix" in ops("metadata.kind") and "range" not in ops("metadata.kind")
    assert ops("metadata.tags")["equals"] == "has"  # a list field holds its values
    assert set(ops("embedded_at")) == {"range", "exists", "missing"}
    row.find_element(By.CSS_SELECTOR, ".remove").click()

    # metadata.year >= 2022: textiles of two years in five, and every photo.
    add_filter(browser, "metadata.year", "range", "2022")
    shown = wait_for_cards(browser, lambda shown: all(_meta(c)["year"] >= 2022 for c in shown))
    assert len(shown) == 24

    # ... and (all must hold) kind is photo: exactly the photos, however low they score.
    add_filter(browser, "metadata.kind", "equals", "photo")
    shown = wait_for_cards(browser, lambda shown: len(shown) == PHOTOS)
    assert {c["uri"] for c in shown} == {str(p) for p in photos.glob("*.jpg")}
    assert all(_meta(c)["kind"] == "photo" and _meta(c)["year"] == 2023 for c in shown)
    assert browser.find_element(By.ID, "more").get_attribute("data-state") == "end"
    assert "2 filters" in browser.find_element(By.ID, "refine-summary").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page-filter.png"))

    # A list field: tags has one of chelsea, rocket (with year >= 2022 and kind photo).
    browser.find_elements(By.CSS_SELECTOR, ".condition .remove")[1].click()
    add_filter(browser, "metadata.tags", "any_of", "chelsea, rocket")
    shown = wait_for_cards(browser, lambda shown: len(shown) == 6)
    assert {Path(c["uri"]).stem.split("-")[0] for c in shown} == {"chelsea", "rocket"}

    # An incomplete filter is said, not sent; nothing stale stays under it.
    add_filter(browser, "uri", "prefix")
    browser.find_elements(By.CSS_SELECTOR, ".condition .values input")[-1].send_keys(Keys.TAB)
    search_text(browser, "a striped textile")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("class") == "error"
    )
    assert "Filter on uri: enter a value" in browser.find_element(By.ID, "status").text
    assert cards(browser) == []


def test_the_minimum_score_slider_hides_lower_scores(
    browser: WebDriver, refinable: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(refinable, http_port=0)
    open_page(browser, server)
    assert browser.find_element(By.ID, "min-score-value").text == "off"
    search_text(browser, "a cat")  # all 24 score above 0 here: the slider's range
    before = wait_for_cards(browser, lambda shown: len(shown) == 24)
    scores = [c["score"] for c in before]
    steps = int(scores[8] * 100)  # the slider moves in steps of 0.01
    cut = steps / 100
    assert scores[-1] < cut <= scores[8], "the cut would not change what is shown"

    slider = browser.find_element(By.ID, "min-score")
    slider.send_keys(Keys.HOME, *[Keys.ARROW_RIGHT] * steps)
    assert browser.find_element(By.ID, "min-score-value").text == f"{cut:.2f}"
    expected = [c["id"] for c in before if c["score"] >= cut]
    after = wait_for_cards(browser, lambda shown: [c["id"] for c in shown] == expected)
    assert all(c["score"] >= cut for c in after)
    assert browser.find_element(By.ID, "more").get_attribute("data-state") == "end"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page-min-score.png"))

    slider.send_keys(Keys.HOME)  # back off: every hit again
    assert browser.find_element(By.ID, "min-score-value").text == "off"
    wait_for_cards(browser, lambda shown: [c["id"] for c in shown] == [c["id"] for c in before])


def test_hiding_near_duplicates_folds_them_into_the_hit_they_resemble(
    browser: WebDriver, refinable: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(refinable, http_port=0)
    open_page(browser, server)
    add_filter(browser, "metadata.kind", "equals", "photo")
    photo = refinable.parent / "images" / "photos" / "chelsea.jpg"
    browser.find_element(By.ID, "file").send_keys(str(photo))
    plain = wait_for_cards(browser, lambda shown: len(shown) == PHOTOS)
    assert not any(c["duplicates"] or c["similar"] for c in plain)

    # The default threshold (0.94). Random weights put even different photos above it, so
    # it folds more than variants: every photo is still shown or counted in a card.
    browser.find_element(By.ID, "collapse").click()
    folded = wait_for_cards(browser, lambda shown: len(shown) < PHOTOS)
    assert sum(1 + c["duplicates"] for c in folded) == PHOTOS
    assert folded[0]["uri"] == str(photo)  # the best of its group is kept
    for card in folded:
        assert card["similar"] == (f"+{card['duplicates']} similar" if card["duplicates"] else "")

    # Variants of one photo reach cosine 0.995 with each other, different photos stay
    # below 0.99: at 0.99 each photo is one card standing for exactly its variants.
    threshold = browser.find_element(By.ID, "threshold")
    threshold.clear()
    threshold.send_keys("0.99", Keys.TAB)
    folded = wait_for_cards(browser, lambda shown: len(shown) == 5)
    groups = {Path(c["uri"]).stem.split("-")[0]: c for c in folded}  # a variant may lead
    assert set(groups) == {"astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket"}
    for name, card in groups.items():
        assert card["similar"] == ("+2 similar" if name in VARIED else ""), card
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "search-page-collapsed.png"))


def scroll_to_bottom(driver: WebDriver) -> None:
    driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")


def test_scrolling_appends_pages_until_the_end_and_a_new_search_resets(
    browser: WebDriver, refinable: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(refinable, http_port=0)
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        striped = [
            str(h.id) for h in client.search(TextQuery("a striped textile"), top_k=ITEMS).hits
        ]
        cat = [str(h.id) for h in client.search(TextQuery("a cat"), top_k=ITEMS).hits]
    assert len(striped) == ITEMS and striped[:24] != cat[:24]
    open_page(browser, server)

    search_text(browser, "a striped textile")
    shown = wait_for_cards(browser, lambda shown: len(shown) == 24)
    assert browser.find_element(By.ID, "more").get_attribute("data-state") == "more"
    scroll_to_bottom(browser)
    wait_for_cards(browser, lambda shown: len(shown) == 48)  # pages of 24, 24, then 22
    scroll_to_bottom(browser)
    shown = wait_for_cards(browser, lambda shown: len(shown) == ITEMS)
    assert [c["id"] for c in shown] == striped  # in order, no gap, no repeat
    assert browser.find_element(By.ID, "more").get_attribute("data-state") == "end"
    scroll_to_bottom(browser)
    browser.save_screenshot(str(ARTIFACTS / "search-page-scrolled.png"))

    # A new search starts over: its first page alone, none of the old search's cards.
    search_text(browser, "a cat")
    wait_for_cards(browser, lambda shown: [c["id"] for c in shown] == cat[:24])

    # A page of the old search that arrives after a new search began is dropped: pages are
    # held back here until the new search has shown its first.
    search_text(browser, "a striped textile")
    wait_for_cards(browser, lambda shown: [c["id"] for c in shown] == striped[:24])
    browser.execute_script(HOLD_BACK_PAGES)
    browser.execute_script(
        "window.scrollTo(0, document.documentElement.scrollHeight); moreIfNear();"
        "document.getElementById('query').value = 'a cat';"
        "document.getElementById('text-form').requestSubmit();"
    )
    # (its own next page may be held back meanwhile: it is not waited for)
    WebDriverWait(browser, 30).until(lambda d: [c["id"] for c in cards(d)][:24] == cat[:24])
    browser.execute_script("window.releasePages()")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.pagesAnswered"))
    ids = [c["id"] for c in wait_for_cards(browser, lambda shown: True)]
    assert ids == cat[: len(ids)] and len(ids) >= 24


HOLD_BACK_PAGES = """
const realFetch = window.fetch;
let release;
const released = new Promise((resolve) => { release = resolve; });
window.releasePages = release;
window.pagesAnswered = 0;
window.fetch = async (url, init) => {
  if (!(init && init.body && init.body.includes('"page_token"'))) return realFetch(url, init);
  await released;
  const response = await realFetch(url, init);
  window.pagesAnswered += 1;
  return response;
};
"""


def test_the_page_picks_among_several_indexes(
    browser: WebDriver,
    refinable: Path,
    served_collection: ServedCollection,
    tmp_path: Path,
) -> None:
    """With two indexes served, a selector lists them; the picked one answers searches,
    its info and its thumbnails."""
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig

    indexes = (
        NamedIndex("textiles", served_collection.copy_index(tmp_path / "textiles")),
        NamedIndex("refinable", refinable),
    )
    server = start(ServerConfig(indexes, port=0, metrics_port=None, http_port=0))
    try:
        open_page(browser, server)
        picker = Select(browser.find_element(By.ID, "index"))
        assert [o.text for o in picker.options] == ["textiles", "refinable"]
        assert browser.find_element(By.ID, "index").is_displayed()
        search_text(browser, "a photo of a cat")
        first = wait_for_cards(browser, lambda shown: len(shown) == 24)
        assert all(Path(card["uri"]).is_relative_to(served_collection.images) for card in first)
        picker.select_by_visible_text("refinable")
        WebDriverWait(browser, 30).until(
            lambda d: f"{ITEMS} images" in d.find_element(By.ID, "info").text
        )
        second = wait_for_cards(
            browser,
            lambda shown: all(Path(c["uri"]).is_relative_to(refinable.parent) for c in shown),
        )
        assert len(second) == 24  # the same query, answered by the other index
        loaded = browser.execute_script(
            "return [...document.querySelectorAll('.hit img')].map(i => i.dataset.loaded)"
        )
        assert "no" not in loaded  # thumbnails come from the picked index
    finally:
        server.stop(0)
