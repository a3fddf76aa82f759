"""The lock files: every declared dependency is pinned there, within its range, and the images use them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from scripts.lock_pins import pins

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, str]:
    """Package name → version, as pylock.toml pins it."""
    packages = tomllib.loads((ROOT / "pylock.toml").read_text())["packages"]
    return {package["name"]: package["version"] for package in packages}


def canonical(name: str) -> str:
    """A distribution name as lock files write it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    declared = [*project["dependencies"], *(dependency for extra in extras for dependency in extra)]
    versions = locked()
    for text in declared:
        requirement = Requirement(text)
        name = canonical(requirement.name)
        assert name in versions, f"{name} is declared in pyproject.toml but not locked: run scripts/lock.sh"
        assert requirement.specifier.contains(versions[name], prereleases=True), (
            f"{name} {versions[name]} in pylock.toml is outside {requirement.specifier}: run scripts/lock.sh"
        )


def test_every_locked_wheel_carries_a_hash() -> None:
    for name in ("pylock.toml", "pylock.nodeps.toml"):
        for package in tomllib.loads((ROOT / name).read_text())["packages"]:
            files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
            assert files and all(file["hashes"].get("sha256") for file in files), package["name"]


def test_the_lock_pins_the_torch_this_machine_provides() -> None:
    versions = locked()
    assert (versions["torch"], versions["torchvision"]) == ("2.14.1", "0.29.1")
    assert "imgsearch" not in versions  # installed editable by scripts/setup.sh, not from the lock


def test_setup_and_images_install_from_the_lock_with_one_pip() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    pip = re.search(r"^PIP_VERSION=([0-9.]+)", setup, re.MULTILINE)
    assert pip and "-r pylock.toml" in setup and "--no-deps -r pylock.nodeps.toml" in setup
    for name in ("Dockerfile", "Dockerfile.cuda"):
        dockerfile = (ROOT / "docker" / name).read_text()
        assert f"pip install pip=={pip.group(1)}" in dockerfile
        assert "-c /tmp/pins.txt" in dockerfile and "--no-deps -r pylock.nodeps.toml" in dockerfile
        # nothing installed by a range: every pip install names the pins, the lock or an exact version
        for line in re.findall(r"pip install ([^\n]*(?:\\\n[^\n]*)*)", dockerfile):
            assert not re.search(r"['\"][\w-]+(>=|~=|<)", line), line


def test_pins_leave_out_what_the_cpu_image_takes_elsewhere() -> None:
    every = pins(ROOT / "pylock.toml")
    cpu = pins(ROOT / "pylock.toml", ("torch", "nvidia-", "triton", "cuda-"))
    assert "torch==2.14.1" in every and not any(pin.startswith("torch==") for pin in cpu)
    assert len(every) == len(locked()) and "fastapi==" + locked()["fastapi"] in cpu


def test_only_the_headless_opencv_is_installed_and_the_ocr_wheel_without_its_dependencies() -> None:
    versions = locked()
    assert "opencv-python-headless" in versions and "opencv-python" not in versions  # no libGL needed
    nodeps = tomllib.loads((ROOT / "pylock.nodeps.toml").read_text())["packages"]
    assert {package["name"]: package["version"] for package in nodeps}["rapidocr-onnxruntime"] == "1.4.4"
    assert "rapidocr" not in " ".join(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    )
