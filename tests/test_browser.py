"""The search page in a real browser (Playwright driving Debian's Chromium) against a live uvicorn."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.filters import FILTERS
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.registry import make_bridge
from app.settings import Settings
from app.sources import FolderSource
from scripts.serving import serving as live_app
from tests.conftest import service_factory
from tests.fakes import FakeImageEncoder, FakeLanguageModel, FakeTextEncoder

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
READ_KEY = "browser-read-key"
PAGE_SIZE = 24  # app/static/app.js
PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "horse", "camera", "coins", "moon", "page", "text",
    "brick", "grass", "gravel", "cell", "clock", "hubble_deep_field", "immunohistochemistry", "logo",
    "retina",
)  # fmt: skip
CROPPED = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (scripts/setup.sh installs it)",
)


class LayoutEncoder(FakeImageEncoder):
    """Fake colour classifier whose visual feature is a 4×4 colour layout, so photos differ by look."""

    model_id = "fake-image-layout"
    feature_dim = 48

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Centred 4×4 average-pooled colours, and sharper colour logits than the parent's."""
        grid = torch.nn.functional.adaptive_avg_pool2d(batch, 4).flatten(1)
        means = batch.mean(dim=(2, 3))
        return grid - grid.mean(dim=1, keepdim=True), (means - means.mean(dim=1, keepdim=True)) * 30


def photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photos, as RGB."""
    from skimage import data

    return Image.fromarray(np.asarray(getattr(data, name)()).astype(np.uint8)).convert("RGB")


def gallery(folder: Path) -> Path:
    """scikit-image's bundled photos, crops of the colourful ones and one planted half-size JPEG copy."""
    folder.mkdir(parents=True)
    for name in PHOTOS:
        image = photo(name)
        image.thumbnail((640, 640))
        image.save(folder / f"{name}.jpg", quality=90)
        if name in CROPPED:
            w, h = image.size
            image.crop((0, 0, w // 2, h // 2)).save(folder / f"{name}-top-left.jpg", quality=90)
            image.crop((w // 2, h // 2, w, h)).save(folder / f"{name}-bottom-right.jpg", quality=90)
        if name == "coffee":
            copy = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
            copy.save(folder / "coffee-copy.jpg", quality=80)
    return folder


@dataclass
class PhotoIndex:
    """The photo gallery's index, the fake models it was built with, and their cache."""

    index_dir: Path
    models: Models
    cache: Path


@pytest.fixture(scope="module")
def photo_index(tmp_path_factory: pytest.TempPathFactory) -> PhotoIndex:
    """The photo gallery indexed with fake models whose visual features are colour layouts."""
    root = tmp_path_factory.mktemp("browser")
    models = Models(profile="fake", image=LayoutEncoder(), text=FakeTextEncoder(), lm=FakeLanguageModel())
    for model in (models.image, models.text, models.lm):
        assert model is not None
        model.load(torch.device("cpu"), torch.float32)
    # Bare label names as prompts: the bag-of-words text encoder then spreads the scores more.
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(templates=("{}",)), root / "cache"))
    index_dir = root / "index"
    build_index(
        FolderSource(gallery(root / "photos")),
        index_dir,
        pipeline,
        BuildConfig(pca_dim=0, workers=0),
        progress=False,
    )
    return PhotoIndex(index_dir, models, root / "cache")


def app_over(index: PhotoIndex, **settings: Any) -> FastAPI:
    """The app with the fake models over an index (settings override the defaults)."""
    config = Settings(**{"index_dir": index.index_dir, "cache_dir": index.cache, "device": "cpu", **settings})
    return create_app(config, factory=service_factory(index.models, index.cache))


@contextmanager
def serving(app: FastAPI, ready: bool = True) -> Iterator[str]:
    """The app under uvicorn on a free loopback port; yields its base URL once warm-up ended."""
    with live_app(app) as base:
        wait_until(base, {"X-API-Key": READ_KEY}, "ready" if ready else "failed")
        yield base


@pytest.fixture(scope="module")
def live_server(photo_index: PhotoIndex) -> Iterator[str]:
    """The app over the photo index, without a read key."""
    with serving(app_over(photo_index)) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_server(photo_index: PhotoIndex) -> Iterator[str]:
    """The app over the photo index, behind a read key."""
    with serving(app_over(photo_index, read_key=READ_KEY)) as base:
        yield base


@pytest.fixture(scope="module")
def indexless_server(photo_index: PhotoIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app pointed at a folder with no index: it stays up and says why it cannot search."""
    missing = tmp_path_factory.mktemp("private") / "no-index-here"
    with serving(app_over(photo_index, index_dir=missing), ready=False) as base:
        yield base


@contextmanager
def browser_page(base: str) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A Chromium page that can reach the live server only; yields it, its page errors, blocked URLs."""
    from playwright.sync_api import Route, sync_playwright

    errors: list[str] = []
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        """The network is closed: anything but the server under test is refused."""
        url = route.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
            context.route("**/*", only_the_server)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors, blocked
        finally:
            browser.close()


def readiness(base: str, headers: dict[str, str]) -> str | None:
    """The `status` of /readyz (None while the server does not answer)."""
    request = urllib.request.Request(f"{base}/readyz", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.load(response)["status"])
    except urllib.error.HTTPError as exc:
        return str(json.load(exc)["status"]) if exc.code == 503 else None
    except (urllib.error.URLError, ConnectionError):
        return None


def wait_until(base: str, headers: dict[str, str], status: str, timeout: float = 60.0) -> None:
    """Poll /readyz until the service reports this status."""
    deadline = time.monotonic() + timeout
    while readiness(base, headers) != status:
        assert time.monotonic() < deadline, f"the live server did not become {status}"
        time.sleep(0.1)


def test_search_open_describe_and_more_like_this(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(live_server) as (page, errors, blocked):
        page.goto(f"{live_server}/")
        expect(page.locator("#index-status")).to_have_text(re.compile(r"\d+ images · fake"))

        # Type a query: thumbnails load, each with a score, best first.
        page.locator("#query").fill("a red thing")
        page.locator("#query").press("Enter")
        cards = page.locator("#results .card")
        expect(cards).to_have_count(PAGE_SIZE)
        expect(page.locator("#summary-text")).to_contain_text("for “a red thing”")
        expect(cards.first.locator(".thumb")).to_have_class(re.compile(r"\bloaded\b"))
        scores = [float(text) for text in page.locator("#results .score").all_inner_texts()]
        assert len(scores) == PAGE_SIZE and scores == sorted(scores, reverse=True)
        first_row = page.locator("#results .card img").evaluate_all(
            "imgs => imgs.slice(0, 4).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert first_row == [True] * 4
        expect(page).to_have_url(re.compile(r"\?q=a\+red\+thing$"))
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)"
        )
        page.screenshot(path=tmp_path / "search.png", animations="disabled")  # never into the repo

        # Scroll: the next page loads by itself, then the end is announced.
        page.locator("#sentinel").scroll_into_view_if_needed()
        expect(page.locator("#end")).to_be_visible()
        total = cards.count()
        assert total > PAGE_SIZE
        # The planted half-size copy of coffee.jpg is folded into one result.
        badges = page.locator("#results .dup-badge")
        expect(badges).to_have_count(1)
        expect(badges).to_have_text("+1 similar")
        assert total == len(set(page.locator("#results .card-name").all_inner_texts()))

        # Open the best result: the full image and its details.
        page.evaluate("window.scrollTo(0, 0)")
        first_name = cards.first.locator(".card-name").inner_text()
        cards.first.locator("button").click()
        viewer = page.locator("#viewer")
        expect(viewer).to_be_visible()
        expect(page.locator("#viewer-title")).to_have_text(first_name)
        page.wait_for_function("() => document.querySelector('#viewer-image').naturalWidth > 0")
        # "Open original" shows what a browser can show (/view); the file itself is a download.
        expect(page.locator("#original-link")).to_have_attribute("href", re.compile(r"^images/\w+/view$"))
        expect(page.locator("#download-link")).to_have_attribute("href", re.compile(r"^images/\w+$"))
        expect(page.locator("#download-link")).to_have_attribute("download", first_name.rsplit("/", 1)[-1])

        # Describe: a sentence appears, with the labels it came from.
        page.locator("#describe-button").click()
        expect(page.locator("#description-text")).to_have_text(re.compile(r"^A [a-z ]+\.$"))
        expect(page.locator("#description-labels li").first).to_contain_text("thing")

        # More like this: an image search from the original; the same image comes first.
        page.locator("#similar-button").click()
        expect(viewer).to_be_hidden()
        expect(page.locator("#summary-text")).to_contain_text(f"look like {first_name}")
        expect(cards.first.locator(".card-name")).to_have_text(first_name)
        expect(cards).to_have_count(PAGE_SIZE)
        assert float(cards.first.locator(".score").inner_text()) > 0.99

        # Pick a file: the full-size coffee photo finds its indexed copies, folded into one result.
        upload = tmp_path / "my coffee.png"
        photo("coffee").save(upload)
        page.locator("#file-input").set_input_files(upload)
        expect(page.locator("#summary-text")).to_contain_text("look like my coffee.png")
        expect(cards.first.locator(".card-name")).to_have_text(re.compile(r"^coffee(-copy)?\.jpg$"))
        expect(cards.first.locator(".dup-badge")).to_have_text("+1 similar")

        # Drop an image anywhere on the page: the same search by image.
        dropped = page.evaluate_handle(
            """async () => {
                const blob = await (await fetch(document.querySelector('#results img').src)).blob();
                const transfer = new DataTransfer();
                transfer.items.add(new File([blob], 'dropped.jpg', { type: blob.type }));
                return transfer;
            }"""
        )
        page.dispatch_event("main", "drop", {"dataTransfer": dropped})
        expect(page.locator("#summary-text")).to_contain_text("look like dropped.jpg")
        expect(cards).to_have_count(PAGE_SIZE)
        assert errors == [] and blocked == []


def test_page_is_served_with_a_strict_content_security_policy(live_server: str) -> None:
    with urllib.request.urlopen(f"{live_server}/") as response:
        policy = response.headers["content-security-policy"]
        html = response.read().decode()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    for name in ("filters.js", "app.js"):
        assert f'<script src="static/{name}" defer></script>' in html
        with urllib.request.urlopen(f"{live_server}/static/{name}") as response:
            script = response.read().decode()
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script


def test_a_failed_image_search_and_a_blank_query_leave_no_trace(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(live_server) as (page, errors, blocked):
        page.goto(f"{live_server}/")
        expect(page.locator("#index-status")).to_have_text(re.compile(r"\d+ images · fake"))
        # A file that claims to be a PNG but is not one: the service refuses it (415).
        fake = tmp_path / "holiday.png"
        fake.write_bytes(b"this is not a picture at all")
        page.locator("#file-input").set_input_files(fake)
        message = page.locator("#message")
        expect(message).to_be_visible()
        expect(message).to_contain_text("not an image")
        expect(page.locator("#summary-text")).to_have_text("The search by holiday.png failed")
        expect(page.locator("#loading")).to_be_hidden()
        expect(page.locator("#results .card")).to_have_count(0)
        # Enter on a blank query: back to the start, the old error gone.
        page.locator("#query").fill("   ")
        page.locator("#query").press("Enter")
        expect(message).to_be_hidden()
        expect(page.locator("#summary")).to_be_hidden()
        expect(page.locator("#intro")).to_be_visible()
        # A good search after it shows results and no error.
        page.locator("#query").fill("a red thing")
        page.locator("#query").press("Enter")
        expect(page.locator("#results .card")).to_have_count(PAGE_SIZE)
        expect(message).to_be_hidden()
        assert errors == [] and blocked == []


def test_without_an_index_the_page_says_why_and_never_hangs(indexless_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(indexless_server) as (page, errors, blocked):
        page.goto(f"{indexless_server}/")
        expect(page.locator("#index-status")).to_have_text("Service unavailable")
        message = page.locator("#message")
        expect(message).to_contain_text("The service is unavailable: no index at IMGSEARCH_INDEX_DIR")
        page.locator("#query").fill("a cat")
        page.locator("#query").press("Enter")
        expect(page.locator("#summary-text")).to_have_text("The search for “a cat” failed")
        expect(message).to_contain_text("service unavailable")
        expect(message).not_to_contain_text("no-index-here")  # no server path on the page
        expect(page.locator("#loading")).to_be_hidden()
        # The image search fails the same clean way.
        page.locator("#file-input").set_input_files(
            {"name": "cat.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n"}
        )
        expect(page.locator("#summary-text")).to_have_text("The search by cat.png failed")
        expect(page.locator("#loading")).to_be_hidden()
        page.locator("#query").fill("")
        page.locator("#query").press("Enter")
        expect(message).to_be_hidden()
        expect(page.locator("#intro")).to_be_visible()
        assert errors == [] and blocked == []


def test_with_a_read_key_the_page_signs_in_and_the_docs_work_offline(keyed_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(keyed_server) as (page, errors, blocked):
        page.goto(f"{keyed_server}/?q=a+red+thing")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#intro")).to_be_hidden()
        page.locator("#signin-key").fill("a guess")
        page.locator("#signin-key").press("Enter")
        expect(page.locator("#signin-error")).to_have_text("That key is not right.")
        page.locator("#signin-key").fill(READ_KEY)
        page.locator("#signin-key").press("Enter")
        # Signed in: the search from the link runs and its thumbnails load through the session cookie.
        expect(page.locator("#signin")).to_be_hidden()
        expect(page.locator("#index-status")).to_have_text(re.compile(r"\d+ images · fake"))
        cards = page.locator("#results .card")
        expect(cards).to_have_count(PAGE_SIZE)
        expect(cards.first.locator(".thumb")).to_have_class(re.compile(r"\bloaded\b"))
        sources = page.locator("#results img").evaluate_all("imgs => imgs.map(i => i.src)")
        assert sources and not any(READ_KEY in src for src in sources)
        cookies = page.context.cookies()
        assert [c["httpOnly"] for c in cookies] == [True] and READ_KEY not in cookies[0]["value"]

        # The interactive docs, from files installed with the project (the network is closed).
        page.goto(f"{keyed_server}/docs")
        operations = page.locator(".opblock-summary-path")
        expect(operations.first).to_be_visible()
        paths = set(operations.all_inner_texts())
        assert {"/search", "/search/image", "/describe", "/images/{image_id}"} <= {
            p.replace("\u200b", "") for p in paths
        }
        expect(page.locator(".opblock-summary-description").first).not_to_be_empty()
        page.goto(f"{keyed_server}/redoc")
        expect(page.locator("h2", has_text="Search by image")).to_be_visible()

        # Sign out: back to the form, and the data is closed again.
        page.goto(f"{keyed_server}/")
        page.locator("#signout-button").click()
        expect(page.locator("#signin")).to_be_visible()
        assert page.request.get(f"{keyed_server}/readyz").status == 401
        assert errors == [] and blocked == []


@pytest.fixture(scope="module")
def collection_server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over the photo collection of tests/conftest.py: folders, names, dates."""
    from tests.conftest import make_collection

    root = tmp_path_factory.mktemp("collection")
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), root / "cache"), flip=True)
    config = BuildConfig(pca_dim=0, workers=0)
    build_index(
        FolderSource(make_collection(root / "photos")), root / "index", pipeline, config, progress=False
    )
    with serving(app_over(PhotoIndex(root / "index", models, root / "cache"), dedup_threshold=0)) as base:
        # One search first: it waits for the places of the GPS photo to be named (the gazetteer loads
        # in seconds), which a page's first search would otherwise wait for within its timeout.
        with urllib.request.urlopen(f"{base}/search?q=thing", timeout=60) as warmed:
            assert warmed.status == 200
        yield base


def test_folders_dates_why_and_more_like_this_refined_with_words(collection_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(collection_server) as (page, errors, blocked):
        page.goto(f"{collection_server}/")
        folder = page.locator("#folder")
        expect(folder.locator("option")).to_have_text(
            ["All folders", "(top folder) (1)", "2020 (1)", "2020/beach (2)", "paris (2)"]
        )
        cards, summary = page.locator("#results .card"), page.locator("#summary-text")
        names = cards.locator(".card-name")

        # Folder and date range narrow the search in place.
        page.locator("#query").fill("thing")
        page.locator("#query").press("Enter")
        expect(cards).to_have_count(6)
        expect(cards.first.locator(".card-why")).to_have_text("meaning")
        folder.select_option("2020/beach")
        expect(summary).to_have_text("2 results from 2 images for “thing”")
        expect(names).to_have_text([re.compile(r"^(dog_on_beach\.jpg|sunset\.webp)$")] * 2)
        page.locator("#after").fill("2020-08-02")
        expect(names).to_have_text(["sunset.webp"])
        page.locator("#after").fill("")
        folder.select_option("")
        page.locator("#before").fill("2019-12-31")
        expect(cards).to_have_count(2)
        expect(names).to_have_text([re.compile(r"^(eiffel-tower\.jpg|a8f3c2\.jpg)$")] * 2)
        page.locator("#before").fill("")
        expect(cards).to_have_count(6)

        # A file's name lifts it, and the page says so.
        page.locator("#query").fill("eiffel tower")
        page.locator("#query").press("Enter")
        expect(names.first).to_have_text("eiffel-tower.jpg")
        expect(cards.first.locator(".card-why")).to_have_text("meaning · name")
        cards.first.locator("button").click()
        expect(page.locator("#viewer-folder")).to_have_text("paris")
        expect(page.locator("#viewer-taken")).to_have_text("2019-07-14 10:00:00")
        expect(page.locator("#viewer-matched")).to_have_text("meaning · name")

        # More like this, then refined with words; the chip takes the image away again.
        page.locator("#similar-button").click()
        expect(summary).to_have_text("6 results from 6 images that look like eiffel-tower.jpg")
        expect(names.first).to_have_text("eiffel-tower.jpg")
        expect(page.locator("#like-chip")).to_be_visible()
        page.locator("#query").fill("blue thing")
        page.locator("#query").press("Enter")
        expect(summary).to_have_text("6 results from 6 images for “blue thing”, like eiffel-tower.jpg")
        first_four = set(names.all_inner_texts()[:4])
        assert first_four == {"dog_on_beach.jpg", "a8f3c2.jpg", "eiffel-tower.jpg", "louvre.png"}
        page.locator("#like-clear").click()
        expect(summary).to_have_text("6 results from 6 images for “blue thing”")
        expect(page.locator("#like-chip")).to_be_hidden()
        assert errors == [] and blocked == []


def test_every_filter_has_a_control_and_the_url_keeps_them(collection_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with browser_page(collection_server) as (page, errors, blocked):
        # A link with filters: its controls show them and the search applies them.
        page.goto(f"{collection_server}/?q=thing&folder=2020&camera=nikon")
        cards, summary = page.locator("#results .card"), page.locator("#summary-text")
        names = cards.locator(".card-name")
        expect(names).to_have_text(["dog_on_beach.jpg"])
        expect(page.locator("#folder")).to_have_value("2020")
        expect(page.locator("#camera")).to_have_value("nikon")
        expect(page.locator("#filters .filter")).to_have_count(len(FILTERS))  # a control for each

        # Every kind of control narrows the search in place, and the URL follows.
        page.locator("#camera").fill("")
        page.locator("#camera").press("Enter")
        expect(cards).to_have_count(3)
        expect(page).to_have_url(re.compile(r"/\?q=thing&folder=2020$"))
        page.locator("#folder").select_option("")
        page.locator("#format").click()
        page.get_by_role("checkbox", name="PNG").check()
        expect(names).to_have_text([re.compile(r"^(louvre|red-car)\.png$")] * 2)
        page.locator("#min_width").fill("100")
        page.locator("#min_width").press("Enter")
        expect(names).to_have_text(["louvre.png"])
        page.locator("#has_gps").select_option("false")
        page.locator("#after").fill("2021-01-01")
        expect(summary).to_have_text("1 result from 1 images for “thing”")
        wanted = "/?q=thing&after=2021-01-01&format=png&min_width=100&has_gps=false"
        expect(page).to_have_url(re.compile(re.escape(wanted) + "$"))

        # A reload (or the bookmark) restores every filter and the same results.
        page.reload()
        expect(names).to_have_text(["louvre.png"])
        expect(page.locator("#after")).to_have_value("2021-01-01")
        expect(page.locator("#format")).to_have_text("Format: PNG")
        expect(page.locator("#min_width")).to_have_value("100")
        expect(page.locator("#has_gps")).to_have_value("false")
        expect(page).to_have_url(re.compile(re.escape(wanted) + "$"))
        page.locator("#format").click()  # the open list of formats
        page.screenshot(path=tmp_path / "filters.png", animations="disabled")  # never into the repo

        # A search by image takes the same filters; the URL keeps them without the words.
        upload = tmp_path / "green.png"
        Image.new("RGB", (40, 30), (0, 160, 0)).save(upload)
        page.locator("#file-input").set_input_files(upload)
        expect(summary).to_have_text("1 result from 1 images that look like green.png")
        expect(names).to_have_text(["louvre.png"])
        expect(page).to_have_url(re.compile(re.escape(wanted.replace("q=thing&", "")) + "$"))
        page.locator("#after").fill("")
        page.locator("#min_width").fill("")
        page.locator("#min_width").press("Enter")  # the same image, searched again in place
        expect(summary).to_have_text("2 results from 2 images that look like green.png")
        expect(names).to_have_text([re.compile(r"^(louvre|red-car)\.png$")] * 2)
        assert errors == [] and blocked == []


def test_dates_and_places_read_from_the_words_show_as_removable_chips(collection_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(collection_server) as (page, errors, blocked):
        page.goto(f"{collection_server}/")
        cards, chips = page.locator("#results .card"), page.locator("#understood .read-chip")
        names = cards.locator(".card-name")
        page.locator("#query").fill("thing in 2019")
        page.locator("#query").press("Enter")
        expect(names).to_have_text(["eiffel-tower.jpg"])  # the one photo taken in 2019
        expect(chips).to_have_text(["“in 2019”: 2019-01-01 – 2019-12-31×"])

        # Removing the chip searches the words as typed; a chip offers to read them again.
        chips.first.locator("button").click()
        expect(cards).to_have_count(6)
        expect(page).to_have_url(re.compile(r"/\?q=thing\+in\+2019&understand=false$"))
        expect(chips).to_have_text(["Words searched as typed read them"])
        chips.first.locator("button").click()
        expect(names).to_have_text(["eiffel-tower.jpg"])

        # A place alone filters (the photo's GPS is in Paris); removing it keeps the date as filters.
        page.locator("#query").fill("photos from Paris in 2019")
        page.locator("#query").press("Enter")
        expect(chips).to_have_count(2)
        expect(chips.first).to_have_text("“from Paris”: Paris×")  # in the order typed
        expect(cards.first.locator(".card-why")).to_have_text("meaning · place")
        chips.first.locator("button").click()
        expect(page.locator("#after")).to_have_value("2019-01-01")
        expect(page.locator("#before")).to_have_value("2019-12-31")
        expect(names).to_have_text(["eiffel-tower.jpg"])

        # The place filter's own control: whole names, any case, accents optional.
        page.locator("#after").fill("")
        page.locator("#before").fill("")
        page.locator("#query").fill("thing")
        page.locator("#query").press("Enter")
        expect(cards).to_have_count(6)
        page.locator("#place").fill("ile de france")
        page.locator("#place").press("Enter")
        expect(names).to_have_text(["eiffel-tower.jpg"])
        assert errors == [] and blocked == []


PEOPLE_ADMIN_KEY = "browser-admin-key"


@pytest.fixture(scope="module")
def people_server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over the photo collection, with people: Alice in the two Paris photos, someone unnamed on
    the beach (a fake people view), and an admin key."""
    from tests.conftest import make_collection
    from tests.people_fakes import FaceSpec, FakePeople, serving_people

    root = tmp_path_factory.mktemp("people")
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), root / "cache"), flip=True)
    photos = make_collection(root / "photos")
    build_index(
        FolderSource(photos), root / "index", pipeline, BuildConfig(pca_dim=0, workers=0), progress=False
    )
    faces: list[FaceSpec] = [
        ("paris/eiffel-tower.jpg", (100, 50, 60, 60), 0.99, "p1"),
        ("paris/louvre.png", (10, 10, 40, 40), 0.98, "p1"),
        ("2020/beach/dog_on_beach.jpg", (50, 50, 80, 80), 0.9, "p2"),
    ]
    names: dict[str, str | None] = {"p1": "Alice", "p2": None}
    config = Settings(
        index_dir=root / "index",
        cache_dir=root / "cache",
        device="cpu",
        api_key=PEOPLE_ADMIN_KEY,
        dedup_threshold=0,
    )
    factory = serving_people(
        service_factory(models, root / "cache"), lambda ids: FakePeople(ids, faces, names)
    )
    with serving(create_app(config, factory=factory)) as base:
        yield base


def test_the_people_strip_filters_names_and_merges(people_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(people_server) as (page, errors, blocked):
        page.goto(f"{people_server}/")
        people = page.locator("#people-list button.person")
        expect(people.locator(".person-name")).to_have_text(["Alice", "Unnamed"])
        expect(people.locator(".person-count")).to_have_text(["2", "1"])
        expect(people.first.locator("img")).to_have_js_property("naturalWidth", 96)  # 60 px and 30 % around

        # A click filters by that person; the filter's control and the URL hold the id.
        people.first.click()
        names = page.locator("#results .card .card-name")
        expect(names).to_have_text([re.compile(r"^(eiffel-tower\.jpg|louvre\.png)$")] * 2)
        expect(page.locator("#person")).to_have_value("p1")
        expect(page).to_have_url(re.compile(r"person=p1"))
        expect(people.first).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#results .card .card-why").first).to_contain_text("person")
        people.first.click()  # pressed again: the filter goes
        expect(page.locator("#person")).to_have_value("")
        expect(page.locator("#results .card")).to_have_count(6)

        # The person control lists the index's people by name; picking one filters as the strip does.
        options = page.locator("#person option")
        expect(options).to_have_text(["Anyone", "Alice (2)", "Unnamed p2 (1)"])
        page.locator("#person").select_option(label="Alice (2)")
        expect(names).to_have_text([re.compile(r"^(eiffel-tower\.jpg|louvre\.png)$")] * 2)
        expect(page).to_have_url(re.compile(r"person=p1"))
        expect(people.first).to_have_attribute("aria-pressed", "true")
        page.locator("#person").select_option(label="Anyone")
        expect(page.locator("#results .card")).to_have_count(6)
        page.goto(f"{people_server}/?q=photos&person=ALICE")  # a name in the URL picks that person
        expect(page.locator("#person")).to_have_value("p1")
        expect(names).to_have_text([re.compile(r"^(eiffel-tower\.jpg|louvre\.png)$")] * 2)
        page.locator("#person").select_option(label="Anyone")

        # A named person's name in the words is read as that person, shown as a chip.
        page.locator("#query").fill("alice")
        page.locator("#query").press("Enter")
        expect(page.locator("#understood .read-chip")).to_have_text(["“alice”: Alice×"])
        expect(names).to_have_text([re.compile(r"^(eiffel-tower\.jpg|louvre\.png)$")] * 2)
        expect(people.first).to_have_attribute("aria-pressed", "false")  # read, not the filter's control
        page.locator("#results .card").first.locator("button").click()
        expect(page.locator("#viewer-people")).to_have_text("Alice")  # the named people in the photo
        page.locator("#viewer-close").click()

        # With the admin key: name the unnamed person, then merge them into Alice.
        page.locator("#people-key").fill(PEOPLE_ADMIN_KEY)
        page.locator("#people-key").press("Enter")
        page.get_by_label("Name of this person").fill("Bob")
        page.get_by_label("Name of this person").press("Enter")
        expect(people.locator(".person-name")).to_have_text(["Alice", "Bob"])
        expect(options).to_have_text(["Anyone", "Alice (2)", "Bob (1)"])  # the control follows the names
        page.locator("#query").fill("Alice and Bob")  # every person named is read, each with its chip
        page.locator("#query").press("Enter")
        expect(page.locator("#understood .read-chip")).to_have_text(["“Alice”: Alice×", "“Bob”: Bob×"])
        page.get_by_label("Merge Bob into").select_option("p1")
        expect(people.locator(".person-count")).to_have_text(["3"])
        assert errors == [] and blocked == []
