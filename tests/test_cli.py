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
import torch
from PIL import Image

from app import cli
from app.assembly import ServiceFactory
from app.build import BuildConfig, build_index
from app.errors import BadSetting
from app.pipeline import Models, Pipeline
from app.service import SearchService
from app.settings import Settings, load_settings
from app.sources import HFDatasetSource
from scripts import search as search_script
from tests.conftest import png_bytes, service_factory
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
    assert lines[0] == "A mostly red drawing of a red thing."  # the fake LM's continuation is not evidence
    assert re.fullmatch(r"  \d\.\d{4}  red thing", lines[1]) and len(lines) == 4


def test_errors_are_one_line_with_exit_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", "cat", "--index-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "error: no index at" in err and "imgsearch build --images" in err and "scripts/" not in err
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


def test_search_by_image_file_with_the_option_or_the_path_alone(
    index_dir: Path, factory: ServiceFactory, gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    red = gallery / "red.png"
    assert (
        cli.main(["search", "--image", str(red), "--index-dir", str(index_dir), "--top-k", "2"], factory) == 0
    )
    by_option = capsys.readouterr()
    first = LINE.match(by_option.out.splitlines()[0])
    assert first and first.group(4) == "red.png" and float(first.group(2)) > 0.99
    assert cli.main(["search", str(red), "--index-dir", str(index_dir), "--top-k", "2"], factory) == 0
    by_path = capsys.readouterr()
    assert by_path.out == by_option.out
    assert by_path.err.strip() == f"{red} is an image file: searching for images that look like it"
    assert cli.main(["search", "photo.jpg", "--index-dir", str(index_dir)], factory) == 0
    assert "there is no file photo.jpg; searching for these words" in capsys.readouterr().err


def test_bad_queries_are_refused_before_any_model_loads(
    index_dir: Path, gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_models(settings: Settings) -> SearchService:
        raise AssertionError("models were loaded for a query that cannot be served")

    for argv in (["search", "   "], ["search"], ["search", "cat", "--image", str(gallery / "red.png")]):
        with pytest.raises(SystemExit) as stopped:
            cli.main([*argv, "--index-dir", str(index_dir)], factory=no_models)
        assert stopped.value.code == 2
    assert "the query is blank" in capsys.readouterr().err
    broken = ["search", "--image", str(gallery / "broken.png"), "--index-dir", str(index_dir)]
    assert cli.main(broken, factory=no_models) == 1
    assert capsys.readouterr().err.startswith(f"error: {gallery / 'broken.png'}: ")


def test_offset_past_the_end_says_so(
    index_dir: Path, factory: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["search", "red", "--index-dir", str(index_dir), "--offset", "50"], factory) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "no results past result 50: the index holds 3 images\n"


def test_dataset_results_show_their_row(
    pipeline: Pipeline, factory: ServiceFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datasets import Dataset

    pictures = [{"bytes": png_bytes(COLOURS[name]), "path": None} for name in ("red", "green")]
    source = HFDatasetSource(Dataset.from_dict({"image": pictures}), name="colours[train]")
    build_index(source, tmp_path / "index", pipeline, BuildConfig(workers=0), progress=False)
    assert cli.main(["search", "green thing", "--index-dir", str(tmp_path / "index")], factory) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("  colours[train]#1")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "IMGSEARCH_DEVICE",
            "gpu",
            "IMGSEARCH_DEVICE='gpu' is not valid: must be auto, cpu, cuda, cuda:N or mps",
        ),
        ("IMGSEARCH_MAX_UPLOAD_MB", "abc", "IMGSEARCH_MAX_UPLOAD_MB='abc' is not valid: expected a number"),
        ("IMGSEARCH_MAX_COLLECTION_PIXELS", "1e9", "IMGSEARCH_MAX_COLLECTION_PIXELS='1e9' is not valid"),
    ],
)
def test_bad_settings_are_one_line_for_every_command(
    variable: str,
    value: str,
    message: str,
    gallery: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served with a bad setting"))
    monkeypatch.setenv(variable, value)
    for argv in (
        ["search", "cat", "--index-dir", str(tmp_path)],
        ["describe", str(gallery / "red.png"), "--index-dir", str(tmp_path)],
        ["build", "--images", str(gallery), "--index-dir", str(tmp_path / "index")],
        ["serve", "--index-dir", str(tmp_path)],
    ):
        assert cli.main(argv) == 1, argv
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: {message}"), line
    assert not (tmp_path / "index").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_DEVICE", "cuda")
    with pytest.raises(BadSetting, match=r"CUDA is not available on this machine .*; use auto or cpu"):
        load_settings()


def test_uvicorn_with_a_bad_setting_logs_one_line_and_exits(tmp_path: Path) -> None:
    env = {**os.environ, "IMGSEARCH_MAX_UPLOAD_MB": "abc", "IMGSEARCH_INDEX_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.endswith("cannot start: IMGSEARCH_MAX_UPLOAD_MB='abc' is not valid: expected a number")


def test_build_sources_that_cannot_be_read_are_one_line(
    gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datasets import Dataset

    Dataset.from_dict(
        {"image": [{"bytes": png_bytes(COLOURS["red"]), "path": None}], "caption": ["a red square"]}
    ).save_to_disk(tmp_path / "saved")
    capsys.readouterr()  # the progress bar of save_to_disk
    cases = {
        ("--images", str(gallery / "red.png")): "is a file, not a folder: --images takes a folder of images",
        ("--hf-dataset", str(tmp_path / "saved"), "--image-column", "caption"): (
            "column 'caption' does not hold images (text); columns that hold images: image (--image-column)"
        ),
        ("--hf-dataset", str(tmp_path / "absent")): "cannot open the dataset",
    }
    for source, message in cases.items():
        assert cli.main(["build", *source, "--index-dir", str(tmp_path / "index")]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("error: ") and message in line, line


@pytest.mark.real_weights
def test_loading_the_packaged_image_model_prints_nothing_on_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    from app.encoders.efficientnet import EfficientNetLiteEncoder

    EfficientNetLiteEncoder(optimize=False, label_variant=2).load(torch.device("cpu"), torch.float32)
    assert capfd.readouterr().out == ""  # Lite0 and its labeller Lite2 alike
