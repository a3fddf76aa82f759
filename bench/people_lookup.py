"""What a person lookup costs in a large collection: a fresh view (first call) against one that has read.

A generation of `--faces` synthetic faces (two per image) over `--people` people, one of them named, is
written straight into a manifest; then `people()`, `person(name)`, `images_of(id)` and `faces_of(image)`
are timed on a view's first call (it groups every face) and on later calls (kept until the store
changes: app/people.py). The `person` search filter costs one `person` and one `images_of`.

    .venv/bin/python -m bench.people_lookup --faces 100000 --people 2000
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

from app.catalog import FACES, FACES_SQL
from app.layout import MANIFEST
from app.people import People, store


def stage(index_dir: Path, faces: int, people: int) -> Path:
    """A generation holding `faces` faces of `people` people (p1 named "Alice"); its folder."""
    generation = index_dir / "generation"
    generation.mkdir(parents=True)
    with closing(sqlite3.connect(generation / MANIFEST)) as connection:
        connection.execute(FACES_SQL)
        rows = [
            (face, f"img{face // 2}", 1, 1, 50, 50, 1.0, 50, b"", f"p{face % people + 1}")
            for face in range(faces)
        ]
        connection.executemany(f"INSERT INTO {FACES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        connection.commit()
    with store(index_dir) as connection:
        connection.execute("INSERT INTO people (number, name) VALUES (1, 'Alice')")
    return generation


def timed(lookup: Callable[[People], object], view: People, repeat: int) -> float:
    """Mean milliseconds of `repeat` lookups through one view."""
    start = time.perf_counter()
    for _ in range(repeat):
        lookup(view)
    return (time.perf_counter() - start) / repeat * 1000


def main(argv: Sequence[str] | None = None) -> int:
    """Stage, then time each lookup cold (a fresh view) and warm (the same view again)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="people-lookup-") as scratch:
        generation = stage(Path(scratch), args.faces, args.people)
        lookups: dict[str, Callable[[People], object]] = {
            "people": lambda view: view.people(),
            "person": lambda view: view.person("Alice"),
            "images_of": lambda view: view.images_of("p1"),
            "faces_of": lambda view: view.faces_of("img7"),
        }
        parts = []
        for name, lookup in lookups.items():
            view = People(Path(scratch), generation)
            view.rows()  # the faces are read once per view in both cases
            cold = timed(lookup, view, 1)
            warm = timed(lookup, view, args.repeat)
            parts.append(
                f"{name}_cold_ms={cold:.2f} {name}_warm_ms={warm:.3f} {name}_ratio={cold / warm:.0f}"
            )
    print(f"RESULT people-lookup faces={args.faces} people={args.people} " + " ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
