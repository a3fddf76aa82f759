"""The search page's order controls: sort by date above a relevance cutoff, kept in the URL."""

from __future__ import annotations

import re

from tests.test_browser import browser_page, collection_server, pytestmark

__all__ = ["collection_server", "pytestmark"]  # the live server and the skip without Chromium

OLDEST = ["a8f3c2.jpg", "eiffel-tower.jpg", "red-car.png", "dog_on_beach.jpg", "sunset.webp", "louvre.png"]


def test_the_sort_control_orders_by_date_and_the_url_keeps_it(collection_server: str) -> None:
    from playwright.sync_api import expect

    with browser_page(collection_server) as (page, errors, blocked):
        # A link with an order: its controls show it and the search applies it.
        page.goto(f"{collection_server}/?q=thing&sort=oldest&min_score=0")
        cards = page.locator("#results .card")
        names = cards.locator(".card-name")
        expect(names).to_have_text(OLDEST)
        expect(page.locator("#sort")).to_have_value("oldest")
        expect(page.locator("#min-score")).to_have_value("0")

        # The control reorders in place, and the URL follows.
        page.locator("#sort").select_option("newest")
        expect(names).to_have_text(OLDEST[::-1])
        expect(page).to_have_url(re.compile(r"/\?q=thing&sort=newest&min_score=0$"))

        # Each score says what it is made of.
        page.locator("#sort").select_option("relevance")
        page.locator("#min-score").fill("")
        page.locator("#min-score").press("Enter")
        expect(page).to_have_url(re.compile(r"/\?q=thing$"))
        expect(cards.first.locator(".score")).to_have_text("1.000")
        expect(cards.first.locator(".score")).to_have_attribute("title", re.compile(r"meaning 1\.00"))
        assert errors == [] and blocked == []
