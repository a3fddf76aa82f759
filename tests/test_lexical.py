"""Lexical matching of names, folders and embedded text as people write them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from app import lexical
from app.lexical import LexicalDoc, create_tables, has_tables, insert, search, words
from app.metadata import ImageMetadata

DOCS = [
    LexicalDoc(1, "eiffelTower_2019.jpg", "travel/paris", ""),
    LexicalDoc(2, "Cité-médiévale.png", "", ""),
    LexicalDoc(3, "citedecarcassonne.webp", "france", ""),
    LexicalDoc(4, "dog_on_beach.jpg", "", "Golden retriever\nsunset"),
    LexicalDoc(5, "IMG_0042.JPG", "2019/Noël", ""),
    LexicalDoc(6, "watchtower.jpg", "", ""),
    LexicalDoc(7, "HTMLParserDiagram.png", "work", ""),
]


@pytest.fixture
def connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sqlite3.Connection]:
    """A manifest-like database holding DOCS, inserted a few at a time."""
    monkeypatch.setattr(lexical, "INSERT_CHUNK", 3)
    connection = sqlite3.connect(tmp_path / "manifest.sqlite")
    create_tables(connection)
    insert(connection, DOCS)
    connection.commit()
    yield connection
    connection.close()


def rows(connection: sqlite3.Connection, query: str, limit: int = 10) -> list[int]:
    """Matching rows, best first."""
    return [hit.row for hit in search(connection, query, limit)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("eiffelTower_2019.jpg", ["eiffel", "tower", "2019", "jpg"]),
        ("dog_on-beach", ["dog", "on", "beach"]),
        ("HTMLParser", ["html", "parser"]),
        ("IMG2019paris", ["img", "2019", "paris"]),
        ("CitéDeCarcassonne", ["cite", "de", "carcassonne"]),
        ("Straße", ["strasse"]),
    ],
)
def test_words_split_like_file_names(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("query", "first", "matched"),
    [
        ("eiffel tower", 1, ("name",)),  # camelCase
        ("Eiffel", 1, ("name",)),
        ("eiff", 1, ("name",)),  # word prefix
        ("eiffeltower", 1, ("name",)),  # glued query, split name
        ("dog beach", 4, ("name",)),  # snake_case
        ("cite medievale", 2, ("name",)),  # kebab-case, accents folded in the name
        ("CITÉ MÉDIÉVALE", 2, ("name",)),  # and in the query
        ("Cité de Carcassonne", 3, ("name",)),  # glued name
        ("carcassonne", 3, ("name",)),  # a word inside a glued name
        ("noel", 5, ("folder",)),
        ("paris", 1, ("folder",)),
        ("golden retriever", 4, ("metadata",)),
        ("html parser", 7, ("name",)),
        ("0042", 5, ("name",)),
    ],
)
def test_each_tokenisation_case_matches(
    connection: sqlite3.Connection, query: str, first: int, matched: tuple[str, ...]
) -> None:
    hits = search(connection, query, 10)
    assert hits and hits[0].row == first
    assert hits[0].matched == matched


def test_digits_match_in_name_and_folder(connection: sqlite3.Connection) -> None:
    hits = {hit.row: hit.matched for hit in search(connection, "2019", 10)}
    assert hits == {1: ("name",), 5: ("folder",)}


def test_a_full_name_match_ranks_above_a_partial_one(connection: sqlite3.Connection) -> None:
    assert rows(connection, "eiffel tower")[:2] == [1, 6]


@pytest.mark.parametrize("query", ["xqzvwj", "purple elephant", "the of a", ""])
def test_nonsense_returns_nothing(connection: sqlite3.Connection, query: str) -> None:
    assert rows(connection, query) == []


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"eiffel',
        "AND",
        "OR NOT",
        "-",
        "- tower",
        "*",
        "eiffel*",
        "NEAR(a b)",
        "name:",
        "{name}: x",
        "^",
        "'; --",
    ],
)
def test_special_characters_never_raise(connection: sqlite3.Connection, query: str) -> None:
    search(connection, query, 10)
    assert rows(connection, f"{query} eiffel")[:1] == [1]


def test_allowed_rows_still_fill_the_page(connection: sqlite3.Connection) -> None:
    assert [hit.row for hit in search(connection, "2019", 10, allowed={5})] == [5]
    assert [hit.row for hit in search(connection, "tower", 1, allowed={6})] == [6]
    assert search(connection, "tower", 10, allowed=set()) == []


def test_limit_is_respected(connection: sqlite3.Connection) -> None:
    assert len(search(connection, "2019", 1)) == 1
    assert search(connection, "2019", 0) == []


def test_documents_from_metadata(tmp_path: Path) -> None:
    meta = ImageMetadata(
        folder="2019/Bretagne", name="P1000.JPG", format="JPEG", width=1, height=1, keywords=("phare",)
    )
    connection = sqlite3.connect(":memory:")
    assert not has_tables(connection)
    create_tables(connection)
    assert has_tables(connection)
    insert(connection, [LexicalDoc.of(9, meta)])
    assert [(hit.row, hit.matched) for hit in search(connection, "bretagne phare", 5)] == [
        (9, ("folder", "metadata"))
    ]


def test_short_words_match_whole_or_plural_not_as_prefixes() -> None:
    """'a cat' finds cat.png and the cats folder, not cathedral.png (a three-letter prefix is noise)."""
    connection = sqlite3.connect(":memory:")
    create_tables(connection)
    docs = [
        LexicalDoc(1, "cathedral.png", "buildings", ""),
        LexicalDoc(2, "lion.png", "animals/cats", ""),
        LexicalDoc(3, "cat.png", "pets", ""),
        LexicalDoc(4, "catalogue_2019.pdf.png", "", ""),
        LexicalDoc(5, "IMG_0005.jpg", "2019", "our cat"),  # a title
        LexicalDoc(6, "IMG_0006.jpg", "2019", "", "CAT FOOD"),  # the text read in the picture
    ]
    insert(connection, docs)
    assert sorted(hit.row for hit in search(connection, "a cat", 10)) == [2, 3, 5, 6]
    assert [hit.row for hit in search(connection, "cath", 10)] == [1]  # four letters on: a prefix
    own = {hit.row: hit.own for hit in search(connection, "a cat", 10)}
    # lion.png in cats/: only the folder, words many pictures share (0); a title or the text read in
    # the picture are the picture's own words, as its name is (1): the clear-look margin holds back 0 only
    assert own == {2: 0.0, 3: 1.0, 5: 1.0, 6: 1.0}


def test_coverage_says_how_fully_a_match_explains_the_query_or_the_name(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "manifest.sqlite")
    create_tables(connection)
    names = ["red-apple.jpg", "red-car.jpg", "redcar.png", "apple_red.png", "IMG_0042.jpg", "greenflag.png"]
    insert(connection, [LexicalDoc(row, name, "", "") for row, name in enumerate(names)])
    car = {hit.row: hit.coverage for hit in search(connection, "a red car", 10)}
    assert car[1] == car[2] == 1.0  # both words: named after the query
    assert car[0] == 0.5  # "red" alone, one of two content words
    assert 4 not in car and 5 not in car
    shares = lexical.coverages(connection, "a red car", [0, 1, 4])
    assert shares[0] == (0.5, 3 / 8) and shares[1] == (1.0, 1.0) and shares[4] == (0.0, 0.0)
    long = {hit.row: hit.coverage for hit in search(connection, "A red apple on a branch", 10)}
    assert long[3] == long[0] == 1.0  # every word of the name is in the long caption
    assert lexical.coverages(connection, "a green apple", [5])[5] == (0.5, 5 / 9)  # green, glued in
    assert lexical.coverages(connection, "!?", [0, 1]) == {0: (0.0, 0.0), 1: (0.0, 0.0)}
    connection.close()


def test_a_word_is_looked_up_inside_glued_names_while_word_matches_leave_room(
    connection: sqlite3.Connection,
) -> None:
    # One word match (eiffelTower) leaves room in a page of two: watchtower.jpg, "tower" glued inside.
    assert rows(connection, "tower", limit=2) == [1, 6]


Scored = list[tuple[int, float]]


@pytest.mark.parametrize("query", ["tower", "eiffel tower", "cite de carcassonne", "golden", "noel 2019"])
@pytest.mark.parametrize("limit", [1, 2, 10])
@pytest.mark.parametrize("spare", [True, False])
def test_the_trigram_query_run_beside_finds_the_same(
    connection: sqlite3.Connection, tmp_path: Path, query: str, limit: int, spare: bool
) -> None:
    other = sqlite3.connect(tmp_path / "manifest.sqlite", check_same_thread=False)
    ran: list[bool] = []

    def beside(read: Callable[[sqlite3.Connection], Scored]) -> Future[Scored] | None:
        ran.append(True)
        if not spare:  # no connection free: the trigram query runs after the words one instead
            return None
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(read, other)

    try:
        alone = search(connection, query, limit)
        assert search(connection, query, limit, beside=beside) == alone
    finally:
        other.close()
    assert ran or len(alone) == limit  # the trigram table ran beside unless the word matches filled the page
