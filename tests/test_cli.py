"""The `imgsearch` console script: help, search (with a plot), describe, serve, and its errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app import cli
from app.api.runtime import ServiceFactory
from app.pipeline import Models
from scripts import search as search_script
from tests.conftest import service_factory
from tests.fakes import COLOURS

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\s*(\d+)  (\d\.\d{4})  ([0-9a-f]{16})  (\S+)$")


@pytest.fixture
def factory(models: Models, tmp_path: Path) -> ServiceFactory:
    """Builds the service over the fake models instead of loading real weights."""
    return service_factory(models, tmp_path / "cache")


def test_console_script_is_declared_and_lists_the_subcommands() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"imgsearch": "app.cli:main"}
    installed = Path(sys.executable).parent / "imgsearch"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "app.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True, cwd=ROOT)
    for name in ("build", "search", "describe", "serve"):
        assert re.search(rf"^\s+{name}\s+\w", result.stdout, re.MULTILINE), result.stdout


def test_search_prints_rank_score_id_and_source(
    index_dir: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "a blue thing", "--index-dir", str(index_dir), "--top-k", "3"]
    assert cli.main(argv, factory=factory) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert len(lines) == 3 and all(parsed), lines
    ranks = [int(m.group(1)) for m in parsed if m]
    scores = [float(m.group(2)) for m in parsed if m]
    assert ranks == [1, 2, 3] and scores == sorted(scores, reverse=True)
    assert lines[0].endswith("sub/blue.webp")


def test_search_offset_continues_the_ranks(
    index_dir: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "a blue thing", "--index-dir", str(index_dir), "--top-k", "1", "--offset", "2"]
    assert cli.main(argv, factory=factory) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.lstrip().startswith("3  ")


def test_search_plot_saves_a_grid_of_the_result_thumbnails(
    index_dir: Path, factory: ServiceFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plots" / "red.png"
    argv = ["search", "a red thing", "--index-dir", str(index_dir), "--top-k", "3", "--plot", str(out)]
    assert cli.main(argv, factory=factory) == 0
    assert f"saved 3 thumbnails to {out}" in capsys.readouterr().err
    with Image.open(out) as plot:
        assert plot.format == "PNG" and plot.width > plot.height > 200
        pixels = np.asarray(plot.convert("RGB"), dtype=np.int32).reshape(-1, 3)

    def near(target: tuple[int, int, int]) -> bool:
        return bool((np.abs(pixels - np.asarray(target)).sum(axis=1) < 40).any())

    # Each thumbnail of the three one-colour images is drawn.
    assert all(near(COLOURS[name]) for name in ("red", "green", "blue"))


def test_describe_prints_the_sentence_and_labels(
    index_dir: Path, factory: ServiceFactory, gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["describe", str(gallery / "red.png"), "--index-dir", str(index_dir)]
    assert cli.main(argv, factory=factory) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "A red thing."  # the fake LM's invented continuation is not evidence
    assert re.fullmatch(r"  \d\.\d{4}  red thing", lines[1]) and len(lines) == 4


def test_errors_are_one_line_with_exit_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", "cat", "--index-dir", str(tmp_path / "none")]) == 1
    assert "error: no index at" in capsys.readouterr().err
    assert cli.main(["describe", str(tmp_path / "missing.jpg"), "--index-dir", str(tmp_path)]) == 1
    assert "error: cannot read" in capsys.readouterr().err
    assert search_script.main(["cat", "--index-dir", str(tmp_path / "none")]) == 1
    assert "no index at" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "cat", "--top-k", "0"],
        ["search", "cat", "--offset", "-1"],
        ["build", "--images", ".", "--index-dir", "x", "--pca-dim", "-1"],
        ["build", "--index-dir", "x"],
        ["launch"],
    ],
)
def test_bad_arguments_exit_with_status_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2 and "usage: imgsearch" in capsys.readouterr().err


def test_serve_runs_uvicorn_on_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setenv("IMGSEARCH_INDEX_DIR", "unused")
    assert cli.main(["serve", "--port", "8123", "--index-dir", str(tmp_path)]) == 0
    assert calls == [(("app.main:app",), {"host": "127.0.0.1", "port": 8123, "log_level": "info"})]
    assert os.environ["IMGSEARCH_INDEX_DIR"] == str(tmp_path)
