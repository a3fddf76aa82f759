"""The README's screenshot: the demo gallery indexed with the packaged models, searched in Chromium.

    .venv/bin/python -m scripts.screenshot            # writes docs/screenshot.png

Builds the demo gallery (scripts.demo_gallery) and its index (packaged profile, a few minutes of
CPU) when data/index is missing, serves it on a free loopback port, and photographs a search.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from app.layout import META, live_path
from app.main import create_app
from app.settings import Settings
from scripts.serving import serving

log = logging.getLogger("screenshot")
CHROMIUM = Path("/usr/bin/chromium")


def ensure_index(gallery: Path, index_dir: Path) -> None:
    """Make the demo gallery and its packaged-profile index unless the index is there."""
    if (live_path(index_dir) / META).exists():
        return
    log.info("building the demo index in %s (a few minutes)", index_dir)
    subprocess.run([sys.executable, "-m", "scripts.demo_gallery", "--out", str(gallery)], check=True)
    build = ["--images", str(gallery), "--index-dir", str(index_dir), "--profile", "packaged"]
    subprocess.run([sys.executable, "-m", "scripts.build_index", *build], check=True)


def photograph(base: str, query: str, out: Path, chromium: Path) -> None:
    """Search on the page and save what the browser shows once the visible thumbnails loaded."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
            page.goto(f"{base}/")
            expect(page.locator("#index-status")).to_contain_text("images ·", timeout=120_000)
            page.locator("#query").fill(query)
            page.locator("#query").press("Enter")
            expect(page.locator("#results .card").first).to_be_visible(timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#results img')]"
                ".filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)"
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), animations="disabled")
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    """Build if needed, serve, photograph; exit 0 once the screenshot is written."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gallery", type=Path, default=Path("data/gallery"))
    parser.add_argument("--index-dir", type=Path, default=Path("data/index"))
    parser.add_argument("--query", default="a cat")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    args = parser.parse_args(argv)
    ensure_index(args.gallery, args.index_dir)
    # The packaged models the index names; no key, whatever the environment says (a local page).
    app = create_app(Settings(index_dir=args.index_dir, read_key=None, host="127.0.0.1"))
    with serving(app) as base:
        if not app.state.runtime.wait(600):
            log.error("the service did not start: %s", app.state.runtime.error)
            return 1
        photograph(base, args.query, args.out, args.chromium)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
