"""Print the lock's exact versions as pip constraints (`name==version`), for installs that cannot use
pylock.toml's file locations (the Docker images, which take torch from their own index).

    python scripts/lock_pins.py [--exclude PREFIX ...] > constraints.txt
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "pylock.toml"


def pins(lock: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """`name==version` for every locked package whose name starts with none of `exclude`."""
    packages = tomllib.loads(lock.read_text())["packages"]
    return [
        f"{package['name']}=={package['version']}"
        for package in packages
        if "version" in package and not package["name"].startswith(exclude)
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the constraints to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--exclude", action="append", default=[], help="leave out names with this prefix")
    args = parser.parse_args(argv)
    print("\n".join(pins(args.lock, tuple(args.exclude))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
