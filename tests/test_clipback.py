"""clip-retrieval's clip-back API, called by clip-retrieval's own ClipClient (the real
package, tests/clip_retrieval.py) against a running server: its answers are clipsearch's
own searches, in clip-back's shape; deduplication folds planted near-duplicates; ids round
trip through /metadata; keys travel in the path; options clipsearch lacks are named, not
refused; and clip-front, the package's page, shows clipsearch's images in Chromium."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from clipsearch.client import Collapse, ImageQuery, SearchClient, Target, TextQuery, VectorQuery
from clipsearch.collection.ids import item_id
from clipsearch.encoder import ClipEncoder
from clipsearch.index.manifest import current_version
from clipsearch.index.version import IndexVersion
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.server.admission.keys import KeyRing, parse_keys
from clipsearch.server.admission.url_fetch import UrlFetchConfig
from clipsearch.server.app import RunningServer, start
from clipsearch.server.config import HttpSettings, NamedIndex, SecurityConfig, ServerConfig
from clipsearch.types import DEFAULT_COLLAPSE_THRESHOLD, SearchResult
from tests.clip_retrieval import ClipRetrieval, install
from tests.served import ServedCollection
from tests.test_http_face import request_counts

pytestmark = pytest.mark.slow
NAME = "photos"  # the index folder's name, which indice_name takes
KEY = "clipback-test-key-0123456789abcdef"
CAPTIONS = {
    "astronaut": "an astronaut in a white space suit",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a ginger cat lying down",
    "rocket": "a rocket on the launch pad",
    "hubble_deep_field": "stars and galaxies in deep space",
    "chelsea-q35": "the same cat, compressed",
    "chelsea-crop": "the same cat, cropped",
}
CHELSEAS = ("chelsea", "chelsea-q35", "chelsea-crop")
TEXTILES = 8
UNCAPTIONED = {"textile-6", "textile-7"}

ANY_ORIGIN = HttpSettings(cors_origins=("*",))  # clip-front runs on its own origin


@dataclass(frozen=True)
class Collection:
    images: Path
    index: Path

    def version(self) -> IndexVersion:
        path = current_version(self.index)
        assert path is not None
        return IndexVersion(path)

    def item_id(self, name: str) -> int:
        return item_id(str(self.images / f"{name}.jpg"))


@pytest.fixture(scope="module")
def clip_retrieval(request: pytest.FixtureRequest) -> ClipRetrieval:
    return install(Path(request.config.cache.mkdir("clip-retrieval")))


@pytest.fixture(scope="module")
def collection(
    tmp_path_factory: pytest.TempPathFactory,
    photos: dict[str, Image.Image],
    textile_paths: list[Path],
    served_collection: ServedCollection,
) -> Collection:
    """Photos, two near-duplicates of one (re-saved at JPEG quality 35, cropped by 3%),
    textiles; captions on all but two, metadata on all; captions embedded."""
    root = tmp_path_factory.mktemp("clipback")
    images = root / "images"
    images.mkdir()
    for name, caption in CAPTIONS.items():
        photo = photos["chelsea" if name.startswith("chelsea") else name]
        if name == "chelsea-crop":
            w, h = photo.size
            photo = photo.crop((w * 3 // 100, h * 3 // 100, w * 97 // 100, h * 97 // 100))
        photo.save(images / f"{name}.jpg", quality=35 if name == "chelsea-q35" else 90)
        (images / f"{name}.txt").write_text(caption)
        (images / f"{name}.json").write_text(json.dumps({"kind": "photo", "name": name}))
    for n, path in enumerate(textile_paths[::250][:TEXTILES]):
        shutil.copyfile(path, images / f"textile-{n}.jpg")
        if f"textile-{n}" not in UNCAPTIONED:
            (images / f"textile-{n}.txt").write_text(f"a woven textile, pattern number {n}")
        (images / f"textile-{n}.json").write_text(json.dumps({"kind": "textile", "n": n}))
    embed = EmbedConfig(SourceSpec(str(images)), root / "shards", served_collection.model,
                        quiet=True, embed_captions=True)  # fmt: skip
    run_embed(embed)
    run_build(BuildConfig(root / "shards", root / NAME, eval_queries=10))
    return Collection(images, root / NAME)


@pytest.fixture
def server(collection: Collection, start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(collection.index, http_port=0, http=ANY_ORIGIN)


def url(server: RunningServer, path: str = "") -> str:
    return f"http://127.0.0.1:{server.http_port}{path}"


def own_search(server: RunningServer, query: Any, **options: Any) -> SearchResult:
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:
        return client.search(query, **options)


def assert_same_hits(items: list[dict[str, Any]], result: SearchResult) -> None:
    """ClipClient's answer is clipsearch's search: ids (ints, as clip-back's), order, scores."""
    assert [item["id"] for item in items] == [hit.id for hit in result.hits]
    assert all(type(item["id"]) is int for item in items)
    np.testing.assert_allclose(
        [item["similarity"] for item in items], [hit.score for hit in result.hits], atol=1e-5
    )


def assert_clip_back_shape(item: dict[str, Any], collection: Collection) -> None:
    """A local image as clip-back shows one: image_path, the image inline (a thumbnail),
    the caption when there is one, the metadata's keys."""
    path = Path(item["image_path"])
    assert path.parent == collection.images and "url" not in item
    assert item["kind"] in ("photo", "textile")
    caption = path.with_suffix(".txt")
    assert item.get("caption") == (caption.read_text() if caption.exists() else None)
    thumbnail = Image.open(BytesIO(base64.b64decode(item["image"])))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 256


@contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """`folder` served over HTTP on a loopback port; yields its address."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- ClipClient ---------------------------------------------------------------------------


def test_clip_client_text_image_and_embedding_queries_are_clipsearch_searches(
    server: RunningServer,
    collection: Collection,
    clip_retrieval: ClipRetrieval,
    tiny_encoder: ClipEncoder,
) -> None:
    client = clip_retrieval.client(url=url(server, "/knn-service"), indice_name=NAME,
                                   num_images=6, deduplicate=False)  # fmt: skip
    photo = collection.images / "coffee.jpg"
    vector = tiny_encoder.encode_texts(["a ginger cat"])[0]
    for items, query in [
        (client.query(text="a cup of coffee"), TextQuery("a cup of coffee")),
        (client.query(image=str(photo)), ImageQuery(photo.read_bytes())),
        (client.query(embedding_input=vector.tolist()), VectorQuery(vector)),
    ]:
        assert len(items) == 6
        assert_same_hits(items, own_search(server, query, top_k=6))
        for item in items:
            assert_clip_back_shape(item, collection)
    assert client.query(image=str(photo))[0]["image_path"] == str(photo)


def test_clip_client_image_urls_are_fetched_under_the_servers_rules(
    collection: Collection,
    start_server: Callable[..., RunningServer],
    clip_retrieval: ClipRetrieval,
) -> None:
    loopback = UrlFetchConfig(enabled=True, allowed_hosts=("127.0.0.1",),
                              allowed_networks=(ip_network("127.0.0.0/8"),))  # fmt: skip
    server = start_server(collection.index, http_port=0, image_urls=loopback, http=ANY_ORIGIN)
    client = clip_retrieval.client(url=url(server, "/knn-service"), indice_name=NAME,
                                   num_images=5, deduplicate=False)  # fmt: skip
    photo = collection.images / "rocket.jpg"
    with static_site(collection.images) as site:
        items = client.query(image=site + photo.name)  # ClipClient sends it as image_url
    assert items[0]["image_path"] == str(photo) and items[0]["similarity"] > 0.999
    assert_same_hits(items, own_search(server, ImageQuery(photo.read_bytes()), top_k=5))


def test_text_modality_searches_the_captions(
    server: RunningServer, collection: Collection, clip_retrieval: ClipRetrieval
) -> None:
    text = clip_retrieval.modality.TEXT
    client = clip_retrieval.client(url=url(server, "/knn-service"), indice_name=NAME,
                                   modality=text, num_images=20, deduplicate=False)  # fmt: skip
    items = client.query(text=CAPTIONS["rocket"])
    assert items[0]["caption"] == CAPTIONS["rocket"] and items[0]["similarity"] > 0.999
    assert_same_hits(items, own_search(server, TextQuery(CAPTIONS["rocket"]), top_k=20,
                                       target=Target.CAPTIONS))  # fmt: skip
    # Every captioned item, and only those: the uncaptioned are not in the caption index.
    assert len(items) == len(CAPTIONS) + TEXTILES - len(UNCAPTIONED)
    assert all(item["caption"] for item in items)


def test_deduplicate_folds_near_duplicates(
    server: RunningServer, collection: Collection, clip_retrieval: ClipRetrieval
) -> None:
    """deduplicate=True (ClipClient's default) is clipsearch's collapse at clip-back's
    threshold: best first, a hit at or above 0.94 cosine to an image kept before it goes.
    With the tiny random model different photos reach ~0.98 too, so beyond the planted
    variants (≥ 0.995) the check is the rule itself, against the full ranking."""
    photo = str(collection.images / "chelsea.jpg")
    knn = url(server, "/knn-service")
    everything = clip_retrieval.client(url=knn, indice_name=NAME, num_images=100,
                                       deduplicate=False).query(image=photo)  # fmt: skip
    folded = clip_retrieval.client(url=knn, indice_name=NAME, num_images=100).query(image=photo)
    version = collection.version()

    def vector(of: int) -> np.ndarray:
        row = version.row_of(of)
        assert row is not None
        v = np.asarray(version.vectors[row], dtype=np.float32)
        return v / np.linalg.norm(v)

    chelseas = [collection.item_id(name) for name in CHELSEAS]
    assert set(chelseas) <= {item["id"] for item in everything}
    planted = np.stack([vector(i) for i in chelseas])
    assert (planted @ planted.T).min() >= 0.995  # the variants are near-duplicates
    assert folded[0]["id"] == chelseas[0]
    assert not set(chelseas[1:]) & {item["id"] for item in folded}

    kept: list[np.ndarray] = []
    expected = []
    for item in everything:  # the rule, replayed on the undeduplicated ranking
        v = vector(item["id"])
        if all(float(v @ k) < DEFAULT_COLLAPSE_THRESHOLD for k in kept):
            kept.append(v)
            expected.append(item["id"])
    assert [item["id"] for item in folded] == expected
    shown = np.stack([vector(item["id"]) for item in folded])
    similarity = shown @ shown.T - 2 * np.eye(len(shown))
    assert similarity.max() < DEFAULT_COLLAPSE_THRESHOLD  # no two near-duplicates shown
    assert_same_hits(folded, own_search(server, ImageQuery(Path(photo).read_bytes()),
                                        top_k=100, collapse=Collapse()))  # fmt: skip


# --- the other routes, ids, options, errors -------------------------------------------------


def test_indices_list_and_metadata_round_trip(
    server: RunningServer, collection: Collection
) -> None:
    assert requests.get(url(server, "/indices-list"), timeout=30).json() == [NAME]
    # As clip-front asks: metadata for the first num_images, ids and scores for the rest.
    body = {"text": "a cat", "modality": "image", "indice_name": NAME, "num_images": 3,
            "num_result_ids": 12}  # fmt: skip
    items = requests.post(url(server, "/knn-service"), data=json.dumps(body), timeout=30).json()
    assert len(items) == 12
    assert all(set(item) == {"id", "similarity"} for item in items[3:])
    ids = [item["id"] for item in items]
    # clip-front sends back the 63-bit ids it parsed with json-bigint as decimal strings.
    asked = [ids[0], *map(str, ids[1:]), 12345]
    body = {"ids": asked, "indice_name": NAME}
    metadata = requests.post(url(server, "/metadata"), data=json.dumps(body), timeout=30).json()
    assert [m["id"] for m in metadata] == ids  # the unknown id is left out
    for item, found in zip(items[:3], metadata, strict=False):
        assert {**found["metadata"], "id": item["id"], "similarity": item["similarity"]} == item
    for found in metadata:
        assert_clip_back_shape(found["metadata"], collection)
    assert requests.post(url(server, "/metadata"), data='{"ids": []}', timeout=30).json() == []


def test_bad_requests_and_an_unknown_index(server: RunningServer) -> None:
    def knn(**body: object) -> requests.Response:
        return requests.post(url(server, "/knn-service"), data=json.dumps(body), timeout=30)

    unknown = knn(text="a cat", indice_name="laion5B", modality="image", num_images=3)
    assert unknown.status_code == 404 and NAME in unknown.json()["error"]["message"]
    for body, message in [
        ({"text": "a", "image": "aGk=", "modality": "image", "num_images": 3}, "exactly one"),
        ({"modality": "image", "num_images": 3}, "exactly one"),
        ({"text": "a", "modality": "audio", "num_images": 3}, "modality"),
        ({"text": "a", "num_images": 5000}, "num_images"),
        ({"embedding_input": [1.0, 2.0]}, "dimension"),
        ({"image": "!!!!"}, "base64"),
    ]:
        refused = knn(**body)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"]
        assert refused.headers["Access-Control-Allow-Origin"] == "*"  # a page can read why


def test_options_clipsearch_lacks_are_named_not_refused(server: RunningServer) -> None:
    """ClipClient sends every option on every call; clip-front asks for 3000 ids."""
    clip_client_body = {
        "text": "a cat", "image": None, "image_url": None, "embedding_input": None,
        "deduplicate": True, "use_safety_model": True, "use_violence_detector": True,
        "indice_name": NAME, "use_mclip": False, "aesthetic_score": 9,
        "aesthetic_weight": 0.5, "modality": "image", "num_images": 40, "num_result_ids": 3000,
    }  # fmt: skip
    answer = requests.post(url(server, "/knn-service"), data=json.dumps(clip_client_body),
                           timeout=30)  # fmt: skip
    assert answer.status_code == 200 and answer.json()
    assert answer.headers["X-Clipsearch-Ignored"] == (
        "use_safety_model, use_violence_detector, aesthetic_score, aesthetic_weight"
    )
    assert answer.headers["X-Clipsearch-Clamped"].startswith("num_result_ids=1000")
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    plain = {"text": "a cat", "indice_name": NAME, "num_images": 4, "aesthetic_score": ""}
    answer = requests.post(url(server, "/knn-service"), data=json.dumps(plain), timeout=30)
    assert len(answer.json()) == 4
    assert "X-Clipsearch-Ignored" not in answer.headers
    assert "X-Clipsearch-Clamped" not in answer.headers


def test_keys_in_the_path_or_the_header(
    collection: Collection,
    start_server: Callable[..., RunningServer],
    clip_retrieval: ClipRetrieval,
) -> None:
    keys = KeyRing(parse_keys(f"clip {KEY} search", "test"))
    server = start_server(collection.index, http_port=0, security=SecurityConfig(keys=keys))
    keyed = clip_retrieval.client(url=url(server, f"/key/{KEY}/knn-service"), indice_name=NAME,
                                  num_images=3)  # fmt: skip
    assert len(keyed.query(text="a cat")) == 3
    anonymous = clip_retrieval.client(url=url(server, "/knn-service"), indice_name=NAME)
    assert anonymous.query(text="a cat")["error"]["type"] == "authentication_error"
    wrong = clip_retrieval.client(url=url(server, "/key/wrong/knn-service"), indice_name=NAME)
    assert wrong.query(text="a cat")["error"]["message"] == "the API key is not valid"
    header = {"Authorization": f"Bearer {KEY}"}  # as a proxy in front adds it
    assert requests.get(url(server, "/indices-list"), headers=header, timeout=30).json() == [NAME]
    assert requests.get(url(server, f"/key/{KEY}/indices-list"), timeout=30).json() == [NAME]
    # The same pipeline as every call: counted under the RPC they are, on the HTTP face.
    counts = request_counts(server)
    assert counts[("Search", "OK", "http")] == 1
    assert counts[("Search", "UNAUTHENTICATED", "http")] == 2
    assert counts[("GetIndexInfo", "OK", "http")] == 2


def test_indice_name_picks_one_of_several_indexes(
    collection: Collection,
    served_collection: ServedCollection,
    tiny_encoder: ClipEncoder,
    clip_retrieval: ClipRetrieval,
) -> None:
    indexes = (NamedIndex(NAME, collection.index), NamedIndex("textiles", served_collection.index))
    server = start(ServerConfig(indexes, port=0, metrics_port=0, http_port=0), tiny_encoder)
    try:
        assert requests.get(url(server, "/indices-list"), timeout=30).json() == [NAME, "textiles"]
        for name, folder in [(NAME, collection.images), ("textiles", served_collection.images)]:
            client = clip_retrieval.client(url=url(server, "/knn-service"), indice_name=name)
            items = client.query(text="a cat")
            assert all(Path(item["image_path"]).is_relative_to(folder) for item in items)
        unnamed = requests.post(url(server, "/knn-service"), data='{"text": "a cat"}', timeout=30)
        assert unnamed.status_code == 400
        assert f"{NAME}, textiles" in unnamed.json()["error"]["message"]
        textile = items[0]["id"]
        for name, found in [("textiles", [textile]), (NAME, [])]:
            body = json.dumps({"ids": [textile], "indice_name": name})
            answer = requests.post(url(server, "/metadata"), data=body, timeout=30).json()
            assert [m["id"] for m in answer] == found
    finally:
        server.stop(0)


# --- clip-front ---------------------------------------------------------------------------


@pytest.fixture
def front(clip_retrieval: ClipRetrieval, server: RunningServer, tmp_path: Path) -> Iterator[str]:
    """clip-front's built page, served from its own origin (as clip-back's users do) and
    configured with clipsearch as its backend."""
    if not (clip_retrieval.front / "index.html").exists():
        pytest.fail(f"clip-retrieval {clip_retrieval.root} ships no built clip-front")
    site = shutil.copytree(clip_retrieval.front, tmp_path / "front")
    config = {"defaultBackend": url(server), "defaultIndex": NAME, "urlColumn": "url"}
    (site / "config.json").write_text(json.dumps(config))
    with static_site(site) as address:
        yield address


CLIP_FRONT_IMAGES = """
const root = document.querySelector("clip-front").shadowRoot;
return root ? [...root.querySelectorAll("img.pic")].map(
  (img) => [img.complete && img.naturalWidth > 0, img.getAttribute("title")]) : [];
"""


def test_clip_front_shows_clipsearch_images(
    front: str, server: RunningServer, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(front)
    page = WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "const f = document.querySelector('clip-front');"
            "return f && f.indices && f.indices.length ? f : null;"
        )
    )
    assert browser.execute_script("return arguments[0].indices", page) == [NAME]
    # Three with the search, the rest through /metadata as the page fills the window.
    browser.execute_script("arguments[0].numImages = 3; arguments[0].hideDuplicateImages = false",
                           page)  # fmt: skip
    box = page.shadow_root.find_element(By.ID, "searchBar")
    box.send_keys("a woven textile", Keys.ENTER)
    body = {"text": "a woven textile", "indice_name": NAME, "num_images": 100}
    expected = requests.post(url(server, "/knn-service"), data=json.dumps(body), timeout=30).json()
    assert len(expected) > 3

    def shown(d: Any) -> list[list[Any]] | None:
        images = d.execute_script(CLIP_FRONT_IMAGES)
        return images if len(images) == len(expected) and all(ok for ok, _ in images) else None

    images = WebDriverWait(browser, 30).until(shown)
    assert [title for _, title in images] == [item.get("caption", "") for item in expected]
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert [u for u in fetched if u.endswith("/metadata")], "no metadata was fetched"
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    browser.save_screenshot(str(artifacts / "clip-front-on-clipsearch.png"))


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("CI"):
            raise RuntimeError("chromium and chromedriver are missing: run `make browser`")
        pytest.skip("needs chromium and chromedriver (`make browser`)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


def test_cross_origin_reading_is_off_unless_an_origin_is_allowed(
    collection: Collection, start_server: Callable[..., RunningServer]
) -> None:
    """A keyless local server must not hand its answers to any page the user opens."""
    body = json.dumps({"text": "a cat", "num_images": 1}).encode()

    def cors(server: RunningServer, origin: str) -> str | None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.http_port}/knn-service", data=body,
            headers={"Origin": origin, "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request) as answer:
            return answer.headers.get("Access-Control-Allow-Origin")

    closed = start_server(collection.index, http_port=0)
    assert cors(closed, "http://evil.example") is None
    front = HttpSettings(cors_origins=("http://localhost:8000",))
    one = start_server(collection.index, http_port=0, http=front)
    assert cors(one, "http://localhost:8000") == "http://localhost:8000"
    assert cors(one, "http://evil.example") is None
