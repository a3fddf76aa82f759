"""The description bench on the dev set (bench/describe_dev.py), through the service: every picture is
described as an upload and by its id in an index built from the set; text mode describes fixed queries.

`python -m bench.describe --split dev [--against CHECKOUT]`: with `--against`, the same set is also
described by another checkout's code (its app/ and scripts/, this bench's judges) in a subprocess of the
same run, and both columns are printed side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.assembly import service_over
from app.index import Index
from app.registry import prepare
from app.settings import Settings
from bench.describe_dev import (
    QUERIES,
    DevItem,
    dev_set,
    gives_up,
    grammar_slips,
    invents,
    keeps_query_words,
    names_object,
    one_sentence,
    wrong_objects,
)  # the child (--against) imports these too: bench/describe_dev.py needs only app.labels and scripts/

SET_DIR = "describe-dev"  # under the bench cache: the pictures and the index built from them


def _write_set(items: list[DevItem], folder: Path) -> list[tuple[str, str]]:
    """The set's pictures as files, rewritten only when missing: (file, image id) per item."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, str]] = []
    for n, item in enumerate(items):
        path = folder / f"{n:04d}-{item.name.replace('/', '_')}"
        path = path.with_suffix(".jpg" if item.data[:2] == b"\xff\xd8" else ".png")
        if not path.exists():
            path.write_bytes(item.data)
        files.append((str(path), hashlib.sha256(item.data).hexdigest()[:16]))
    return files


def describe_set(files: list[tuple[str, str]], queries: list[str]) -> dict[str, list[Any]]:
    """This process's code: build an index of the files, describe each as an upload and by its id, and
    write a sentence for each query, timing each call."""
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="describe-dev-") as scratch:
        index_dir = Path(scratch) / "index"
        images = Path(files[0][0]).parent
        command = [sys.executable, "-m", "scripts.build_index", "--images", str(images)]
        subprocess.run([*command, "--index-dir", str(index_dir)], check=True, stdout=subprocess.DEVNULL)
        service = service_over(Index(index_dir), prepare(settings, "packaged"), settings.cache_dir)
        raw: dict[str, list[Any]] = {k: [] for k in ("upload", "upload_ms", "image_id", "image_id_ms")}
        for path, image_id in files:
            data = Path(path).read_bytes()
            for key in ("upload", "image_id"):
                start = time.perf_counter()
                described = (
                    service.describe_upload(data) if key == "upload" else service.describe_indexed(image_id)
                )
                raw[key].append(described.text)
                raw[f"{key}_ms"].append((time.perf_counter() - start) * 1000)
        raw["text"], raw["text_ms"] = [], []
        for query in queries:
            start = time.perf_counter()
            raw["text"].append(service.describe_query(query).text)
            raw["text_ms"].append((time.perf_counter() - start) * 1000)
        service.close()
    return raw


def _against(checkout: Path, files: list[tuple[str, str]]) -> dict[str, list[Any]]:
    """describe_set run by another checkout's code (its app/ and scripts/) in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="describe-bench-") as scratch:
        (Path(scratch) / "bench").symlink_to(Path(__file__).resolve().parent)
        job = Path(scratch) / "job.json"
        job.write_text(json.dumps({"files": files, "queries": list(QUERIES)}))
        env = dict(os.environ, PYTHONPATH=f"{scratch}{os.pathsep}{checkout.resolve()}")
        command = [sys.executable, "-m", "bench.describe_run", str(job)]
        subprocess.run(command, check=True, env=env, cwd=scratch)
        result: dict[str, list[Any]] = json.loads(job.with_suffix(".out.json").read_text())
    return result


def _percent(flags: list[bool]) -> float:
    """Share of true flags, in percent."""
    return 100.0 * float(np.mean(flags)) if flags else 0.0


def _image_figures(texts: list[str], items: list[DevItem], ms: list[float]) -> dict[str, float]:
    """Names the object, wrong object, gives up, grammar slips, p50 for one path."""
    return {
        "names": _percent([names_object(t, i) for t, i in zip(texts, items, strict=True)]),
        "wrong": _percent([bool(wrong_objects(t, i)) for t, i in zip(texts, items, strict=True)]),
        "gives_up": _percent([gives_up(t) for t in texts]),
        "slips": float(sum(bool(grammar_slips(t)) for t in texts)),
        "p50_ms": float(np.percentile(ms, 50)),
    }


def score(raw: dict[str, list[Any]], items: list[DevItem]) -> dict[str, Any]:
    """The figures of one run."""
    written = raw["text"]
    return {
        "upload": _image_figures(raw["upload"], items, raw["upload_ms"]),
        "image_id": _image_figures(raw["image_id"], items, raw["image_id_ms"]),
        "agree": _percent([a == b for a, b in zip(raw["upload"], raw["image_id"], strict=True)]),
        "text": {
            "keeps": _percent([keeps_query_words(q, t) for q, t in zip(QUERIES, written, strict=True)]),
            "one_sentence": _percent([one_sentence(t) for t in written]),
            "invents": _percent([bool(invents(q, t)) for q, t in zip(QUERIES, written, strict=True)]),
            "p50_ms": float(np.percentile(raw["text_ms"], 50)),
        },
    }


def samples(raw: dict[str, list[Any]], items: list[DevItem]) -> list[dict[str, Any]]:
    """One row per picture and per query, with what the judges found."""
    rows: list[dict[str, Any]] = [
        {"name": i.name, "origin": i.origin, "upload": u, "image_id": x, "accepted": sorted(i.accepted),
         "names": names_object(u, i), "wrong": wrong_objects(u, i), "gives_up": gives_up(u),
         "slips": grammar_slips(u)}
        for i, u, x in zip(items, raw["upload"], raw["image_id"], strict=True)
    ]  # fmt: skip
    rows += [
        {"query": q, "text": t, "invents": invents(q, t)} for q, t in zip(QUERIES, raw["text"], strict=True)
    ]
    return rows


def _table(columns: dict[str, dict[str, Any]]) -> None:
    """The figures of each run side by side."""
    names = list(columns)
    print(f"{'':36}" + "".join(f"{name:>16.16}" for name in names))
    lines: list[tuple[str, list[float]]] = []
    for path in ("upload", "image_id"):
        for key, label in (("names", "names the object %"), ("wrong", "says a wrong object %"),
                           ("gives_up", "gives up %"), ("slips", "grammar slips"),
                           ("p50_ms", "p50 ms")):  # fmt: skip
            lines.append((f"{path}: {label}", [columns[n][path][key] for n in names]))
    lines.append(("same sentence both ways %", [columns[n]["agree"] for n in names]))
    for key, label in (("keeps", "keeps every query word %"), ("one_sentence", "one full sentence %"),
                       ("invents", "invents %"), ("p50_ms", "p50 ms")):  # fmt: skip
        lines.append((f"text: {label}", [columns[n]["text"][key] for n in names]))
    for label, cells in lines:
        print(f"{label:36}" + "".join(f"{float(c):>16.1f}" for c in cells))


def run_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Describe the set with this checkout (and the one given by --against) and print the figures."""
    started = time.perf_counter()
    items = dev_set(args.cache_dir)[: args.limit]
    files = _write_set(items, args.cache_dir.expanduser() / SET_DIR)
    raws: dict[str, dict[str, list[Any]]] = {}
    if args.against:
        raws[f"{args.against.name} (against)"] = _against(args.against, files)
    raws["this checkout"] = describe_set(files, list(QUERIES))
    columns = {name: score(raw, items) for name, raw in raws.items()}
    rows = samples(raws["this checkout"], items)
    if args.samples:
        args.samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
        for name, raw in raws.items():
            if name != "this checkout":
                other = args.samples.with_suffix(".against.jsonl")
                other.write_text("".join(json.dumps(row) + "\n" for row in samples(raw, items)))
    for row in rows[: args.show]:
        print(f"{row.get('name', row.get('query'))!s:50.50} → {row.get('upload', row.get('text'))!r}")
    _table(columns)
    origins = {o: sum(i.origin == o for i in items) for o in ("photo", "stamp", "made")}
    print(f"images={len(items)} {origins} queries={len(QUERIES)} seconds={time.perf_counter() - started:.0f} "
          f"load1={os.getloadavg()[0]:.1f} cpus={os.cpu_count()}")  # fmt: skip
    print("RESULT describe-dev " + json.dumps(columns))
    return 0


def main(argv: list[str]) -> int:
    """Child mode (--against): describe the job file's pictures and queries with this code, write JSON."""
    job = Path(argv[0])
    spec = json.loads(job.read_text())
    raw = describe_set([tuple(f) for f in spec["files"]], spec["queries"])
    job.with_suffix(".out.json").write_text(json.dumps(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
