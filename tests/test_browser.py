"""The search page in a real browser (Playwright driving Debian's Chromium) against a live uvicorn."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image, ImageChops

from app.bridge import BridgeParams
from app.build import BuildConfig, build_index
from app.main import create_app
from app.pipeline import Models, Pipeline
from app.registry import make_bridge
from app.settings import Settings
from app.sources import FolderSource
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
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
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


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with fake models over a photo index, served by uvicorn on a free loopback port."""
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
    settings = Settings(index_dir=index_dir, cache_dir=root / "cache", device="cpu")
    app = create_app(settings, factory=service_factory(models, root / "cache"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_until_ready(base: str, timeout: float = 60.0) -> None:
    """Poll /readyz until the service answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if json.load(response)["status"] == "ready":
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, "the live server did not become ready"
        time.sleep(0.1)


def save_screenshot(png: bytes, path: Path) -> None:
    """Write the screenshot unless the file already holds the same picture (keeps git quiet)."""
    if path.exists():
        with Image.open(path) as old, Image.open(io.BytesIO(png)) as new:
            if (
                old.size == new.size
                and ImageChops.difference(old.convert("RGB"), new.convert("RGB")).getbbox() is None
            ):
                return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def test_search_open_describe_and_more_like_this(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
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
            save_screenshot(page.screenshot(animations="disabled"), SCREENSHOT)

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
            assert errors == []
        finally:
            browser.close()


def test_page_is_served_with_a_strict_content_security_policy(live_server: str) -> None:
    with urllib.request.urlopen(f"{live_server}/") as response:
        policy = response.headers["content-security-policy"]
        html = response.read().decode()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert '<script src="static/app.js" defer></script>' in html
    with urllib.request.urlopen(f"{live_server}/static/app.js") as response:
        script = response.read().decode()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
